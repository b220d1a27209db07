"""The checks of a sync into an API object (activation.destinations.api), by the names the UI shows:

- `mart_keys_not_null_and_unique` (blocking, before the write): the warehouse alone, as for a table.
- `mart_fits_destination`: decided inside the write, before its first write call: the object's
  describe against the mapping, and the values the API would refuse counted in the warehouse
  (`ApiDestination.fitted`). A failure means nothing was sent.
- `accepted_equals_sent`: every record sent was answered, accepted or refused (accepted + refused ==
  sent), and the records sent are the ones the plan found changed, less those set aside before any call.
- `row_count_matches_mart` where the API counts (`Capabilities.count`): the records keyed by the
  sync's external ID, counted through the API, against the mart (less what was rejected).
- `rejected_rows_below_threshold`: as for a table, with the API's own first errors.

An API cannot hand the synced records back for a checksum (`Capabilities.read_back`); the asset's
metadata says so (`checks_not_possible`).
"""

from __future__ import annotations

import time
from typing import Any

from activation.destinations.api.engine import ApiDestination
from activation.destinations.sql.prechecks import PreWriteChecks
from activation.orchestration.checks.post_write import rejects, unavailable
from activation.syncs.model import Plan
from activation.syncs.outcome import ACCEPTED, FITS, REJECTS, ROW_COUNT, SAMPLE, CheckOutcome, markdown_table
from activation.syncs.plan import SyncPlan
from activation.syncs.results import ApiCalls, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

# A search index (HubSpot's) may lag a write by seconds: a count outside the promise is taken again,
# after pauses of 1, 2, 4, ... seconds, for this long before the check fails.
COUNT_SETTLE_SECONDS = 20.0


