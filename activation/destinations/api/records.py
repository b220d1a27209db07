"""Rows from the warehouse as API records (client.py's Python values), in batches of the client's size.

What each mart value becomes (each client then spells it in its wire format):
- NULL -> None: the field is cleared (Salesforce: fieldsToNull / `#N/A` in Bulk CSV; HubSpot: "";
  JSON: null).
- empty text '' -> None, for the same reason: Salesforce and HubSpot both read '' as "clear", so
  sending it says what will happen; a required field's check counts '' as empty. The key field is
  never changed.
- text, and JSON or nested columns (as their JSON text) -> str, byte for byte (no trimming).
- boolean -> bool; integer -> int; decimal -> decimal.Decimal, exact (never through a float);
  float -> float (NaN and infinity are refused in the warehouse first).
- date -> datetime.date.
- timestamp with a time zone -> datetime in UTC (the same instant); timestamp without one -> read
  as UTC (marts keep UTC), sent as UTC; nanoseconds are cut to microseconds.
- a picklist value -> str, checked against the picklist in the warehouse first.
- a foreign-key field (`foreign_keys:` in syncs.yml) -> `Reference(parent object, its key field,
  the value)`, or None when NULL: the client sets or clears the relationship.

Batches are cut from the warehouse's Arrow stream as they arrive: at most one warehouse batch
and one API batch are held at a time, however large the change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from activation.destinations.api.client import Record, Reference
from activation.destinations.api.fields import mart_kind


def rebatch(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.Table]:
    """The reader's rows in tables of exactly `size` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in reader:
        start = 0
        while start < batch.num_rows:
            take = min(size - held, batch.num_rows - start)
            pending.append(batch.slice(start, take))
            held += take
            start += take
            if held == size:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _no_empty_text(value: str | None) -> str | None:
    return value or None


def column_values(table: pa.Table, name: str, *, key: bool = False) -> list[Any]:
    """One column's values, converted as the module docstring says."""
    column = table.column(name)
    field = table.schema.field(name)
    kind = mart_kind(field)
    if kind == "timestamp":
        if field.type.unit == "ns":
            column = column.cast(pa.timestamp("us", tz=field.type.tz), safe=False)
        return [_utc(v) for v in column.to_pylist()]
    values = column.to_pylist()
    if kind == "text" and not key:
        return [_no_empty_text(v) for v in values]
    return values


def to_records(
    table: pa.Table,
    columns: Sequence[str],
    key: str,
    extra: Callable[[int], Record] | None = None,
    references: Mapping[str, tuple[str, str]] | None = None,
) -> list[Record]:
    """The table's rows as records of `columns` (API field names); `extra(i)` adds fields to row i.
    A foreign-key field (`references`: field -> (parent object, parent key field)) carries a
    `Reference` to the parent's key, or None (the link cleared)."""
    values = {name: column_values(table, name, key=name == key) for name in columns}
    for name, (parent, parent_key) in (references or {}).items():
        values[name] = [None if v is None else Reference(parent, parent_key, v) for v in values[name]]
    records = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
    if extra is not None:
        for i, record in enumerate(records):
            record.update(extra(i))
    return records
