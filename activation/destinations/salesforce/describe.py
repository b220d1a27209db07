"""An sObject's describe (`/sobjects/{object}/describe`) as the engine's FieldInfo, so a value
Salesforce would refuse (too long, not in a restricted picklist, too many digits, not writable) is
found in the warehouse before any call."""

from __future__ import annotations

from typing import Any

from activation.destinations.api.client import FieldInfo

# Salesforce's field types, by what the engine checks on them.
_TEXT = {"string", "textarea", "email", "phone", "url", "encryptedstring", "combobox", "multipicklist"}
_KINDS = {
    **{t: "string" for t in _TEXT},
    "int": "integer",
    "long": "integer",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "id": "id",
    "reference": "id",
}


def field_info(field: dict[str, Any]) -> FieldInfo:
    sf_type = field["type"]
    kind = _KINDS.get(sf_type, "other")
    picklist = None
    if sf_type in ("picklist", "multipicklist") and field.get("restrictedPicklist"):
        picklist = tuple(v["value"] for v in field.get("picklistValues", []) if v.get("active", True))
    precision = scale = None
    if kind == "number":
        precision, scale = field.get("precision") or None, field.get("scale")
    elif kind == "integer":
        precision, scale = field.get("digits") or field.get("precision") or None, 0
    createable, updateable = bool(field.get("createable")), bool(field.get("updateable"))
    return FieldInfo(
        name=field["name"],
        type=kind,
        length=(field.get("length") or None) if kind in ("string", "picklist", "id", "other") else None,
        # a create fails without it: not nillable, and no default the org fills in
        required=createable and not field.get("nillable", True) and not field.get("defaultedOnCreate", False),
        picklist=picklist,
        writable=createable and updateable,
        precision=precision,
        scale=scale,
        multi=sf_type == "multipicklist",  # values joined by ';' (the field's length counts them all)
        external_id=bool(field.get("externalId")) or bool(field.get("idLookup")),
        # describe gives caseSensitive for every field: false for a text field unless created
        # "case sensitive", so an external ID upsert finds 'ABC' and 'abc' as one record
        case_sensitive=bool(field.get("caseSensitive", False)),
        reference_to=tuple(field.get("referenceTo") or ()) if sf_type == "reference" else (),
        relationship=field.get("relationshipName") or None,
    )


def fields_of(describe: dict[str, Any]) -> dict[str, FieldInfo]:
    return {f["name"]: field_info(f) for f in describe.get("fields", [])}
