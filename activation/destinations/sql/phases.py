"""The one sequence of phases of a SQL destination's run, for the real run and the dry run alike.

For the selected tables of one destination, parents first:
1. describe: each sync's plan (the one the blocking checks judged, when they ran), its keys
   checked where the checks did not, its rows within its scope;
2. DDL (MySQL commits implicitly on it, so it runs before any data transaction): create missing
   tables with their keys, reconcile drift (prepare.py); choose each table's strategy;
3. the diff (the warehouse), the rows the destination holds, the values it cannot store and the
   keys it would hold as one (values.py, collisions.py): the plan is complete;
4. one transaction, table by table: stage what the plan sends, count what would change, judge
   the guards (a tripped guard rolls the whole transaction back), insert and update (apply.py);
   without shadow tables the deletes (children first) join it;
5. the tables no reader saw (shadows, and tables created under a hidden name) take their names,
   all in one atomic step; then the deletes, once no swapped-out table references a parent.
Large loads into those tables run on several connections before step 4 (parallel_load.py).
A dry run (`Run.dry_run`) runs the same phases inside one transaction that is always rolled back,
and differs only where it must: no DDL (a missing table is planned in memory, a shadow's rows are
staged in a temporary table), every refusal recorded in the plan instead of raised, the counts
measured against the destination and sample keys taken (preview.py), and it stops before the
first write to the application's tables.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import sqlalchemy as sa

from activation.destinations.sql import (
    apply,
    collisions,
    described,
    parallel_load,
    prepare,
    preview,
    shadow_counts,
    values,
    written_keys,
)
from activation.destinations.sql.foreign_keys import all_foreign_keys
from activation.destinations.sql.run import Job, Run, cleanup, count
from activation.syncs.model import MartRelation, PlanError
from activation.syncs.plan import Strategy, SyncPlan, Verdict
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses import destination_schemas


def run_phases(
    run: Run,
    specs: Sequence[SyncSpec],
    relations: Mapping[str, MartRelation],
    plans: Mapping[str, SyncPlan],
    *,
    full_resync: bool,
    sample: int = 5,
) -> list[Job]:
    """Plan and write (or, in a dry run, plan, stage, count and sample) every sync; parents first."""
    started = time.monotonic()
    jobs = [describe(run, spec, relations[spec.name], plans.get(spec.name)) for spec in specs]
    with run.engine.connect() as conn:
        conn.execution_options(preserve_rowcount=True)  # counts are measured on every dialect
        with conn.begin():
            fks = all_foreign_keys(conn)
        jobs = prepare.order(jobs, fks)
        undone = conn.begin() if run.dry_run else None  # everything a dry run does is rolled back
        try:
            fks = plan_tables(run, conn, jobs, fks, full_resync=full_resync)
            try:
                write(run, conn, jobs, fks, sample)
            except sa.exc.DBAPIError as exc:
                raise SyncError(f"destination write failed and was rolled back: {exc.orig!r}") from exc
        finally:
            if undone is not None and undone.is_active:
                undone.rollback()
            cleanup(conn, jobs)
        if not run.dry_run:
            for job in jobs:
                run.warehouse.commit(job.mart)
                keep_description(run, conn, job)
                finish(run, conn, job, time.monotonic() - started)
    return jobs


def describe(run: Run, spec: SyncSpec, relation: MartRelation, plan: SyncPlan | None) -> Job:
    """A table's job with its plan. The keys are checked here, before any DDL, when the plan will
    compare everything anyway (an incremental plan checks them at the cost of the change), unless
    the blocking checks judged them already."""
    wh = run.warehouse
    if plan is None:
        try:
            plan = SyncPlan.of(wh.describe(spec, relation))
        except PlanError as exc:
            raise SyncError(str(exc)) from exc
    job = Job(plan=plan, result=SyncResult(sync=spec.name, table=spec.table, mode=spec.mode.value))
    with run.refusals(job):
        if plan.keys is None and not wh.diffable(plan.mart):
            problem = wh.null_and_duplicate_keys(plan.mart)
            if problem:
                raise SyncError(problem)
            job.update(keys=Verdict(clean=True))
        elif plan.keys is not None and not plan.keys.clean and not plan.blocked:
            raise SyncError(plan.keys.summary)
    outside = wh.scope_violations(plan.mart, spec.scope, plan.mart.columns) if spec.scope else 0
    if outside:  # the writer refuses a mart row it would not own
        fix = "filter the mart to the sync's scope, or widen the scope"
        reason = f"fall outside the sync's scope ({', '.join(f'{c}={v}' for c, v in spec.scope.items())})"
        problem = Problem(spec.table, reason, ", ".join(spec.scope), outside, (), (), fix, spec.destination)
        with run.refusals(job):
            raise SyncError(
                f"{spec.table}: {outside} mart row(s) fall outside the sync's scope {spec.scope}", [problem]
            )
    return job


def plan_tables(run: Run, conn: sa.Connection, jobs: Sequence[Job], fks: dict, *, full_resync: bool) -> dict:
    """Complete each table's plan: DDL and drift, strategy, the diff, the destination's rows, the
    values and keys it cannot take. Returns the destination's foreign keys (`fks`, read again
    when the DDL created or dropped a table)."""
    wh, metadata = run.warehouse, sa.MetaData()
    dropped = False
    with _transaction(run, conn):  # DDL: MySQL commits implicitly on it anyway
        if not run.dry_run:
            prepare.reflect_parents(conn, metadata, jobs)
            for job in reversed(jobs):  # children first: their foreign keys hold the parents
                dropped = prepare.remove_leftovers(run, conn, job) or dropped
        for job in jobs:
            with run.refusals(job):
                prepare.prepare(run, conn, metadata, job)
    if dropped or any(job.plan.creates_table and not job.virtual for job in jobs):
        # Again: tables created just now have keys too, and a dropped leftover's are gone. (Reading
        # every table's foreign keys costs a statement per table on MySQL: not on every run.)
        with _transaction(run, conn):
            fks = all_foreign_keys(conn)
    ready = [job for job in jobs if job.target is not None]  # a dry run goes on past a table that does not fit
    for job in ready:
        prepare.choose_strategy(run, job, fks)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The destination counts its rows while the warehouse finds the changes: both scan.
        counting = pool.submit(prepare.count_rows_before, run, ready)
        for job in ready:
            with run.refusals(job):
                values.check_lengths(run, job)
            created = job.plan.creates_table
            mart = wh.plan(job.mart, full_resync=full_resync or created)
            job.update(
                mart=replace(mart, reason="first sync into a new table") if created and not full_resync else mart
            )
            if job.plan.keys is None:  # not judged yet: at the cost of the change
                with run.refusals(job):
                    problem = wh.key_problems(job.mart)
                    if problem:
                        raise SyncError(problem)
                    job.update(keys=Verdict(clean=True))
        rows_before = counting.result()
    with _transaction(run, conn):
        for job, rows in zip(ready, rows_before, strict=True):
            job.plan = prepare.distrust_state(run, replace(job.plan, rows_before=rows))
            with run.refusals(job):
                values.check_values(run, conn, job)
            prepare.settle_strategy(conn, job)
            with run.refusals(job):
                collisions.check_sent(run, conn, job)
    return fks


def write(run: Run, conn: sa.Connection, jobs: Sequence[Job], fks: dict, sample: int) -> None:
    """Stage, judge the guards and write, parents' rows first and children's deletes first. A dry
    run stages, counts and samples each table the same way, then stops before the writes."""
    if not run.dry_run:
        for job in jobs:
            if job.strategy is Strategy.SHADOW:
                with conn.begin():
                    prepare.create_shadow(run, conn, job)
        parallel_load.load_before_writing(run, conn, jobs, fks)
    shadows = [j for j in jobs if j.shadow is not None]  # replacing a table: the deletes wait for the swap
    with _transaction(run, conn):
        # Parents first: a child's shadow table checks its foreign keys as it loads.
        # A guard tripping on any table rolls back this whole transaction.
        for job in jobs:
            if job.plan.blocked:  # only a dry run goes on with a refused plan: it stages nothing for it
                continue
            with _writes(run, conn, job, fks):
                apply.stage(run, conn, job)
                if run.dry_run:
                    preview.measure(run, conn, job, sample)
                apply.judge_guards(run, job)
                if not run.dry_run:
                    apply.upsert(run, conn, job)
            if not run.dry_run:
                written_keys.check_written(run, conn, job)
                collisions.check_parents(run, conn, job, apply.written(job))
        if run.dry_run:
            return
        if not shadows:
            for job in reversed(jobs):  # children first
                with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=True):
                    apply.delete(run, conn, job)
    apply.swap_all(run, conn, [j for j in jobs if j.shadow is not None or j.hidden])
    if shadows:
        with conn.begin():
            for job in reversed(jobs):
                with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=True, swapped=True):
                    apply.delete(run, conn, job)
    for job in jobs:
        shadow_counts.remember(run, conn, job)


def _transaction(run: Run, conn: sa.Connection) -> contextlib.AbstractContextManager:
    """A transaction of its own; in a dry run, part of the one that is rolled back."""
    return contextlib.nullcontext() if run.dry_run else conn.begin()


@contextlib.contextmanager
def _writes(run: Run, conn: sa.Connection, job: Job, fks: dict) -> Iterator[None]:
    """The run names a foreign-key violation in its writes; a dry run records anything the
    destination refused while staging (a value no check foresaw) in the plan, and goes on."""
    if not run.dry_run:
        with apply.naming_foreign_key_violations(run, conn, job, fks, deleting=False):
            yield
        return
    savepoint = conn.begin_nested() if run.dialect.errors_abort_transaction else None
    try:
        yield
    except (SyncError, sa.exc.DBAPIError, ValueError) as exc:
        if savepoint is not None:
            savepoint.rollback()
        reason = getattr(exc, "orig", None) or exc
        job.plan = job.plan.refused(
            getattr(exc, "problems", []), f"the destination refused the rows while staging them: {reason}"
        )
    else:
        if savepoint is not None:
            savepoint.commit()


def keep_description(run: Run, conn: sa.Connection, job: Job) -> None:
    """The table as this run wrote it, kept beside the state for reviews without credentials."""
    charsets = run.dialect.character_sets(conn, job.spec.table)
    description = described.describe(job.target, conn.dialect.name, charsets, conn.dialect)
    destination_schemas.record(run.warehouse, job.spec, description | {shadow_counts.KEY: job.write_mark})


def finish(run: Run, conn: sa.Connection, job: Job, elapsed: float) -> SyncResult:
    """The result of a written table: what the plan said and the database counted."""
    r, plan = job.result, job.plan
    r.strategy, r.reason, r.rows_in_mart = plan.strategy.value, plan.reason, plan.mart.mart_rows
    r.created_table, r.rejected, r.warnings = plan.creates_table, plan.rejected, list(plan.warnings)
    if job.strategy in (Strategy.DIFF, Strategy.BULK, Strategy.UNCHANGED) and not (
        job.spec.scope or job.spec.soft_delete_column
    ):
        # From the rows the server reported, in the run's own transactions: a second COUNT(*)
        # over a large InnoDB table costs as much as a small incremental sync.
        r.rows_in_destination = plan.rows_before + r.inserted - r.deleted
    else:
        target = sa.Table(job.spec.table, sa.MetaData(), autoload_with=conn)
        r.rows_in_destination = count(conn, sa.select(sa.func.count()).select_from(target))
    r.unchanged = max(r.rows_in_mart - r.inserted - r.updated - r.rejected, 0)
    r.seconds = elapsed
    run.log(
        f"{r.table}: {r.inserted:,} inserted, {r.updated:,} updated, {r.deleted:,} deleted, {r.unchanged:,} "
        f"unchanged ({r.strategy}, {r.reason}); {r.rows_in_destination:,} rows now"
    )
    return r
