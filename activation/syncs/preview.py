"""A dry run: what each sync would insert, update and delete, with sample keys, writing nothing.

The counts come from the writer's own comparisons (`DestinationSync`), run inside a
transaction that is always rolled back, on temporary tables only: no DDL on the destination,
no shadow tables, and a dry-run warehouse that never records its state (DuckDB: a throwaway
copy of the state; BigQuery: work tables only). So `activation plan` lists what `activation
sync` then applies, as long as neither the mart nor the destination moves in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from activation.syncs import collisions, schema, validate
from activation.syncs import problems as found
from activation.syncs.load import DestinationSync, Log, _Job
from activation.syncs.model import PlanError
from activation.syncs.prechecks import PreWriteChecks
from activation.syncs.problems import Problem
from activation.syncs.results import GuardTripped, SyncError, SyncResult
from activation.syncs.spec import Mode, SyncSpec
from activation.warehouses.base import Warehouse

OPERATIONS = ("insert", "update", "delete")


@dataclass
class SyncPreview:
    sync: str
    destination: str
    table: str
    mode: str
    strategy: str = ""
    reason: str = ""
    rows_in_mart: int = 0
    rows_in_destination: int = 0
    creates_table: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    # operation -> up to `sample` keys (tuples); updates also name the columns that change
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    rejected: int = 0  # rows set aside under max_rejects (warehouses/rejects.py)
    blocked: str | None = None  # a guard or a pre-write check would refuse the sync
    problems: list[Problem] = field(default_factory=list)  # each thing that would refuse it
    warnings: list[str] = field(default_factory=list)

    def refuse(self, problems: list[Problem], message: str = "") -> None:
        """Record what would refuse the sync; `message` stands for problems the refusal did not name."""
        if not problems and message:
            problems = [Problem(self.table, message, destination=self.destination)]
        self.problems = found.merged(self.problems, problems)
        if self.problems and not self.blocked:
            self.blocked = message or str(self.problems[0])

    @property
    def unchanged(self) -> int:
        return max(self.rows_in_mart - self.counts["insert"] - self.counts["update"] - self.rejected, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "destination": self.destination,
            "table": self.table,
            "mode": self.mode,
            "strategy": self.strategy,
            "reason": self.reason,
            "rows_in_mart": self.rows_in_mart,
            "rows_in_destination": self.rows_in_destination,
            "creates_table": self.creates_table,
            **{f"{op}s": n for op, n in self.counts.items()},
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "samples": self.samples,
            "blocked": self.blocked,
            "problems": found.as_json(self.problems),
            "warnings": self.warnings,
        }


def _keys(job: _Job, table: sa.Table) -> list[sa.Column]:
    return [table.c[k] for k in job.spec.primary_key]


def _key_values(row: Sequence[Any]) -> Any:
    return row[0] if len(row) == 1 else list(row)


class DryRun(DestinationSync):
    """The writer's preparation and comparisons, without its writes. It reports every problem the
    blocking checks and the writer would refuse the sync for, and never stages a value the
    destination cannot take (MySQL's LOAD DATA turns such a value into an error or a warning)."""

    def __init__(self, engine: sa.Engine, planner: Warehouse, log: Log = lambda _msg: None, sample: int = 5):
        super().__init__(engine, planner, log)
        self.sample = sample

    def preview(self, specs: Sequence[SyncSpec], relations: dict, *, full_resync: bool = False) -> list[SyncPreview]:
        jobs: list[_Job] = []
        previews: dict[str, SyncPreview] = {}
        for spec in specs:
            try:
                plan = self.planner.describe(spec, relations[spec.name])
            except PlanError as exc:
                raise SyncError(str(exc)) from exc
            preview = SyncPreview(sync=spec.name, destination=spec.destination, table=spec.table, mode=spec.mode.value)
            previews[spec.name] = preview
            for outcome in PreWriteChecks(self.planner, self.engine).run(plan):
                if not outcome.passed:
                    preview.refuse(outcome.problems, outcome.summary)
            outside = self.planner.scope_violations(plan, spec.scope, plan.columns) if spec.scope else 0
            if outside:  # the writer refuses a mart row it would not own
                scope = ", ".join(f"{c}={v}" for c, v in spec.scope.items())
                fix = "filter the mart to the sync's scope, or widen the scope"
                reason = f"fall outside the sync's scope ({scope})"
                preview.refuse(
                    [Problem(spec.table, reason, ", ".join(spec.scope), outside, (), (), fix, spec.destination)]
                )
            jobs.append(_Job(plan=plan, result=SyncResult(sync=spec.name, table=spec.table, mode=spec.mode.value)))

        with self.engine.connect() as conn:
            conn.execution_options(preserve_rowcount=True)
            with conn.begin():
                fks = self._foreign_keys(conn)
                existing = set(sa.inspect(conn).get_table_names())
            jobs = self._order(jobs, fks)
            transaction = conn.begin()
            try:
                for job in jobs:
                    self._preview_one(conn, job, fks, existing, previews[job.spec.name], full_resync)
            finally:
                transaction.rollback()
                self._cleanup(conn, jobs)
        return [previews[j.spec.name] for j in jobs]

    def _preview_one(
        self, conn: sa.Connection, job: _Job, fks: dict, existing: set[str], out: SyncPreview, full_resync: bool
    ) -> None:
        spec, plan = job.spec, job.plan
        if spec.on_schema_change == "evolve":  # a dry run adds no columns: plan the ones both have
            plan.spec = spec.model_copy(update={"on_schema_change": "ignore"})
            out.warnings.append("on_schema_change evolve: columns the table lacks are not counted in this plan")
        if spec.table not in existing:
            # The sync would create the table and load every mart row into it.
            self.planner.plan(plan, full_resync=True)
            out.creates_table, out.strategy, out.reason = True, "bulk", "first sync: the table does not exist yet"
            out.rows_in_mart = plan.mart_rows
            self._check_new_table(conn, job, out)
            if spec.mode is not Mode.UPDATE:
                out.counts["insert"] = plan.mart_rows
                rows = self.planner.sample_keys(plan, self.sample)
                out.samples["insert"] = [{"key": _key_values(r)} for r in rows]
            return
        try:
            self._prepare(conn, sa.MetaData(), job)  # an existing table is only reflected and checked
            self._choose_strategy(job, fks)
            self._check_lengths(job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        out.warnings, out.rejected = out.warnings + list(job.result.warnings), job.result.rejected
        if job.target is None:  # the table itself does not fit the sync: nothing to compare
            return
        self.planner.plan(plan, full_resync=full_resync)
        self._count_rows_before([job])
        self._distrust_state(job)
        try:
            self._check_values(conn, job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        self._load_directly_if_empty(conn, job)
        try:  # keys the destination would hold as one: the writer's own check
            collisions.check_sent(self, conn, job)
        except SyncError as exc:
            out.refuse(exc.problems, str(exc))
        out.rejected = job.result.rejected
        out.reason, out.rows_in_mart, out.rows_in_destination = plan.reason, plan.mart_rows, job.rows_before
        out.strategy = job.strategy
        if out.problems:  # the writer would stop here: staging these rows (or colliding keys) could fail mid-load
            return
        try:
            self._compare_with_destination(conn, job, out, full_resync)
        except (SyncError, sa.exc.DBAPIError, ValueError) as exc:  # a value the checks above did not foresee
            problems = getattr(exc, "problems", [])
            reason = getattr(exc, "orig", None) or exc
            out.refuse(problems, f"the destination refused the rows while staging them: {reason}")

    def _check_new_table(self, conn: sa.Connection, job: _Job, out: SyncPreview) -> None:
        """The values the writer would refuse once it created the table from the mart's schema."""
        spec, plan = job.spec, job.plan
        target = schema.build_table(
            sa.MetaData(),
            spec.table,
            plan.arrow_schema,
            spec.primary_key,
            string_lengths=self.planner.string_lengths(plan),
            foreign_keys=spec.parsed_foreign_keys,
            soft_delete_column=spec.soft_delete_column,
        )
        violations = validate.find(self.planner, plan, target, conn.dialect.name, {})
        out.refuse([v.as_problem(spec) for v in violations])

    def _compare_with_destination(self, conn: sa.Connection, job: _Job, out: SyncPreview, full_resync: bool) -> None:
        spec, plan = job.spec, job.plan
        t = job.target
        owned = self._scope_clause(job, t)
        if job.strategy == "bulk":
            job.planned = {"insert": plan.mart_rows, "update": 0, "delete": 0}
            out.counts = dict(job.planned)
            staging = None
        else:
            everything = plan.full or job.strategy != "diff"
            staging = job.staging = self._temp_table(conn, job, "__stage", plan.columns)
            sending = plan.mart_rows if everything else plan.new_keys + plan.changed_keys
            self._load(conn, job, staging, self.planner.rows(plan, spec.batch_size, everything=everything), sending)
            try:
                collisions.check_existing(self, conn, job)
            except SyncError as exc:
                out.refuse(exc.problems, str(exc))
            out.rejected = job.result.rejected
            if everything:
                job.planned = self._compare(conn, job, staging, t, owned)
                gone_where = sa.and_(owned, ~sa.exists().where(self._on_key(job, t, staging)))
            else:
                job.planned = self._compare(conn, job, staging, t, owned)
                job.planned["delete"] = 0
                gone_where = sa.false()
                if spec.mode.deletes and plan.deleted_keys:
                    gone = job.deleted_keys = self._temp_table(conn, job, "__gone", spec.primary_key)
                    self._load(conn, job, gone, self.planner.deleted(plan, spec.batch_size), plan.deleted_keys)
                    gone_where = sa.and_(owned, sa.exists().where(self._on_key(job, t, gone)))
                    count = sa.select(sa.func.count()).select_from(t).where(gone_where)
                    job.planned["delete"] = self._count(conn, count)
            if spec.soft_delete_column:
                gone_where = sa.and_(gone_where, t.c[spec.soft_delete_column].is_(None))
            if not spec.mode.deletes:
                job.planned["delete"] = 0
            if spec.mode is Mode.INSERT:
                job.planned["update"] = 0
            if spec.mode is Mode.UPDATE:
                job.planned["insert"] = 0
            out.counts = dict(job.planned)
            if job.strategy == "truncate":  # reported as it happens: every owned row out, every mart row in
                out.counts = {"insert": plan.mart_rows, "update": 0, "delete": job.rows_before}
            self._samples(conn, job, staging, gone_where, out)
        if not out.blocked:
            try:
                self._check_guards([job])
            except GuardTripped as exc:
                out.refuse(exc.problems, str(exc))

    def _samples(self, conn: sa.Connection, job: _Job, s: sa.Table, gone_where, out: SyncPreview) -> None:
        t, n = job.target, self.sample
        on = self._on_key(job, t, s)
        if out.counts["insert"]:
            rows = conn.execute(
                sa.select(*_keys(job, s)).where(~sa.exists().where(on)).order_by(*_keys(job, s)).limit(n)
            ).fetchall()
            out.samples["insert"] = [{"key": _key_values(r)} for r in rows]
        if out.counts["update"]:
            values = [c for c in job.plan.columns if c not in job.spec.primary_key]
            rows = conn.execute(
                sa.select(*_keys(job, s), *[t.c[c].is_distinct_from(s.c[c]) for c in values])
                .select_from(s.join(t, on))
                .where(self._differs(job, t, s))
                .order_by(*_keys(job, s))
                .limit(n)
            ).fetchall()
            k = len(job.spec.primary_key)
            out.samples["update"] = [
                {"key": _key_values(r[:k]), "columns": [c for c, d in zip(values, r[k:], strict=True) if d]}
                for r in rows
            ]
        if out.counts["delete"] and job.strategy != "truncate":
            query = sa.select(*_keys(job, t)).where(gone_where).order_by(*_keys(job, t)).limit(n)
            rows = conn.execute(query).fetchall()
            out.samples["delete"] = [{"key": _key_values(r)} for r in rows]
