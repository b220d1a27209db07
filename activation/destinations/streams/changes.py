"""The changes of one sync read from the warehouse, a batch at a time, ready to become events:
the rows to send with their operation (a snapshot's rows as `snapshot`), then the keys that left
the mart, each joined with the values last sent where the warehouse keeps them
(`Warehouse.kept_values_relation`, None: it keeps none, and `before` is null). Ordered by key."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from activation.destinations.streams.envelope import BEFORE, KEPT
from activation.syncs.model import Plan
from activation.warehouses.base import OP, Warehouse

__all__ = ["OP", "deletes", "kept_values", "upserts"]


def kept_values(wh: Warehouse, plan: Plan) -> str | None:
    """The relation of the values as last sent (destination names, masked, keys included), or None."""
    found = getattr(wh, "kept_values_relation", None)
    return found(plan.spec) if found is not None else None


def _before_columns(wh: Warehouse, plan: Plan, kept: str | None) -> tuple[str, str]:
    """(the kept values' select list, the join) for alias m; empty when nothing is kept."""
    if kept is None:
        return "", ""
    q = wh.flavour.quote
    first = q(plan.spec.primary_key[0])
    cols = "".join(f", kv.{q(c)} AS {q(BEFORE + c)}" for c in plan.columns)
    cols += f", kv.{first} IS NOT NULL AS {q(KEPT)}"
    return cols, f" LEFT JOIN {kept} kv ON {wh.on(plan.spec, 'kv', 'm')}"


def upserts(
    wh: Warehouse, plan: Plan, batch_size: int, where: str | None = None, limit: int | None = None
) -> Iterator[pa.RecordBatch]:
    """New and changed rows (every row of a full plan, as `snapshot`), rejects left out; `where`
    (over alias m) narrows them."""
    f = wh.flavour
    kept = None if plan.full else kept_values(wh, plan)
    cols = ", ".join(
        f"{f.cast('m.' + f.quote(c), plan.casts[c])} AS {f.quote(c)}" if c in plan.casts else f"m.{f.quote(c)}"
        for c in plan.columns
    )
    op = f"'snapshot' AS {f.quote(OP)}" if plan.full else f"m.{f.quote(OP)}"
    before, join = _before_columns(wh, plan, kept)
    query = f"SELECT {cols}, {op}{before} FROM {wh.to_send(plan)}{join}" + (f" WHERE {where}" if where else "")
    yield from _read(wh, plan, query, batch_size, limit)


def _read(wh: Warehouse, plan: Plan, query: str, batch_size: int, limit: int | None) -> Iterator[pa.RecordBatch]:
    if limit is not None:  # a sample: the first keys only
        reader = wh.reader(f"{query} ORDER BY {wh.keys(plan, 'm')} LIMIT {int(limit)}", plan.arrow_schema, limit)
    else:
        reader = wh.sorted_reader(query, wh.keys(plan, "m"), plan.arrow_schema, batch_size)
    try:
        yield from reader
    finally:  # a run that stops mid-way must not leave the warehouse connection's result open
        reader.close()


def deletes(wh: Warehouse, plan: Plan, batch_size: int, limit: int | None = None) -> Iterator[pa.RecordBatch]:
    """Keys that left the mart (as of the state), with the values last sent where kept."""
    f, spec = wh.flavour, plan.spec
    if plan.full:
        source = wh.work_table(spec, "departed")
    else:
        source = f"(SELECT * FROM {wh.work_table(spec, 'delta')} WHERE {f.quote(OP)} = 'delete')"
    kept = kept_values(wh, plan)
    before, join = _before_columns(wh, plan, kept)
    keys = ", ".join(f"m.{f.quote(k)}" for k in spec.primary_key)
    query = f"SELECT {keys}, 'delete' AS {f.quote(OP)}{before} FROM {source} m{join}"
    yield from _read(wh, plan, query, batch_size, limit)
