"""HubSpot's properties API read as FieldInfo, so values the portal would refuse (too long, not
an option, wrong type, read-only) are found in the warehouse before any write."""

from __future__ import annotations

from typing import Any

from activation.destinations.api.client import FieldInfo

# HubSpot's limit for a string property's value (single-line and multi-line text alike).
STRING_LIMIT = 65_536

# HubSpot's property `type` -> FieldInfo.type. Enumerations are picklists: one option chosen
# (select, radio), or several (a multiple checkbox, `fieldType: checkbox`) sent as one string with
# the options separated by ';' ("value1;value2", HubSpot's FAQ on checkbox properties), each item
# checked against the options in the warehouse (api/fields.py, as a Salesforce multipicklist).
_TYPES = {
    "string": "string",
    "phone_number": "string",
    "number": "number",
    "bool": "boolean",
    "date": "date",
    "datetime": "datetime",
}
_SINGLE_CHOICE = frozenset({"select", "radio"})
_MULTIPLE_CHOICE = frozenset({"checkbox"})

# Properties every object can be upserted by besides its unique ones: the record id, and a
# contact's email (HubSpot's own de-duplication key, not flagged hasUniqueValue).
_ALWAYS_KEYS = {"hs_object_id"}
_OBJECT_KEYS = {"contacts": {"email"}, "0-1": {"email"}}

# How HubSpot compares a key (api/twins.py). A contact's `email` is its de-duplication key, and
# "the Contacts API automatically de-duplicates email addresses" (knowledge.hubspot.com,
# how-to-integrate-other-software-with-contacts); email addresses are matched without regard to
# case, so 'Ann@x.com' and 'ann@x.com' are one contact. Custom unique-value properties
# (`hasUniqueValue`) are matched exactly (HubSpot's own CLI skills: "CRM match is exact", hence
# "always lowercase the natural key"), so they have no twins but identical values.
_CASE_INSENSITIVE = frozenset({"email"})


def field_info(prop: dict[str, Any]) -> FieldInfo:
    name, kind, field_type = prop["name"], prop.get("type", ""), prop.get("fieldType", "")
    meta = prop.get("modificationMetadata") or {}
    writable = not meta.get("readOnlyValue", False) and not prop.get("calculated", False)
    if name == "hs_object_id":
        return FieldInfo(name=name, type="id", writable=False)
    if kind == "enumeration":
        options = tuple(str(o["value"]) for o in prop.get("options") or ())
        choice = field_type in _SINGLE_CHOICE | _MULTIPLE_CHOICE
        if choice and not prop.get("externalOptions", False):
            multi = field_type in _MULTIPLE_CHOICE
            return FieldInfo(name=name, type="picklist", picklist=options, multi=multi, writable=writable)
        return FieldInfo(name=name, type="other", writable=writable)
    mapped = _TYPES.get(kind, "other")
    if mapped == "string" and field_type == "textarea":
        mapped = "textarea"
    length = STRING_LIMIT if mapped in ("string", "textarea") else None
    return FieldInfo(
        name=name,
        type=mapped,
        length=length,
        writable=writable,
        external_id=bool(prop.get("hasUniqueValue")) or name in _CASE_INSENSITIVE,
        case_sensitive=name not in _CASE_INSENSITIVE,
    )


def key_problem(object_name: str, key_field: str, properties: dict[str, dict[str, Any]]) -> str | None:
    """Why `key_field` cannot identify records of the object in a batch upsert, or None."""
    prop = properties.get(key_field)
    if prop is None:
        return f"HubSpot object {object_name!r} has no property {key_field!r}"
    if key_field in _ALWAYS_KEYS | _OBJECT_KEYS.get(object_name, set()) or prop.get("hasUniqueValue"):
        return None
    return (
        f"property {key_field!r} of HubSpot object {object_name!r} does not require unique values, "
        "so HubSpot cannot upsert by it: choose a property created with hasUniqueValue"
    )
