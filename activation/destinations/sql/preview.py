"""A dry run: what each sync would insert, update and delete, with sample keys, writing nothing.

The counts come from the writer's own phases (prepare.py, apply.py, collisions.py), run inside a
transaction that is always rolled back, on temporary tables only: no DDL on the destination,
no shadow tables, and a dry-run warehouse that never records its state (DuckDB: a throwaway
copy of the state; BigQuery: work tables only). So `activation plan` lists what `activation
sync` then applies, as long as neither the mart nor the destination moves in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from activation.destinations.sql import apply, collisions, prepare, values
from activation.destinations.sql.foreign_keys import all_foreign_keys
from activation.destinations.sql.prechecks import PreWriteChecks
from activation.destinations.sql.run import Job, Run, cleanup, count, on_key, scope_clause
from activation.syncs.guards import check_guards
from activation.syncs.model import MartRelation, PlanError
from activation.syncs.options import Mode
from activation.syncs.problems import Problem
from activation.syncs.results import GuardTripped, SyncError, SyncPreview, SyncResult
from activation.syncs.spec import SyncSpec


def _keys(job: Job, table: sa.Table) -> list[sa.Column]:
    return [table.c[k] for k in job.spec.primary_key]


def _key_values(row: Sequence[Any]) -> Any:
    return row[0] if len(row) == 1 else list(row)


class DryRun:
    """The writer's preparation and comparisons, without its writes. It reports every problem the
    blocking checks and the writer would refuse the sync for, and never stages a value the
    destination cannot take (MySQL's LOAD DATA turns such a value into an error or a warning)."""

    def __init__(self, run: Run, sample: int = 5):
        self.run = run
        self.sample = sample

    def preview(
        self, specs: Sequence[SyncSpec], relations: Mapping[str, MartRelation], *, full_resync: bool = False
    ) -> list[SyncPreview]:
        run, wh = self.run, self.run.warehouse
        jobs: list[Job] = []
        previews: dict[str, SyncPreview] = {}
        for spec in specs:
            try:
                plan = wh.describe(spec, relations[spec.name])
            except PlanError as exc:
                raise SyncError(str(exc)) from exc
            preview = SyncPreview(sync=spec.name, destination=spec.destination, table=spec.table, mode=spec.mode.value)
            previews[spec.name] = preview
            for outcome in PreWriteChecks(wh, run.engine).run(plan):
                if not outcome.passed:
                    preview.refuse(outcome.problems, outcome.summary)
            outside = wh.scope_violations(plan, spec.scope, plan.columns) if spec.scope else 0
            if outside:  # the writer refuses a mart row it would not own
                scope = ", ".join(f"{c}={v}" for c, v in spec.scope.items())
                fix = "filter the mart to the sync's scope, or widen the scope"
                reason = f"fall outside the sync's scope ({scope})"
                preview.refuse(
                    [Problem(spec.table, reason, ", ".join(spec.scope), outside, (), (), fix, spec.destination)]
                )
            jobs.append(Job(plan=plan, result=SyncResult(sync=spec.name, table=spec.table, mode=spec.mode.value)))

        with run.engine.connect() as conn:
            conn.execution_options(preserve_rowcount=True)
            with conn.begin():
                fks = all_foreign_keys(conn)
                existing = set(sa.inspect(conn).get_table_names())
            jobs = prepare.order(jobs, fks)
            transaction = conn.begin()
            try:
                for job in jobs:
                    self._preview_one(conn, job, fks, existing, previews[job.spec.name], full_resync)
            finally:
                transaction.rollback()
                cleanup(conn, jobs)
        return [previews[j.spec.name] for j in jobs]

    def _preview_one(
        self, conn: sa.Connection, job: Job, fks: dict, existing: set[str], out: SyncPreview, full_resync: bool
    ) -> None:
        run, wh = self.run, self.run.warehouse
        spec, plan = job.spec, job.plan
        if spec.on_schema_change == "evolve":  # a dry run adds no columns: plan the ones both have
            plan.spec = spec.model_copy(update={"on_schema_change": "ignore"})
            out.warnings.append("on_schema_change evolve: columns the table lacks are not counted in this plan")
        if spec.table not in existing:
            # The sync would create the table and load every mart row into it.
            wh.plan(plan, full_resync=True)
            out.creates_table, out.strategy, out.reason = True, "bulk", "first sync: the table does not exist yet"
            out.rows_in_mart = plan.mart_rows
            target = prepare.new_table(run, sa.MetaData(), job)
            out.refuse([v.as_problem(spec) for v in values.find(wh, plan, target, run.dialect, {})])
            if spec.mode is not Mode.UPDATE:
                out.counts["insert"] = plan.mart_rows
                rows = wh.sample_keys(plan, self.sample)
                out.samples["insert"] = [{"key": _key_values(r)} for r in rows]
            return
        try:
            prepare.prepare(run, conn, sa.MetaData(), job)  # an existing table is only reflected and checked
            prepare.choose_strategy(run, job, fks)
            values.check_lengths(run, job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        out.warnings, out.rejected = out.warnings + list(job.result.warnings), job.result.rejected
        if job.target is None:  # the table itself does not fit the sync: nothing to compare
            return
        wh.plan(plan, full_resync=full_resync)
        prepare.count_rows_before(run, [job])
        prepare.distrust_state(run, job)
        try:
            values.check_values(run, conn, job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        prepare.load_directly_if_empty(conn, job)
        try:  # keys the destination would hold as one: the writer's own check
            collisions.check_sent(run, conn, job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        out.rejected = job.result.rejected
        out.reason, out.rows_in_mart, out.rows_in_destination = plan.reason, plan.mart_rows, job.rows_before
        out.strategy = job.strategy
        if out.problems:  # the writer would stop here: staging these rows (or colliding keys) could fail mid-load
            return
        try:
            self._compare_with_destination(conn, job, out)
        except (SyncError, sa.exc.DBAPIError, ValueError) as exc:  # a value the checks above did not foresee
            problems = getattr(exc, "problems", [])
            reason = getattr(exc, "orig", None) or exc
            out.refuse(problems, f"the destination refused the rows while staging them: {reason}")

    def _compare_with_destination(self, conn: sa.Connection, job: Job, out: SyncPreview) -> None:
        run, wh = self.run, self.run.warehouse
        spec, plan = job.spec, job.plan
        t = job.target
        owned = scope_clause(job, t)
        if job.strategy == "bulk":
            job.planned = {"insert": plan.mart_rows, "update": 0, "delete": 0}
            out.counts = dict(job.planned)
        else:
            everything = plan.full or job.strategy != "diff"
            staging = job.staging = run.temp_table(conn, job, "__stage", plan.columns)
            run.load(conn, job, staging, wh.rows(plan, spec.batch_size, everything=everything), apply.sending(job))
            try:
                collisions.check_existing(run, conn, job)
            except SyncError as exc:
                out.refuse(exc.problems, str(exc))
            out.rejected = job.result.rejected
            job.planned = apply.compare(run, conn, job, staging, t, owned)
            if everything:
                gone_where = sa.and_(owned, ~sa.exists().where(on_key(job, t, staging)))
            else:
                job.planned["delete"] = 0
                gone_where = sa.false()
                if spec.mode.deletes and plan.deleted_keys:
                    apply.stage_deleted_keys(run, conn, job)
                    gone_where = sa.and_(owned, sa.exists().where(on_key(job, t, job.deleted_keys)))
                    job.planned["delete"] = count(conn, sa.select(sa.func.count()).select_from(t).where(gone_where))
            if spec.soft_delete_column:
                gone_where = sa.and_(gone_where, t.c[spec.soft_delete_column].is_(None))
            apply.restrict_to_mode(job)
            out.counts = dict(job.planned)
            if job.strategy == "truncate":  # reported as it happens: every owned row out, every mart row in
                out.counts = {"insert": plan.mart_rows, "update": 0, "delete": job.rows_before}
            self._samples(conn, job, staging, gone_where, out)
        if not out.blocked:
            try:
                check_guards(spec, job.planned, rows_before=job.rows_before, mart_rows=plan.mart_rows)
            except GuardTripped as exc:
                out.refuse(exc.problems, str(exc))

    def _samples(self, conn: sa.Connection, job: Job, s: sa.Table, gone_where, out: SyncPreview) -> None:
        t, n = job.target, self.sample
        on = on_key(job, t, s)
        if out.counts["insert"]:
            rows = conn.execute(
                sa.select(*_keys(job, s)).where(~sa.exists().where(on)).order_by(*_keys(job, s)).limit(n)
            ).fetchall()
            out.samples["insert"] = [{"key": _key_values(r)} for r in rows]
        if out.counts["update"]:
            changed = [c for c in job.plan.columns if c not in job.spec.primary_key]
            rows = conn.execute(
                sa.select(*_keys(job, s), *[t.c[c].is_distinct_from(s.c[c]) for c in changed])
                .select_from(s.join(t, on))
                .where(self.run.differs(job, t, s))
                .order_by(*_keys(job, s))
                .limit(n)
            ).fetchall()
            k = len(job.spec.primary_key)
            out.samples["update"] = [
                {"key": _key_values(r[:k]), "columns": [c for c, d in zip(changed, r[k:], strict=True) if d]}
                for r in rows
            ]
        if out.counts["delete"] and job.strategy != "truncate":
            query = sa.select(*_keys(job, t)).where(gone_where).order_by(*_keys(job, t)).limit(n)
            rows = conn.execute(query).fetchall()
            out.samples["delete"] = [{"key": _key_values(r)} for r in rows]
