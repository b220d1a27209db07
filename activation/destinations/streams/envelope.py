"""The event every stream destination publishes: a CloudEvents 1.0 envelope whose `data` has
Debezium's shape. Version 1 (`envelopeversion: "1"`); a change that breaks a consumer gets a new
version, and the two are published side by side until consumers moved.

```json
{"specversion": "1.0", "type": "dev.activation.change", "source": "activation://<destination>/<sync>",
 "envelopeversion": "1", "datacontenttype": "application/json", "time": "2026-12-07T21:00:00.000000Z",
 "id": "<32 hex>", "subject": "<key, its columns joined by />",
 "data": {"op": "c|u|d|r", "key": {...}, "before": {...}|null, "after": {...}|null, "changed": [...]|null,
          "source": {"sync", "destination", "mart", "run_id", "state_version"}, "ts_ms": 1765141200000}}
```
- `op`: `c` a new key, `u` a changed row, `d` a key that left the mart (`mirror` only), `r` a row
  of a snapshot (the first sync, or a full resync).
- `before`: the row's values as last sent (the warehouse keeps them, `kept_values_relation`), for
  `u` and `d`; null for `c` and `r`, and null when the warehouse keeps none. `changed`: the fields
  whose value differs between `before` and `after`, for `u` with a `before`; null otherwise.
- Values: destination column names, masked as configured. Decimals are strings (every digit
  kept), timestamps UTC ISO-8601 with `Z` (a zone-less timestamp is taken as UTC), dates
  `YYYY-MM-DD`, JSON columns embedded as JSON. NaN and infinity have no JSON form: refused.
- `id`: what the brokers deduplicate by (engine.py), derived from (sync, state version, key, op,
  the content of `after`): a retry of the same change against the same state has the same id and
  is dropped; the same key with other content (the mart changed before the retry) is a new event.
  A consumer that also remembers ids it applied is safe beyond the broker's window.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from activation.destinations.streams import columnar
from activation.syncs.model import JSON_FIELD

VERSION = "1"
TYPE = "dev.activation.change"
OPS = {"insert": "c", "update": "u", "delete": "d", "snapshot": "r"}
BEFORE = "_activation_before_"  # prefix of the kept values' columns in a batch
KEPT = "_activation_kept"  # whether the warehouse kept values for the key (before is known)
_JSON = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class UnencodableValue(ValueError):
    """A value JSON cannot carry exactly; names the key and the field."""

    def __init__(self, key: str, field: str, reason: str):
        super().__init__(f"key {key}: field {field}: {reason}")
        self.key, self.field, self.reason = key, field, reason


@dataclass(frozen=True)
class Event:
    id: str
    payload: bytes
    subject: str  # the key as text
    op: str


@dataclass(frozen=True)
class Origin:
    """What every event of one sync's run says about where it came from."""

    destination: str
    sync: str
    mart: str
    run_id: str
    state_version: str | None
    time: dt.datetime

    def source_json(self) -> bytes:
        return orjson.dumps(
            {
                "sync": self.sync,
                "destination": self.destination,
                "mart": self.mart,
                "run_id": self.run_id,
                "state_version": self.state_version,
            }
        )


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} has no JSON form")
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} has no JSON form")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_JSON)


