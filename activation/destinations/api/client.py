"""What an API destination's client does, so one engine drives Salesforce, HubSpot and any HTTP
endpoint the same way: describe the object, then upsert and delete records in batches, each record
answered on its own (an API accepts some records of a batch and refuses others).

Records are dicts of Python values (None, str, int, float, Decimal, bool, datetime.date,
timezone-aware datetime.datetime in UTC, and `Reference` for a foreign key); each client turns
them into its wire format (JSON, CSV, HubSpot's string properties), because "null", "empty" and
"unchanged" are spelled differently by each API.

Optional, read by the engine where a client has them:
- `deletes: bool` (False: this destination cannot delete, so `mirror` without a soft delete is
  refused before any write);
- `associates: bool` (True: a foreign key is no field of the object but a link the client sets
  apart from the record's fields, as HubSpot's associations; else it is a lookup field);
- `cascades(object) -> [(child object, lookup field)]` and `referencing(child, lookup, child key,
  parent key, keys) -> [(child's key, parent's key)]`, where deleting a parent deletes its
  children (api/cascades.py asks before a parent's delete);
- `set_references(object_name, {field: (parent object, parent key)})`, called before a sync's
  upserts, so an associating client knows its foreign keys even in a batch where every link is
  cleared (None);
- `set_idempotency_scope(scope: str)`, called before each sync's calls with the sync's name and
  the state version its change was computed against: a client that sends idempotency keys derives
  them from it, so a change re-sent after a crash carries the same keys and a later one new keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Record = dict[str, Any]


class DestinationDown(RuntimeError):
    """The whole destination refused, not one object: its login, an expired session it could not
    renew, its daily API limit. No object of the destination can be synced until that is fixed, so
    the engine stops them all (one object's failure stops only that object)."""


@dataclass(frozen=True)
class FieldInfo:
    """One field of an API object, as its describe / schema endpoint tells it."""

    name: str
    # string | textarea | integer | number | boolean | date | datetime | picklist | id | other
    type: str
    length: int | None = None  # the longest value it takes (characters)
    required: bool = False  # a create without it fails
    picklist: tuple[str, ...] | None = None  # allowed values of a restricted picklist / enumeration
    writable: bool = True  # createable and updateable
    precision: int | None = None  # digits in all, for numbers
    scale: int | None = None  # digits after the point
    external_id: bool = False  # the API finds records by it (Salesforce externalId, HubSpot unique value)
    multi: bool = False  # a multi-select: items joined by ';', each one of `picklist` (when given)
    case_sensitive: bool = True  # False: the API holds values differing only in case as one (api/twins.py)
    reference_to: tuple[str, ...] = ()  # a lookup: the objects its value may point at
    relationship: str | None = None  # the lookup's relationship name (Salesforce: Account for AccountId)


@dataclass(frozen=True)
class Reference:
    """A foreign-key field's value in a record: the `object` record whose `field` (the key the parent
    sync upserts it by: an external ID, a unique property) equals `key`. A NULL in the mart arrives
    as None instead: the link is cleared. Each client spells it (Salesforce: the relationship
    syntax of REST and of Bulk CSV headers; HubSpot: an association)."""

    object: str
    field: str
    key: Any


@dataclass(frozen=True)
class Outcome:
    """What the API answered for one record of a batch (`index` is its position in the batch)."""

    index: int
    ok: bool
    error: str = ""  # the API's own message (and code), kept as the reject's reason
    record_id: str | None = None  # the vendor's id, when it returns one
    created: bool | None = None  # True: inserted, False: updated, None: the API does not say


@dataclass
class CallStats:
    """Calls made to one destination: what run history and the benchmark report."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 (or the vendor's equivalent) answers received
    server_errors: int = 0  # 5xx answers and dropped connections
    api_errors: list[str] = field(default_factory=list)  # the first few distinct per-record errors

    def note_error(self, message: str, keep: int = 20) -> None:
        if message not in self.api_errors and len(self.api_errors) < keep:
            self.api_errors.append(message)


class ObjectClient(Protocol):
    """A vendor's client, bound to one destination (one org, one portal, one endpoint)."""

    kind: str  # "salesforce" | "hubspot" | "http": the Dagster kind of its assets
    stats: CallStats

    def describe(self, object_name: str) -> dict[str, FieldInfo] | None:
        """The object's fields, or None where the API has no schema endpoint (generic HTTP)."""

    def batch_size(self, changes: int) -> int:
        """Records per `upsert` / `delete` call for a change of `changes` records (Salesforce picks
        sObject Collections or a Bulk 2.0 job by this count)."""

    def upsert(self, object_name: str, key_field: str, records: Sequence[Record]) -> list[Outcome]:
        """Insert or update by `key_field` (an external ID / unique property); one outcome per record."""

    def delete(self, object_name: str, key_field: str, keys: Sequence[Any]) -> list[Outcome]:
        """Delete the records whose `key_field` equals each key; a key already gone counts as deleted."""

    def count(self, object_name: str, key_field: str | None = None) -> int | None:
        """Records of the object (with `key_field` set, when given: those a sync keys), where the API
        can count them (a read-back check); else None."""

    def close(self) -> None: ...
