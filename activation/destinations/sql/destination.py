"""A SQL database as a destination: apply sync plans to it, parents before children.

Order of work for the selected tables of one destination:
1. DDL (MySQL commits implicitly on it, so it runs before any data transaction): create
   missing tables with their keys, and the shadow tables of `replace` syncs (prepare.py).
2. One transaction, table by table, parents first: stage what the plan sends (only changed
   rows for an incremental plan) into a temporary table, or load the shadow table; count what
   would change; check the guards (a tripped guard rolls the whole transaction back, so
   nothing is written); insert and update (apply.py). Without shadow tables the deletes
   (children-first) join this transaction.
3. Shadow swaps, each atomic (RENAME TABLE on MySQL, transactional DDL elsewhere): readers
   see the old table or the new one, never an empty or partial one.
4. A transaction with the deletes, children-first, once no swapped-out table references a parent.
Around it: one writer per table (advisory locks, where the database has them), and retries of
the whole run after transient errors. Everything particular to one database is its dialect's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence

import sqlalchemy as sa

from activation.destinations.base import Capabilities, Destination, Log
from activation.destinations.sql import apply, collisions, prepare, values
from activation.destinations.sql.dialect import SqlDialect, sql_dialect
from activation.destinations.sql.foreign_keys import all_foreign_keys
from activation.destinations.sql.run import Job, Run, cleanup, count
from activation.syncs.guards import check_guards
from activation.syncs.model import MartRelation, PlanError
from activation.syncs.results import SwapNotPossible, SyncError, SyncPreview, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

# Transient destination errors retry the whole run: RETRY_ATTEMPTS tries, pauses doubling from the first.
RETRY_ATTEMPTS = 4
RETRY_FIRST_PAUSE_SECONDS = 2.0
# A second run of the same sync waits this long for the first to finish.
LOCK_WAIT_SECONDS = 60


class SqlDestination(Destination):
    """One SQL database (MySQL/MariaDB, PostgreSQL, SQLite) reached through a SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine):
        super().__init__()
        self.engine = engine
        self.dialect: SqlDialect = sql_dialect(engine)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.dialect.kind

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.dialect.capabilities

    def sync(
        self,
        warehouse: Warehouse,
        specs: Sequence[SyncSpec],
        relations: Mapping[str, MartRelation],
        *,
        full_resync: bool = False,
        log: Log = print,
    ) -> list[SyncResult]:
        """Sync `specs` into this destination, parents first. Transient errors (a lost connection, a
        restarted server, a deadlock, a lock wait timeout) roll back and retry the whole run with
        backoff: the state advances only after the destination committed, so a retry plans again
        from the same point and nothing is skipped or applied twice."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            self.within_guards = {}
            run = Run(self.engine, self.dialect, warehouse, log, self.within_guards)
            try:
                with self._exclusive(specs):
                    return self._run_once(run, specs, relations, full_resync=full_resync)
            except Exception as exc:
                cause = self.transient_cause(exc)
                if cause is None or attempt == RETRY_ATTEMPTS:
                    raise
                pause = RETRY_FIRST_PAUSE_SECONDS * 2 ** (attempt - 1)
                log(
                    f"transient destination error, rolled back; retrying in {pause:.0f}s "
                    f"({attempt}/{RETRY_ATTEMPTS - 1}): {cause}"
                )
                self.engine.dispose()  # pooled connections may be dead
                time.sleep(pause)
        raise AssertionError("unreachable")

    def preview(
        self,
        warehouse: Warehouse,
        specs: Sequence[SyncSpec],
        relations: Mapping[str, MartRelation],
        *,
        full_resync: bool = False,
        sample: int = 5,
        log: Log = lambda _msg: None,
    ) -> list[SyncPreview]:
        """What `sync` would do, writing nothing (preview.py)."""
        from activation.destinations.sql.preview import DryRun

        run = Run(self.engine, self.dialect, warehouse, log)
        return DryRun(run, sample).preview(specs, relations, full_resync=full_resync)

    def transient_cause(self, exc: BaseException) -> str | None:
        """Why `exc` (or what caused it) is worth a retry, or None."""
        seen = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            if isinstance(exc, SwapNotPossible):  # the swap ran its own retries already
                return None
            if isinstance(exc, sa.exc.DBAPIError) and self.dialect.is_transient(exc):
                return f"{type(exc.orig).__name__}: {exc.orig}"
            exc = exc.__cause__ or exc.__context__
        return None

    @contextlib.contextmanager
    def _exclusive(self, specs: Sequence[SyncSpec]) -> Iterator[None]:
        """One writer per destination table: a second run of the same sync (another process, another
        deployment) waits for the first, up to LOCK_WAIT_SECONDS, then fails without writing."""
        if not self.capabilities.advisory_locks:
            yield  # the database serializes writers itself (SQLite: on the file)
            return
        names = sorted({f"activation:{s.table}" for s in specs})
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            held: list[str] = []
            try:
                for name in names:
                    if not self.dialect.lock(conn, name, LOCK_WAIT_SECONDS):
                        raise SyncError(
                            f"another sync is writing {name.split(':', 1)[1]} in this destination (it held the "
                            f"lock for more than {LOCK_WAIT_SECONDS}s); nothing was written, run again later"
                        )
                    held.append(name)
                yield
            finally:
                for name in reversed(held):
                    self.dialect.unlock(conn, name)

    def _run_once(
        self, run: Run, specs: Sequence[SyncSpec], relations: Mapping[str, MartRelation], *, full_resync: bool
    ) -> list[SyncResult]:
        started = time.monotonic()
        wh = run.warehouse
        jobs = [_job(wh, spec, relations) for spec in specs]
        metadata = sa.MetaData()
        with self.engine.connect() as conn:
            conn.execution_options(preserve_rowcount=True)  # counts are measured on every dialect
            with conn.begin():
                fks = all_foreign_keys(conn)
            jobs = prepare.order(jobs, fks)
            with conn.begin():  # DDL: MySQL commits implicitly on it anyway
                prepare.reflect_parents(conn, metadata, jobs)
                for job in jobs:
                    prepare.prepare(run, conn, metadata, job)
                    prepare.remove_leftovers(run, conn, job)
            with conn.begin():
                fks = all_foreign_keys(conn)  # again: tables created just now have keys too
            for job in jobs:
                prepare.choose_strategy(run, job, fks)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                # The destination counts its rows while the warehouse finds the changes: both scan.
                counting = pool.submit(prepare.count_rows_before, run, jobs)
                for job in jobs:
                    values.check_lengths(run, job)
                    wh.plan(job.plan, full_resync=full_resync or job.result.created_table)
                    if job.result.created_table and not full_resync:
                        job.plan.reason = "first sync into a new table"
                    problem = None if job.keys_checked else wh.key_problems(job.plan)
                    if problem:
                        raise SyncError(problem)
                counting.result()
            with conn.begin():
                for job in jobs:
                    prepare.distrust_state(run, job)
                    values.check_values(run, conn, job)
                    prepare.load_directly_if_empty(conn, job)
                    collisions.check_sent(run, conn, job)
            for job in jobs:
                if prepare.needs_shadow(job):
                    with conn.begin():
                        prepare.create_shadow(run, conn, job)
            shadows = [j for j in jobs if j.shadow is not None]
            try:
                self._write(run, conn, jobs, shadows, fks)
            except sa.exc.DBAPIError as exc:
                raise SyncError(f"destination write failed and was rolled back: {exc.orig!r}") from exc
            finally:
                cleanup(conn, jobs)
            for job in jobs:
                wh.commit(job.plan)
                _finish(run, conn, job, time.monotonic() - started)
        return [job.result for job in jobs]

    def _write(self, run: Run, conn: sa.Connection, jobs: list[Job], shadows: list[Job], fks: dict) -> None:
        with conn.begin():
            # Parents first: a child's shadow table checks its foreign keys as it loads.
            # A guard tripping on any table rolls back this whole transaction.
            for job in jobs:
                with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=False):
                    apply.stage(run, conn, job)
                    job.result.strategy = job.strategy
                    check_guards(job.spec, job.planned, rows_before=job.rows_before, mart_rows=job.plan.mart_rows)
                    run.within_guards[job.spec.table] = dict(job.planned)
                    apply.upsert(run, conn, job)
                collisions.check_written(run, conn, job)
                collisions.check_parents(run, conn, job, apply.written(job))
            if not shadows:
                for job in reversed(jobs):  # children first
                    with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=True):
                        apply.delete(run, conn, job)
        for job in shadows:
            apply.swap(run, conn, job)
        if shadows:
            with conn.begin():
                for job in reversed(jobs):
                    with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=True, swapped=True):
                        apply.delete(run, conn, job)


def _job(wh: Warehouse, spec: SyncSpec, relations: Mapping[str, MartRelation]) -> Job:
    """A table's job, its plan described; the keys are checked before any DDL when the plan will
    compare everything anyway (an incremental plan checks them at the cost of the change)."""
    try:
        plan = wh.describe(spec, relations[spec.name])
    except PlanError as exc:
        raise SyncError(str(exc)) from exc
    keys_checked = not wh.diffable(plan)
    if keys_checked:
        problem = wh.null_and_duplicate_keys(plan)
        if problem:
            raise SyncError(problem)
    if spec.scope:
        bad = wh.scope_violations(plan, spec.scope, plan.columns)
        if bad:
            raise SyncError(f"{spec.table}: {bad} mart row(s) fall outside the sync's scope {spec.scope}")
    result = SyncResult(sync=spec.name, table=spec.table, mode=spec.mode.value)
    return Job(plan=plan, result=result, keys_checked=keys_checked)


def _finish(run: Run, conn: sa.Connection, job: Job, elapsed: float) -> None:
    r = job.result
    r.reason = job.plan.reason
    r.rows_in_mart = job.plan.mart_rows
    if job.strategy in ("diff", "bulk", "unchanged") and not job.spec.scope and not job.spec.soft_delete_column:
        # From the rows the server reported, in the run's own transactions: a second COUNT(*)
        # over a large InnoDB table costs as much as a small incremental sync.
        r.rows_in_destination = job.rows_before + r.inserted - r.deleted
    else:
        target = sa.Table(job.spec.table, sa.MetaData(), autoload_with=conn)
        r.rows_in_destination = count(conn, sa.select(sa.func.count()).select_from(target))
    r.unchanged = max(r.rows_in_mart - r.inserted - r.updated - r.rejected, 0)
    r.seconds = elapsed
    run.log(
        f"{r.table}: {r.inserted:,} inserted, {r.updated:,} updated, {r.deleted:,} deleted, {r.unchanged:,} "
        f"unchanged ({r.strategy}, {r.reason}); {r.rows_in_destination:,} rows now"
    )
