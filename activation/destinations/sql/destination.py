"""A SQL database as a destination: apply sync plans to it, parents before children.

The phases of a run, and how a dry run runs the same ones, are in phases.py. Around them: one
writer per table (advisory locks, where the database has them), and retries of the whole run
after transient errors. Everything particular to one database is its dialect's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence

import sqlalchemy as sa

from activation.destinations.base import Capabilities, Destination, Log
from activation.destinations.sql.dialect import SqlDialect, sql_dialect
from activation.destinations.sql.phases import run_phases
from activation.destinations.sql.run import Run
from activation.syncs.model import MartRelation, PlanError
from activation.syncs.plan import SyncPlan
from activation.syncs.results import SwapNotPossible, SyncError, SyncPreview, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

# Transient destination errors retry the whole run: RETRY_ATTEMPTS tries, pauses doubling from the first.
RETRY_ATTEMPTS = 4
RETRY_FIRST_PAUSE_SECONDS = 2.0
# A second run of the same sync waits this long for the first to finish ($ACTIVATION_LOCK_WAIT_SECONDS).
LOCK_WAIT_ENV = "ACTIVATION_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 60.0


def lock_wait_seconds() -> float:
    return float(os.environ.get(LOCK_WAIT_ENV) or DEFAULT_LOCK_WAIT_SECONDS)


def lock_name(database: str | None, table: str) -> str:
    """The advisory lock of one destination table. MySQL's GET_LOCK names are server-wide, so the
    name carries the database: two apps' `facilities` tables on one server are not one table."""
    return f"activation:{database or ''}.{table}"


class SqlDestination(Destination):
    """One SQL database (MySQL/MariaDB, PostgreSQL, SQLite) reached through a SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, *, load_streams: int | None = None):
        super().__init__()
        self.engine = engine
        self.load_streams = load_streams  # parallel_load.py: None chooses from the server and cores
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
        plans: Mapping[str, SyncPlan] | None = None,
    ) -> list[SyncResult]:
        """Sync `specs` into this destination, parents first, from `plans` (sync -> the plan the
        blocking checks judged; described here where missing). Transient errors (a lost connection,
        a restarted server, a deadlock, a lock wait timeout) roll back and retry the whole run with
        backoff: the state advances only after the destination committed, so a retry plans again
        from the same point and nothing is skipped or applied twice."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            self.within_guards = {}
            run = Run(self.engine, self.dialect, warehouse, log, self.within_guards, load_streams=self.load_streams)
            try:
                with self._exclusive(specs):
                    jobs = run_phases(run, specs, relations, plans or {}, full_resync=full_resync)
                    return [job.result for job in jobs]
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
        """What `sync` would do, writing nothing: the blocking checks judge each plan, then the run's
        own phases run as a dry run (phases.py), in a transaction that is rolled back."""
        from activation.destinations.sql.prechecks import PreWriteChecks

        plans = {}
        for spec in specs:
            try:
                mart = warehouse.describe(spec, relations[spec.name])
            except PlanError as exc:
                raise SyncError(str(exc)) from exc
            _, plans[spec.name] = PreWriteChecks(warehouse, self.engine).judge(SyncPlan.of(mart))
        run = Run(self.engine, self.dialect, warehouse, log, dry_run=True)
        jobs = run_phases(run, specs, relations, plans, full_resync=full_resync, sample=sample)
        return [job.plan.preview() for job in jobs]

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
        deployment) waits for the first, up to lock_wait_seconds(), then fails without writing."""
        if not self.capabilities.advisory_locks:
            yield  # the database serializes writers itself (SQLite: on the file)
            return
        names = sorted({lock_name(self.engine.url.database, s.table) for s in specs})
        wait = lock_wait_seconds()
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            held: list[str] = []
            try:
                for name in names:
                    if not self.dialect.lock(conn, name, wait):
                        raise SyncError(
                            f"another sync is writing {name.split('.', 1)[1]} in this destination (it held the "
                            f"lock for more than {wait:g}s); nothing was written, run again later"
                        )
                    held.append(name)
                yield
            finally:
                for name in reversed(held):
                    self.dialect.unlock(conn, name)
