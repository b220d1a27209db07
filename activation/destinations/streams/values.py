"""Values a stream cannot carry, found in the warehouse before the first event is published:
NaN and infinity (JSON has no form for them; a float NaN would quietly become null), and events
over the broker's payload limit. Each refuses the sync naming the key and the field, or is set
aside as a reject under `max_rejects` (not published, kept out of the state, tried next run).

Sizes are found in two steps, so a large mart costs one scan: a cheap upper bound in SQL (every
value's text length, times what JSON escaping and the before-image can add) picks candidates,
and only those are encoded exactly."""

from __future__ import annotations

import pyarrow as pa

from activation.destinations.streams import changes
from activation.destinations.streams.envelope import Encoder
from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError
from activation.warehouses.base import Warehouse

ENVELOPE_BYTES = 1024  # the envelope's attributes, its source block and the field names, generously
BLOW_UP = 12  # a character may take 6 bytes escaped in JSON, and appears in before and after


def not_finite(wh: Warehouse, plan: Plan) -> dict[str, str]:
    """Float column -> the SQL condition of a value JSON cannot carry (over the mart as read, alias x)."""
    checks, q = wh.flavour.value_checks, wh.flavour.quote
    return {
        f.name: f"({checks['nan'].format(c=q(f.name))} OR {checks['inf'].format(c=q(f.name))})"
        for f in plan.arrow_schema
        if pa.types.is_floating(f.type)
    }


def oversized(wh: Warehouse, plan: Plan, encoder: Encoder, max_payload: int) -> list[tuple[str, str, int]]:
    """(key, the largest field, bytes) of each event over `max_payload`."""
    f = wh.flavour
    lengths = " + ".join(f"coalesce({f.length(f.cast('m.' + f.quote(c), 'text'))}, 4)" for c in plan.columns)
    bound = f"({lengths}) * {BLOW_UP} + {ENVELOPE_BYTES} > {int(max_payload)}"
    [candidates] = wh.query(f"SELECT count(*) FROM {wh.to_send(plan)} WHERE {bound}")[0]
    if not candidates:
        return []
    found = []
    for batch in changes.upserts(wh, plan, 1000, where=bound):
        for row, event in enumerate(encoder.events(batch, changes.OP)):
            if len(event.payload) > max_payload:
                widest = max(plan.columns, key=lambda c, r=row: len(str(batch.column(c)[r].as_py() or "")))
                found.append((event.subject, widest, len(event.payload)))
    return found


def refuse_or_set_aside(wh: Warehouse, plan: Plan, encoder: Encoder, max_payload: int, stream: str) -> int:
    """Raise SyncError naming each key and field a stream cannot take, or set them aside under
    `max_rejects`; the rows set aside."""
    spec, problems = plan.spec, []
    nan = not_finite(wh, plan)
    if nan:
        counts = wh.count_where(plan, list(nan.values()))
        for (column, condition), count in zip(nan.items(), counts, strict=True):
            if not count:
                continue
            keys = tuple(wh.keys_where(plan, condition, 5))
            reason = "hold NaN or infinity, which JSON cannot carry (it would arrive as null)"
            problems.append(_problem(spec, stream, column, reason, count, keys, "make it NULL or a number in the mart"))
            if spec.max_rejects is not None:
                wh.rejects.add(plan, column, "NaN or infinity: JSON cannot carry it", condition)
    big = oversized(wh, plan, encoder, max_payload)
    if big:
        by_field: dict[str, list[tuple[str, int]]] = {}
        for key, column, size in big:
            by_field.setdefault(column, []).append((key, size))
        for column, found in by_field.items():
            keys = tuple(f"{k} ({n:,} bytes)" for k, n in found[:5])
            reason = f"make an event over the broker's limit of {max_payload:,} bytes"
            problems.append(_problem(spec, stream, column, reason, len(found), keys, "shorten the value in the mart"))
            if spec.max_rejects is not None:
                wh.rejects.add_keys(plan, column, f"event over {max_payload:,} bytes", _key_tuples(plan, found))
    if not problems:
        return 0
    if spec.max_rejects is None:
        raise SyncError(
            f"{spec.name} -> {stream}: {len(problems)} problem(s) no event was published for:\n"
            + "\n".join(f"- {p}" for p in problems),
            problems,
        )
    return wh.rejects.verdict(plan, "fix the values in the mart", problems)


def _problem(spec, stream: str, column: str, reason: str, rows: int, keys: tuple, fix: str) -> Problem:
    return Problem(
        stream, reason, column=column, rows=rows, keys=keys, key_columns=tuple(spec.primary_key),
        fix=fix, destination=spec.destination,
    )  # fmt: skip


def _key_tuples(plan: Plan, found: list[tuple[str, int]]) -> list[tuple]:
    """The keys' values as the warehouse holds them (a composite key is joined by '/' in the subject)."""
    schema = plan.arrow_schema
    out = []
    for subject, _ in found:
        parts = subject.split("/") if len(plan.spec.primary_key) > 1 else [subject]
        out.append(tuple(_typed(schema.field(k).type, v) for k, v in zip(plan.spec.primary_key, parts, strict=True)))
    return out


def _typed(kind: pa.DataType, text: str):
    return int(text) if pa.types.is_integer(kind) else text
