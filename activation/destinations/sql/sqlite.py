"""SQLite: what it does its own way.

- Writers serialize on the database file: no advisory locks; a busy file says "database is locked".
- Foreign keys are enforced only when each connection asks (PRAGMA foreign_keys).
- Declared widths constrain nothing (every value fits a DECIMAL(p,s) or INTEGER), but NaN is
  stored as NULL.
- Keys compare by the collating function in the table's CREATE statement (`NOCASE`, `RTRIM`).
- A shadow table is built from the reflected table (no CREATE TABLE ... LIKE); deletes by staged
  key run as EXISTS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL

from activation.destinations.base import Capabilities
from activation.destinations.sql import on_conflict
from activation.destinations.sql.dialect import SqlDialect
from activation.destinations.sql.key_rules import Rule
from activation.destinations.sql.run import on_key
from activation.syncs.validate import Check

if TYPE_CHECKING:
    from activation.destinations.sql.run import Job, Run


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores REFERENCES unless asked per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class SQLite(SqlDialect):
    names = ("sqlite",)
    capabilities = Capabilities(
        transactions=True,
        transactional_ddl=True,
        atomic_swap=True,  # DROP + RENAME in one transaction
        advisory_locks=False,  # writers serialize on the database file
        temporary_tables=True,
        read_back=True,
        count=True,
    )
    delete_joins = False
    fixed_widths = False

    # -- connecting ------------------------------------------------------------------------------
    def prepare_engine(self, engine: sa.Engine) -> None:
        sa.event.listen(engine, "connect", _foreign_keys_on)

    def resolve_path(self, url: URL, base_dir: Path) -> URL:
        if url.database and not Path(url.database).is_absolute():
            path = (Path(base_dir) / url.database).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = url.set(database=str(path))
        return url

    def stand_in_engine(self, url: URL) -> sa.Engine | None:
        """The file does not exist yet: an empty database, not created."""
        if url.database and not Path(url.database).exists():
            return sa.create_engine("sqlite://")
        return None

    # -- values it cannot store -----------------------------------------------------------------
    def sqlalchemy_dialect(self) -> sa.Dialect:
        return sqlite.dialect()

    def is_auto_increment(self, conn: sa.Connection, table: str, column: str) -> bool:
        return "AUTOINCREMENT" in (_create_statement(conn, table) or "").upper()

    def float_checks(self, column: str, dest: sa.Column, f: Callable[[str], str]) -> list[Check]:
        return [Check(column, f("nan"), "hold NaN, which SQLite would store as NULL")]

    # -- how keys compare -------------------------------------------------------------------------
    def key_rules(self, conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
        """SQLite keeps a column's collating function only in the table's CREATE statement."""
        found = {}
        for name, collation in _collations(_create_statement(conn, table) or "").items():
            if name in columns and collation.upper() != "BINARY":
                found[name] = Rule(
                    name, loose=True, describe=f"COLLATE {collation.upper()}", collation=collation.upper()
                )
        return found

    def same_key(self, rule: Rule | None, value: str, key: str) -> str:
        if rule is None:
            return f"{value} = {key}"
        return f"{key} = {value} COLLATE {rule.collation}" if rule.loose else f"{key} = {value} COLLATE BINARY"

    def as_bytes(self, rule: Rule | None, value: str) -> str:
        return value if rule is None else f"{value} COLLATE BINARY"

    def loose_key_type(self, rule: Rule, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        return sa.Text(collation=rule.collation)

    # -- writing ----------------------------------------------------------------------------------
    def can_merge(self, conn: sa.Connection, table: sa.Table, key: Sequence[str]) -> bool:
        triggers = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
        return on_conflict.can_upsert(conn, table, key, triggers)

    def merge(self, run: Run, conn: sa.Connection, job: Job) -> tuple[int, int]:
        """One INSERT ... ON CONFLICT DO UPDATE (on_conflict.py). SQLite returns no sign of an
        insert, so the staged keys already in the table are counted first (a key-index probe each);
        the statement's row count is the inserts plus the updates."""
        t, s = job.target, job.staging
        met = conn.execute(sa.select(sa.func.count()).select_from(s).where(sa.exists().where(on_key(job, t, s))))
        met = met.scalar_one()
        inserted = job.result.rows_sent - met
        written = conn.execute(on_conflict.upsert(run, job, sqlite.insert)).rowcount
        return on_conflict.checked(job, inserted, written - inserted, met)

    # -- errors -----------------------------------------------------------------------------------
    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        return exc.connection_invalidated or _locked(exc)

    def is_lock_timeout(self, exc: sa.exc.OperationalError) -> bool:
        return _locked(exc)

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sa.exc.DBAPIError) and "FOREIGN KEY constraint failed" in str(exc.orig)


def _locked(exc: sa.exc.DBAPIError) -> bool:
    return "database is locked" in str(exc.orig)


def _create_statement(conn: sa.Connection, table: str) -> str | None:
    return conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar()


def _collations(create_sql: str) -> dict[str, str]:
    """Column -> collating function named in a CREATE TABLE statement (column definitions and
    a table-level PRIMARY KEY (col COLLATE x))."""
    body = create_sql[create_sql.find("(") + 1 : create_sql.rfind(")")]
    parts, depth, current = [], 0, ""
    for char in body:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    unquote = re.compile(r'^\s*(?:"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|(\w+))')
    collate = re.compile(r'COLLATE\s+"?(\w+)"?', re.IGNORECASE)
    found: dict[str, str] = {}
    for part in parts:
        if re.match(r"\s*(PRIMARY\s+KEY|UNIQUE)\s*\(", part, re.IGNORECASE):
            inner = part[part.find("(") + 1 : part.rfind(")")]
            for item in inner.split(","):
                m, c = unquote.match(item), collate.search(item)
                if m and c:
                    found[next(g for g in m.groups() if g).replace('""', '"')] = c.group(1)
            continue
        if re.match(r"\s*(CONSTRAINT|FOREIGN|CHECK)\b", part, re.IGNORECASE):
            continue
        m, c = unquote.match(part), collate.search(part)
        if m and c:
            found.setdefault(next(g for g in m.groups() if g).replace('""', '"'), c.group(1))
    return found
