"""What a sync into an API object would do, found before any call that writes.

Two phases, so the cheap refusals cost no call at all:
1. `plan_job` (the warehouse only): describe the mart, diff it with the state exactly as the SQL
   path does (warehouses/base.py), check the key, find the deletes, count the plan. The guards
   are judged on these counts before the client is even opened.
2. `check_fields` (the API's describe, read-only metadata): every mapped field exists, is
   writable and takes its column's type; values the API would refuse, key twins and children
   whose parent the API will not hold (api/parents.py) are counted in the warehouse and refuse
   the sync, or are set aside under `max_rejects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from activation.destinations.api import described as api_described
from activation.destinations.api import fields as mapping
from activation.destinations.api import parents as relationships
from activation.destinations.api import twins
from activation.destinations.api.client import FieldInfo, ObjectClient
from activation.destinations.api.parents import Child, Parent
from activation.syncs.guards import GuardedPlan
from activation.syncs.model import MartRelation, Plan, PlanError
from activation.syncs.plan import Counts, Strategy, SyncPlan
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import OP, Warehouse


@dataclass
class ApiJob:
    """One sync's run into its object: the shared `SyncPlan` (the value `activation plan`, the
    guards and the run all read: counts, rows held, rows set aside, warnings, problems), and what
    the API side learns on the way (its describe, its relationships)."""

    plan: SyncPlan
    fields: dict[str, FieldInfo] | None = None  # the object's describe (None: the API has none)
    sending: int | None = None  # the rows the upserts carry, counted once the rows set aside are known
    parents: list[Parent] = field(default_factory=list)  # its foreign keys' parent syncs (api/parents.py)
    children: list[Child] = field(default_factory=list)  # syncs relating their records to its object
    description: dict | None = None  # the describe as kept beside the state (api/described.py)

    @property
    def mart(self) -> Plan:
        """The warehouse's part of the plan: the mart's columns and the diff with the state."""
        return self.plan.mart

    @property
    def spec(self) -> SyncSpec:
        return self.plan.spec

    @property
    def planned(self) -> dict[str, int]:
        return (self.plan.planned or Counts()).as_dict()

    @property
    def rows_before(self) -> int:
        return self.plan.rows_before

    @property
    def rejected(self) -> int:
        return self.plan.rejected

    @property
    def guarded(self) -> GuardedPlan:
        return GuardedPlan(self.spec, self.planned, self.rows_before, self.mart.mart_rows)

    @property
    def to_send(self) -> int:
        """Records the upserts will carry (rows set aside before any call excluded, once counted)."""
        return self.plan.sending() if self.sending is None else self.sending

    @property
    def to_delete(self) -> int:
        return self.planned["delete"]


def plan_job(
    wh: Warehouse, spec: SyncSpec, relation: MartRelation, *, full_resync: bool, plan: SyncPlan | None = None
) -> ApiJob:
    """Phase 1, in the warehouse only, from the plan the blocking checks judged (`plan`, where
    they ran; else a new one). Raises SyncError for a missing mart or bad keys."""
    described = plan.mart if plan is not None else wh.describe(spec, relation)
    try:
        mart = wh.plan(described, full_resync=full_resync)
    except PlanError as exc:
        raise SyncError(str(exc)) from exc
    problem = wh.key_problems(mart)
    if problem:
        raise SyncError(problem)
    out = replace(plan or SyncPlan.of(mart), mart=mart, strategy=Strategy.API)
    had_state = wh.has_state(spec)
    if mart.full:
        rows_before = wh.query(f"SELECT count(*) FROM {wh.state_table(spec)}")[0][0] if had_state else 0
        departed = wh.departed(mart) if spec.mode.deletes else None
        if spec.mode.deletes and had_state and departed is None:
            out = out.warned(
                "the recorded state has another key: records whose rows left the mart since the last sync "
                "cannot be found, so none are deleted this run"
            )
        planned = Counts(insert=mart.mart_rows, delete=departed or 0)
    else:
        rows_before = mart.state_rows
        planned = Counts(mart.new_keys, mart.changed_keys, mart.deleted_keys)
    if not spec.mode.deletes:
        planned = replace(planned, delete=0)
    wh.rejects.reset(mart)  # API refusals are kept as rejects whether or not max_rejects is set
    return ApiJob(plan=replace(out, rows_before=rows_before, planned=planned, reported=planned))


def check_fields(
    wh: Warehouse, client: ObjectClient, job: ApiJob, *, refuse: bool = True, others: Sequence[ApiJob] = ()
) -> list[Problem]:
    """Phase 2: the object's describe against the mapping, and the values the API would refuse.
    Raises SyncError when `refuse` (the real run); returns the problems for a preview. A parent's
    describe is taken from `others` (the run's jobs checked before, parents first) where it was
    read already, else asked for."""
    spec, plan, object_name = job.spec, job.mart, job.spec.table
    job.fields = client.describe(object_name)
    if job.fields is not None:
        job.description = api_described.describe(client, object_name, job.fields)
    associations = bool(getattr(client, "associates", False))
    problems = mapping.check_mapping(plan, object_name, job.fields, spec.destination, associations=associations)
    problems += filter(None, [twins.key_problem(client.kind, plan, object_name, job.fields)])
    if problems:
        if refuse:
            raise SyncError(
                f"{spec.name}: the mapping does not fit {object_name}; nothing was sent:\n"
                + "\n".join(f"- {p}" for p in problems),
                problems,
            )
        return problems
    if spec.mode.deletes and not spec.soft_delete_column and not getattr(client, "deletes", True):
        problem = Problem(
            object_name,
            "mode mirror deletes records, but this destination has no way to delete configured",
            fix="configure the destination's delete endpoint, or use delete: {soft: <field>} or mode: upsert",
            destination=spec.destination,
        )
        if refuse:
            raise SyncError(f"{spec.name}: {problem}; nothing was sent", [problem])
        return [problem]
    checks = mapping.value_checks(wh, plan, object_name, job.fields)
    found = twins.find(wh, plan, object_name, job.fields, client.kind, getattr(client, "key_comparison", "exact"))
    found += mapping.find_problems(wh, plan, checks)
    if job.parents:
        read = {j.spec.table: j.fields for j in others if j.fields is not None}
        described = {p.spec.table: read.get(p.spec.table) or client.describe(p.spec.table) for p in job.parents}
        found += relationships.missing(wh, plan, job.parents, described)
    if not refuse and spec.max_rejects is None:
        return [p for _, p in found]
    try:
        job.plan = replace(job.plan, rejected=mapping.refuse_or_set_aside(wh, plan, object_name, found))
    except SyncError as exc:
        if refuse:
            raise
        return exc.problems
    if job.rejected:
        [job.sending] = wh.count_where(plan, ["1 = 1"])  # the client picks its way of sending by this count
        job.plan = job.plan.warned(
            f"{job.rejected:,} rows set aside as rejects before any call ({wh.rejects.summary(plan)}); "
            "they are sent again next run"
        )
    return []


def with_samples(wh: Warehouse, job: ApiJob, sample: int) -> SyncPlan:
    """The job's plan with sample keys of what it would insert, update and delete."""
    mart, q = job.mart, wh.flavour.quote
    found: dict[str, tuple[dict, ...]] = {}
    if mart.full:
        found["insert"] = tuple({"key": k} for k in wh.keys_where(mart, "TRUE", sample))
    else:
        for op in ("insert", "update"):
            if job.planned[op]:
                found[op] = tuple({"key": k} for k in wh.keys_where(mart, f"m.{q(OP)} = '{op}'", sample))
    if job.to_delete:
        keys: list = []
        for batch in wh.deleted(mart, 10_000):  # read to the end: a warehouse stream is not left open
            keys += batch.column(0).to_pylist()[: sample - len(keys)]
        found["delete"] = tuple({"key": k} for k in keys)
    return replace(job.plan, samples={**job.plan.samples, **found})
