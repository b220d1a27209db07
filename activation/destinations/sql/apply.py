"""The writes: stage what a plan sends, count what would change, then insert, update, delete and
swap. The caller (destination.py) orders them: parents' writes first and children's deletes
first, all in one transaction where no shadow table is swapped in.

Every count is a row count the database reported, or a COUNT over the tables themselves; replace's
swap may take the warehouse's diff instead, only where the destination provably holds what the
state says (shadow_counts.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import sqlalchemy as sa

from activation.destinations.sql import collisions, foreign_keys, shadow_counts
from activation.destinations.sql.dialect import quoted
from activation.destinations.sql.prepare import OLD
from activation.destinations.sql.run import Job, Run, count, on_key, scope_clause, short_name
from activation.syncs.guards import check_guards
from activation.syncs.options import Mode
from activation.syncs.plan import Counts, Strategy
from activation.syncs.results import SwapNotPossible, SyncError
from activation.syncs.spec import SyncSpec

# A swap waits this long for readers' locks, then steps back and retries (with growing pauses).
SWAP_LOCK_WAIT_SECONDS = 1
SWAP_ATTEMPTS = 8


def stage(run: Run, conn: sa.Connection, job: Job) -> None:
    """Load what the plan sends (a staging table, or the shadow table; a dry run stages a shadow's
    rows in a temporary table instead) and count what would change (`planned`), for the guards."""
    plan, mart, t, wh = job.plan, job.mart, job.target, run.warehouse
    if job.strategy is Strategy.BULK:
        job.update(planned=Counts(insert=mart.mart_rows))
        return
    if job.strategy is Strategy.UNCHANGED or job.virtual:  # nothing changed; or a table not created (update)
        job.update(planned=Counts())
        return
    owned = scope_clause(job, t)
    if job.strategy is Strategy.SHADOW and not run.dry_run:
        if not job.loaded:  # else loaded on several connections already (parallel_load.py)
            rows = wh.rows(mart, job.spec.batch_size, everything=True)
            job.result.rows_sent = run.load(conn, job, job.shadow, rows, mart.mart_rows)
        counts = shadow_counts.from_the_diff(run, conn, job)
        job.update(planned=counts if counts is not None else compare(run, conn, job, job.shadow, t, owned))
        return
    job.staging = run.temp_table(conn, job, "__stage", mart.columns)
    rows = wh.rows(mart, job.spec.batch_size, everything=plan.sends_everything())
    job.result.rows_sent = run.load(conn, job, job.staging, rows, plan.sending())
    aside = 0
    with run.refusals(job):
        aside = collisions.check_existing(run, conn, job)
    job.result.rows_sent -= aside
    if plan.sends_everything():
        # Every row staged (a full plan, truncate, a dry run's shadow): compared with the table.
        # Truncate's guards judge the net effect; its result reports the physical delete + insert.
        planned = compare(run, conn, job, job.staging, t, owned)
    else:
        # The warehouse already counted the changes; the guards judge that plan.
        # (Rows set aside as colliding with the table are new keys: a synced key is held in its own bytes.)
        planned = Counts(mart.new_keys - aside, mart.changed_keys, mart.deleted_keys)
        if job.spec.mode.deletes and mart.deleted_keys:
            stage_deleted_keys(run, conn, job)
    job.update(planned=restrict_to_mode(job.spec, planned))


def stage_deleted_keys(run: Run, conn: sa.Connection, job: Job) -> None:
    """The keys an incremental plan found gone from the mart, in a temporary table."""
    job.deleted_keys = run.temp_table(conn, job, "__gone", job.spec.primary_key)
    gone = run.warehouse.deleted(job.mart, job.spec.batch_size)
    run.load(conn, job, job.deleted_keys, gone, job.mart.deleted_keys)


def restrict_to_mode(spec: SyncSpec, counts: Counts) -> Counts:
    """What the sync's mode never does is planned as nothing."""
    return Counts(
        insert=0 if spec.mode is Mode.UPDATE else counts.insert,
        update=0 if spec.mode is Mode.INSERT else counts.update,
        delete=counts.delete if spec.mode.deletes else 0,
    )


