"""The checks of a sync into a stream (activation.destinations.streams), by the names the UI shows:

- `mart_keys_not_null_and_unique` (blocking, before the write): the warehouse alone, as for a table.
- `mart_fits_destination`: decided inside the write, before the first event: no NaN or infinity,
  no event over the broker's payload limit (`StreamDestination.fitted`).
- `published_equals_plan`: the events by op are the changes the plan found, less the rows set aside.
- `every_event_acknowledged`: the broker acknowledged every event sent.
- `events_visible_in_stream`: the stream's length (JetStream stream info, XLEN, RabbitMQ's committed
  offset) grew by the events stored (acknowledged and not dropped as duplicates).
- `rejected_rows_below_threshold`: as for a table.
"""

from __future__ import annotations

from typing import Any

from activation.destinations.sql.prechecks import PreWriteChecks
from activation.destinations.streams.engine import StreamDestination
from activation.orchestration.checks.post_write import rejects
from activation.syncs.model import Plan
from activation.syncs.outcome import ACKED, FITS, PUBLISHED, REJECTS, VISIBLE, CheckOutcome, markdown_table
from activation.syncs.plan import SyncPlan
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse


class StreamChecks:
    """The check suite of one stream destination's step (see checks/suites.py)."""

    def __init__(self, planner: Warehouse, destination: StreamDestination):
        self.keys = PreWriteChecks(planner, None)
        self.destination = destination

    def before(self, plan: Plan) -> list[CheckOutcome]:
        return [self.keys.keys(plan)]

    def judge(self, plan: SyncPlan) -> tuple[list[CheckOutcome], SyncPlan]:
        return self.before(plan.mart), plan

    def decided_by_write(self, spec: SyncSpec, result: SyncResult | None) -> list[CheckOutcome]:
        found = self.destination.fitted.get(spec.table)
        if found is None:
            if result is None:
                return []  # the write stopped before it looked at the values
            return [CheckOutcome(FITS, True, f"nothing to publish from {spec.source}", {"rows_checked": 0})]
        if found:
            table = markdown_table(
                ["field", "problem", "rows", "sample keys"],
                [(p.column or "-", p.reason, f"{p.rows or 0:,}", ", ".join(p.keys) or "-") for p in found],
            )
            passed = result is not None  # within max_rejects: set aside, the rest published
            summary = f"{spec.table}: {len(found)} problem(s), e.g. {found[0]}" + (
                "; set aside under max_rejects" if passed else "; nothing was published"
            )
            return [CheckOutcome(FITS, passed, summary, {"problems": table}, [] if passed else found)]
        return [CheckOutcome(FITS, True, "every value has a JSON form and every event fits the broker's limit", {})]

    def after(
        self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None
    ) -> list[CheckOutcome]:
        stream: dict[str, Any] = result.stream or {}
        out = []
        if PUBLISHED in selected:
            out.append(self.published(plan.spec, result, stream))
        if ACKED in selected:
            sent, acked = stream.get("events_sent", 0), stream.get("events_acked", 0)
            summary = f"{acked:,} of {sent:,} events sent were acknowledged by the broker"
            out.append(CheckOutcome(ACKED, sent == acked, summary, {"events_sent": sent, "events_acked": acked}))
        if VISIBLE in selected:
            out.append(self.visible(plan.spec, stream))
        if REJECTS in selected:
            out.append(rejects(plan.spec, result))
        return out

    def published(self, spec: SyncSpec, result: SyncResult, stream: dict[str, Any]) -> CheckOutcome:
        planned = self.destination.within_guards.get(spec.table, {})
        by_op = stream.get("events_by_op", {})
        upserts = planned.get("insert", 0) + planned.get("update", 0) - result.rejected
        published_upserts = sum(by_op.get(op, 0) for op in ("c", "u", "r"))
        deletes, published_deletes = planned.get("delete", 0), by_op.get("d", 0)
        passed = published_upserts == upserts and published_deletes == deletes
        metadata = {
            "events": markdown_table(
                ["", "planned", "published"],
                [
                    ("inserts and updates (c, u, r)", f"{upserts:,}", f"{published_upserts:,}"),
                    ("deletes (d)", f"{deletes:,}", f"{published_deletes:,}"),
                ],
            ),
            "rows_set_aside": result.rejected,
        }
        summary = (
            f"{published_upserts:,} upsert and {published_deletes:,} delete events published; the plan found "
            f"{upserts:,} and {deletes:,}"
        )
        return CheckOutcome(PUBLISHED, passed, summary, metadata)

    def visible(self, spec: SyncSpec, stream: dict[str, Any]) -> CheckOutcome:
        acked, duplicates = stream.get("events_acked", 0), stream.get("duplicates_dropped", 0)
        before, after = stream.get("length_before"), stream.get("length_after")
        metadata = {"length_before": before, "length_after": after, "events_stored": acked - duplicates}
        if not acked:
            return CheckOutcome(VISIBLE, True, f"nothing was published to {spec.table}", metadata)
        if before is None or after is None:
            return CheckOutcome(VISIBLE, False, f"{spec.table}: the broker did not tell the stream's length", metadata)
        grew = after - before
        summary = f"{spec.table} grew by {grew:,} events ({before:,} -> {after:,}); {acked - duplicates:,} were stored"
        return CheckOutcome(VISIBLE, grew == acked - duplicates, summary, metadata)
