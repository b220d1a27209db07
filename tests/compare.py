"""Row-for-row comparison of a warehouse mart with a destination table, across dialects."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import duckdb
import sqlalchemy as sa

from activation.destinations.sql import normalize_url


def _norm(value):
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, bytes):
        return value.decode()
    return value


def mart_rows(duckdb_path, relation: str, columns: list[str], key: list[str]) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in columns)
    order = ", ".join(f'"{k}"' for k in key)
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(f"SELECT {cols} FROM {relation} ORDER BY {order}").fetchall()
    return [tuple(_norm(v) for v in row) for row in rows]


def destination_rows(url: str, table: str, columns: list[str], key: list[str]) -> list[tuple]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            for column in t.columns:
                if isinstance(column.type, sa.Float):
                    column.type.asdecimal = False  # MySQL reflects DOUBLE as Decimal-returning
            rows = conn.execute(sa.select(*[t.c[c] for c in columns]).order_by(*[t.c[k] for k in key])).all()
    finally:
        engine.dispose()
    # The destination orders keys by its own collation; compare in Python's order.
    return sorted((tuple(_norm(v) for v in row) for row in rows), key=lambda r: [str(r[columns.index(k)]) for k in key])


def sorted_mart_rows(duckdb_path, relation, columns, key) -> list[tuple]:
    return sorted(mart_rows(duckdb_path, relation, columns, key), key=lambda r: [str(r[columns.index(k)]) for k in key])
