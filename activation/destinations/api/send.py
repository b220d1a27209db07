"""Send one planned sync to the API: the changed rows as upserts, then the deletes, in the client's
batches, each record answered on its own; then advance the state for what the API accepted.

- A record the API refuses becomes a reject carrying the API's own message: it stays out of the
  state and is sent again next run (warehouses/rejects.py).
- A delete the API refuses keeps its key in the state, so the delete is tried again next run.
- `delete: {soft: field}` upserts the key with that field set instead of deleting (the deletion
  time for a datetime field, the day for a date, True for a boolean), and clears it (None, or
  False) when the row comes back: a returning key is new to the state, so its insert carries it.
- The state advances (`Warehouse.commit`) only after the last call. A crash before it leaves the
  state where it was: the next run sends the same change again, which the API's upsert by
  external ID absorbs, a delete of a record already gone counts as deleted, and the idempotency
  scope (the sync and the state's version) lets a client mark the re-sent change as the same one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from activation.destinations.api import twins
from activation.destinations.api.cascades import KEPT_BACK, held_back
from activation.destinations.api.client import FieldInfo, ObjectClient, Outcome, Record
from activation.destinations.api.plan import ApiJob
from activation.destinations.api.records import column_values, rebatch, to_records
from activation.syncs.results import ApiCalls, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import OP, Warehouse

Log = Callable[[str], None]
Progress = Callable[[int], None]  # records answered so far (the command line draws a bar from it)
REJECT_COLUMN = "(record)"  # what a reject refused by the API names as its column: the whole record
KEEP_ERRORS = 10


def soft_values(info: FieldInfo | None, deleted: bool) -> Any:
    """What the soft-delete field holds for a deleted record, or for a record back in the mart."""
    kind = info.type if info else "datetime"
    if kind == "boolean":
        return deleted
    if not deleted:
        return None
    now = dt.datetime.now(dt.UTC)
    if kind == "date":
        return now.date()
    return now


class Tally:
    """What the API answered in one sync: counts, refusals (key, reason) and the first errors."""

    def __init__(self) -> None:
        self.inserted = self.updated = self.deleted = self.sent = 0
        self.refused: list[tuple[tuple, str]] = []
        self.refused_deletes: list[tuple[tuple, str]] = []
        self.errors: list[str] = []

    def note_error(self, message: str) -> None:
        if message not in self.errors and len(self.errors) < KEEP_ERRORS:
            self.errors.append(message)


def _answered(object_name: str, outcomes: Sequence[Outcome], sent: int) -> dict[int, Outcome]:
    by_index = {o.index: o for o in outcomes}
    if sorted(by_index) != list(range(sent)):
        raise RuntimeError(
            f"{object_name}: the client answered {len(outcomes)} outcome(s) for {sent} record(s) (indexes "
            f"{sorted(by_index)[:10]}...); every record of a batch needs exactly one"
        )
    return by_index


def send_upserts(
    wh: Warehouse,
    client: ObjectClient,
    job: ApiJob,
    tally: Tally,
    progress: Progress = lambda _done: None,
    log: Log = lambda _msg: None,  # noqa: ARG001 - the same signature as send_deletes
) -> None:
    spec, plan = job.spec, job.mart
    object_name, key = spec.table, spec.primary_key[0]
    soft = spec.soft_delete_column
    soft_info = (job.fields or {}).get(soft) if soft else None
    size = max(client.batch_size(job.to_send), 1)
    linked = references(spec)
    relate = getattr(client, "set_references", None)
    if relate is not None:  # a client relating records apart from their fields: which fields, to what
        relate(object_name, linked)
    for table in rebatch(wh.rows(plan, spec.batch_size, operation=True), size):
        ops = table.column(OP).to_pylist()
        keys = column_values(table, key, key=True)

        def returning(i: int, ops: list[str] = ops) -> Record:
            return {soft: soft_values(soft_info, False)} if ops[i] == "insert" else {}

        records = to_records(table, plan.columns, key, returning if soft else None, linked)
        outcomes = _answered(object_name, client.upsert(object_name, key, records), len(records))
        tally.sent += len(records)
        for i, outcome in outcomes.items():
            if outcome.ok:
                created = outcome.created if outcome.created is not None else ops[i] == "insert"
                if created:
                    tally.inserted += 1
                else:
                    tally.updated += 1
            else:
                tally.refused.append(((keys[i],), outcome.error or "refused without a message"))
                tally.note_error(outcome.error)
        progress(tally.sent)


def references(spec: SyncSpec) -> dict[str, tuple[str, str]]:
    """Foreign-key field -> (parent object, the parent's key field) of a sync's records."""
    return {fk.column: (fk.references_table, fk.references_column) for fk in spec.parsed_foreign_keys}


def _delete(wh: Warehouse, client: ObjectClient, job: ApiJob, keys: list[Any], log: Log) -> list[Outcome]:
    """The deletes of one batch, but those that would cascade to children another sync holds
    (api/cascades.py): they are answered as refused with the reason, and so kept in the state."""
    held = held_back(wh, client, job, keys, log)
    rest = [i for i in range(len(keys)) if i not in held]
    sent = client.delete(job.spec.table, job.spec.primary_key[0], [keys[i] for i in rest]) if rest else []
    answered = _answered(job.spec.table, sent, len(rest))
    return [Outcome(i, False, error=why) for i, why in held.items()] + [
        dataclasses.replace(o, index=rest[j]) for j, o in answered.items()
    ]


def send_deletes(
    wh: Warehouse,
    client: ObjectClient,
    job: ApiJob,
    tally: Tally,
    progress: Progress = lambda _done: None,
    log: Log = lambda _msg: None,
) -> None:
    spec, plan = job.spec, job.mart
    if not job.to_delete:
        return
    object_name, key, soft = spec.table, spec.primary_key[0], spec.soft_delete_column
    size = max(client.batch_size(job.to_delete), 1)
    same = twins.absorbed(wh, plan, job.fields, client.kind, getattr(client, "key_comparison", "exact"))
    if same:
        log(f"{object_name}: {len(same):,} delete(s) not sent: the key only changed case, and the upsert updated it")
    for table in rebatch(wh.deleted(plan, spec.batch_size), size):
        keys = [k for k in column_values(table, key, key=True) if str(k).lower() not in same]
        if not keys:
            continue
        if soft:
            value = soft_values((job.fields or {}).get(soft), True)
            outcomes = client.upsert(object_name, key, [{key: k, soft: value} for k in keys])
        else:
            outcomes = _delete(wh, client, job, keys, log)
        for i, outcome in _answered(object_name, outcomes, len(keys)).items():
            if outcome.ok:
                tally.deleted += 1
            else:
                tally.refused_deletes.append(((keys[i],), outcome.error or "refused without a message"))
                if not (outcome.error or "").startswith(KEPT_BACK):
                    tally.note_error(outcome.error)
        progress(tally.sent + tally.deleted + len(tally.refused_deletes))


def record_refusals(wh: Warehouse, job: ApiJob, tally: Tally) -> None:
    """After the calls: refused records into the rejects, refused deletes kept in the state."""
    if tally.refused:
        wh.rejects.add_refusals(job.mart, REJECT_COLUMN, tally.refused)
    wh.rejects.refuse_deletes(job.mart, tally.refused_deletes)


def _field_type(job: ApiJob, name: str) -> str:
    info = (job.fields or {}).get(name)
    return info.type if info else str(job.mart.arrow_schema.field(name).type)


def result_of(job: ApiJob, tally: Tally, calls: ApiCalls, seconds: float) -> SyncResult:
    spec, plan = job.spec, job.mart
    rejected = job.rejected + len(tally.refused)
    remaining = job.rows_before + tally.inserted - (0 if spec.soft_delete_column else tally.deleted)
    warnings = list(job.plan.warnings)
    kept = [why for _, why in tally.refused_deletes if why.startswith(KEPT_BACK)]
    refused = len(tally.refused_deletes) - len(kept)
    if tally.refused or refused:
        warnings.append(
            f"the API refused {len(tally.refused):,} record(s) and {refused:,} delete(s) "
            f"(first: {tally.errors[0] if tally.errors else '?'}); they are sent again next run"
        )
    if kept:
        warnings.append(f"{len(kept):,} delete(s) kept back, tried again next run (first: {kept[0]})")
    return SyncResult(
        sync=spec.name,
        table=spec.table,
        mode=spec.mode.value,
        strategy="api",
        reason=plan.reason,
        rows_in_mart=plan.mart_rows,
        rows_sent=tally.sent,
        inserted=tally.inserted,
        updated=tally.updated,
        deleted=tally.deleted,
        rejected=rejected,
        unchanged=max(plan.mart_rows - tally.inserted - tally.updated - rejected, 0),
        rows_in_destination=max(remaining, 0),
        seconds=seconds,
        columns=[(d, _field_type(job, d)) for d in plan.columns],
        warnings=warnings,
        api=calls,
    )
