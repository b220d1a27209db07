"""Insert Arrow record batches into a destination table as fast as its database allows.

Each dialect brings its own loader (`SqlDialect.bulk_insert`): MySQL/MariaDB `LOAD DATA LOCAL
INFILE` from CSV files, PostgreSQL `COPY ... FROM STDIN` (both written by pyarrow, no Python row
loop); anything else executemany through SQLAlchemy (`insert_rows`), so its types convert the
values. All of it runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql.dialect import sql_dialect


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    batches: Iterable[pa.RecordBatch],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert every row of `batches` into `table` (columns matched by name; batch columns ⊆ table columns)
    inside the caller's open transaction; return the number of rows the server reports inserted.

    `progress` is called with the running total of rows inserted.
    """
    report = progress or (lambda _done: None)
    return sql_dialect(conn).bulk_insert(conn, table, batches, report)


# -- what every loader checks -------------------------------------------------------------------


def _check_columns(table: sa.Table, batch: pa.RecordBatch, first: pa.Schema | None) -> pa.Schema:
    if first is not None:
        if not batch.schema.equals(first):
            raise ValueError(f"{table.name}: batches have different schemas:\n{first}\n---\n{batch.schema}")
        return first
    unknown = [name for name in batch.schema.names if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name}: columns {unknown} are not in the table")
    if len(set(batch.schema.names)) != len(batch.schema.names):
        raise ValueError(f"{table.name}: batch has duplicate column names {batch.schema.names}")
    return batch.schema


def non_empty(table: sa.Table, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches that hold rows, each checked against the table and the first batch."""
    schema = None
    for batch in batches:
        schema = _check_columns(table, batch, schema)
        if batch.num_rows:
            yield batch


def to_microseconds(name: str, array: pa.Array, tz: str | None) -> pa.Array:
    """The servers keep microseconds; refuse to drop nanoseconds silently."""
    try:
        return array.cast(pa.timestamp("us", tz))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"column {name!r}: timestamps with nanoseconds cannot be stored exactly: {exc}") from exc


@contextmanager
def wrapped_driver_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    """Raise driver errors as SQLAlchemy's (IntegrityError, DataError, ...), as `conn.execute` would:
    callers catch those, and the raw cursor is an implementation detail."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, error, hide_parameters=True, dialect=conn.dialect
        ) from exc


# -- the generic loader -------------------------------------------------------------------------


def _row_column(name: str, array: pa.Array) -> pa.Array:
    """Values SQLAlchemy's types handle: zone-aware timestamps as naive UTC, microseconds."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _row_column(name, array.dictionary_decode())
    if pa.types.is_timestamp(t):
        return to_microseconds(name, array, None)
    return array


# Rows per executemany: each row becomes Python objects (a dict, then SQLAlchemy's bound values), so
# a whole 50k-row batch at once held ~250 MB at its peak (11 columns); the per-row cost is the same.
ROWS_PER_EXECUTEMANY = 5_000


def insert_rows(
    conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Callable[[int], None]
) -> int:
    """executemany, a slice of each batch at a time."""
    total = 0
    for batch in non_empty(table, batches):
        columns = [_row_column(n, a) for n, a in zip(batch.schema.names, batch.columns, strict=True)]
        converted = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
        for start in range(0, converted.num_rows, ROWS_PER_EXECUTEMANY):
            rows = converted.slice(start, ROWS_PER_EXECUTEMANY).to_pylist()
            result = conn.execute(table.insert(), rows)
            total += result.rowcount if result.rowcount >= 0 else len(rows)
        report(total)
    return total
