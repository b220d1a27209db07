"""The guards' verdict (`guards_within_limits`) per sync table, from what the write reported.

The engine evaluates the guards table by table inside its write transaction and rolls back when
one trips, so the check is decided by the write, not before it: a tripped guard writes nothing.
Only a plan over the limits fails it; a sync refused for another reason fails its step instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from activation.syncs.outcome import GUARDS, CheckOutcome
from activation.syncs.results import GuardTripped, SyncResult
from activation.syncs.spec import SyncSpec


def guard_outcomes(
    specs: Sequence[SyncSpec], results: Sequence[SyncResult] | None, tripped: GuardTripped | None
) -> dict[str, CheckOutcome]:
    """The guards' verdict per sync table. The engine checks them table by table inside its write
    transaction; a tripped guard rolls that transaction back and names the table it tripped on."""
    out = {}
    if tripped is not None:
        for spec in specs:
            plan = tripped.plans.get(spec.table)
            if plan is None:
                continue  # not reached: an earlier table tripped (and nothing was written)
            out[spec.table] = CheckOutcome(
                GUARDS,
                False,
                str(tripped),
                {
                    "planned_inserts": plan.get("insert", 0),
                    "planned_updates": plan.get("update", 0),
                    "planned_deletes": plan.get("delete", 0),
                    "guards": spec.guards.model_dump(mode="json"),
                },
            )
        return out
    by_sync = {r.sync: r for r in results or []}
    for spec in specs:
        result = by_sync.get(spec.name)
        if result is None:
            continue
        out[spec.table] = CheckOutcome(
            GUARDS,
            True,
            f"+{result.inserted:,} ~{result.updated:,} -{result.deleted:,} within the guards",
            {
                "planned_inserts": result.inserted,
                "planned_updates": result.updated,
                "planned_deletes": result.deleted,
                "guards": spec.guards.model_dump(mode="json"),
            },
        )
    return out


def guards_held_before_failure(specs: Sequence[SyncSpec], within: dict[str, dict[str, int]]) -> dict[str, CheckOutcome]:
    """The guards' verdict per sync table when a run failed for another reason (a refusal, a foreign key, a lost
    connection): a table whose plan the guards judged passed them; the failure is the run's, and
    a failed guard check would send a person after limits that were never crossed."""
    out = {}
    for spec in specs:
        plan = within.get(spec.table)
        if plan is not None:
            out[spec.table] = CheckOutcome(
                GUARDS,
                True,
                f"+{plan.get('insert', 0):,} ~{plan.get('update', 0):,} -{plan.get('delete', 0):,} planned, within "
                "the guards; the run then failed for another reason (see the step's error) and wrote nothing",
                {
                    "planned_inserts": plan.get("insert", 0),
                    "planned_updates": plan.get("update", 0),
                    "planned_deletes": plan.get("delete", 0),
                    "guards": spec.guards.model_dump(mode="json"),
                },
            )
    return out
