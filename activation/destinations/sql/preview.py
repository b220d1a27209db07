"""What a dry run adds to the run's phases (phases.py): the counts measured against the destination
and sample keys of each operation, so `activation plan` lists what `activation sync` then applies.

The dry run stages what the plan sends exactly as the run does, in a transaction that is rolled
back; here the staged rows are compared with the table. The guards judge the run's own planned
counts; what is shown is what the destination would see (truncate: every owned row out, every
mart row in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from activation.destinations.sql import apply
from activation.destinations.sql.run import Job, Run, count, on_key, scope_clause
from activation.syncs.plan import Counts, Strategy


def _keys(job: Job, table: sa.Table) -> list[sa.Column]:
    return [table.c[k] for k in job.spec.primary_key]


def _key_values(row: Sequence[Any]) -> Any:
    return row[0] if len(row) == 1 else list(row)


def measure(run: Run, conn: sa.Connection, job: Job, sample: int) -> None:
    """The counts and samples of a staged table (after apply.stage), into the job's plan."""
    plan, mart, t, s = job.plan, job.mart, job.target, job.staging
    if s is None:  # loaded in place (an empty table, or one the run would create), or nothing to send
        samples = {}
        if plan.planned.insert:
            samples["insert"] = tuple({"key": _key_values(r)} for r in run.warehouse.sample_keys(mart, sample))
        job.update(reported=plan.planned, samples={**plan.samples, **samples})
        return
    owned = scope_clause(job, t)
    measured = apply.compare(run, conn, job, s, t, owned)
    if plan.sends_everything():
        gone_where = sa.and_(owned, ~sa.exists().where(on_key(job, t, s)))
    else:
        gone_where, deleted = sa.false(), 0
        if job.deleted_keys is not None:
            gone_where = sa.and_(owned, sa.exists().where(on_key(job, t, job.deleted_keys)))
            deleted = count(conn, sa.select(sa.func.count()).select_from(t).where(gone_where))
        measured = replace(measured, delete=deleted)
    if job.spec.soft_delete_column:
        gone_where = sa.and_(gone_where, t.c[job.spec.soft_delete_column].is_(None))
    measured = apply.restrict_to_mode(job.spec, measured)
    shown = measured
    if job.strategy is Strategy.TRUNCATE:  # reported as it happens: every owned row out, every mart row in
        shown = Counts(insert=mart.mart_rows, update=0, delete=plan.rows_before)
    job.update(reported=shown, samples=_samples(run, conn, job, gone_where, measured, sample))


def _samples(run: Run, conn: sa.Connection, job: Job, gone_where, counts: Counts, n: int) -> dict:
    t, s = job.target, job.staging
    on = on_key(job, t, s)
    samples: dict[str, tuple] = {}
    if counts.insert:
        rows = conn.execute(
            sa.select(*_keys(job, s)).where(~sa.exists().where(on)).order_by(*_keys(job, s)).limit(n)
        ).fetchall()
        samples["insert"] = tuple({"key": _key_values(r)} for r in rows)
    if counts.update:
        changed = [c for c in job.mart.columns if c not in job.spec.primary_key]
        rows = conn.execute(
            sa.select(*_keys(job, s), *[t.c[c].is_distinct_from(s.c[c]) for c in changed])
            .select_from(s.join(t, on))
            .where(run.differs(job, t, s))
            .order_by(*_keys(job, s))
            .limit(n)
        ).fetchall()
        k = len(job.spec.primary_key)
        samples["update"] = tuple(
            {"key": _key_values(r[:k]), "columns": [c for c, d in zip(changed, r[k:], strict=True) if d]} for r in rows
        )
    if counts.delete and job.strategy is not Strategy.TRUNCATE:
        rows = conn.execute(sa.select(*_keys(job, t)).where(gone_where).order_by(*_keys(job, t)).limit(n)).fetchall()
        samples["delete"] = tuple({"key": _key_values(r)} for r in rows)
    return {**job.plan.samples, **samples}
