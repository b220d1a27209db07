"""MySQL and MariaDB: what they do their own way.

- DDL commits implicitly (no transactional DDL); new and replaced tables appear in one atomic
  RENAME TABLE (foreign keys follow a renamed table).
- Types: DATETIME(6) for every timestamp (no zone-aware type: aware values are stored as UTC),
  MEDIUMTEXT, JSON; tables are utf8mb4 with a binary collation.
- Keys compare by their collation: `_ci` ignores case, `_ai` accents, PAD SPACE collations
  (`utf8mb4_bin` included) trailing spaces; the server itself is asked whether one pads.
- Rows load with LOAD DATA LOCAL INFILE (mysql_load.py); inserts and updates of staged rows run as
  one INSERT ... SELECT ... ON DUPLICATE KEY UPDATE.
- One writer per table: GET_LOCK.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from activation.destinations.base import Capabilities
from activation.destinations.sql import mysql_load
from activation.destinations.sql.bulk import insert_rows
from activation.destinations.sql.csv_files import CsvFile, CsvRules
from activation.destinations.sql.dialect import Report, SqlDialect, quoted
from activation.destinations.sql.key_rules import Rule
from activation.destinations.sql.mysql_connect import share_tls_context
from activation.destinations.sql.run import Job, Run, on_key, scope_clause
from activation.syncs.results import SyncError
from activation.syncs.validate import Check

# Can't connect, server gone, lost connection, lock wait timeout, deadlock, connection killed,
# server shutting down, query interrupted.
_TRANSIENT = {2003, 2006, 2013, 1205, 1213, 1927, 1053, 1317, 2055}
_LOCK_WAIT_TIMEOUT = 1205
# Cannot delete or update a parent row (1451, older 1217); cannot add or update a child row (1452, older 1216).
_FOREIGN_KEY_CODES = {1216, 1217, 1451, 1452}
# DATE/DATETIME hold years 1000-9999; TIMESTAMP 1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC.
_DATETIME_RANGE = (-30610224000, 253402300800)  # epoch seconds of 1000-01-01 and 10000-01-01
_TIMESTAMP_RANGE = (1, 2147483647)


def _code(exc: sa.exc.DBAPIError) -> Any:
    return (getattr(exc.orig, "args", None) or (None,))[0]


class MySQL(SqlDialect):
    names = ("mysql", "mariadb")
    capabilities = Capabilities(
        transactions=True,
        transactional_ddl=False,
        atomic_swap=True,  # RENAME TABLE
        advisory_locks=True,  # GET_LOCK
        temporary_tables=True,
        read_back=True,
        count=True,
    )
    create_like: ClassVar[str | None] = "CREATE TABLE {new} LIKE {table}"
    hides_new_tables = True

    @property
    def kind(self) -> str:
        return "mysql"

    # -- connecting ------------------------------------------------------------------------------
    def normalize_url(self, url: URL) -> URL:
        """PyMySQL, and utf8mb4 so that emoji survive."""
        url = url.set(drivername=f"{url.get_backend_name()}+pymysql")
        return url.update_query_dict({"charset": "utf8mb4"})

    def connect_args(self) -> dict[str, Any]:
        return {"local_infile": True}  # LOAD DATA LOCAL INFILE

    def prepare_engine(self, engine: sa.Engine) -> None:
        share_tls_context(engine)

    # -- tables and types -----------------------------------------------------------------------
    def table_options(self, *, binary_text: bool = True) -> dict[str, str]:
        if not binary_text:
            return {"mysql_engine": "InnoDB"}
        # Binary collation: the diff must see 'Tokyo' -> 'TOKYO' as a change, and keys are case-sensitive.
        return {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

    def timestamp(self, aware: bool) -> sa.types.TypeEngine:
        return mysql.DATETIME(fsp=6)

    def long_text(self) -> sa.types.TypeEngine:
        return mysql.MEDIUMTEXT()

    def float32(self) -> sa.types.TypeEngine:
        return mysql.FLOAT()

    def time(self) -> sa.types.TypeEngine:
        return mysql.TIME(fsp=6)

    def json(self) -> sa.types.TypeEngine:
        return mysql.JSON()

    def is_auto_increment(self, conn: sa.Connection, table: str, column: str) -> bool:
        extra = conn.execute(
            sa.text(
                "SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = :t AND COLUMN_NAME = :c"
            ),
            {"t": table, "c": column},
        ).scalar()
        return "auto_increment" in (extra or "").lower()

    def character_sets(self, conn: sa.Connection, table: str) -> dict[str, str]:
        rows = conn.execute(
            sa.text(
                "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND CHARACTER_SET_NAME IS NOT NULL"
            ),
            {"t": table},
        ).all()
        return dict(rows)

    def drop_temporary(self, conn: sa.Connection, table: sa.Table) -> None:
        """DROP TEMPORARY: a plain DROP TABLE commits the open transaction."""
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS {quoted(conn, table)}"))

    # -- values it cannot store -----------------------------------------------------------------
    def sqlalchemy_dialect(self) -> sa.Dialect:
        return mysql.dialect()

    def float_checks(self, column: str, dest: sa.Column, f: Callable[[str], str]) -> list[Check]:
        return [Check(column, f"({f('nan')} OR {f('inf')})", "hold NaN or infinity, which MySQL cannot store")]

    def value_checks(
        self, column: str, arrow_type: pa.DataType, dest: sa.Column, f: Callable[[str], str], charsets: Mapping
    ) -> list[Check]:
        t, found = arrow_type, []
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            low, high = _TIMESTAMP_RANGE if isinstance(dest.type, mysql.TIMESTAMP) else _DATETIME_RANGE
            found.append(
                Check(
                    column,
                    f"({f('finite')} AND ({f('epoch')} < {low} OR {f('epoch')} >= {high}))",
                    f"are outside the range of {self.type_name(dest)} in MySQL",
                )
            )
        text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
        if text and charsets.get(column, "utf8mb4").lower() in ("utf8", "utf8mb3"):
            found.append(
                Check(
                    column,
                    f("four_byte"),
                    "hold 4-byte UTF-8 characters (emoji) but the column's character set is utf8mb3; "
                    "convert it to utf8mb4",
                )
            )
        return found

    # -- how keys compare -------------------------------------------------------------------------
    def key_rules(self, conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
        rows = conn.execute(
            sa.text(
                "SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLLATION_NAME IS NOT NULL"
            ),
            {"t": table},
        ).all()
        found = {}
        for column, charset, collation in rows:
            if column not in columns:
                continue
            pads = bool(
                conn.execute(
                    sa.text(f"SELECT CONVERT('a' USING {charset}) COLLATE {collation} = CONVERT('a ' USING {charset})")
                ).scalar()
            )
            binary = collation.lower().endswith("_bin")
            found[column] = Rule(
                column,
                loose=pads or not binary,
                describe=f"collation {collation}"
                + (" (PAD SPACE: trailing spaces ignored)" if pads and binary else ""),
                collation=collation,
                charset=charset,
                trailing_spaces_only=pads and binary,
            )
        return found

    def same_key(self, rule: Rule | None, value: str, key: str) -> str:
        if rule is None:
            return f"{value} = {key}"
        return f"CONVERT({value} USING {rule.charset}) COLLATE {rule.collation} = {key}"

    def as_bytes(self, rule: Rule | None, value: str) -> str:
        return value if rule is None else f"CAST(CONVERT({value} USING utf8mb4) AS BINARY)"

    def loose_key_type(self, rule: Rule, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        return mysql.VARCHAR(getattr(type_, "length", None) or 768, charset=rule.charset, collation=rule.collation)

    # -- writing ----------------------------------------------------------------------------------
    def bulk_insert(
        self, conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Report
    ) -> int:
        if conn.dialect.driver in ("pymysql", "mysqldb"):
            return mysql_load.load_data(conn, table, batches, report)
        return insert_rows(conn, table, batches, report)

    def exact(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """Text compares by collation: PAD SPACE makes 'a' = 'a ', and *_ci makes 'a' = 'A'. A change
        is a change, so compare the bytes."""
        if isinstance(column.type, (sa.String, sa.JSON)):
            return sa.cast(column, sa.LargeBinary)
        return column

    def can_merge(self, conn: sa.Connection, table: sa.Table, key: Sequence[str]) -> bool:
        """ON DUPLICATE KEY UPDATE fires on any unique key: with a second one it could update the wrong row."""
        inspector = sa.inspect(conn)
        indexes = inspector.get_indexes(table.name)
        only_primary = not any(i.get("unique") for i in indexes) and not inspector.get_unique_constraints(table.name)
        return only_primary and not any("%" in c.name for c in table.columns)  # SQLAlchemy 2.1 escapes '%' twice

    def merge(self, run: Run, conn: sa.Connection, job: Job) -> tuple[int, int]:
        """Insert and update in one INSERT ... SELECT ... ON DUPLICATE KEY UPDATE: one probe of the
        table per staged row, where an update join and an insert of the missing keys take two. The
        server decides what changed (it compares the stored bytes) and reports 1 affected row per
        insert, 2 per changed row, and 1 per unchanged row when the client set CLIENT_FOUND_ROWS
        (SQLAlchemy does), else 0. A counter in the update clause counts the rows that met an
        existing key, which tells inserts from unchanged rows. Returns (inserted, updated)."""
        t, s, spec = job.target, job.staging, job.spec
        columns, selected = _staged_columns(job)
        rows = sa.select(*selected).order_by(*[s.c[k] for k in spec.primary_key])
        stmt = mysql.insert(t).from_select(columns, rows)
        # Every written column takes the inserted value (NULL for the soft-delete column).
        assignments = {c: stmt.inserted[c] for c in columns if c not in spec.primary_key}
        first = next(iter(assignments))
        # Evaluated once per row that meets an existing key; never NULL, so the value is unchanged.
        # (MySQL 8 deprecates assigning variables in expressions but still runs it; MariaDB does not.)
        # The second counter: rows met under a key of other bytes (a collation's twin), for
        # written_keys.check_written, which then need not join the rows sent with the table.
        met_one = sa.literal_column("(@activation_met := @activation_met + 1)")
        differ = [
            sa.cast(t.c[k], sa.LargeBinary) != sa.cast(stmt.inserted[k], sa.LargeBinary)
            for k in spec.primary_key
            if isinstance(t.c[k].type, sa.String)
        ]
        if differ:
            twins = sa.literal_column("@activation_twins := @activation_twins") + sa.cast(sa.or_(*differ), sa.Integer)
            met_one = sa.sql.elements.Grouping(met_one + sa.sql.elements.Grouping(twins))
        assignments[first] = sa.case((met_one.is_(None), sa.null()), else_=assignments[first])
        stmt = stmt.on_duplicate_key_update(assignments)
        conn.execute(sa.text("SET @activation_met = 0, @activation_twins = 0"))
        affected = conn.execute(stmt).rowcount
        met, job.twins = conn.execute(sa.text("SELECT @activation_met, @activation_twins")).one()
        staged = job.result.rows_sent
        inserted = staged - met
        client_flag = getattr(conn.connection.dbapi_connection, "client_flag", 0)
        if client_flag & CLIENT.FOUND_ROWS:
            updated, odd = affected - staged, 0
        else:
            updated, odd = divmod(affected - inserted, 2)
        if odd or not (0 <= inserted <= staged and 0 <= updated <= met):
            raise SyncError(
                f"{spec.table}: the server reported {affected} affected rows for {staged} staged rows of which {met} "
                "met an existing key; these counts do not add up, so the write was rolled back"
            )
        return inserted, updated

    def merge_update(self, run: Run, conn: sa.Connection, job: Job) -> int:
        """Update the rows that differ as INSERT ... SELECT ... ON DUPLICATE KEY UPDATE: a multi-table
        UPDATE first collects the joined rows in a temporary table, about 1.5x slower (200k rows, 10%
        changed). Every selected row exists and differs, and the server counts 2 per updated row."""
        t, s, spec = job.target, job.staging, job.spec
        current = t.alias("activation_current")
        columns, selected = _staged_columns(job)
        rows = (
            sa.select(*selected)
            .select_from(s.join(current, on_key(job, current, s)))
            .where(scope_clause(job, current), run.differs(job, current, s))
            .order_by(*[s.c[k] for k in spec.primary_key])
        )
        stmt = mysql.insert(t).from_select(columns, rows)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns if c not in spec.primary_key})
        affected = conn.execute(stmt).rowcount
        if affected % 2:
            raise SyncError(f"{spec.table}: the server reported {affected} affected rows for an update of whole rows")
        return affected // 2

    def swap(self, conn: sa.Connection, renames: Sequence[tuple[str, str, str | None]], wait_seconds: float) -> None:
        """One RENAME TABLE swaps every name at once, atomically; every statement commits implicitly."""
        olds = [old for _, _, old in renames if old is not None]
        pairs = [f"{table} TO {old}, {new} TO {table}" if old else f"{new} TO {table}" for table, new, old in renames]
        try:
            with conn.begin():
                conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {wait_seconds}")
                if olds:
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(olds)}"))
                conn.execute(sa.text(f"RENAME TABLE {', '.join(pairs)}"))
        finally:
            with conn.begin():
                conn.exec_driver_sql("SET SESSION lock_wait_timeout = DEFAULT")

    def after_swap(self, conn: sa.Connection, olds: Sequence[str]) -> None:
        if olds:
            with conn.begin():
                conn.execute(sa.text(f"DROP TABLE {', '.join(olds)}"))

    def write_mark(self, conn: sa.Connection, table: str) -> str | None:
        """InnoDB's time of the last commit that changed the table (kept in memory: NULL after a
        restart) and the table's creation time (a rename or a rebuild renews it); both in seconds."""
        if not conn.dialect.is_mariadb:  # MySQL 8 caches these for a day unless told not to
            conn.exec_driver_sql("SET SESSION information_schema_stats_expiry = 0")
        row = conn.execute(
            sa.text(
                "SELECT CREATE_TIME, UPDATE_TIME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
            ),
            {"t": table},
        ).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        return f"innodb created {row[0]} written {row[1]}"

    # -- loading on several connections -----------------------------------------------------------
    def parallel_loads(self, conn: sa.Connection) -> bool:
        return conn.dialect.driver == "pymysql"

    def csv_rules(self) -> CsvRules:
        return mysql_load.CSV

    def loading(self, conn: sa.Connection) -> contextlib.AbstractContextManager[None]:
        return mysql_load.loading(conn)

    def load_csv(self, conn: sa.Connection, table: sa.Table, csv_file: CsvFile) -> int:
        return mysql_load.load_file(conn, table, csv_file)

    def free_connections(self, conn: sa.Connection) -> int | None:
        return conn.execute(
            sa.text("SELECT @@max_connections - (SELECT COUNT(*) FROM information_schema.PROCESSLIST)")
        ).scalar_one()

    # -- one writer per table ---------------------------------------------------------------------
    def lock(self, conn: sa.Connection, name: str, wait_seconds: float) -> bool:
        return conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": _lock_key(name), "t": wait_seconds}).scalar() == 1

    def unlock(self, conn: sa.Connection, name: str) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # a lost connection released it already
            conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _lock_key(name)})

    # -- errors -----------------------------------------------------------------------------------
    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        closed = isinstance(exc, sa.exc.InterfaceError) and _code(exc) == 0  # PyMySQL: connection closed
        return exc.connection_invalidated or _code(exc) in _TRANSIENT or closed

    def is_lock_timeout(self, exc: sa.exc.OperationalError) -> bool:
        return _code(exc) == _LOCK_WAIT_TIMEOUT

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        if not isinstance(exc, sa.exc.DBAPIError):  # LOAD DATA LOCAL turns the error into warnings
            return isinstance(exc, ValueError) and any(f"Warning {code}:" in str(exc) for code in _FOREIGN_KEY_CODES)
        return _code(exc) in _FOREIGN_KEY_CODES


def _lock_key(name: str) -> str:
    """GET_LOCK names are at most 64 characters."""
    return name if len(name) <= 64 else "activation:" + hashlib.sha1(name.encode()).hexdigest()


def _staged_columns(job: Job) -> tuple[list[str], list[sa.ColumnElement]]:
    """The columns an upsert writes and what it selects from the staging table for them: a
    soft-delete column is cleared, so a row that comes back is no longer deleted."""
    columns = list(job.mart.columns)
    selected: list[sa.ColumnElement] = [job.staging.c[c] for c in columns]
    if job.spec.soft_delete_column:
        columns.append(job.spec.soft_delete_column)
        selected.append(sa.null())
    return columns, selected