class ApiChecks:
    """The check suite of one API destination's step (see checks/suites.py)."""

    def __init__(self, planner: Warehouse, destination: ApiDestination):
        self.keys = PreWriteChecks(planner, None)  # keys read the warehouse alone
        self.destination = destination
        self.unavailable = unavailable(destination.capabilities)

    def before(self, plan: Plan) -> list[CheckOutcome]:
        return [self.keys.keys(plan)]

    def judge(self, plan: SyncPlan) -> tuple[list[CheckOutcome], SyncPlan]:
        return self.before(plan.mart), plan  # the API engine plans its objects itself (destinations/api/plan.py)

    def decided_by_write(self, spec: SyncSpec, result: SyncResult | None) -> list[CheckOutcome]:
        found = self.destination.fitted.get(spec.table)
        if found is None:
            if result is None:
                return []  # the write stopped before it read this object's describe: not executed
            summary = f"nothing changed in {spec.source}: no record to send, so {spec.table} was not described"
            return [CheckOutcome(FITS, True, summary, {"records_checked": 0})]
        if found:
            table = markdown_table(
                ["field", "problem", "rows", "sample keys"],
                [
                    (p.column or "-", p.reason, "-" if p.rows is None else f"{p.rows:,}", ", ".join(p.keys) or "-")
                    for p in found
                ],
            )
            summary = f"{spec.table}: {len(found)} problem(s) the API would refuse, e.g. {found[0]}; nothing was sent"
            return [CheckOutcome(FITS, False, summary, {"problems": table}, found)]
        set_aside = _set_aside(result) if result else 0
        summary = (
            f"every mapped field exists on {spec.table}, is writable and takes its column's type, and no value "
            "to send breaks its limits"
        )
        if set_aside:
            summary += f"; {set_aside:,} row(s) that would were set aside under max_rejects {spec.max_rejects}"
        return [CheckOutcome(FITS, True, summary, {"rows_set_aside": set_aside})]

    def after(
        self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None
    ) -> list[CheckOutcome]:
        selected = set(selected) - set(self.unavailable)
        out = []
        if ROW_COUNT in selected:
            out.append(self.row_count(plan.spec, result))
        if ACCEPTED in selected:
            out.append(self.accepted(plan.spec, result))
        if REJECTS in selected:
            out.append(self.rejects(plan.spec, result))
        return out

    def accepted(self, spec: SyncSpec, result: SyncResult) -> CheckOutcome:
        api = result.api or ApiCalls()
        accepted, refused, sent = result.inserted + result.updated, api.records_refused, result.rows_sent
        planned = self.destination.within_guards.get(spec.table, {})
        set_aside = _set_aside(result)
        to_send = planned.get("insert", 0) + planned.get("update", 0) - set_aside
        metadata: dict[str, Any] = {
            "records_planned": to_send,
            "records_sent": sent,
            "records_accepted": accepted,
            "records_refused": refused,
            "rows_set_aside_before_sending": set_aside,
            "records": markdown_table(
                ["", "records"],
                [
                    ("changed in the mart, less set aside", f"{to_send:,}"),
                    ("sent", f"{sent:,}"),
                    ("accepted (inserted + updated)", f"{accepted:,} ({result.inserted:,} + {result.updated:,})"),
                    ("refused by the API", f"{refused:,}"),
                ],
            ),
        }
        if accepted + refused != sent:
            summary = (
                f"{spec.table}: {sent:,} record(s) sent but {accepted:,} accepted and {refused:,} refused: "
                f"{sent - accepted - refused:,} record(s) got no answer the sync could count"
            )
            return CheckOutcome(ACCEPTED, False, summary, metadata)
        if sent != to_send:
            summary = (
                f"{spec.table}: {sent:,} record(s) sent, but the plan found {to_send:,} to send "
                f"({planned.get('insert', 0):,} new, {planned.get('update', 0):,} changed, {set_aside:,} set aside)"
            )
            return CheckOutcome(ACCEPTED, False, summary, metadata)
        summary = f"{sent:,} record(s) sent to {spec.table}, every one answered: {accepted:,} accepted"
        return CheckOutcome(ACCEPTED, True, summary + (f", {refused:,} refused" if refused else ""), metadata)

    def row_count(self, spec: SyncSpec, result: SyncResult) -> CheckOutcome:
        api = result.api or ApiCalls()
        key = spec.primary_key[0]
        low = max(result.rows_in_mart - result.rejected, 0)  # a rejected row may be missing
        exact = spec.mode.deletes and not spec.soft_delete_column  # soft-deleted records keep their key
        high = result.rows_in_mart + api.deletes_refused if exact else None
        promise = f"between {low:,} and {high:,}" if high is not None and high != low else None
        promise = promise or (f"exactly {low:,}" if high is not None else f"at least {low:,}")

        def within(n: int | None) -> bool:
            return n is not None and n >= low and (high is None or n <= high)

        try:
            have = _settled(lambda: self.destination.count(spec.table, key), within)
        except Exception as exc:  # the API could not answer: the promise is unproven, say why
            summary = f"{spec.table}: counting the records keyed by {key} through the API failed: {exc}"
            return CheckOutcome(ROW_COUNT, False, summary, {"error": str(exc)[:500]})
        metadata = {
            "records_in_destination": have,
            "rows_in_mart": result.rows_in_mart,
            "rows_rejected": result.rejected,
            "counts": markdown_table(
                ["", "records"],
                [("mart", f"{result.rows_in_mart:,}"), (f"{spec.table} with {key} set", f"{have}")],
            ),
        }
        summary = (
            f"{spec.table} holds {have if have is None else f'{have:,}'} records with {key} set; mart "
            f"{spec.source} {result.rows_in_mart:,} rows, {result.rejected:,} rejected (promised: {promise})"
        )
        return CheckOutcome(ROW_COUNT, within(have), summary, metadata)

    def rejects(self, spec: SyncSpec, result: SyncResult) -> CheckOutcome:
        outcome = rejects(spec, result)
        api = result.api or ApiCalls()
        outcome.metadata["refused_by_the_api"] = api.records_refused
        outcome.metadata["set_aside_before_sending"] = _set_aside(result)
        if api.errors:
            outcome.metadata["first_api_errors"] = markdown_table(["error"], [(e,) for e in api.errors[:SAMPLE]])
        return outcome


def _set_aside(result: SyncResult) -> int:
    """Rows set aside in the warehouse before any call (value problems under max_rejects)."""
    return max(result.rejected - (result.api.records_refused if result.api else 0), 0)


def _settled(count, within) -> int | None:
    have, pause, waited = count(), 1.0, 0.0
    while not within(have) and waited < COUNT_SETTLE_SECONDS:
        time.sleep(pause)
        waited += pause
        pause *= 2
        have = count()
    return have
