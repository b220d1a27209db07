"""Keys distinct in the warehouse that the API takes as one record ("key twins").

The SQL path asks the target's collation (sql/collisions.py); an API has no collation to ask, so
each destination says how it compares its key field, as `FieldInfo.case_sensitive`:
- Salesforce: the key field's describe, `caseSensitive` (false for an external ID text field
  unless it was created case sensitive): an upsert by `Activation_Key__c` finds '0015g00000A0010AAB'
  and '0015g00000a0010aab' as one record, so the second row would overwrite the first;
- HubSpot: `email` and unique-value properties (hubspot/schema.py says what HubSpot documents);
- HTTP: the destination's `key_comparison: exact | case_insensitive` setting.
Twins are found in the warehouse, one query, before any call (`lower()` on both sides: the API
folds case, the warehouse's lower() is the nearest spelling every warehouse has). Without
`max_rejects` they refuse the sync, naming the object, the key field, both keys and why; with it
every twin but the first by key order is set aside as a reject and the first is sent.
A key that only changes case between syncs ('ABC' leaves, 'abc' arrives) is one record to the API:
the upsert updates it, and the delete of 'ABC' is not sent (`absorbed`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from activation.destinations.api.client import FieldInfo
from activation.syncs import validate
from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.syncs.validate import Check, Violation
from activation.warehouses.base import OP, Warehouse

FIX = "make the keys distinct as the API compares them (e.g. one spelling per record) in the mart"


def why(kind: str, object_name: str, info: FieldInfo | None, key: str) -> str | None:
    """Why the API compares `key` of `object_name` without regard to case, or None (exact)."""
    if info is not None and not info.case_sensitive and info.type in ("string", "textarea", "id", "other"):
        if kind == "salesforce":
            return f"Salesforce compares external ID {key} case-insensitively (describe caseSensitive: false)"
        vendor = {"hubspot": "HubSpot"}.get(kind, kind)
        return f"{vendor} compares {object_name}.{key} case-insensitively"
    return None


def key_problem(kind: str, plan: Plan, object_name: str, fields: Mapping[str, FieldInfo] | None) -> Problem | None:
    """A Salesforce upsert finds records by an external ID (or idLookup) field only: any other key
    would fail every record of every call, so it is refused before the first."""
    spec = plan.spec
    if kind != "salesforce" or len(spec.primary_key) != 1 or fields is None:
        return None
    [key] = spec.primary_key
    info = fields.get(key)
    if info is None or info.external_id:
        return None
    return Problem(
        object_name,
        f"is not an external ID field of {object_name} (describe externalId: false, idLookup: false), "
        "so Salesforce cannot upsert by it",
        key,
        fix="make the field an External ID in Salesforce, or key the sync by one that is",
        destination=spec.destination,
    )


def _reason(kind: str, object_name: str, fields: Mapping[str, FieldInfo] | None, key: str, setting: str) -> str | None:
    reason = why(kind, object_name, (fields or {}).get(key), key)
    if reason is None and setting == "case_insensitive":
        reason = f"the destination compares {object_name}.{key} case-insensitively (key_comparison: case_insensitive)"
    return reason


def absorbed(wh: Warehouse, plan: Plan, fields: Mapping[str, FieldInfo] | None, kind: str, setting: str) -> set[str]:
    """Keys leaving the state whose twin is being sent ('ABC' left the mart, 'abc' arrived): the
    API's upsert of 'abc' updates the record 'ABC' is, so deleting 'ABC' afterwards would delete
    the record just written. Their deletes are not sent (the state drops 'ABC' all the same).
    Lower-cased key texts. Called for a plan with deletes to send (a full plan's departed keys
    found, as `Warehouse.deleted` needs them)."""
    spec = plan.spec
    if len(spec.primary_key) != 1:
        return set()
    [key] = spec.primary_key
    if _reason(kind, spec.table, fields, key, setting) is None:
        return set()
    f = wh.flavour
    text = f"lower({f.cast(f.quote(key), 'text')})"
    if plan.full:
        leaving = f"SELECT {text} AS k FROM {wh.work_table(spec, 'departed')}"
    else:
        leaving = f"SELECT {text} AS k FROM {wh.work_table(spec, 'delta')} WHERE {f.quote(OP)} = 'delete'"
    sent = f"SELECT lower({f.cast('m.' + f.quote(key), 'text')}) FROM {wh.to_send(plan)}"
    return {r[0] for r in wh.query(f"SELECT d.k FROM ({leaving}) d WHERE d.k IN ({sent})")}


def find(
    wh: Warehouse, plan: Plan, object_name: str, fields: Mapping[str, FieldInfo] | None, kind: str, setting: str
) -> list[tuple[Violation, Problem]]:
    """Twin groups among the rows to send (each row against the whole mart), as value problems whose
    condition, once set aside, keeps the first key of each group."""
    spec = plan.spec
    if len(spec.primary_key) != 1:
        return []
    [key] = spec.primary_key
    reason = _reason(kind, object_name, fields, key, setting)
    if reason is None:
        return []
    c, source = wh.flavour.quote(key), wh.source(plan)
    groups = f"SELECT lower(y.{c}) FROM {source} y GROUP BY lower(y.{c}) HAVING count(DISTINCT y.{c}) > 1"
    twin = f"({c} IS NOT NULL AND lower({c}) IN ({groups}))"
    first = f"SELECT min(y.{c}) FROM {source} y GROUP BY lower(y.{c})"
    problem = f"have keys distinct in the mart but one record to the API: {reason}"
    found = validate.violations(wh, plan, [Check(key, twin, problem)])
    return [
        (dataclasses.replace(v, condition=f"({twin} AND {c} NOT IN ({first}))"), v.as_problem(spec, FIX)) for v in found
    ]