class Encoder:
    """Arrow batches of changes (the columns as sent, the op, maybe the kept values) -> events."""

    def __init__(self, origin: Origin, key: Sequence[str], columns: Sequence[str], json_columns: Sequence[str] = ()):
        self.origin, self.key, self.columns = origin, list(key), list(columns)
        self.values = [c for c in self.columns if c not in self.key]
        self.json_columns = set(json_columns)
        self._prefix = f"{origin.sync}\0{origin.state_version or 'new'}\0".encode()
        stamp = origin.time.astimezone(dt.UTC)
        self._head = (
            b'{"specversion":"1.0","type":"' + TYPE.encode() + b'","source":'
            + orjson.dumps(f"activation://{origin.destination}/{origin.sync}")
            + b',"envelopeversion":"' + VERSION.encode() + b'","datacontenttype":"application/json","time":'
            + dumps(stamp) + b',"id":"'
        )  # fmt: skip
        self._tail = b',"source":' + origin.source_json() + b',"ts_ms":' + str(int(stamp.timestamp() * 1000)).encode()

    @staticmethod
    def json_columns_of(schema: pa.Schema) -> list[str]:
        return [f.name for f in schema if f.metadata and f.metadata.get(JSON_FIELD)]

    def _column(self, batch: pa.RecordBatch, name: str) -> list:
        """A column as Python values JSON takes as they are: timestamps as naive UTC (a zoned
        timestamp's `to_pylist` builds a zoned datetime per value, and imports pandas to do it),
        decimals as their exact text (Arrow's cast writes what `str(Decimal)` writes)."""
        column = batch.column(name)
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = column.cast(pa.timestamp(column.type.unit))  # the UTC instants, without the zone
        elif pa.types.is_decimal(column.type):
            column = column.cast(pa.string())
        self._refuse_not_finite(batch, name)
        return column.to_pylist()

    def _refuse_not_finite(self, batch: pa.RecordBatch, name: str) -> None:
        column = batch.column(name)
        if pa.types.is_floating(column.type) and len(column):
            bad = pc.or_(pc.is_nan(column), pc.is_inf(column))
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                key = "/".join(str(batch.column(k)[row].as_py()) for k in self.key)
                raise UnencodableValue(key, name, f"{column[row].as_py()} has no JSON form")

    def _rows(self, batch: pa.RecordBatch, prefix: str = "") -> list[tuple]:
        """The batch's rows of the sent columns (`prefix`: the kept values' copies), JSON columns as fragments."""
        columns = []
        for c in self.columns:
            values = self._column(batch, prefix + c)
            if c in self.json_columns:  # JSON text embedded as JSON
                values = [orjson.Fragment(v) if v is not None else None for v in values]
            columns.append(values)
        return list(zip(*columns, strict=True))

    def events(self, batch: pa.RecordBatch, op_column: str) -> list[Event]:
        """One event per row; `op_column` holds insert / update / delete / snapshot."""
        if columnar.takes(batch.schema, self.key, self.columns, self.json_columns):
            return self._columnar_events(batch, op_column)
        return self.row_events(batch, op_column)

    def _columnar_events(self, batch: pa.RecordBatch, op_column: str) -> list[Event]:
        for name in batch.schema.names:
            self._refuse_not_finite(batch, name)
        found = columnar.parts(batch, op_column, self.key, self.columns, self.values, BEFORE, KEPT)
        none = [None] * batch.num_rows
        befores, changes = found.get("before", none), found.get("changed", none)
        head, tail, prefix, blake2b, out = self._head, self._tail, self._prefix, hashlib.blake2b, []
        for op_name, subject, key, after, before, changed in zip(
            found["op"], found["subject"], found["key"], found["after"], befores, changes, strict=True
        ):
            op = OPS[op_name].encode()
            key, after = key.encode(), b"null" if after is None else after.encode()
            digest = blake2b(prefix + key + op + after, digest_size=16).hexdigest()
            payload = b"".join(
                (
                    head, digest.encode(), b'","subject":', dumps(subject), b',"data":{"op":"', op,
                    b'","key":', key, b',"before":', b"null" if before is None else before.encode(),
                    b',"after":', after, b',"changed":', b"null" if changed is None else changed.encode(),
                    tail, b"}}",
                )
            )  # fmt: skip
            out.append(Event(digest, payload, subject, OPS[op_name]))
        return out

    def row_events(self, batch: pa.RecordBatch, op_column: str) -> list[Event]:
        """`events` a row at a time, for the column types `columnar` does not take."""
        names, n = batch.schema.names, batch.num_rows
        keys = list(zip(*(self._column(batch, k) for k in self.key), strict=True))
        ops = batch.column(op_column).to_pylist()
        deleting = all(o == "delete" for o in ops)
        afters = [None] * n if deleting else self._rows(batch)
        kept = batch.column(KEPT).to_pylist() if KEPT in names else None
        befores = self._rows(batch, BEFORE) if kept is not None else None
        columns, key_names, values_at = self.columns, self.key, [self.columns.index(c) for c in self.values]
        head, tail, prefix, blake2b = self._head, self._tail, self._prefix, hashlib.blake2b
        out = []
        for i in range(n):
            op = OPS[ops[i]]
            key_values = keys[i]
            subject = "/".join(str(v) for v in key_values)
            after_values = afters[i]
            try:
                key = dumps(dict(zip(key_names, key_values, strict=True)))
                after = b"null" if op == "d" else dumps(dict(zip(columns, after_values, strict=True)))
                before, changed = b"null", b"null"
                if befores is not None and kept[i] and op in ("u", "d"):
                    before_values = befores[i]
                    before = dumps(dict(zip(columns, before_values, strict=True)))
                    if op == "u":
                        changed = dumps([columns[j] for j in values_at if before_values[j] != after_values[j]])
            except TypeError as exc:  # a type with no JSON form
                raise UnencodableValue(subject, _culprit(columns, after_values), str(exc)) from exc
            digest = blake2b(prefix + key + op.encode() + after, digest_size=16).hexdigest()
            payload = b"".join(
                (
                    head, digest.encode(), b'","subject":', dumps(subject), b',"data":{"op":"', op.encode(),
                    b'","key":', key, b',"before":', before, b',"after":', after, b',"changed":', changed,
                    tail, b"}}",
                )
            )  # fmt: skip
            out.append(Event(digest, payload, subject, op))
        return out


def _culprit(columns: Sequence[str], values: Sequence[Any] | None) -> str:
    for name, value in zip(columns, values or (), strict=False):
        if isinstance(value, float | decimal.Decimal) and not _finite(value):
            return name
        try:
            dumps(value)
        except TypeError:
            return name
    return "?"


def _finite(value: float | decimal.Decimal) -> bool:
    return value.is_finite() if isinstance(value, decimal.Decimal) else math.isfinite(value)