def judge_guards(run: Run, job: Job) -> None:
    """The guards judge the planned counts: a tripped guard refuses the sync before any write."""
    plan = job.plan
    if plan.blocked:  # a dry run's plan already refused
        return
    with run.refusals(job):
        check_guards(plan.spec, plan.planned.as_dict(), rows_before=plan.rows_before, mart_rows=plan.mart.mart_rows)
        run.within_guards[plan.spec.table] = plan.planned.as_dict()


def compare(run: Run, conn: sa.Connection, job: Job, new: sa.Table, old: sa.Table, owned) -> Counts:
    """Rows of `new` to insert and update into `old`, and rows of `old` to delete: one pass of
    `new` joined with `old` (both keyed by the sync key, so a match is one row each way); the
    deletes are the owned rows of `old` that no row of `new` matched."""
    present = sa.and_(*[old.c[k].is_not(None) for k in job.spec.primary_key])
    joined = new.outerjoin(old, sa.and_(on_key(job, old, new), owned))
    one = lambda cond: sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)  # noqa: E731
    sent, matched, updates = conn.execute(
        sa.select(sa.func.count(), one(present), one(sa.and_(present, run.differs(job, old, new)))).select_from(joined)
    ).one()
    deletes = 0
    if job.spec.mode.deletes:
        rejected = kept(run, conn, job, old)
        if rejected:  # a reject's older row stays: the rows that leave are counted one by one
            gone = sa.and_(owned, ~sa.exists().where(on_key(job, old, new)), *rejected)
            deletes = count(conn, sa.select(sa.func.count()).select_from(old).where(gone))
        else:
            deletes = count(conn, sa.select(sa.func.count()).select_from(old).where(owned)) - int(matched)
    return Counts(insert=int(sent) - int(matched), update=int(updates), delete=deletes)


def kept(run: Run, conn: sa.Connection, job: Job, table: sa.Table) -> list[sa.ColumnElement[bool]]:
    """A row set aside as a reject keeps its older version in the destination: not deleted."""
    if not job.plan.rejected or job.strategy is not Strategy.DIFF:
        return []
    if job.rejected_keys is None:
        # Keys set aside as collisions are equal under the table's comparison: no unique key then.
        keyed = not collisions.loose_key(run, conn, job)
        job.rejected_keys = run.temp_table(conn, job, "__rejected", job.spec.primary_key, keyed=keyed)
        keys = run.warehouse.rejects.keys(job.mart, job.spec.batch_size)
        run.load(conn, job, job.rejected_keys, keys, job.plan.rejected)
    return [~sa.exists().where(on_key(job, table, job.rejected_keys))]


def upsert(run: Run, conn: sa.Connection, job: Job) -> None:
    """Insert and update what was staged (a shadow table is swapped in later instead)."""
    if job.strategy in (Strategy.SHADOW, Strategy.UNCHANGED):
        return
    t, s, spec = job.target, job.staging, job.spec
    if job.strategy is Strategy.BULK:
        if not job.loaded:  # else loaded on several connections already (parallel_load.py)
            rows = run.warehouse.rows(job.mart, spec.batch_size, everything=True)
            job.result.inserted = job.result.rows_sent = run.load(conn, job, t, rows, job.mart.mart_rows)
        return
    owned = scope_clause(job, t)
    if job.strategy is Strategy.TRUNCATE:
        try:
            job.result.deleted = conn.execute(sa.delete(t).where(owned)).rowcount
        except sa.exc.IntegrityError as exc:
            raise SyncError(
                f"{spec.table}: truncate_insert cannot delete rows other tables still reference; use mirror. "
                "Nothing was written."
            ) from exc
        cols = job.mart.columns
        job.result.inserted = conn.execute(sa.insert(t).from_select(cols, sa.select(*[s.c[c] for c in cols]))).rowcount
        return
    values = [c for c in job.mart.columns if c not in spec.primary_key]
    soft = spec.soft_delete_column
    if spec.mode is not Mode.INSERT and (values or soft):
        dialect = run.dialect
        if dialect.can_merge(conn, t, spec.primary_key):
            if spec.mode is not Mode.UPDATE and not spec.scope:
                job.result.inserted, job.result.updated = dialect.merge(run, conn, job)
                return
            updated = dialect.merge_update(run, conn, job)
        else:
            updated = None
        job.result.updated = update_changed(run, conn, job) if updated is None else updated
    if spec.mode is not Mode.UPDATE:
        job.result.inserted = conn.execute(_insert_new_keys(job)).rowcount


