"""Reading a SQL destination's rows back for the checks: the rows a sync owns, a batch at a time,
as the mart's Arrow types, and into DuckDB, where the checksum compares them with the mart."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal

import duckdb
import duckdb.sqltypes as sqltypes
import pyarrow as pa
import sqlalchemy as sa

from activation.syncs.model import Plan, is_json
from activation.syncs.spec import SyncSpec

JSON_UDF = "activation_canonical_json"


def owned(spec: SyncSpec, table: sa.Table, scope: dict | None = None) -> sa.ColumnElement[bool]:
    conds = [table.c[c] == v for c, v in (scope if scope is not None else spec.scope).items()]
    if spec.soft_delete_column:
        conds.append(table.c[spec.soft_delete_column].is_(None))
    return sa.and_(sa.true(), *conds)


def destination_batches(engine: sa.Engine, plan: Plan, scope: dict | None) -> Iterator[pa.RecordBatch]:
    """The synced columns of the rows this sync owns, cast to the mart's Arrow types, a batch at a time."""
    spec = plan.spec
    with engine.connect() as conn:
        t = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
        for column in t.columns:
            if isinstance(column.type, sa.Float):
                column.type.asdecimal = False  # MySQL reflects DOUBLE as Decimal-returning
        stmt = sa.select(*[t.c[c] for c in plan.columns]).where(owned(spec, t, scope))
        result = conn.execution_options(yield_per=50_000).execute(stmt)
        coercers = [coercer(f) for f in plan.arrow_schema]
        for chunk in result.partitions():
            cols = list(zip(*chunk, strict=True)) if chunk else [[] for _ in plan.columns]
            arrays = [
                pa.array([c(v) for v in values], type=f.type)
                for values, f, c in zip(cols, plan.arrow_schema, coercers, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=plan.arrow_schema)


def stream_into(con: duckdb.DuckDBPyConnection, table: str, reader: pa.RecordBatchReader) -> None:
    """Copy a stream of batches into a DuckDB temp table (`table` quoted), which DuckDB keeps within
    its memory limit, spilling beyond it, where a pyarrow Table would hold every row in memory."""
    stream = "_activation_stream"
    con.register(stream, reader)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {stream}")
    finally:
        con.unregister(stream)


def register_json_udf(con: duckdb.DuckDBPyConnection) -> None:
    """JSON text in one canonical form (sorted keys, no spaces): PostgreSQL's JSONB reorders keys."""

    def canonical(text: str) -> str:
        try:
            return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            return text

    try:
        con.create_function(JSON_UDF, canonical, [sqltypes.VARCHAR], sqltypes.VARCHAR)
    except (duckdb.NotImplementedException, duckdb.CatalogException):
        pass  # registered earlier on this connection


def coercer(fld: pa.Field):
    """A destination value as the mart's Arrow type expects it (drivers differ per dialect)."""
    t = fld.type
    if is_json(fld):
        return lambda v: v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    if pa.types.is_boolean(t):
        return lambda v: None if v is None else bool(v)
    if pa.types.is_integer(t):
        return lambda v: None if v is None else int(v)
    if pa.types.is_floating(t):
        return lambda v: None if v is None else float(v)
    if pa.types.is_decimal(t):
        quantum = Decimal(1).scaleb(-t.scale)
        return lambda v: None if v is None else Decimal(str(v)).quantize(quantum)
    if pa.types.is_timestamp(t):
        aware = t.tz is not None

        def ts(v):
            if v is None:
                return None
            if isinstance(v, str):
                v = dt.datetime.fromisoformat(v)
            if aware:  # stored as UTC where the database has no zone-aware type
                return v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC)
            return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v

        return ts
    if pa.types.is_date(t):

        def day(v):
            if isinstance(v, dt.datetime):
                return v.date()
            return dt.date.fromisoformat(v) if isinstance(v, str) else v

        return day
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda v: v.decode() if isinstance(v, bytes) else v
    return lambda v: v
