"""One sync's review: what a build's mart would do to the destination, judged without asking it.

The destination's part of the judgement (schema drift, values it would refuse) runs the writer's
own checks (`prepare.reconcile_columns`'s policy, `PreWriteChecks.fits_table`) against the table
as the last real sync described it (`warehouses/destination_schemas.py`); the counts and the
column detail come from the warehouse (`warehouses/effects.py`); the guards judge the counts.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from activation.destinations.api import described as api_described
from activation.destinations.sql import described, schema
from activation.destinations.sql.dialect import dialect_named
from activation.destinations.sql.prechecks import PreWriteChecks
from activation.syncs.guards import GuardedPlan, breaches
from activation.syncs.model import MartRelation, Plan, PlanError
from activation.syncs.options import Mode
from activation.syncs.problems import Problem
from activation.syncs.review import ColumnDrift, SyncReview
from activation.syncs.spec import SyncSpec
from activation.warehouses import destination_schemas, effects
from activation.warehouses.base import Warehouse

NOT_DESCRIBED = (
    "No destination schema is kept for this sync yet (it is recorded at each real sync: a database's table, "
    "an API object's describe): values and schema drift were not checked against the destination."
)
DRIFT_FIX = "set on_schema_change (evolve or ignore) or map columns in `columns`, or migrate the column"


def review_sync(wh: Warehouse, spec: SyncSpec, relation: MartRelation | None, *, sample: int = 3) -> SyncReview:
    out = SyncReview(spec.name, spec.destination, spec.table, spec.mode.value, spec.on_schema_change)
    if relation is None:
        out.error = f"the build has no dbt model {spec.source!r}"
        return out
    try:
        plan = wh.describe(spec, relation)
    except PlanError as exc:
        out.error = str(exc)
        return out
    keys = PreWriteChecks(wh, None).keys(dataclasses.replace(plan, full=True))
    out.problems += keys.problems
    kept = wh.kept_values_relation(spec)
    kept_columns = wh.kept_values_columns(spec) if kept else []
    last = destination_schemas.last_described(wh, spec)
    fed = plan
    if last is None:
        out.schema_note = NOT_DESCRIBED
    elif api_described.is_api(last.description):
        out.described_at = last.described_at
        found, notes = api_described.problems(wh, dataclasses.replace(plan, full=True), last.description)
        out.problems += found
        out.notes += notes
    else:
        out.described_at = last.described_at
        fed = _drift(wh, out, plan, last.description)
    # the drift columns the run leaves out are not sent; a column it adds (evolve) is a change on every row
    out.effect = effects.effect(wh, fed, kept=kept, kept_columns=kept_columns, sample=sample)
    e = out.effect
    planned = {"insert": e.insert, "update": e.update or 0, "delete": e.delete}
    out.guards = breaches(GuardedPlan(spec, planned, e.rows_in_state, e.rows_in_mart))
    if e.update is None and spec.guards.max_updates:
        out.notes.append("max_updates cannot be judged: the state cannot count the updates")
    return out


def _drift(wh: Warehouse, out: SyncReview, plan: Plan, description: dict) -> Plan:
    """Schema drift against the table as described, decided by the sync's policy; the fit checks
    over the columns the run would send. Returns the plan of the columns the run would send."""
    spec, policy = plan.spec, plan.spec.on_schema_change
    target = described.table(description)
    skipped = []
    for name in plan.columns:
        field = plan.arrow_schema.field(name)
        if name not in target.c:
            action = {"fail": "refused", "evolve": "added to the table", "ignore": "not synced"}[policy]
            out.drift.append(ColumnDrift(name, "added", f"{field.type}, not in {spec.table}", action))
            skipped += [name] if policy == "ignore" else []
        elif not schema.accepts(target.c[name].type, field.type):
            action = "not synced" if policy == "ignore" else "refused"
            detail = f"{description_type(description, name)} <- {field.type}"
            out.drift.append(ColumnDrift(name, "retyped", detail, action))
            skipped += [name] if policy == "ignore" else []
    unfed = [
        c
        for c in target.columns
        if c.name not in plan.columns and c.name != spec.soft_delete_column and not c.primary_key
    ]
    for c in unfed:
        required = not c.nullable and c.server_default is None and spec.mode is not Mode.UPDATE
        action = "refused: NOT NULL without a default, new rows cannot be inserted" if required else "left as it is"
        out.drift.append(
            ColumnDrift(c.name, "dropped", f"{description_type(description, c.name)}, no longer fed", action)
        )
        if required:
            reason = "is NOT NULL without a default and the mart no longer feeds it"
            out.problems.append(Problem(spec.table, reason, c.name, None, (), (), DRIFT_FIX, spec.destination))
    sent = dataclasses.replace(
        plan,
        pairs=[(d, s) for d, s in plan.pairs if d not in skipped],
        arrow_schema=pa.schema([f for f in plan.arrow_schema if f.name not in skipped]),
        full=True,
    )
    checked = dataclasses.replace(
        sent,
        pairs=[(d, s) for d, s in sent.pairs if d in target.c],
        arrow_schema=pa.schema([f for f in sent.arrow_schema if f.name in target.c]),
    )
    dialect = dialect_named(description["dialect"])
    outcome, _ = PreWriteChecks(wh, None).fits_table(checked, target, dialect, description.get("charsets", {}))
    out.problems += outcome.problems
    for d in out.drift:  # a retyped column is the fit check's own finding; a new one it does not see
        if d.change == "added" and d.action == "refused":
            reason = f"no such column in the destination ({d.detail}; on_schema_change: {policy})"
            out.problems.append(Problem(spec.table, reason, d.column, None, (), (), DRIFT_FIX, spec.destination))
    return dataclasses.replace(sent, full=False)


def description_type(description: dict, column: str) -> str:
    return next((c["type"] for c in description["columns"] if c["name"] == column), "?")
