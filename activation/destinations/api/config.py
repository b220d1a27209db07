"""What a sync into an API object may be, checked when syncs.yml loads (syncs/spec.py calls it for
every sync whose destination is an API): an API upserts by one external ID and has no transaction,
so what needs one is refused at load, saying why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from activation.destinations import registry
from activation.syncs.options import Mode

if TYPE_CHECKING:
    from activation.syncs.spec import DestinationSpec, SyncSpec

_API_MODE_REASONS = {
    Mode.REPLACE: "an API has no atomic swap: records would be missing or doubled while it ran",
    Mode.TRUNCATE_INSERT: "an API has no atomic truncate: the object would stand empty while it reloaded",
    Mode.INSERT: "an API destination writes by upsert on the external ID, so it cannot promise insert-only",
    Mode.UPDATE: "an API destination writes by upsert on the external ID, so it cannot promise update-only",
}


def check_api_sync(sync: SyncSpec, destination: DestinationSpec) -> None:
    """What a sync into an API object cannot do, refused at load (the API has no transaction)."""
    where = f"syncs.{sync.name}"
    kind = f"the {destination.type} destination {sync.destination!r}"
    if len(sync.primary_key) != 1:
        raise ValueError(
            f"{where}.primary_key: a sync into {kind} upserts by ONE field (the external ID or unique property "
            f"the API matches records by), not {sync.primary_key}"
        )
    if sync.mode in _API_MODE_REASONS:
        raise ValueError(
            f"{where}.mode: {sync.mode.value} is not possible into {kind}: {_API_MODE_REASONS[sync.mode]}; "
            "use upsert or mirror"
        )
    if sync.foreign_keys and not registry.relationships(destination.type):
        raise ValueError(
            f"{where}.foreign_keys: {kind} cannot relate records (its API has no lookups or associations "
            "to set); relate records through fields of your own in the mart"
        )
    if sync.scope:
        raise ValueError(f"{where}.scope: scopes share a database table; an API object has no such ownership")
    if sync.partition:
        raise ValueError(
            f"{where}.partition: a partitioned sync replaces one day's rows at a time, which needs a "
            "transaction an API does not have; use mode: mirror without partition"
        )


def check_api_relationship(sync: SyncSpec, column: str, parent: SyncSpec) -> None:
    """A relationship between API objects is set by the parent's key as the API finds records by it
    (Salesforce: the parent's external ID; HubSpot: its unique property), so a foreign key must
    name the parent sync's primary key."""
    [parent_key] = parent.primary_key
    target = sync.foreign_keys[column]
    if sync.columns and column not in sync.columns:
        raise ValueError(
            f"syncs.{sync.name}.foreign_keys.{column}: {column!r} is not one of the fields in `columns`; map the "
            f"mart column holding the parent's {parent_key} to it (e.g. {column}: account_key)"
        )
    if target.partition(".")[2] != parent_key:
        raise ValueError(
            f"syncs.{sync.name}.foreign_keys.{column}: {target!r} must name the key {parent.table}.{parent_key} "
            f"(sync {parent.name!r} upserts {parent.table} by it, and the API finds the parent record by it)"
        )
