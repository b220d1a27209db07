"""An API object's describe as a plain value, kept beside the state at each real sync
(`activation.warehouses.destination_schemas`), so a review in CI, which holds no API credentials,
runs the same checks before any call (`fields.check_mapping`, `fields.value_checks`, `twins`)
against the object as the last real sync described it.

Parents are not re-checked from it: whether a child's parent will be held depends on the parent
sync's run, which a review of one build cannot know; the review says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from activation.destinations.api import fields as mapping
from activation.destinations.api import twins
from activation.destinations.api.client import FieldInfo, ObjectClient
from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.warehouses.base import Warehouse

KIND = "api"
_TUPLES = ("picklist", "reference_to")


def describe(client: ObjectClient, object_name: str, fields: Mapping[str, FieldInfo]) -> dict[str, Any]:
    """What the checks read of the client and the object's describe."""
    return {
        "kind": KIND,
        "client": client.kind,
        "object": object_name,
        "associations": bool(getattr(client, "associates", False)),
        "key_comparison": getattr(client, "key_comparison", "exact"),
        "fields": [dataclasses.asdict(f) for f in fields.values()],
    }


def is_api(description: Mapping[str, Any]) -> bool:
    return description.get("kind") == KIND


def fields_of(description: Mapping[str, Any]) -> dict[str, FieldInfo]:
    known = {f.name for f in dataclasses.fields(FieldInfo)}
    out = {}
    for raw in description["fields"]:
        values = {k: (tuple(v) if k in _TUPLES and v is not None else v) for k, v in raw.items() if k in known}
        out[values["name"]] = FieldInfo(**values)
    return out


def problems(wh: Warehouse, plan: Plan, description: Mapping[str, Any]) -> tuple[list[Problem], list[str]]:
    """The problems that would refuse the sync before any call, and notes (rows set aside under
    `max_rejects`, what was not checked), judged against the kept describe; reads the warehouse only."""
    spec, object_name = plan.spec, description["object"]
    fields, kind = fields_of(description), description["client"]
    found = mapping.check_mapping(
        plan, object_name, fields, spec.destination, associations=description.get("associations", False)
    )
    found += filter(None, [twins.key_problem(kind, plan, object_name, fields)])
    if found:  # the mapping does not fit: the run stops before checking values
        return found, []
    values = twins.find(wh, plan, object_name, fields, kind, description.get("key_comparison", "exact"))
    values += mapping.find_problems(wh, plan, mapping.value_checks(wh, plan, object_name, fields))
    notes = []
    if spec.foreign_keys:
        notes.append("parents were not checked (whether a parent is held depends on its own sync's run)")
    if not values:
        return [], notes
    allowed = spec.max_rejects
    if allowed is None:
        return [p for _, p in values], notes
    [rows] = wh.count_where(plan, [" OR ".join(f"({v.condition})" for v, _ in values)])
    total = wh.mart_rows(plan)
    if allowed.allows(rows, total):
        return [], [*notes, f"{rows:,} rows would be set aside as rejects (within max_rejects {allowed})"]
    return [p for _, p in values], [*notes, f"{rows:,} of {total:,} rows refused, over max_rejects {allowed}"]
