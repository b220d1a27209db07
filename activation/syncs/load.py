"""Apply sync plans to one destination database, parents before children.

Order of work for the selected tables of one destination:
1. DDL (MySQL commits implicitly on it, so it runs before any data transaction): create
   missing tables with their keys, and the shadow tables of `replace` syncs.
2. One transaction, table by table, parents first: stage what the plan sends (only changed
   rows for an incremental plan) into a temporary table, or load the shadow table; count what
   would change; check the guards (a tripped guard rolls the whole transaction back, so
   nothing is written); insert and update. Without shadow tables the deletes
   (children-first) join this transaction.
3. Shadow swaps, each atomic (RENAME TABLE on MySQL, transactional DDL elsewhere): readers
   see the old table or the new one, never an empty or partial one.
4. A transaction with the deletes, children-first, once no swapped-out table references a parent.
Every count is a row count the database reported, or a COUNT over the tables themselves.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy.dialects import mysql

from activation.syncs import collisions, foreign_keys, schema, validate
from activation.syncs.bulk import bulk_insert, quoted
from activation.syncs.model import Plan, PlanError
from activation.syncs.problems import Problem
from activation.syncs.results import GuardTripped, SwapNotPossible, SyncError, SyncResult
from activation.syncs.spec import Mode, SyncSpec
from activation.warehouses.base import Warehouse

Log = Callable[[str], None]
SAMPLE = 5
GUARD_FIX = (
    "check the mart (a broken model?); if the change is intended, raise the sync's guards or set allow_empty_source"
)


@dataclass
class _Job:
    plan: Plan
    result: SyncResult
    target: sa.Table | None = None
    strategy: str = "diff"  # diff | shadow | truncate
    staging: sa.Table | None = None
    deleted_keys: sa.Table | None = None
    rejected_keys: sa.Table | None = None  # rows set aside, whose older version must not be deleted
    sent_rows: sa.Table | None = None  # the rows to write, staged again to explain a foreign-key violation
    shadow: sa.Table | None = None
    planned: dict[str, int] = field(default_factory=dict)
    rows_before: int = 0  # rows this sync owns in the destination before the run
    keys_checked: bool = False  # null and duplicate keys ruled out before the plan
    key_rules: dict | None = None  # how the destination compares the text key columns (syncs/collisions.py)
    sends_trailing_space: bool | None = None  # a key to send ends with a space (syncs/collisions.py)

    @property
    def spec(self) -> SyncSpec:
        return self.plan.spec


# A swap waits this long for readers' locks, then steps back and retries (with growing pauses).
SWAP_LOCK_WAIT_SECONDS = 1
SWAP_ATTEMPTS = 8


# Transient destination errors retry the whole run: RETRY_ATTEMPTS tries, pauses doubling from the first.
RETRY_ATTEMPTS = 4
RETRY_FIRST_PAUSE_SECONDS = 2.0
# A second run of the same sync waits this long for the first to finish.
LOCK_WAIT_SECONDS = 60
# MySQL/MariaDB: can't connect, server gone, lost connection, lock wait timeout, deadlock,
# connection killed, server shutting down, query interrupted.
_TRANSIENT_MYSQL = {2003, 2006, 2013, 1205, 1213, 1927, 1053, 1317, 2055}
# PostgreSQL SQLSTATE: serialization failure, deadlock, lock timeout, admin/crash shutdown, cannot connect now.
_TRANSIENT_POSTGRES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


def _transient_cause(exc: BaseException) -> str | None:
    """Why `exc` (or what caused it) is worth a retry, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SwapNotPossible):  # the swap ran its own retries already
            return None
        if isinstance(exc, sa.exc.DBAPIError):
            orig = exc.orig
            code = (getattr(orig, "args", None) or (None,))[0]
            sqlstate = getattr(orig, "sqlstate", None) or ""
            if (
                exc.connection_invalidated
                or code in _TRANSIENT_MYSQL
                or sqlstate in _TRANSIENT_POSTGRES
                or sqlstate.startswith("08")
                or (isinstance(exc, sa.exc.InterfaceError) and code == 0)  # pymysql: connection closed
                or "database is locked" in str(orig)
            ):
                return f"{type(orig).__name__}: {orig}"
        exc = exc.__cause__ or exc.__context__
    return None


def _is_lock_timeout(exc: sa.exc.OperationalError) -> bool:
    code = getattr(exc.orig, "args", (None,))[0]
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return code == 1205 or sqlstate == "55P03" or "database is locked" in str(exc.orig)


def _short(name: str, suffix: str) -> str:
    """Helper table names stay within MySQL's 64 characters."""
    base = name if len(name) + len(suffix) <= 64 else name[: 64 - len(suffix) - 9] + f"_{abs(hash(name)) % 10**8:08d}"
    return base + suffix


