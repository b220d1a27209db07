"""One run of the SQL destination: each table's work (`Job`) and what every phase works with (`Run`:
the engine, its dialect, the warehouse that plans, the log, whether it is a dry run), with the
helpers the phases share: temporary tables, loads with progress, counts, the key and change
conditions, and the refusals a dry run collects where the run raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql.bulk import bulk_insert
from activation.destinations.sql.dialect import SqlDialect
from activation.syncs.model import Plan
from activation.syncs.plan import Strategy, SyncPlan
from activation.syncs.results import SyncError, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

Log = Callable[[str], None]


def short_name(name: str, suffix: str) -> str:
    """Helper table names stay within MySQL's 64 characters."""
    base = name if len(name) + len(suffix) <= 64 else name[: 64 - len(suffix) - 9] + f"_{abs(hash(name)) % 10**8:08d}"
    return base + suffix


@dataclass
class Job:
    """One table's work in a run: its plan (a value, replaced as the phases complete it, never
    changed in place), what the run measured, and the destination tables the phases work with."""

    plan: SyncPlan
    result: SyncResult
    target: sa.Table | None = None
    staging: sa.Table | None = None
    deleted_keys: sa.Table | None = None
    rejected_keys: sa.Table | None = None  # rows set aside, whose older version must not be deleted
    sent_rows: sa.Table | None = None  # the rows to write, staged again to explain a foreign-key violation
    shadow: sa.Table | None = None
    virtual: bool = False  # `target` is the table a dry run would create, never created
    hidden: bool = False  # `target` is a table this run created under a hidden name, not yet renamed into place
    loaded: bool = False  # its rows were loaded on several connections before the write transaction
    key_rules: dict | None = None  # how the destination compares the text key columns (collisions.py)
    sends_trailing_space: bool | None = None  # a key to send ends with a space (collisions.py)
    may_merge: bool | None = None  # a trigger or another unique key could merge keys (written_keys.py)
    twins: int | None = None  # rows the merge met under a key of other bytes (MySQL's merge counts them)
    write_mark: str | None = None  # the server's mark of the table as this run left it (shadow_counts.py)

    @property
    def spec(self) -> SyncSpec:
        return self.plan.spec

    @property
    def mart(self) -> Plan:
        return self.plan.mart

    @property
    def strategy(self) -> Strategy:
        return self.plan.strategy

    def update(self, **changes) -> None:
        """Move on to the plan with these fields replaced."""
        self.plan = replace(self.plan, **changes)

    def warn(self, run: Run, warning: str) -> None:
        self.plan = self.plan.warned(warning)
        run.log(f"{self.spec.table}: {warning}")


def scope_clause(job: Job, table: sa.Table) -> sa.ColumnElement[bool]:
    """The rows of `table` this sync owns."""
    return sa.and_(sa.true(), *[table.c[c] == v for c, v in job.spec.scope.items()])


def on_key(job: Job, a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(*[a.c[k] == b.c[k] for k in job.spec.primary_key])


def count(conn: sa.Connection, stmt: sa.Select) -> int:
    return conn.execute(stmt).scalar_one()


def cleanup(conn: sa.Connection, jobs: Sequence[Job]) -> None:
    """Roll back what is open, then drop the run's helper tables, and the shadow and new tables not
    swapped in (children first: a child's foreign key holds its parent)."""
    if conn.in_transaction():
        conn.rollback()
    for job in jobs:
        for table in (job.staging, job.deleted_keys, job.rejected_keys, job.sent_rows):
            if table is not None:
                with conn.begin():
                    table.drop(conn, checkfirst=True)
    for job in reversed(jobs):
        for table in (job.shadow, job.target if job.hidden else None):
            if table is not None:
                with conn.begin():
                    table.drop(conn, checkfirst=True)


class Run:
    """What the phases of one run share."""

    def __init__(
        self,
        engine: sa.Engine,
        dialect: SqlDialect,
        warehouse: Warehouse,
        log: Log,
        within_guards: dict[str, dict[str, int]] | None = None,
        *,
        dry_run: bool = False,
        load_streams: int | None = None,
    ):
        self.engine = engine
        self.dialect = dialect
        self.warehouse = warehouse
        self.log = log
        # A dry run writes nothing to the app's tables (its transaction is rolled back) and collects
        # every refusal in the plans instead of raising at the first.
        self.dry_run = dry_run
        # table -> planned counts of each table whose plan passed the guards
        self.within_guards = within_guards if within_guards is not None else {}
        # connections a large load uses at once (parallel_load.py); None: chosen from the server and cores
        self.load_streams = load_streams
        # table -> the hidden name it is created under in this run, until it is renamed into place
        self.hidden: dict[str, str] = {}

    def temp_table(
        self, conn: sa.Connection, job: Job, suffix: str, columns: Sequence[str], *, keyed: bool = True
    ) -> sa.Table:
        """A temporary table with `columns` typed as the target's, keyed by the sync key unless not `keyed`."""
        table = sa.Table(
            short_name(f"_activation_{job.spec.table}", suffix),
            sa.MetaData(),
            *[
                sa.Column(c, job.target.c[c].type, primary_key=keyed and c in job.spec.primary_key, autoincrement=False)
                for c in columns
            ],
            prefixes=["TEMPORARY"],
            **self.dialect.table_options(),
        )
        table.drop(conn, checkfirst=True)
        table.create(conn)
        return table

    def progress(self, job: Job, what: str, total: int) -> Callable[[int], None]:
        def report(done: int) -> None:
            self.log(f"{job.spec.table}: {what} {done:,} / {total:,} rows")

        return report

    def load(
        self, conn: sa.Connection, job: Job, table: sa.Table, batches: Iterable[pa.RecordBatch], total: int
    ) -> int:
        try:
            return bulk_insert(conn, table, batches, progress=self.progress(job, f"loaded into {table.name}", total))
        finally:
            # A load cut short leaves the warehouse result half read; a retry needs the connection back.
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    @contextlib.contextmanager
    def refusals(self, job: Job) -> Iterator[None]:
        """A refusal (SyncError) raised inside: the run stops with it; a dry run records it in the
        job's plan and goes on."""
        try:
            yield
        except SyncError as exc:
            if not self.dry_run:
                raise
            job.plan = job.plan.refused(exc.problems, str(exc))

    def differs(self, job: Job, a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
        """The row of `a` differs from its row in `b` (compared as the dialect tells every change)."""
        exact = self.dialect.exact
        values = [c for c in job.mart.columns if c not in job.spec.primary_key]
        cond = [exact(a.c[c]).is_distinct_from(exact(b.c[c])) for c in values]
        soft = job.spec.soft_delete_column
        if soft:
            cond.append(a.c[soft].is_not(None))
        return sa.or_(sa.false(), *cond)
