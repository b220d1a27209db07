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
        column = batch.column(name)
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = pc.cast(column, pa.timestamp(column.type.unit, "UTC"))
        if pa.types.is_floating(column.type) and len(column):
            bad = pc.or_(pc.is_nan(column), pc.is_inf(column))
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                key = "/".join(str(batch.column(k)[row].as_py()) for k in self.key)
                raise UnencodableValue(key, name, f"{column[row].as_py()} has no JSON form")
        return column.to_pylist()

    def _object(self, values: Sequence[Any]) -> bytes:
        if self.json_columns:  # JSON text embedded as JSON
            values = [
                orjson.Fragment(v) if v is not None and c in self.json_columns else v
                for c, v in zip(self.columns, values, strict=True)
            ]
        return dumps(dict(zip(self.columns, values, strict=True)))

    def events(self, batch: pa.RecordBatch, op_column: str) -> list[Event]:
        """One event per row; `op_column` holds insert / update / delete / snapshot."""
        names = batch.schema.names
        keys = [self._column(batch, k) for k in self.key]
        ops = batch.column(op_column).to_pylist()
        deleting = all(o == "delete" for o in ops)
        afters = None if deleting else [self._column(batch, c) for c in self.columns]
        kept = batch.column(KEPT).to_pylist() if KEPT in names else None
        befores = [self._column(batch, BEFORE + c) for c in self.columns] if kept is not None else None
        out = []
        columns, values_at = self.columns, [self.columns.index(c) for c in self.values]
        for i in range(batch.num_rows):
            op = OPS[ops[i]]
            key_values = [k[i] for k in keys]
            subject = "/".join(str(v) for v in key_values)
            try:
                key = dumps(dict(zip(self.key, key_values, strict=True)))
                if op == "d":
                    after_values, after = None, b"null"
                else:
                    after_values = [a[i] for a in afters]
                    after = self._object(after_values)
                before, changed = b"null", b"null"
                if befores is not None and kept[i] and op in ("u", "d"):
                    before_values = [b[i] for b in befores]
                    before = self._object(before_values)
                    if op == "u":
                        changed = dumps([columns[j] for j in values_at if before_values[j] != after_values[j]])
            except TypeError as exc:  # a Decimal NaN, a type with no JSON form
                raise UnencodableValue(subject, _culprit(columns, after_values), str(exc)) from exc
            digest = hashlib.blake2b(self._prefix + key + op.encode() + after, digest_size=16).hexdigest()
            payload = b"".join(
                (
                    self._head, digest.encode(), b'","subject":', dumps(subject), b',"data":{"op":"', op.encode(),
                    b'","key":', key, b',"before":', before, b',"after":', after, b',"changed":', changed,
                    self._tail, b"}}",
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