def update_changed(run: Run, conn: sa.Connection, job: Job) -> int:
    """Update the owned rows that differ from their staged ones, in one UPDATE join; the count."""
    t, s, spec = job.target, job.staging, job.spec
    assignments = {c: s.c[c] for c in job.mart.columns if c not in spec.primary_key}
    if spec.soft_delete_column:
        assignments[spec.soft_delete_column] = None
    stmt = sa.update(t).where(on_key(job, t, s), scope_clause(job, t), run.differs(job, t, s)).values(assignments)
    return conn.execute(stmt).rowcount


def _insert_new_keys(job: Job) -> sa.Insert:
    t, s, cols = job.target, job.staging, job.mart.columns
    return sa.insert(t).from_select(
        cols,
        sa.select(*[s.c[c] for c in cols])
        .where(~sa.exists().where(on_key(job, t, s)))
        .order_by(*[s.c[k] for k in job.spec.primary_key]),
    )


def leaving(run: Run, conn: sa.Connection, job: Job, *, join: bool = True) -> sa.ColumnElement[bool] | None:
    """The destination rows this run deletes (None: none)."""
    if job.strategy is not Strategy.DIFF or not job.spec.mode.deletes:
        return None  # bulk: the table was empty; shadow and truncate delete by replacing
    t = job.target
    owned = scope_clause(job, t)
    if job.mart.full:
        return sa.and_(owned, ~sa.exists().where(on_key(job, t, job.staging)), *kept(run, conn, job, t))
    if job.deleted_keys is not None:
        gone = job.deleted_keys
        if not run.dialect.delete_joins:
            # IN, not a correlated EXISTS: SQLite then probes the table's key index per gone key
            # instead of scanning the table (0.6 s of a 1% sync at 1M rows). The comparison is the
            # table column's, as the EXISTS's was.
            keys = [t.c[k] for k in job.spec.primary_key]
            left = keys[0] if len(keys) == 1 else sa.tuple_(*keys)
            return sa.and_(owned, left.in_(sa.select(*[gone.c[k] for k in job.spec.primary_key])))
        if not join:
            return sa.and_(owned, sa.exists().where(on_key(job, t, gone)))
        return sa.and_(owned, on_key(job, t, gone))  # a join: MySQL runs EXISTS as one probe per row
    return None


def delete(run: Run, conn: sa.Connection, job: Job) -> None:
    where = leaving(run, conn, job)
    if where is None:
        return
    t, soft = job.target, job.spec.soft_delete_column
    if soft:
        stmt = sa.update(t).where(where, t.c[soft].is_(None)).values({soft: sa.func.current_timestamp()})
    else:
        stmt = sa.delete(t).where(where)
    job.result.deleted = conn.execute(stmt).rowcount


