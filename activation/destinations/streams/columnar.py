"""The envelope's JSON parts (key, after, before, changed, subject) for a whole batch at once, in
Polars (Rust), instead of a Python dict and an orjson call per row and part: encoding in Python
cost more per event than the raw client's publishing (bench/README.md). What is left per row is
the id's digest and one `bytes` join.

It writes the bytes envelope.py's row-by-row encoder writes (Polars' JSON and orjson agree on
numbers, strings and escapes; timestamps are formatted as orjson does: UTC, `Z`, microseconds
only when there are some; decimals as Arrow's exact text), which a test holds it to. It takes
the column types both encode alike; a batch with other types (JSON columns, binary, lists, time
of day) or a key that is neither text nor an integer goes row by row."""

from __future__ import annotations

import orjson
import polars as pl
import pyarrow as pa

PLAIN = (
    pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_floating,
    pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal,
)  # fmt: skip
KEY_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer)


def takes(schema: pa.Schema, key: list[str], columns: list[str], json_columns: set[str]) -> bool:
    """Whether every sent column (and the key) has a type this encoder writes as orjson does."""
    if json_columns:
        return False
    types = {f.name: f.type for f in schema}
    plain = all(any(t(types[c]) for t in PLAIN) for c in columns if c in types)
    return plain and all(any(t(types[k]) for t in KEY_TYPES) for k in key)


def _prepared(batch: pa.RecordBatch) -> pl.DataFrame:
    """The batch with decimals as their exact text (what `str(Decimal)` writes) and zoned
    timestamps as their UTC instants."""
    arrays = []
    for column in batch.columns:
        if pa.types.is_decimal(column.type):
            column = column.cast(pa.string())
        elif pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us"))
        arrays.append(column)
    return pl.from_arrow(pa.Table.from_arrays(arrays, names=batch.schema.names))


def _value(df: pl.DataFrame, name: str) -> pl.Expr:
    column = pl.col(name)
    if df.schema[name] == pl.Datetime("us"):  # as orjson writes a naive UTC datetime
        whole, fraction = column.dt.to_string("%Y-%m-%dT%H:%M:%SZ"), column.dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
        return pl.when(column.dt.microsecond() == 0).then(whole).otherwise(fraction)
    return column


def _object(df: pl.DataFrame, names: list[str], prefix: str = "") -> pl.Expr:
    return pl.struct([_value(df, prefix + c).alias(c) for c in names]).struct.json_encode()


def parts(
    batch: pa.RecordBatch, op_column: str, key: list[str], columns: list[str], values: list[str], before: str, kept: str
) -> dict[str, list]:
    """Per row: op, subject, key, after, before, changed (JSON text; None where the envelope has null)."""
    df = _prepared(batch)
    op = pl.col(op_column)
    has_after = all(c in df.columns for c in columns)  # the deletes' batches carry the key only
    out = [
        op.alias("op"),
        pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator="/").alias("subject"),
        _object(df, key).alias("key"),
        (pl.when(op == "delete").then(None).otherwise(_object(df, columns)) if has_after else pl.lit(None))
        .cast(pl.String)
        .alias("after"),
    ]
    if kept in df.columns:
        known = pl.col(kept).fill_null(False)
        out.append(pl.when(known & op.is_in(["update", "delete"])).then(_object(df, columns, before)).alias("before"))
        names = [
            pl.when(pl.col(before + c).ne_missing(pl.col(c))).then(pl.lit(orjson.dumps(c).decode())) for c in values
        ]
        listed = pl.concat_list(names).list.drop_nulls().list.join(",") if names else pl.lit("")
        changed = pl.concat_str([pl.lit("["), listed, pl.lit("]")])
        if has_after:
            out.append(pl.when(known & (op == "update")).then(changed).alias("changed"))
    found = df.select(out)
    return {name: found.get_column(name).to_list() for name in found.columns}
