"""The guards of a sync: limits on what one run may delete or update, judged on the plan before
anything is written (by every destination, and by the dry run)."""

from __future__ import annotations

from collections.abc import Mapping

from activation.syncs.problems import Problem
from activation.syncs.results import GuardTripped
from activation.syncs.spec import SyncSpec

GUARD_FIX = (
    "check the mart (a broken model?); if the change is intended, raise the sync's guards or set allow_empty_source"
)


def check_guards(spec: SyncSpec, planned: Mapping[str, int], *, rows_before: int, mart_rows: int) -> None:
    """Raise GuardTripped when the plan (insert / update / delete counts) crosses the sync's guards;
    `rows_before` are the rows the sync owns in the destination."""
    guards, p, before = spec.guards, planned, rows_before
    problems = []
    if spec.mode.deletes and mart_rows == 0 and before > 0 and not guards.allow_empty_source:
        problems.append(
            f"{spec.table}: mart {spec.source} is empty and would wipe {before:,} rows "
            "(set guards.allow_empty_source to allow)"
        )
    if guards.max_deletes and not guards.max_deletes.allows(p.get("delete", 0), before):
        problems.append(
            f"{spec.table}: would delete {p['delete']:,} of {before:,} rows, over max_deletes {guards.max_deletes}"
        )
    if guards.max_updates and not guards.max_updates.allows(p.get("update", 0), before):
        problems.append(
            f"{spec.table}: would update {p['update']:,} of {before:,} rows, over max_updates {guards.max_updates}"
        )
    if not problems:
        return
    found = [
        Problem(spec.table, "guard tripped: " + line.split(": ", 1)[1], destination=spec.destination, fix=GUARD_FIX)
        for line in problems
    ]
    plans = {spec.table: dict(planned)}
    summary = "; ".join(
        f"{t}: +{q.get('insert', 0):,} ~{q.get('update', 0):,} -{q.get('delete', 0):,}" for t, q in plans.items()
    )
    raise GuardTripped(
        "guard tripped, nothing was written: " + " | ".join(problems) + f". The plan was {summary}.", plans, found
    )