@contextlib.contextmanager
def naming_foreign_key_violations(
    run: Run, conn: sa.Connection, job: Job, fks: dict[str, list[dict]], *, deleting: bool, swapped: bool = False
) -> Iterator[None]:
    """A foreign-key violation in the enclosed writes becomes a SyncError naming the table, the
    foreign key and sample keys (foreign_keys.py). Where an error aborts the transaction, the
    writes run in a savepoint that keeps it usable for the query."""
    try:
        if run.dialect.errors_abort_transaction:
            with conn.begin_nested():
                yield
        else:
            yield
    except (sa.exc.IntegrityError, ValueError) as exc:
        if not run.dialect.is_foreign_key_violation(exc):
            raise
        spec = job.spec
        try:
            if deleting:
                rows = leaving(run, conn, job, join=False)
                problems = [] if rows is None else foreign_keys.still_referenced(conn, job.target, rows, fks)
                advice = "Sync the tables that point at it in the same run, so their rows go first"
            else:
                sent = job.sent_rows = run.temp_table(conn, job, "__fk", job.mart.columns)
                rows = run.warehouse.rows(job.mart, spec.batch_size, everything=job.strategy.sends_everything)
                run.load(conn, job, sent, rows, job.mart.mart_rows)
                problems = foreign_keys.orphans(conn, spec.table, sent, spec.primary_key, fks.get(job.target.name, []))
                advice = "Sync the parent tables in the same run (or first), or fix the mart"
        except sa.exc.DBAPIError as unexplained:  # the database's own words, then
            run.log(f"{spec.table}: could not look up the rows behind the foreign-key error: {unexplained.orig}")
            problems, advice = [], "Sync the tables it references, and those that reference it, in one run"
        found = "; ".join(problems) or f"the database said: {getattr(exc, 'orig', exc)}"
        for table, hidden in run.hidden.items():  # tables not yet renamed into place, by their own names
            found = found.replace(hidden, table)
        raise SyncError(
            f"{spec.table}: {'deleting' if deleting else 'writing'} rows of mart {spec.source} violates a "
            f"foreign key: {found}. {advice}. "
            + (
                "The deletes were rolled back; the tables swapped in stay."
                if swapped
                else "Rolled back, nothing was written."
            )
        ) from exc


def swap_all(run: Run, conn: sa.Connection, jobs: list[Job]) -> None:
    """Put every shadow table in place of its table and give every table created under a hidden
    name its own, in one atomic step. The rename needs the tables' metadata locks: while it waits
    for a transaction that read one, new readers queue behind it. So it waits briefly, steps back
    to let them through, and tries again."""
    if not jobs:
        return
    renames = [
        (
            quoted(conn, job.spec.table),
            quoted(conn, job.target.name if job.hidden else job.shadow.name),
            None if job.hidden else quoted(conn, short_name(job.spec.table, OLD)),
        )
        for job in jobs
    ]
    names = ", ".join(job.spec.table for job in jobs)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            run.dialect.swap(conn, renames, SWAP_LOCK_WAIT_SECONDS)
            break
        except sa.exc.OperationalError as exc:
            if not run.dialect.is_lock_timeout(exc):
                raise
            if attempt == SWAP_ATTEMPTS:
                what = "replace could not swap in" if any(not j.hidden for j in jobs) else "could not rename into place"
                raise SwapNotPossible(
                    f"{names}: {what} the new table: transactions kept reading it through {SWAP_ATTEMPTS} tries of "
                    f"{SWAP_LOCK_WAIT_SECONDS}s each. Nothing changed; the next run tries again (look for "
                    "long-running transactions on this table)."
                ) from exc
            pause = min(0.25 * 2**attempt, 8.0)
            run.log(
                f"{names}: swap waited {SWAP_LOCK_WAIT_SECONDS}s for a transaction reading the table(s); "
                f"readers go first, trying again in {pause:.1f}s ({attempt}/{SWAP_ATTEMPTS})"
            )
            time.sleep(pause)
    run.dialect.after_swap(conn, [old for _, _, old in renames if old is not None])
    for job in jobs:
        if job.hidden:
            with conn.begin():
                job.target, job.hidden = sa.Table(job.spec.table, sa.MetaData(), autoload_with=conn), False
            run.hidden.pop(job.spec.table, None)
        elif job.strategy is Strategy.SHADOW:
            p = job.plan.planned
            job.result.inserted, job.result.updated, job.result.deleted = p.insert, p.update, p.delete
        job.shadow = None


def written(job: Job) -> sa.Table | None:
    """The table holding the rows this run writes for `job`: staged, shadow, or (loaded into an
    empty table) the table itself."""
    if job.staging is not None:
        return job.staging
    if job.shadow is not None:
        return job.shadow
    return job.target if job.strategy is Strategy.BULK else None
