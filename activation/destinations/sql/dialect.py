"""What one SQL database does its own way, behind one interface (as SQLMesh's engine adapters and
dlt's destination capabilities): the engine reads a dialect's capability flags and calls its hooks,
and never compares a dialect's name. mysql.py, postgres.py and sqlite.py each hold everything
particular to their database; a database without a module gets these generic defaults
(SQLAlchemy's types, executemany, no advisory locks).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from activation.destinations.base import Capabilities
from activation.syncs.validate import Check

if TYPE_CHECKING:
    from activation.destinations.sql.csv_files import CsvFile, CsvRules
    from activation.destinations.sql.key_rules import Rule
    from activation.destinations.sql.run import Job, Run

Report = Callable[[int], None]


def quoted(conn: sa.Connection | sa.Engine, name: str | sa.Table) -> str:
    """A quoted identifier as the server must see it. SQLAlchemy's preparer doubles '%' for drivers
    with pyformat parameters; statements without parameters (and `sa.text`, which doubles again)
    need it single."""
    preparer = conn.dialect.identifier_preparer
    text = preparer.format_table(name) if isinstance(name, sa.Table) else preparer.quote(name)
    return text.replace("%%", "%") if preparer._double_percents else text


class SqlDialect:
    """The generic SQL database; each dialect module overrides what its database does otherwise."""

    names: ClassVar[tuple[str, ...]] = ()  # the SQLAlchemy dialect names this class serves
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=True,
        transactional_ddl=False,
        atomic_swap=True,
        advisory_locks=False,
        temporary_tables=True,
        read_back=True,
        count=True,
    )
    # CREATE TABLE copying a table's columns, keys and indexes (placeholders {new}, {table}); None:
    # the copy is built from the reflected table instead
    create_like: ClassVar[str | None] = None
    # A delete of the keys in a staged table runs as a join (one probe per staged key) rather than
    # as EXISTS over every row of the table
    delete_joins: ClassVar[bool] = True
    # An error aborts the open transaction: statements whose errors are explained by a query
    # afterwards run in a savepoint
    errors_abort_transaction: ClassVar[bool] = False
    # Declared widths (DECIMAL(p,s), INTEGER) limit the values a column holds
    fixed_widths: ClassVar[bool] = True
    # A table a sync creates is created under a hidden name, loaded, and renamed into place with
    # the run's other new and replaced tables (renames are atomic, foreign keys follow them)
    hides_new_tables: ClassVar[bool] = False

    def __init__(self, name: str = "") -> None:
        self.name = name or (self.names[0] if self.names else "")

    @property
    def kind(self) -> str:
        """The Dagster kind of the destination's assets."""
        return self.name

    # -- connecting ------------------------------------------------------------------------------
    def normalize_url(self, url: URL) -> URL:
        """The URL with the driver (and options) the engine relies on made explicit."""
        return url

    def connect_args(self) -> dict[str, Any]:
        return {}

    def prepare_engine(self, engine: sa.Engine) -> None:
        """Per-connection settings the engine relies on."""

    def resolve_path(self, url: URL, base_dir: Path) -> URL:
        """A URL naming a local file relative to `base_dir` (the sync config's folder)."""
        return url

    def stand_in_engine(self, url: URL) -> sa.Engine | None:
        """For a dry run: an empty engine standing in for a database that does not exist yet."""
        return None

    # -- tables and types (DDL) -----------------------------------------------------------------
    def table_options(self, *, binary_text: bool = True) -> dict[str, str]:
        """Keyword arguments of the tables the sync creates (staging tables included)."""
        return {}

    def timestamp(self, aware: bool) -> sa.types.TypeEngine:
        return sa.DateTime(timezone=True) if aware else sa.DateTime()

    def long_text(self) -> sa.types.TypeEngine:
        return sa.Text()

    def float32(self) -> sa.types.TypeEngine:
        return sa.Float()

    def time(self) -> sa.types.TypeEngine:
        return sa.Time()

    def json(self) -> sa.types.TypeEngine:
        """JSON text in; a JSON column where the database has one."""
        return sa.Text()

    def is_auto_increment(self, conn: sa.Connection, table: str, column: str) -> bool:
        return False

    def character_sets(self, conn: sa.Connection, table: str) -> dict[str, str]:
        """Column -> character set, where a column's character set limits what it holds."""
        return {}

    def drop_temporary(self, conn: sa.Connection, table: sa.Table) -> None:
        """Drop a temporary table without ending the open transaction."""
        table.drop(conn, checkfirst=True)

    # -- values the destination cannot store (activation.destinations.sql.values) --------------
    def float_checks(self, column: str, dest: sa.Column, f: Callable[[str], str]) -> list[Check]:
        """Floating-point mart values the column cannot hold (`f` spells a warehouse value check)."""
        if isinstance(dest.type, sa.Numeric) and not isinstance(dest.type, sa.Float):
            return [Check(column, f("inf"), f"hold infinity, which {self.type_name(dest)} cannot store")]
        return []

    def value_checks(
        self, column: str, arrow_type: pa.DataType, dest: sa.Column, f: Callable[[str], str], charsets: Mapping
    ) -> list[Check]:
        """Other values of the column the database would refuse or alter."""
        return []

    def type_name(self, column: sa.Column) -> str:
        try:
            return str(column.type.compile(dialect=self.sqlalchemy_dialect()))
        except Exception:  # noqa: BLE001 - a type only its own dialect can render
            return type(column.type).__name__

    def sqlalchemy_dialect(self) -> sa.Dialect:
        """SQLAlchemy's dialect, for rendering a type in a message."""
        return sa.engine.default.DefaultDialect()

    # -- how key columns compare (activation.destinations.sql.collisions) -----------------------
    def key_rules(self, conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
        """Column -> comparison rule for the text columns among `columns`, read from the catalog."""
        return {}

    def same_key(self, rule: Rule | None, value: str, key: str) -> str:
        """`value` equals the destination column `key` under the column's own rules."""
        return f"{value} = {key}"

    def as_bytes(self, rule: Rule | None, value: str) -> str:
        """`value` in a form that compares and sorts byte for byte."""
        return value

    def loose_key_type(self, rule: Rule, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        """A column type that compares as `rule` says (for a temporary table of keys)."""
        return type_

    # -- writing ----------------------------------------------------------------------------------
    def bulk_insert(
        self, conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Report
    ) -> int:
        from activation.destinations.sql.bulk import insert_rows

        return insert_rows(conn, table, batches, report)

    def exact(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """The column as a comparison that tells every change (a collation may not)."""
        return column

    def can_merge(self, conn: sa.Connection, table: sa.Table, key: Sequence[str]) -> bool:
        """Whether `merge` and `merge_update` may write into `table`, synced by `key`."""
        return False

    def merge(self, run: Run, conn: sa.Connection, job: Job) -> tuple[int, int]:
        """Insert and update the staged rows in one statement; returns (inserted, updated)."""
        raise NotImplementedError

    def merge_update(self, run: Run, conn: sa.Connection, job: Job) -> int | None:
        """Update the rows that differ from the staged ones in one statement of the dialect's own;
        returns the count, or None where apply's UPDATE join is the best it has (ON CONFLICT
        cannot update without inserting)."""
        return None

    def swap(self, conn: sa.Connection, renames: Sequence[tuple[str, str, str | None]], wait_seconds: float) -> None:
        """One attempt to put every table `new` in place of its `table` at once, atomically, waiting
        at most `wait_seconds` for readers (`renames`: (table, new, old), quoted; `old` is None
        where no table is replaced); a lock timeout raises OperationalError (`is_lock_timeout`)."""
        with conn.begin():
            self.set_lock_timeout(conn, wait_seconds)
            for table, new, old in renames:
                if old is not None:
                    conn.execute(sa.text(f"DROP TABLE {table}"))
                conn.execute(sa.text(f"ALTER TABLE {new} RENAME TO {table}"))

    def set_lock_timeout(self, conn: sa.Connection, wait_seconds: float) -> None:
        """Wait at most this long for a lock, in the open transaction."""

    def after_swap(self, conn: sa.Connection, olds: Sequence[str]) -> None:
        """Clean up after a swap succeeded."""

    # -- whether anyone wrote a table since this sync did (shadow_counts.py) -----------------------
    def write_mark(self, conn: sa.Connection, table: str) -> str | None:
        """A value the server changes whenever a row of `table` is written, or the table is
        recreated; None where the server does not tell (then replace always compares)."""
        return None

    # -- loading on several connections (parallel_load.py) ---------------------------------------
    def parallel_loads(self, conn: sa.Connection) -> bool:
        """Whether `load_csv` can load one table on several connections at once."""
        return False

    def csv_rules(self) -> CsvRules:
        raise NotImplementedError

    def loading(self, conn: sa.Connection) -> contextlib.AbstractContextManager[None]:
        """The session settings a loader connection needs while it loads."""
        return contextlib.nullcontext()

    def load_csv(self, conn: sa.Connection, table: sa.Table, csv_file: CsvFile) -> int:
        """Load one CSV file written with `csv_rules` into `table`; the rows the server inserted."""
        raise NotImplementedError

    def free_connections(self, conn: sa.Connection) -> int | None:
        """How many more connections the server accepts now (None: it does not say)."""
        return None

    # -- one writer per table ---------------------------------------------------------------------
    def lock(self, conn: sa.Connection, name: str, wait_seconds: float) -> bool:
        """Take the advisory lock `name` on an autocommit connection; False after `wait_seconds`."""
        raise NotImplementedError

    def unlock(self, conn: sa.Connection, name: str) -> None:
        raise NotImplementedError

    # -- errors -----------------------------------------------------------------------------------
    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        """Worth a retry of the whole run: a lost connection, a deadlock, a lock wait timeout."""
        return exc.connection_invalidated

    def is_lock_timeout(self, exc: sa.exc.OperationalError) -> bool:
        return False

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        return False


def _dialects() -> dict[str, type[SqlDialect]]:
    from activation.destinations.sql import mysql, postgres, sqlite  # they subclass SqlDialect

    return {name: cls for cls in (mysql.MySQL, postgres.Postgres, sqlite.SQLite) for name in cls.names}


@functools.cache
def _dialect(name: str) -> SqlDialect:
    cls = _dialects().get(name)
    return cls() if cls is not None else SqlDialect(name)


def dialect_named(name: str) -> SqlDialect:
    """The dialect object of a SQLAlchemy dialect name (`mysql`, `postgresql`, `sqlite`)."""
    return _dialect(name)


def sql_dialect(bind: sa.Engine | sa.Connection | sa.Dialect | URL | str) -> SqlDialect:
    """The dialect object of an engine, a connection, a SQLAlchemy dialect or a URL."""
    if isinstance(bind, sa.Engine | sa.Connection):
        return _dialect(bind.dialect.name)
    if isinstance(bind, sa.Dialect):
        return _dialect(bind.name)
    return _dialect(make_url(bind).get_backend_name())
