"""PostgreSQL: what it does its own way.

- Transactional DDL: a swap is DROP + RENAME in one transaction, bounded by `lock_timeout`; a new
  table is created under a hidden name and renamed into place the same way.
- Types: TIMESTAMP(6) WITH TIME ZONE for zone-aware timestamps, JSONB.
- Keys compare byte for byte unless the column is `citext` or has a nondeterministic collation.
- Rows load with COPY ... FROM STDIN (psycopg 3), fed with CSV written by pyarrow.
- An error aborts the transaction: statements whose errors are explained afterwards run in a savepoint.
- One writer per table: pg_advisory_lock.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL

from activation.destinations.base import Capabilities
from activation.destinations.sql import on_conflict
from activation.destinations.sql.bulk import insert_rows, non_empty, wrapped_driver_errors
from activation.destinations.sql.csv_files import CsvFile, CsvRules, csv_batch
from activation.destinations.sql.dialect import Report, SqlDialect, quoted
from activation.destinations.sql.key_rules import Rule
from activation.syncs.validate import Check

if TYPE_CHECKING:
    from activation.destinations.sql.run import Job, Run

# SQLSTATE: serialization failure, deadlock, lock timeout, admin/crash shutdown, cannot connect now;
# and class 08, connection exceptions.
_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
_LOCK_NOT_AVAILABLE = "55P03"
_FOREIGN_KEY_VIOLATION = "23503"
_COPY_BLOCK = 1024 * 1024

CSV = CsvRules(
    database="PostgreSQL",
    options=pcsv.WriteOptions(include_header=False),  # unquoted empty field is NULL
    binary_prefix="\\x",  # bytea's hex format
    booleans_as_integers=False,
    keeps_zone=True,  # right for timestamptz; a timestamp column ignores the zone, leaving UTC wall time
    refuses_nul=True,
    refuses_nan=False,
)


def _sqlstate(exc: sa.exc.DBAPIError) -> str:
    return getattr(exc.orig, "sqlstate", None) or ""


class Postgres(SqlDialect):
    names = ("postgresql",)
    capabilities = Capabilities(
        transactions=True,
        transactional_ddl=True,
        atomic_swap=True,
        advisory_locks=True,  # pg_advisory_lock
        temporary_tables=True,
        read_back=True,
        count=True,
    )
    create_like: ClassVar[str | None] = "CREATE TABLE {new} (LIKE {table} INCLUDING ALL)"
    errors_abort_transaction = True
    hides_new_tables = True

    @property
    def kind(self) -> str:
        return "postgres"

    def normalize_url(self, url: URL) -> URL:
        """psycopg 3 (COPY from Python), where the URL names no driver or psycopg2."""
        if url.get_driver_name() in ("", "psycopg2"):
            return url.set(drivername="postgresql+psycopg")
        return url

    # -- types ------------------------------------------------------------------------------------
    def timestamp(self, aware: bool) -> sa.types.TypeEngine:
        return postgresql.TIMESTAMP(timezone=True, precision=6) if aware else sa.DateTime()

    def json(self) -> sa.types.TypeEngine:
        return postgresql.JSONB()

    def sqlalchemy_dialect(self) -> sa.Dialect:
        return postgresql.dialect()

    def is_auto_increment(self, conn: sa.Connection, table: str, column: str) -> bool:
        row = conn.execute(
            sa.text(
                "SELECT column_default, is_identity FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"
            ),
            {"t": table, "c": column},
        ).one_or_none()
        return bool(row) and (row[1] == "YES" or "nextval(" in (row[0] or ""))

    def value_checks(
        self, column: str, arrow_type: pa.DataType, dest: sa.Column, f: Callable[[str], str], charsets: Mapping
    ) -> list[Check]:
        t = arrow_type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return [Check(column, f("nul"), "contain NUL bytes, which PostgreSQL text cannot hold")]
        return []

    # -- how keys compare -------------------------------------------------------------------------
    def key_rules(self, conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
        rows = conn.execute(
            sa.text(
                "SELECT a.attname, t.typname, c.collname, c.collisdeterministic FROM pg_attribute a "
                "JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_collation c ON c.oid = a.attcollation "
                "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped "
                "AND a.attcollation <> 0"
            ),
            {"t": quoted(conn, table)},
        ).all()
        found = {}
        for column, type_name, collation, deterministic in rows:
            if column not in columns:
                continue
            citext = type_name == "citext"
            nondeterministic = deterministic is False
            found[column] = Rule(
                column,
                loose=citext or nondeterministic,
                describe="type citext"
                if citext
                else f"collation {collation}" + (" (nondeterministic)" if nondeterministic else ""),
                collation=collation,
                citext=citext,
            )
        return found

    def same_key(self, rule: Rule | None, value: str, key: str) -> str:
        if rule is None:
            return f"{value} = {key}"
        if rule.citext:
            return f"CAST({value} AS citext) = {key}"
        return f'{value} COLLATE "{rule.collation}" = {key}'

    def as_bytes(self, rule: Rule | None, value: str) -> str:
        return value if rule is None else f'CAST({value} AS TEXT) COLLATE "C"'

    def loose_key_type(self, rule: Rule, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        return postgresql.CITEXT() if rule.citext else sa.Text(collation=rule.collation)

    # -- writing ----------------------------------------------------------------------------------
    def bulk_insert(
        self, conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Report
    ) -> int:
        if conn.dialect.driver == "psycopg":
            return _copy(conn, table, batches, report)
        return insert_rows(conn, table, batches, report)

    def can_merge(self, conn: sa.Connection, table: sa.Table, key: Sequence[str]) -> bool:
        triggers = "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = to_regclass(:q) AND NOT tgisinternal"
        return on_conflict.can_upsert(conn, table, key, triggers)

    def merge(self, run: Run, conn: sa.Connection, job: Job) -> tuple[int, int]:
        """One INSERT ... ON CONFLICT DO UPDATE (on_conflict.py) returning, per row written, whether
        it was inserted: a new tuple has `xmax = 0`, an updated one the xmax of the lock the upsert took."""
        written = on_conflict.upsert(run, job, postgresql.insert)
        written = written.returning(sa.literal_column("xmax = 0").label("inserted")).cte("written")
        inserted, updated = conn.execute(
            sa.select(sa.func.count().filter(written.c.inserted), sa.func.count().filter(sa.not_(written.c.inserted)))
        ).one()
        return on_conflict.checked(job, inserted, updated, job.result.rows_sent - inserted)

    def set_lock_timeout(self, conn: sa.Connection, wait_seconds: float) -> None:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{wait_seconds}s'")

    def write_mark(self, conn: sa.Connection, table: str) -> str | None:
        """The relation and its file (TRUNCATE, VACUUM FULL and a swap renew them), its updated and
        deleted rows as the statistics count them, and when those counts last started from zero
        (a reset, a restart); None when the server counts nothing (`track_counts` off)."""
        row = conn.execute(
            sa.text(
                "SELECT c.oid, pg_relation_filenode(c.oid), "
                "pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid), "
                "(SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()), "
                "pg_postmaster_start_time() FROM pg_class c "
                "WHERE c.oid = to_regclass(:t) AND current_setting('track_counts')::bool"
            ),
            {"t": quoted(conn, table)},
        ).first()
        if row is None:
            return None
        oid, filenode, written, reset, started = row
        return f"relation {oid} file {filenode} updated+deleted {written} counted since {reset} and {started}"

    # -- loading on several connections -----------------------------------------------------------
    def parallel_loads(self, conn: sa.Connection) -> bool:
        return conn.dialect.driver == "psycopg"

    def csv_rules(self) -> CsvRules:
        return CSV

    def load_csv(self, conn: sa.Connection, table: sa.Table, csv_file: CsvFile) -> int:
        """COPY ... FROM STDIN of one CSV file, read in blocks."""
        columns = ", ".join(quoted(conn, n) for n in csv_file.names)
        statement = f"COPY {quoted(conn, table)} ({columns}) FROM STDIN (FORMAT csv)"
        with wrapped_driver_errors(conn, statement), conn.connection.dbapi_connection.cursor() as cursor:
            with cursor.copy(statement) as copy, open(csv_file.path, "rb") as source:
                while block := source.read(_COPY_BLOCK):
                    copy.write(block)
            inserted = cursor.rowcount
        if inserted != csv_file.rows:
            raise ValueError(f"COPY into {table.name}: the server inserted {inserted} of {csv_file.rows} rows")
        return inserted

    def free_connections(self, conn: sa.Connection) -> int | None:
        return conn.execute(
            sa.text(
                "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')"
                "::int - (SELECT count(*) FROM pg_stat_activity)"
            )
        ).scalar_one()

    def lock(self, conn: sa.Connection, name: str, wait_seconds: float) -> bool:
        deadline = time.monotonic() + wait_seconds
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtextextended(:n, 0))"), {"n": name}).scalar():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def unlock(self, conn: sa.Connection, name: str) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # a lost connection released it already
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:n, 0))"), {"n": name})

    # -- errors -----------------------------------------------------------------------------------
    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        state = _sqlstate(exc)
        return exc.connection_invalidated or state in _TRANSIENT or state.startswith("08")

    def is_lock_timeout(self, exc: sa.exc.OperationalError) -> bool:
        return _sqlstate(exc) == _LOCK_NOT_AVAILABLE

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sa.exc.DBAPIError) and _sqlstate(exc) == _FOREIGN_KEY_VIOLATION


def _copy(conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Report) -> int:
    """COPY ... FROM STDIN (FORMAT csv), one CSV chunk per batch."""
    prepared = (csv_batch(batch, CSV)[0] for batch in non_empty(table, batches))
    first = next(prepared, None)
    if first is None:
        return 0
    columns = ", ".join(quoted(conn, n) for n in first.schema.names)
    statement = f"COPY {quoted(conn, table)} ({columns}) FROM STDIN (FORMAT csv)"
    sent = 0
    with wrapped_driver_errors(conn, statement), conn.connection.dbapi_connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for batch in itertools.chain([first], prepared):
                sink = pa.BufferOutputStream()
                pcsv.write_csv(batch, sink, CSV.options)
                copy.write(memoryview(sink.getvalue()))
                sent += batch.num_rows
                report(sent)
        inserted = cursor.rowcount
    if inserted != sent:
        raise ValueError(f"COPY into {table.name}: the server inserted {inserted} of {sent} rows")
    return inserted
