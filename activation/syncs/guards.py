"""The guards of a sync (syncs.yml `guards:`), judged on a plan before anything is written.

Written for any destination: a plan is its planned counts (insert / update / delete), the rows
the sync holds in the destination before the run, and the rows in the mart. The SQL writer
(destinations/sql/apply.py) judges each table inside its transaction; an API destination has no
transaction, so it judges the plan before its first call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from activation.syncs.problems import Problem
from activation.syncs.results import GuardTripped
from activation.syncs.spec import SyncSpec

GUARD_FIX = (
    "check the mart (a broken model?); if the change is intended, raise the sync's guards or set allow_empty_source"
)


@dataclass(frozen=True)
class GuardedPlan:
    spec: SyncSpec
    planned: Mapping[str, int]  # insert, update, delete
    rows_before: int  # rows (records) the sync holds in the destination before the run
    mart_rows: int


def breaches(plan: GuardedPlan) -> list[str]:
    """Each guard the plan crosses, as '<table>: <what>'."""
    spec, p, before, g = plan.spec, plan.planned, plan.rows_before, plan.spec.guards
    deletes, updates = p.get("delete", 0), p.get("update", 0)
    found = []
    if spec.mode.deletes and plan.mart_rows == 0 and before > 0 and not g.allow_empty_source:
        found.append(
            f"{spec.table}: mart {spec.source} is empty and would wipe {before:,} rows "
            "(set guards.allow_empty_source to allow)"
        )
    if g.max_deletes and not g.max_deletes.allows(deletes, before):
        found.append(f"{spec.table}: would delete {deletes:,} of {before:,} rows, over max_deletes {g.max_deletes}")
    if g.max_updates and not g.max_updates.allows(updates, before):
        found.append(f"{spec.table}: would update {updates:,} of {before:,} rows, over max_updates {g.max_updates}")
    return found


def check(plans: Sequence[GuardedPlan]) -> None:
    """Raise GuardTripped naming every breach of these plans; nothing may have been written yet."""
    lines, problems = [], []
    for plan in plans:
        for line in breaches(plan):
            lines.append(line)
            problems.append(
                Problem(
                    plan.spec.table,
                    "guard tripped: " + line.split(": ", 1)[1],
                    destination=plan.spec.destination,
                    fix=GUARD_FIX,
                )
            )
    if lines:
        counts = {p.spec.table: dict(p.planned) for p in plans}
        summary = "; ".join(
            f"{t}: +{c.get('insert', 0):,} ~{c.get('update', 0):,} -{c.get('delete', 0):,}" for t, c in counts.items()
        )
        raise GuardTripped(
            "guard tripped, nothing was written: " + " | ".join(lines) + f". The plan was {summary}.",
            counts,
            problems,
        )


def check_guards(spec: SyncSpec, planned: Mapping[str, int], *, rows_before: int, mart_rows: int) -> None:
    """`check` for one sync's plan (the SQL writer judges each table as it stages it)."""
    check([GuardedPlan(spec, planned, rows_before, mart_rows)])
