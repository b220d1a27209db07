"""The checks a local HubSpot applies to a request's shape before it looks at any record (unknown
fields, batch limits, duplicates), and HubSpot's error answer. hubspot_portal.py uses them."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

BATCH_LIMIT = 100  # inputs per batch call


class ApiError(Exception):
    """A request refused as a whole, in HubSpot's error shape."""

    def __init__(self, status: int, message: str, category: str = "VALIDATION_ERROR", **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"status": "error", "message": message, "correlationId": str(uuid4()), "category": category}
        self.body.update(extra)


def batch_inputs(body: Any, top: set[str], item_keys: set[str]) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid input JSON: expected an object")
    refuse_unknown_fields(body, top)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "inputs must be a non-empty array")
    if len(inputs) > BATCH_LIMIT:
        raise ApiError(400, f"Batch input size {len(inputs)} exceeds the limit of {BATCH_LIMIT}")
    for item in inputs:
        if not isinstance(item, dict):
            raise ApiError(400, "Invalid input JSON: each input must be an object")
        refuse_unknown_fields(item, item_keys)
        for key in ("id", "idProperty", "objectWriteTraceId"):
            if key in item and (not isinstance(item[key], str) or not item[key]):
                raise ApiError(400, f"Invalid input JSON: {key} must be a non-empty string")
    return inputs


def refuse_unknown_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f'Invalid input JSON: Unrecognized field "{unknown[0]}"')


def require_fields(body: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in body:
            raise ApiError(400, f"Invalid input JSON: missing required field {key}")


def refuse_duplicates(values: list[str], message: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ApiError(400, f"{message}: {dupes}")


def problems_message(problems: list[tuple[str, str, str]]) -> str:
    found = [{"isValid": False, "message": m, "error": code, "name": name} for code, m, name in problems]
    return "Property values were not valid: " + json.dumps(found)


def problems_details(problems: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"message": m, "code": code, "context": {"propertyName": [name]}} for code, m, name in problems]
