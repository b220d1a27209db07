"""Destination tables derived from the mart's Arrow schema, with an explicit type map; each
dialect supplies the types its database spells its own way (SqlDialect.timestamp, json, ...).

Why explicit: the default mappings of generic loaders lose precision (DECIMAL to FLOAT),
time zones (aware timestamps stored as local time) or characters (MySQL's 3-byte utf8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql.dialect import SqlDialect
from activation.syncs.model import is_json
from activation.syncs.options import ForeignKey

# MySQL can index VARCHAR up to 768 utf8mb4 characters (3072 bytes); 255 keeps composite keys legal.
VARCHAR_DEFAULT = 255
# Past this length a string column becomes TEXT: MySQL's 64 KiB row limit counts VARCHAR bytes.
VARCHAR_MAX = 1024


class SchemaError(ValueError):
    """A mart column cannot be represented in the destination."""


def _string(dialect: SqlDialect, max_length: int | None, is_key: bool) -> sa.types.TypeEngine:
    length = max_length or 0
    if is_key or length <= VARCHAR_DEFAULT:
        return sa.String(max(VARCHAR_DEFAULT, length))
    if length <= VARCHAR_MAX:
        return sa.String(VARCHAR_MAX)
    return dialect.long_text()


def sql_type(
    dialect: SqlDialect,
    arrow_type: pa.DataType,
    *,
    table: str,
    column: str,
    max_length: int | None = None,
    is_key: bool = False,
) -> sa.types.TypeEngine:
    """The destination type for one mart column."""
    t = arrow_type
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return sa.SmallInteger()
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return sa.Integer()
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return sa.BigInteger()
    if pa.types.is_uint64(t):
        return sa.Numeric(20, 0)
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return dialect.float32()
    if pa.types.is_float64(t):
        return sa.Double()
    if pa.types.is_decimal(t):
        if t.precision > 65:
            raise SchemaError(
                f"{table}.{column}: DECIMAL({t.precision},{t.scale}) exceeds the 65 digits MySQL stores; "
                "cast it in the mart"
            )
        return sa.Numeric(t.precision, t.scale, asdecimal=True)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _string(dialect, max_length, is_key)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return sa.LargeBinary()
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_timestamp(t):
        return dialect.timestamp(t.tz is not None)
    if pa.types.is_time(t):
        return dialect.time()
    raise SchemaError(
        f"{table}.{column}: the mart type {t} has no destination mapping; cast it in the mart "
        "(lists, structs and maps can be cast to JSON text)"
    )


def build_table(
    dialect: SqlDialect,
    metadata: sa.MetaData,
    name: str,
    arrow_schema: pa.Schema,
    primary_key: Sequence[str],
    *,
    string_lengths: Mapping[str, int | None] | None = None,
    foreign_keys: Sequence[ForeignKey] = (),
    soft_delete_column: str | None = None,
) -> sa.Table:
    """A SQLAlchemy table for the mart's columns; keys are never auto-increment. Text compares
    byte for byte: the diff must see 'Tokyo' -> 'TOKYO' as a change, and keys are case-sensitive."""
    string_lengths = string_lengths or {}
    columns = []
    for field in arrow_schema:
        is_key = field.name in primary_key
        if is_json(field):
            columns.append(sa.Column(field.name, dialect.json(), nullable=not is_key))
            continue
        type_ = sql_type(
            dialect,
            field.type,
            table=name,
            column=field.name,
            max_length=string_lengths.get(field.name),
            is_key=is_key,
        )
        columns.append(sa.Column(field.name, type_, primary_key=is_key, nullable=not is_key, autoincrement=False))
    if soft_delete_column:
        columns.append(sa.Column(soft_delete_column, dialect.timestamp(False), nullable=True))
    constraints = [
        sa.ForeignKeyConstraint([fk.column], [f"{fk.references_table}.{fk.references_column}"]) for fk in foreign_keys
    ]
    return sa.Table(name, metadata, *columns, *constraints, **dialect.table_options())


# -- schema drift: the mart and an existing destination table disagree -------------------------------


def category(type_: sa.types.TypeEngine | pa.DataType) -> str:
    """What kind of value a column holds, for telling a retyped column from a widened one."""
    if isinstance(type_, pa.DataType):
        t = type_
        if pa.types.is_boolean(t):
            return "boolean"
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "number"
        if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
            return "temporal"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            return "binary"
        return "text"  # strings, and JSON / nested values, which travel as JSON text
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer | sa.Numeric):
        return "number"
    if isinstance(type_, sa.Date | sa.DateTime | sa.Time):
        return "temporal"
    if isinstance(type_, sa.LargeBinary | sa.types._Binary):
        return "binary"
    return "text"


def accepts(destination: sa.types.TypeEngine, mart: pa.DataType) -> bool:
    """Whether a destination column can hold the mart column's values without a type change."""
    dest, src = category(destination), category(mart)
    return dest == src or dest == "text" or {dest, src} == {"boolean", "number"}