class DestinationSync:
    """Runs the selected syncs of one destination."""

    def __init__(self, engine: sa.Engine, planner: Warehouse, log: Log = print):
        self.engine = engine
        self.planner = planner
        self.log = log
        # Tables whose plan the guards judged and let through in the last attempt (table -> plan):
        # when the run then fails for another reason, their guards still passed.
        self.within_guards: dict[str, dict[str, int]] = {}

    # -- destination inspection --------------------------------------------------------------
    def _foreign_keys(self, conn: sa.Connection) -> dict[str, list[dict]]:
        """Every foreign key in the destination schema, by constrained table."""
        inspector = sa.inspect(conn)
        out: dict[str, list[dict]] = {}
        for (_schema, table), fks in inspector.get_multi_foreign_keys().items():
            out[table] = list(fks)
        return out

    def _order(self, jobs: list[_Job], fks: dict[str, list[dict]]) -> list[_Job]:
        """Parents first, from the destination's own foreign keys plus the config's."""
        by_table = {j.spec.table: j for j in jobs}
        parents = {
            j.spec.table: {fk["referred_table"] for fk in fks.get(j.spec.table, [])}
            | {fk.references_table for fk in j.spec.parsed_foreign_keys}
            for j in jobs
        }
        ordered: list[_Job] = []
        state: dict[str, str] = {}

        def visit(table: str, path: list[str]) -> None:
            if state.get(table) == "done":
                return
            if state.get(table) == "visiting":
                raise SyncError(f"destination foreign keys form a cycle: {' -> '.join([*path, table])}")
            state[table] = "visiting"
            for parent in sorted(parents[table]):
                if parent in by_table and parent != table:
                    visit(parent, [*path, table])
            state[table] = "done"
            ordered.append(by_table[table])

        for job in jobs:
            visit(job.spec.table, [])
        return ordered

    def _is_auto_increment(self, conn: sa.Connection, table: str, column: str) -> bool:
        dialect = conn.dialect.name
        if dialect in ("mysql", "mariadb"):
            extra = conn.execute(
                sa.text(
                    "SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = :t AND COLUMN_NAME = :c"
                ),
                {"t": table, "c": column},
            ).scalar()
            return "auto_increment" in (extra or "").lower()
        if dialect == "postgresql":
            row = conn.execute(
                sa.text(
                    "SELECT column_default, is_identity FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"
                ),
                {"t": table, "c": column},
            ).one_or_none()
            return bool(row) and (row[1] == "YES" or "nextval(" in (row[0] or ""))
        if dialect == "sqlite":
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
            ).scalar()
            return "AUTOINCREMENT" in (sql or "").upper()
        return False

    def _scope_clause(self, job: _Job, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(sa.true(), *[table.c[c] == v for c, v in job.spec.scope.items()])

    # -- preparation (DDL) ----------------------------------------------------------------
    def _prepare(self, conn: sa.Connection, metadata: sa.MetaData, job: _Job) -> None:
        spec, plan = job.spec, job.plan
        inspector = sa.inspect(conn)
        soft = spec.soft_delete_column
        for column in spec.scope:
            if column not in plan.columns:
                raise SyncError(
                    f"{spec.table}: scope column {column!r} must come from mart {spec.source}, so the rows the "
                    "sync writes carry it"
                )
        if inspector.has_table(spec.table):
            target = sa.Table(spec.table, metadata, autoload_with=conn)
            actual_key = [c.name for c in target.primary_key.columns]
            if sorted(actual_key) != sorted(spec.primary_key):
                raise SyncError(
                    f"{spec.table}: the destination's primary key is {actual_key or 'missing'} but the sync declares "
                    f"{spec.primary_key}; the sync key must be the table's primary key"
                )
            for key in spec.primary_key:
                if self._is_auto_increment(conn, spec.table, key):
                    raise SyncError(
                        f"{spec.table}.{key} is AUTO_INCREMENT in the destination: a sync key must come from the "
                        "mart, or the app's foreign keys break on the next full load. Drop AUTO_INCREMENT from "
                        "the column (keep it as the primary key)."
                    )
            self._reconcile_columns(conn, job, target)
            if soft and soft not in target.columns:
                raise SyncError(f"{spec.table}: the destination table has no soft-delete column {soft!r}; add it")
        else:
            target = schema.build_table(
                metadata,
                spec.table,
                plan.arrow_schema,
                spec.primary_key,
                string_lengths=self.planner.string_lengths(plan),
                foreign_keys=spec.parsed_foreign_keys,
                soft_delete_column=soft,
            )
            target.create(conn)
            job.result.created_table = True
            self.log(f"{spec.table}: created table with {len(target.columns)} columns")
        job.target = target
        job.result.columns = [(c.name, str(c.type.compile(conn.dialect))) for c in target.columns]

    def _reconcile_columns(self, conn: sa.Connection, job: _Job, target: sa.Table) -> None:
        """Schema drift, decided by the sync's `on_schema_change`: mart columns the table lacks (new in
        the mart, or dropped by the application), columns whose kind of value changed, and table
        columns the mart no longer feeds."""
        spec, plan, policy = job.spec, job.plan, job.spec.on_schema_change
        missing = [c for c in plan.columns if c not in target.columns]
        retyped = [
            f"{c} ({target.c[c].type.compile(conn.dialect)} <- {plan.arrow_schema.field(c).type})"
            for c in plan.columns
            if c in target.columns and not schema.accepts(target.c[c].type, plan.arrow_schema.field(c).type)
        ]
        keys = [c for c in spec.primary_key if c in missing or any(r.startswith(f"{c} (") for r in retyped)]
        if keys:
            raise SyncError(f"{spec.table}: key column(s) {keys} missing or retyped in the destination; fix the table")
        if (missing or retyped) and policy == "fail":
            parts = []
            if missing:
                parts.append(f"the table has no column(s) {missing} (new in mart {spec.source}, or dropped by the app)")
            if retyped:
                parts.append(f"column(s) changed kind: {', '.join(retyped)}")
            raise SyncError(
                f"{spec.table}: schema drift: {'; '.join(parts)}. Nothing was written. Set on_schema_change: evolve "
                "(add new columns), ignore (sync the columns that still match), or map columns in `columns`."
            )
        if retyped and policy == "evolve":
            raise SyncError(
                f"{spec.table}: column(s) changed kind: {', '.join(retyped)}; evolve only adds columns, it never "
                "retypes the application's. Nothing was written: migrate the column, or set on_schema_change: ignore."
            )
        for c in plan.columns:
            dest_type, mart_type = target.c[c].type if c in target.columns else None, plan.arrow_schema.field(c).type
            if (
                isinstance(dest_type, sa.Integer)
                and not isinstance(dest_type, sa.Boolean)
                and (pa.types.is_decimal(mart_type) or pa.types.is_floating(mart_type))
            ):
                plan.casts[c] = "integer"  # whole numbers in a DECIMAL: validate refuses fractions first
        skipped = missing if policy == "ignore" else []
        skipped += [r.split(" (", 1)[0] for r in retyped] if policy == "ignore" else []
        if skipped:
            plan.pairs = [(d, s) for d, s in plan.pairs if d not in skipped]
            plan.arrow_schema = pa.schema([f for f in plan.arrow_schema if f.name not in skipped])
            job.result.warnings.append(f"schema drift ignored: column(s) {skipped} not synced")
        if missing and policy == "evolve":
            lengths = self.planner.string_lengths(plan)
            for name in missing:
                field = plan.arrow_schema.field(name)
                column = schema.build_table(sa.MetaData(), "_", pa.schema([field]), [], string_lengths=lengths).c[name]
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {quoted(conn, target)} ADD COLUMN {quoted(conn, name)} "
                        f"{column.type.compile(conn.dialect)} NULL"
                    )
                )
                target.append_column(sa.Column(name, column.type, nullable=True))
            job.result.warnings.append(f"schema drift: added column(s) {missing} from mart {spec.source}")
        unfed = [
            c.name
            for c in target.columns
            if c.name not in plan.columns and c.name != spec.soft_delete_column and not c.primary_key
        ]
        required = [
            c
            for c in unfed
            if not target.c[c].nullable and target.c[c].server_default is None and target.c[c].autoincrement is not True
        ]
        if required and spec.mode is not Mode.UPDATE:
            raise SyncError(
                f"{spec.table}: column(s) {required} are NOT NULL without a default and mart {spec.source} does not "
                "feed them, so new rows cannot be inserted. Nothing was written: give them a default, or add them "
                "to the mart."
            )
        if unfed:
            job.result.warnings.append(f"column(s) {unfed} are not in mart {spec.source}: left as they are")

    def _choose_strategy(self, job: _Job, fks: dict[str, list[dict]]) -> None:
        """Swap a shadow table in only where nothing references the table and the sync owns all of it."""
        spec = job.spec
        soft = spec.soft_delete_column
        referenced_by = sorted(
            t
            for t, table_fks in fks.items()
            if t != spec.table
            for fk in table_fks
            if fk["referred_table"] == spec.table
        )
        if spec.mode is Mode.REPLACE:
            why = []
            if referenced_by:
                why.append(f"foreign keys in {referenced_by} point at it (a swapped table would orphan them)")
            if spec.scope:
                why.append("it has a scope (the app's own rows must stay)")
            if soft:
                why.append("it soft-deletes")
            if why:
                job.strategy = "diff"
                job.result.warnings.append(f"replace applied as a diff because {' and '.join(why)}")
            else:
                job.strategy = "shadow"
        elif spec.mode is Mode.TRUNCATE_INSERT:
            job.strategy = "truncate"
            if referenced_by:
                job.result.warnings.append(
                    f"truncate_insert on a table referenced by {referenced_by}: deleting rows they still reference "
                    "fails the sync; prefer mirror"
                )
        for warning in job.result.warnings:
            self.log(f"{spec.table}: {warning}")

    def _check_lengths(self, job: _Job) -> None:
        """A value longer than its VARCHAR would be cut or rejected mid-load; name it up front.
        With `max_rejects`, such rows, and rows with any value the value checks refuse, are set
        aside as rejects instead (warehouses/rejects.py)."""
        allowed, rejects = job.spec.max_rejects, self.planner.rejects
        if allowed is not None:
            rejects.reset(job.plan)
        too_long: list[tuple[str, Problem]] = []
        for column in job.target.columns:
            limit = getattr(column.type, "length", None)
            if not isinstance(column.type, sa.String) or not limit or column.name not in job.plan.columns:
                continue
            rows = self.planner.too_long(job.plan, column.name, limit)
            if rows and allowed is None:
                shown = ", ".join(f"key {k!r} ({n} chars)" for k, n in rows)
                line = (
                    f"{job.spec.table}.{column.name}: value longer than the destination's {limit} characters in {shown}"
                )
                too_long.append((line, validate.too_long_problem(self.planner, job.plan, column.name, limit, rows)))
                continue
            if rows:
                reason = f"value longer than the destination's {limit} characters"
                rejects.add(job.plan, column.name, reason, self.planner.longer_than(column.name, limit))
        if too_long:
            raise SyncError(
                "\n".join(line for line, _ in too_long)
                + "; widen the column or trim it in the mart. Nothing was written.",
                [problem for _, problem in too_long],
            )
        if allowed is not None:  # every value the destination would refuse or alter (syncs/validate.py)
            with self.engine.connect() as conn:
                charsets = validate.character_sets(conn, job.spec.table)
            found = validate.checks(job.plan, job.target, self.engine.dialect.name, charsets, self.planner.flavour)
            for check in found:
                rejects.add(job.plan, check.column, check.problem, check.condition)
        count = rejects.count(job.plan) if allowed is not None else 0
        if count:
            total = self.planner.mart_rows(job.plan)
            why = rejects.summary(job.plan)
            if not allowed.allows(count, total):
                raise SyncError(
                    f"{job.spec.table}: {count:,} of {total:,} rows cannot be written ({why}), over max_rejects "
                    f"{allowed}; fix them in the mart or widen the columns. Nothing was written."
                )
            job.result.rejected = count
            job.result.warnings.append(f"{count:,} rows set aside as rejects ({why}); they are sent again next run")
            self.log(f"{job.spec.table}: {job.result.warnings[-1]}")

    def _kept(self, conn: sa.Connection, job: _Job, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        """A row set aside as a reject keeps its older version in the destination: not deleted."""
        if not job.result.rejected or job.strategy != "diff":
            return []
        if job.rejected_keys is None:
            # Keys set aside as collisions are equal under the table's comparison: no unique key then.
            keyed = not collisions.loose_key(conn, job)
            job.rejected_keys = self._temp_table(conn, job, "__rejected", job.spec.primary_key, keyed=keyed)
            keys = self.planner.rejects.keys(job.plan, job.spec.batch_size)
            self._load(conn, job, job.rejected_keys, keys, job.result.rejected)
        return [~sa.exists().where(self._on_key(job, table, job.rejected_keys))]

    def _check_values(self, conn: sa.Connection, job: _Job) -> None:
        """Refuse values the destination would reject or silently alter, naming column and keys."""
        charsets = validate.character_sets(conn, job.spec.table)
        problems = validate.find(self.planner, job.plan, job.target, conn.dialect.name, charsets)
        if problems:
            raise SyncError(
                f"{job.spec.source} -> {job.spec.table}: {len(problems)} problem(s) in the rows to send; nothing "
                "was written:\n" + "\n".join(f"- {p}" for p in problems),
                [p.as_problem(job.spec) for p in problems],
            )

    def _create_shadow(self, conn: sa.Connection, job: _Job) -> None:
        name = _short(job.spec.table, "__activation_new")
        dialect = conn.dialect.name
        src, dst = quoted(conn, job.spec.table), quoted(conn, name)
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {dst}"))
        if dialect in ("mysql", "mariadb", "postgresql"):
            like = (
                f"CREATE TABLE {dst} LIKE {src}"
                if dialect != "postgresql"
                else f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL)"
            )
            conn.execute(sa.text(like))
            for fk in sa.inspect(conn).get_foreign_keys(job.spec.table):  # LIKE copies no foreign keys
                cols = ", ".join(quoted(conn, c) for c in fk["constrained_columns"])
                refs = ", ".join(quoted(conn, c) for c in fk["referred_columns"])
                ondelete = (fk.get("options") or {}).get("ondelete")
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {dst} ADD FOREIGN KEY ({cols}) REFERENCES {quoted(conn, fk['referred_table'])} "
                        f"({refs})" + (f" ON DELETE {ondelete}" if ondelete else "")
                    )
                )
            job.shadow = sa.Table(name, sa.MetaData(), autoload_with=conn)
        else:
            metadata = sa.MetaData()
            for fk in job.target.foreign_keys:  # the copy's foreign keys must resolve
                fk.column.table.to_metadata(metadata)
            shadow = job.target.to_metadata(metadata, name=name)
            for index in list(shadow.indexes):
                index.name = _short(index.name or "ix", "_n")
            shadow.create(conn)
            job.shadow = shadow

    # -- staging and counting -----------------------------------------------------------
    def _temp_table(
        self, conn: sa.Connection, job: _Job, suffix: str, columns: Sequence[str], *, keyed: bool = True
    ) -> sa.Table:
        table = sa.Table(
            _short(f"_activation_{job.spec.table}", suffix),
            sa.MetaData(),
            *[
                sa.Column(c, job.target.c[c].type, primary_key=keyed and c in job.spec.primary_key, autoincrement=False)
                for c in columns
            ],
            prefixes=["TEMPORARY"],
            mysql_engine="InnoDB",
            mysql_charset="utf8mb4",
            mysql_collate="utf8mb4_bin",
        )
        table.drop(conn, checkfirst=True)
        table.create(conn)
        return table

    def _progress(self, job: _Job, what: str, total: int) -> Callable[[int], None]:

        def report(done: int) -> None:
            self.log(f"{job.spec.table}: {what} {done:,} / {total:,} rows")

        return report

    def _load(
        self, conn: sa.Connection, job: _Job, table: sa.Table, batches: Iterable[pa.RecordBatch], total: int
    ) -> int:
        try:
            return bulk_insert(conn, table, batches, progress=self._progress(job, f"loaded into {table.name}", total))
        finally:
            # A load cut short leaves the warehouse result half read; a retry needs the connection back.
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def _count(self, conn: sa.Connection, stmt: sa.Select) -> int:
        return conn.execute(stmt).scalar_one()

    def _exact(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """MySQL compares text by collation: PAD SPACE makes 'a' = 'a ', and *_ci makes 'a' = 'A'. A change
        is a change, so compare the bytes."""
        if self.engine.dialect.name in ("mysql", "mariadb") and isinstance(column.type, (sa.String, sa.JSON)):
            return sa.cast(column, sa.LargeBinary)
        return column

    def _differs(self, job: _Job, a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
        values = [c for c in job.plan.columns if c not in job.spec.primary_key]
        cond = [self._exact(a.c[c]).is_distinct_from(self._exact(b.c[c])) for c in values]
        soft = job.spec.soft_delete_column
        if soft:
            cond.append(a.c[soft].is_not(None))
        return sa.or_(sa.false(), *cond)

    def _on_key(self, job: _Job, a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(*[a.c[k] == b.c[k] for k in job.spec.primary_key])

    def _stage(self, conn: sa.Connection, job: _Job) -> None:
        plan, t = job.plan, job.target
        owned = self._scope_clause(job, t)
        if job.strategy == "bulk":
            job.planned = {"insert": plan.mart_rows, "update": 0, "delete": 0}
            return
        if job.strategy == "shadow":
            if not plan.full and plan.new_keys + plan.changed_keys + plan.deleted_keys == 0:
                job.strategy = "unchanged"
                job.planned = {"insert": 0, "update": 0, "delete": 0}
                return
            job.result.rows_sent = self._load(
                conn, job, job.shadow, self.planner.rows(plan, job.spec.batch_size, everything=True), plan.mart_rows
            )
            s = job.shadow
            job.planned = self._compare(conn, job, s, t, owned)
            return
        if job.strategy == "truncate":
            job.staging = self._temp_table(conn, job, "__stage", plan.columns)
            job.result.rows_sent = self._load(
                conn, job, job.staging, self.planner.rows(plan, job.spec.batch_size, everything=True), plan.mart_rows
            )
            job.result.rows_sent -= collisions.check_existing(self, conn, job)
            # Guards judge the net effect; the result reports the physical delete + insert.
            job.planned = self._compare(conn, job, job.staging, t, owned)
            return
        # diff
        job.staging = self._temp_table(conn, job, "__stage", plan.columns)
        batches = self.planner.rows(plan, job.spec.batch_size)
        sending = plan.mart_rows if plan.full else plan.new_keys + plan.changed_keys
        job.result.rows_sent = self._load(conn, job, job.staging, batches, sending)
        aside = collisions.check_existing(self, conn, job)
        job.result.rows_sent -= aside
        if plan.full:
            job.planned = self._compare(conn, job, job.staging, t, owned)
        else:
            s = job.staging
            # The warehouse already counted the changes; the guards judge that plan.
            # (Rows set aside as colliding with the table are new keys: a synced key is held in its own bytes.)
            job.planned = {"insert": plan.new_keys - aside, "update": plan.changed_keys, "delete": plan.deleted_keys}
            if job.spec.mode.deletes and plan.deleted_keys:
                job.deleted_keys = self._temp_table(conn, job, "__gone", job.spec.primary_key)
                gone = self.planner.deleted(plan, job.spec.batch_size)
                self._load(conn, job, job.deleted_keys, gone, plan.deleted_keys)
        if not job.spec.mode.deletes:
            job.planned["delete"] = 0
        if job.spec.mode is Mode.INSERT:
            job.planned["update"] = 0
        if job.spec.mode is Mode.UPDATE:
            job.planned["insert"] = 0

    def _compare(self, conn: sa.Connection, job: _Job, new: sa.Table, old: sa.Table, owned) -> dict[str, int]:
        on = self._on_key(job, old, new)
        return {
            "insert": self._count(
                conn, sa.select(sa.func.count()).select_from(new).where(~sa.exists().where(on, owned))
            ),
            "update": self._count(
                conn,
                sa.select(sa.func.count()).select_from(new.join(old, on)).where(owned, self._differs(job, old, new)),
            ),
            "delete": self._count(
                conn,
                sa.select(sa.func.count())
                .select_from(old)
                .where(owned, ~sa.exists().where(on), *self._kept(conn, job, old)),
            )
            if job.spec.mode.deletes
            else 0,
        }

    def _check_guards(self, jobs: Sequence[_Job]) -> None:
        problems, found = [], []
        for job in jobs:
            guards, p, before = job.spec.guards, job.planned, job.rows_before
            known = len(problems)
            if job.spec.mode.deletes and job.plan.mart_rows == 0 and before > 0 and not guards.allow_empty_source:
                problems.append(
                    f"{job.spec.table}: mart {job.spec.source} is empty and would wipe {before:,} rows "
                    "(set guards.allow_empty_source to allow)"
                )
            if guards.max_deletes and not guards.max_deletes.allows(p.get("delete", 0), before):
                problems.append(
                    f"{job.spec.table}: would delete {p['delete']:,} of {before:,} rows, over max_deletes "
                    f"{guards.max_deletes}"
                )
            if guards.max_updates and not guards.max_updates.allows(p.get("update", 0), before):
                problems.append(
                    f"{job.spec.table}: would update {p['update']:,} of {before:,} rows, over max_updates "
                    f"{guards.max_updates}"
                )
            found += [
                Problem(
                    job.spec.table,
                    "guard tripped: " + line.split(": ", 1)[1],
                    destination=job.spec.destination,
                    fix=GUARD_FIX,
                )
                for line in problems[known:]
            ]
        if not problems:
            self.within_guards.update({j.spec.table: dict(j.planned) for j in jobs})
        if problems:
            plans = {j.spec.table: dict(j.planned) for j in jobs}
            summary = "; ".join(
                f"{t}: +{p.get('insert', 0):,} ~{p.get('update', 0):,} -{p.get('delete', 0):,}"
                for t, p in plans.items()
            )
            raise GuardTripped(
                "guard tripped, nothing was written: " + " | ".join(problems) + f". The plan was {summary}.",
                plans,
                found,
            )

    # -- applying -------------------------------------------------------------------------
    def _upsert(self, conn: sa.Connection, job: _Job) -> None:
        if job.strategy in ("shadow", "unchanged"):
            return
        t, s, spec = job.target, job.staging, job.spec
        if job.strategy == "bulk":
            rows = self.planner.rows(job.plan, spec.batch_size, everything=True)
            job.result.inserted = job.result.rows_sent = self._load(conn, job, t, rows, job.plan.mart_rows)
            return
        owned = self._scope_clause(job, t)
        on = self._on_key(job, t, s)
        if job.strategy == "truncate":
            try:
                job.result.deleted = conn.execute(sa.delete(t).where(owned)).rowcount
            except sa.exc.IntegrityError as exc:
                raise SyncError(
                    f"{spec.table}: truncate_insert cannot delete rows other tables still reference; use mirror. "
                    "Nothing was written."
                ) from exc
            cols = job.plan.columns
            job.result.inserted = conn.execute(
                sa.insert(t).from_select(cols, sa.select(*[s.c[c] for c in cols]))
            ).rowcount
            return
        values = [c for c in job.plan.columns if c not in spec.primary_key]
        soft = spec.soft_delete_column
        if spec.mode is not Mode.INSERT and (values or soft):
            if (
                conn.dialect.name in ("mysql", "mariadb")
                and self._only_unique_key_is_primary(conn, t)
                and not any("%" in c.name for c in t.columns)  # SQLAlchemy 2.1 escapes '%' twice in VALUES()
            ):
                if spec.mode is not Mode.UPDATE and not spec.scope:
                    job.result.inserted, job.result.updated = self._upsert_mysql(conn, job)
                    return
                job.result.updated = self._update_mysql(conn, job)
            else:
                assignments = {c: s.c[c] for c in values}
                if soft:
                    assignments[soft] = None
                stmt = sa.update(t).where(on, owned, self._differs(job, t, s)).values(assignments)
                job.result.updated = conn.execute(stmt).rowcount
        if spec.mode is not Mode.UPDATE:
            job.result.inserted = conn.execute(self._insert_new_keys(job)).rowcount

    def _insert_new_keys(self, job: _Job) -> sa.Insert:
        t, s, cols = job.target, job.staging, job.plan.columns
        return sa.insert(t).from_select(
            cols,
            sa.select(*[s.c[c] for c in cols])
            .where(~sa.exists().where(self._on_key(job, t, s)))
            .order_by(*[s.c[k] for k in job.spec.primary_key]),
        )

    def _only_unique_key_is_primary(self, conn: sa.Connection, table: sa.Table) -> bool:
        """ON DUPLICATE KEY UPDATE fires on any unique key: with a second one it could update the wrong row."""
        inspector = sa.inspect(conn)
        indexes = inspector.get_indexes(table.name)
        return not any(i.get("unique") for i in indexes) and not inspector.get_unique_constraints(table.name)

    def _staged_columns(self, job: _Job) -> tuple[list[str], list[sa.ColumnElement]]:
        """The columns an upsert writes and what it selects from the staging table for them: a
        soft-delete column is cleared, so a row that comes back is no longer deleted."""
        columns = list(job.plan.columns)
        selected: list[sa.ColumnElement] = [job.staging.c[c] for c in columns]
        if job.spec.soft_delete_column:
            columns.append(job.spec.soft_delete_column)
            selected.append(sa.null())
        return columns, selected

    def _upsert_mysql(self, conn: sa.Connection, job: _Job) -> tuple[int, int]:
        """Insert and update in one INSERT ... SELECT ... ON DUPLICATE KEY UPDATE: one probe of the
        table per staged row, where an update join and an insert of the missing keys take two. The
        server decides what changed (it compares the stored bytes) and reports 1 affected row per
        insert, 2 per changed row, and 1 per unchanged row when the client set CLIENT_FOUND_ROWS
        (SQLAlchemy does), else 0. A counter in the update clause counts the rows that met an
        existing key, which tells inserts from unchanged rows. Returns (inserted, updated)."""
        t, s, spec = job.target, job.staging, job.spec
        columns, selected = self._staged_columns(job)
        rows = sa.select(*selected).order_by(*[s.c[k] for k in spec.primary_key])
        stmt = mysql.insert(t).from_select(columns, rows)
        # Every written column takes the inserted value (NULL for the soft-delete column).
        assignments = {c: stmt.inserted[c] for c in columns if c not in spec.primary_key}
        first = next(iter(assignments))
        # Evaluated once per row that meets an existing key; never NULL, so the value is unchanged.
        # (MySQL 8 deprecates assigning variables in expressions but still runs it; MariaDB does not.)
        met_one = sa.literal_column("(@activation_met := @activation_met + 1)")
        assignments[first] = sa.case((met_one.is_(None), sa.null()), else_=assignments[first])
        stmt = stmt.on_duplicate_key_update(assignments)
        conn.execute(sa.text("SET @activation_met = 0"))
        affected = conn.execute(stmt).rowcount
        met = conn.execute(sa.text("SELECT @activation_met")).scalar_one()
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

    def _update_mysql(self, conn: sa.Connection, job: _Job) -> int:
        """Update the rows that differ as INSERT ... SELECT ... ON DUPLICATE KEY UPDATE: a multi-table
        UPDATE first collects the joined rows in a temporary table, about 1.5x slower (200k rows, 10%
        changed). Every selected row exists and differs, and the server counts 2 per updated row."""
        t, s, spec = job.target, job.staging, job.spec
        current = t.alias("activation_current")
        columns, selected = self._staged_columns(job)
        rows = (
            sa.select(*selected)
            .select_from(s.join(current, self._on_key(job, current, s)))
            .where(self._scope_clause(job, current), self._differs(job, current, s))
            .order_by(*[s.c[k] for k in spec.primary_key])
        )
        stmt = mysql.insert(t).from_select(columns, rows)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns if c not in spec.primary_key})
        affected = conn.execute(stmt).rowcount
        if affected % 2:
            raise SyncError(f"{spec.table}: the server reported {affected} affected rows for an update of whole rows")
        return affected // 2

    def _leaving(self, conn: sa.Connection, job: _Job, *, join: bool = True) -> sa.ColumnElement[bool] | None:
        """The destination rows this run deletes (None: none)."""
        if job.strategy != "diff" or not job.spec.mode.deletes:
            return None  # bulk: the table was empty; shadow and truncate delete by replacing
        t = job.target
        owned = self._scope_clause(job, t)
        if job.plan.full:
            return sa.and_(owned, ~sa.exists().where(self._on_key(job, t, job.staging)), *self._kept(conn, job, t))
        if job.deleted_keys is not None:
            gone = job.deleted_keys
            if conn.dialect.name == "sqlite" or not join:
                return sa.and_(owned, sa.exists().where(self._on_key(job, t, gone)))
            return sa.and_(owned, self._on_key(job, t, gone))  # a join: MySQL runs EXISTS as one probe per row
        return None

    def _delete(self, conn: sa.Connection, job: _Job) -> None:
        where = self._leaving(conn, job)
        if where is None:
            return
        t, soft = job.target, job.spec.soft_delete_column
        if soft:
            stmt = sa.update(t).where(where, t.c[soft].is_(None)).values({soft: sa.func.current_timestamp()})
        else:
            stmt = sa.delete(t).where(where)
        job.result.deleted = conn.execute(stmt).rowcount

    @contextlib.contextmanager
    def _naming_foreign_key_violations(
        self, conn: sa.Connection, job: _Job, fks: dict[str, list[dict]], *, deleting: bool, swapped: bool = False
    ) -> Iterator[None]:
        """A foreign-key violation in the enclosed writes becomes a SyncError naming the table, the
        foreign key and sample keys (syncs/foreign_keys.py). PostgreSQL aborts the transaction on
        an error, so there the writes run in a savepoint that keeps it usable for the query."""
        try:
            if conn.dialect.name == "postgresql":
                with conn.begin_nested():
                    yield
            else:
                yield
        except (sa.exc.IntegrityError, ValueError) as exc:
            if not foreign_keys.is_violation(exc):
                raise
            spec = job.spec
            try:
                if deleting:
                    leaving = self._leaving(conn, job, join=False)
                    problems = [] if leaving is None else foreign_keys.still_referenced(conn, job.target, leaving, fks)
                    advice = "Sync the tables that point at it in the same run, so their rows go first"
                else:
                    sent = job.sent_rows = self._temp_table(conn, job, "__fk", job.plan.columns)
                    rows = self.planner.rows(job.plan, spec.batch_size, everything=job.strategy != "diff")
                    self._load(conn, job, sent, rows, job.plan.mart_rows)
                    problems = foreign_keys.orphans(conn, spec.table, sent, spec.primary_key, fks.get(spec.table, []))
                    advice = "Sync the parent tables in the same run (or first), or fix the mart"
            except sa.exc.DBAPIError as unexplained:  # the database's own words, then
                self.log(f"{spec.table}: could not look up the rows behind the foreign-key error: {unexplained.orig}")
                problems, advice = [], "Sync the tables it references, and those that reference it, in one run"
            found = "; ".join(problems) or f"the database said: {getattr(exc, 'orig', exc)}"
            raise SyncError(
                f"{spec.table}: {'deleting' if deleting else 'writing'} rows of mart {spec.source} violates a "
                f"foreign key: {found}. {advice}. "
                + (
                    "The deletes were rolled back; the tables swapped in stay."
                    if swapped
                    else "Rolled back, nothing was written."
                )
            ) from exc

    def _swap(self, conn: sa.Connection, job: _Job) -> None:
        """Swap the shadow table in. The rename needs the table's metadata lock: while it waits for a
        transaction that read the table, new readers queue behind it. So it waits briefly, steps
        back to let them through, and tries again."""
        table, new = quoted(conn, job.spec.table), quoted(conn, job.shadow.name)
        old = quoted(conn, _short(job.spec.table, "__activation_old"))
        dialect = conn.dialect.name
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                if dialect in ("mysql", "mariadb"):
                    with conn.begin():  # each statement commits implicitly; the rename itself is atomic
                        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {SWAP_LOCK_WAIT_SECONDS}")
                        conn.execute(sa.text(f"DROP TABLE IF EXISTS {old}"))
                        conn.execute(sa.text(f"RENAME TABLE {table} TO {old}, {new} TO {table}"))
                else:
                    with conn.begin():
                        if dialect == "postgresql":
                            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT_SECONDS}s'")
                        conn.execute(sa.text(f"DROP TABLE {table}"))
                        conn.execute(sa.text(f"ALTER TABLE {new} RENAME TO {table}"))
                break
            except sa.exc.OperationalError as exc:
                if not _is_lock_timeout(exc):
                    raise
                if attempt == SWAP_ATTEMPTS:
                    raise SwapNotPossible(
                        f"{job.spec.table}: replace could not swap in the new table: transactions kept reading it "
                        f"through {SWAP_ATTEMPTS} tries of {SWAP_LOCK_WAIT_SECONDS}s each. Nothing changed; the next "
                        "run tries again (look for long-running transactions on this table)."
                    ) from exc
                pause = min(0.25 * 2**attempt, 8.0)
                self.log(
                    f"{job.spec.table}: swap waited {SWAP_LOCK_WAIT_SECONDS}s for a transaction reading the table; "
                    f"readers go first, trying again in {pause:.1f}s ({attempt}/{SWAP_ATTEMPTS})"
                )
                time.sleep(pause)
            finally:
                if dialect in ("mysql", "mariadb"):
                    with conn.begin():
                        conn.exec_driver_sql("SET SESSION lock_wait_timeout = DEFAULT")
        if dialect in ("mysql", "mariadb"):
            with conn.begin():
                conn.execute(sa.text(f"DROP TABLE {old}"))
        p = job.planned
        job.result.inserted, job.result.updated, job.result.deleted = p["insert"], p["update"], p["delete"]
        job.shadow = None

    def _remove_leftovers(self, conn: sa.Connection, job: _Job) -> None:
        """A run killed between loading a shadow table and dropping the old one leaves either behind."""
        inspector = sa.inspect(conn)
        for suffix in ("__activation_new", "__activation_old"):
            name = _short(job.spec.table, suffix)
            if inspector.has_table(name):
                conn.execute(sa.text(f"DROP TABLE {quoted(conn, name)}"))
                self.log(f"{job.spec.table}: dropped {name}, left by an interrupted run")

    # -- the run --------------------------------------------------------------------------
    def run(self, specs: Sequence[SyncSpec], relations: dict, *, full_resync: bool = False) -> list[SyncResult]:
        """Sync `specs` into this destination, parents first. Transient errors (a lost connection, a
        restarted server, a deadlock, a lock wait timeout) roll back and retry the whole run with
        backoff: the state advances only after the destination committed, so a retry plans again
        from the same point and nothing is skipped or applied twice."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            self.within_guards = {}
            try:
                with self._exclusive(specs):
                    return self._run_once(specs, relations, full_resync=full_resync)
            except Exception as exc:
                cause = _transient_cause(exc)
                if cause is None or attempt == RETRY_ATTEMPTS:
                    raise
                pause = RETRY_FIRST_PAUSE_SECONDS * 2 ** (attempt - 1)
                self.log(
                    f"transient destination error, rolled back; retrying in {pause:.0f}s "
                    f"({attempt}/{RETRY_ATTEMPTS - 1}): {cause}"
                )
                self.engine.dispose()  # pooled connections may be dead
                time.sleep(pause)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _exclusive(self, specs: Sequence[SyncSpec]) -> Iterator[None]:
        """One writer per destination table: a second run of the same sync (another process, another
        deployment) waits for the first, up to LOCK_WAIT_SECONDS, then fails without writing."""
        dialect = self.engine.dialect.name
        if dialect not in ("mysql", "mariadb", "postgresql"):
            yield  # SQLite serializes writers on the database file
            return
        names = sorted({f"activation:{s.table}" for s in specs})
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            held: list[str] = []
            try:
                for name in names:
                    if not self._lock(conn, name):
                        raise SyncError(
                            f"another sync is writing {name.split(':', 1)[1]} in this destination (it held the "
                            f"lock for more than {LOCK_WAIT_SECONDS}s); nothing was written, run again later"
                        )
                    held.append(name)
                yield
            finally:
                for name in reversed(held):
                    self._unlock(conn, name)

    def _lock(self, conn: sa.Connection, name: str) -> bool:
        if self.engine.dialect.name == "postgresql":
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while not conn.execute(
                sa.text("SELECT pg_try_advisory_lock(hashtextextended(:n, 0))"), {"n": name}
            ).scalar():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
            return True
        key = name if len(name) <= 64 else "activation:" + hashlib.sha1(name.encode()).hexdigest()
        return conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": key, "t": LOCK_WAIT_SECONDS}).scalar() == 1

    def _unlock(self, conn: sa.Connection, name: str) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # a lost connection released it already
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:n, 0))"), {"n": name})
            else:
                key = name if len(name) <= 64 else "activation:" + hashlib.sha1(name.encode()).hexdigest()
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": key})

    def _run_once(self, specs: Sequence[SyncSpec], relations: dict, *, full_resync: bool) -> list[SyncResult]:
        started = time.monotonic()
        jobs: list[_Job] = []
        for spec in specs:
            try:
                plan = self.planner.describe(spec, relations[spec.name])
            except PlanError as exc:
                raise SyncError(str(exc)) from exc
            # Keys are checked before any DDL when the plan will compare everything anyway; an
            # incremental plan checks them at the cost of the change, once it is computed.
            keys_checked = not self.planner.diffable(plan)
            if keys_checked:
                problem = self.planner.null_and_duplicate_keys(plan)
                if problem:
                    raise SyncError(problem)
            if spec.scope:
                bad = self.planner.scope_violations(plan, spec.scope, plan.columns)
                if bad:
                    raise SyncError(f"{spec.table}: {bad} mart row(s) fall outside the sync's scope {spec.scope}")
            jobs.append(
                _Job(
                    plan=plan,
                    result=SyncResult(sync=spec.name, table=spec.table, mode=spec.mode.value),
                    keys_checked=keys_checked,
                )
            )

        metadata = sa.MetaData()
        with self.engine.connect() as conn:
            conn.execution_options(preserve_rowcount=True)  # counts are measured on every dialect
            with conn.begin():
                fks = self._foreign_keys(conn)
            jobs = self._order(jobs, fks)
            with conn.begin():  # DDL: MySQL commits implicitly on it anyway
                self._reflect_parents(conn, metadata, jobs)
                for job in jobs:
                    self._prepare(conn, metadata, job)
                    self._remove_leftovers(conn, job)
            with conn.begin():
                fks = self._foreign_keys(conn)  # again: tables created just now have keys too
            for job in jobs:
                self._choose_strategy(job, fks)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                # The destination counts its rows while the warehouse finds the changes: both scan.
                counting = pool.submit(self._count_rows_before, jobs)
                for job in jobs:
                    self._check_lengths(job)
                    self.planner.plan(job.plan, full_resync=full_resync or job.result.created_table)
                    if job.result.created_table and not full_resync:
                        job.plan.reason = "first sync into a new table"
                    problem = None if job.keys_checked else self.planner.key_problems(job.plan)
                    if problem:
                        raise SyncError(problem)
                counting.result()
            with conn.begin():
                for job in jobs:
                    self._distrust_state(job)
                    self._check_values(conn, job)
                    self._load_directly_if_empty(conn, job)
                    collisions.check_sent(self, conn, job)
            for job in jobs:
                if job.strategy == "shadow" and (
                    job.plan.full or job.plan.new_keys + job.plan.changed_keys + job.plan.deleted_keys
                ):
                    with conn.begin():
                        self._create_shadow(conn, job)
            shadows = [j for j in jobs if j.shadow is not None]
            try:
                with conn.begin():
                    # Parents first: a child's shadow table checks its foreign keys as it loads.
                    # A guard tripping on any table rolls back this whole transaction.
                    for job in jobs:
                        with self._naming_foreign_key_violations(conn, job, fks, deleting=False):
                            self._stage(conn, job)
                            job.result.strategy = job.strategy
                            self._check_guards([job])
                            self._upsert(conn, job)
                        collisions.check_written(self, conn, job)
                        collisions.check_parents(self, conn, job, self._written(job))
                    if not shadows:
                        for job in reversed(jobs):  # children first
                            with self._naming_foreign_key_violations(conn, job, fks, deleting=True):
                                self._delete(conn, job)
                for job in shadows:
                    self._swap(conn, job)
                if shadows:
                    with conn.begin():
                        for job in reversed(jobs):
                            with self._naming_foreign_key_violations(conn, job, fks, deleting=True, swapped=True):
                                self._delete(conn, job)
            except sa.exc.DBAPIError as exc:
                raise SyncError(f"destination write failed and was rolled back: {exc.orig!r}") from exc
            finally:
                self._cleanup(conn, jobs)
            for job in jobs:
                self.planner.commit(job.plan)
                self._finish(conn, job, time.monotonic() - started)
        return [job.result for job in jobs]

    def _written(self, job: _Job) -> sa.Table | None:
        """The table holding the rows this run writes for `job`: staged, shadow, or (loaded into an
        empty table) the table itself."""
        if job.staging is not None:
            return job.staging
        if job.shadow is not None:
            return job.shadow
        return job.target if job.strategy == "bulk" else None

    def _count_rows_before(self, jobs: Sequence[_Job]) -> None:
        """The rows each sync owns in the destination now, on a connection of its own."""
        with self.engine.connect() as conn:
            for job in jobs:
                owned = self._scope_clause(job, job.target)
                job.rows_before = self._count(conn, sa.select(sa.func.count()).select_from(job.target).where(owned))

    def _distrust_state(self, job: _Job) -> None:
        """An incremental plan assumes the destination still holds what the last sync wrote.
        When its row count says otherwise (a restore, a truncate, rows deleted by hand),
        compare everything instead of sending only the changes."""
        plan = job.plan
        if plan.full:
            return
        have = job.rows_before
        expected = plan.mart_rows - plan.new_keys + plan.deleted_keys  # the mart as of the last sync
        drifted = have < expected if not job.spec.mode.deletes else have != expected
        if job.spec.soft_delete_column:
            drifted = have < expected  # soft-deleted rows stay
        if job.spec.mode in (Mode.INSERT, Mode.UPDATE):
            drifted = have == 0 and expected > 0
        if drifted:
            self.planner.plan(plan, full_resync=True)
            plan.reason = f"destination holds {have:,} rows where the last sync left {expected:,}: comparing all"
            self.log(f"{job.spec.table}: {plan.reason}")

    def _load_directly_if_empty(self, conn: sa.Connection, job: _Job) -> None:
        """An empty table (a first sync) is bulk-loaded in place: there is nothing to compare
        with, and staging first would write every row twice."""
        if job.spec.mode is Mode.UPDATE or job.strategy == "unchanged":
            return
        empty = (
            job.rows_before == 0
            if not job.spec.scope
            else not self._count(conn, sa.select(sa.func.count()).select_from(job.target))
        )
        if empty:
            job.strategy = "bulk"

    def _cleanup(self, conn: sa.Connection, jobs: Sequence[_Job]) -> None:
        if conn.in_transaction():
            conn.rollback()
        for job in jobs:
            for table in (job.staging, job.deleted_keys, job.rejected_keys, job.sent_rows):
                if table is not None:
                    with conn.begin():
                        table.drop(conn, checkfirst=True)
            if job.shadow is not None:
                with conn.begin():
                    job.shadow.drop(conn, checkfirst=True)

    def _finish(self, conn: sa.Connection, job: _Job, elapsed: float) -> None:
        r = job.result
        r.reason = job.plan.reason
        r.rows_in_mart = job.plan.mart_rows
        if job.strategy in ("diff", "bulk", "unchanged") and not job.spec.scope and not job.spec.soft_delete_column:
            # From the rows the server reported, in the run's own transactions: a second COUNT(*)
            # over a large InnoDB table costs as much as a small incremental sync.
            r.rows_in_destination = job.rows_before + r.inserted - r.deleted
        else:
            target = sa.Table(job.spec.table, sa.MetaData(), autoload_with=conn)
            r.rows_in_destination = self._count(conn, sa.select(sa.func.count()).select_from(target))
        r.unchanged = max(r.rows_in_mart - r.inserted - r.updated - r.rejected, 0)
        r.seconds = elapsed
        self.log(
            f"{r.table}: {r.inserted:,} inserted, {r.updated:,} updated, {r.deleted:,} deleted, {r.unchanged:,} "
            f"unchanged ({r.strategy}, {r.reason}); {r.rows_in_destination:,} rows now"
        )

    def _reflect_parents(self, conn: sa.Connection, metadata: sa.MetaData, jobs: Sequence[_Job]) -> None:
        """Put referenced tables that this run does not write into `metadata`, so FK DDL resolves."""
        written = {j.spec.table for j in jobs}
        inspector = sa.inspect(conn)
        for job in jobs:
            for fk in job.spec.parsed_foreign_keys:
                if fk.references_table in written or fk.references_table in metadata.tables:
                    continue
                if not inspector.has_table(fk.references_table):
                    raise SyncError(
                        f"{job.spec.table}.{fk.column} references {fk.references_table}, which does not exist yet; "
                        f"sync {fk.references_table} first"
                    )
                sa.Table(fk.references_table, metadata, autoload_with=conn)
