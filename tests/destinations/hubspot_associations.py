"""The associations side of the local HubSpot portal: the v4 associations batch endpoints as
HubSpot's reference describes them, strict on purpose (hubspot_server.py routes to them).

- `POST /crm/v4/associations/{from}/{to}/batch/read` `{"inputs": [{"id", "after"?}]}`: at most
  1,000 inputs (HubSpot's changelog, February 2025); each result is `{"from": {"id"}, "to":
  [{"toObjectId", "associationTypes": [{"category", "typeId", "label"}]}], "paging"?}`, a page of
  at most `page_size` links per record, continued with `after`. A record with no links is an
  error of the multi-status answer (207): `OBJECT_NOT_FOUND`, `crm.associations.NO_ASSOCIATIONS_FOUND`.
- `POST .../batch/associate/default` `{"inputs": [{"from": {"id"}, "to": {"id"}}]}`: the default
  (unlabeled) type, contact->company 279 and company->contact 280 (both directions at once); the
  first company a contact gets is also its primary (1 / 2), as HubSpot does. A record id that does
  not exist, or a link over a configured association limit (`max_to`), is a per-input error (207).
- `POST .../batch/archive` `{"inputs": [{"from": {"id"}, "to": [{"id"}]}]}`: removes every type
  between each pair (labels too); 204. A pair that is not linked is not an error.

The write endpoints document no input limit; this portal holds them to read's 1,000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.destinations.hubspot_portal import ApiError, ObjectType

ASSOCIATION_LIMIT = 1000
# (from, to) object type ids -> (the unlabeled type id, the primary type id or None)
DEFAULT_TYPES = {("0-1", "0-2"): (279, 1), ("0-2", "0-1"): (280, 2)}


class Associations:
    """Links between records, kept in both directions: (from type, to type) -> from id -> to id -> type ids."""

    def __init__(self, objects: Callable[[str], ObjectType], page_size: int = 500):
        self.object = objects
        self.page_size = page_size
        self.links: dict[tuple[str, str], dict[str, dict[str, set[int]]]] = {}
        self.max_to: dict[tuple[str, str], int] = {}  # an admin's association limit (objects per record)

    # -- endpoints -----------------------------------------------------------------------------

    def read(self, source: str, target: str, body: Any) -> tuple[int, dict[str, Any]]:
        a, b = self._pair(source, target)
        inputs = _inputs(body, {"id", "after"})
        results, empty = [], []
        for item in inputs:
            record_id = _id(item.get("id"), "id")
            linked = sorted((t, types) for t, types in self._to(a, b, record_id).items() if t in b.records)
            start = int(item.get("after") or 0)
            page = linked[start : start + self.page_size]
            if not page:
                empty.append(record_id)
                continue
            result: dict[str, Any] = {
                "from": {"id": record_id},
                "to": [
                    {"toObjectId": int(t), "associationTypes": [_type(n) for n in sorted(types)]} for t, types in page
                ],
            }
            if start + self.page_size < len(linked):
                result["paging"] = {"next": {"after": str(start + self.page_size)}}
            results.append(result)
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if not empty:
            return 200, answer
        errors = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": f"No {b.singular.lower()} is associated with {a.singular.lower()} {i}.",
                "context": {"fromObjectId": [i]},
            }
            for i in empty
        ]
        return 207, answer | {"errors": errors, "numErrors": len(errors)}

    def associate(self, source: str, target: str, body: Any) -> tuple[int, dict[str, Any]]:
        a, b = self._pair(source, target)
        unlabeled, primary = self._types(a, b)
        results, errors = [], []
        for item in _inputs(body, {"from", "to"}):
            f, t = _id(_ref(item, "from"), "from.id"), _id(_ref(item, "to"), "to.id")
            problem = self._problem(a, b, f, t)
            if problem:
                errors.append(problem)
                continue
            first = not any(other in b.records for other in self._to(a, b, f))
            types = {unlabeled} | ({primary} if primary and first else set())
            self._link(a, b, f, t, types)
            back_unlabeled, back_primary = self._types(b, a)
            self._link(b, a, t, f, {back_unlabeled} | ({back_primary} if back_primary and first else set()))
            for n in sorted(types):
                spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": n}
                results.append({"from": {"id": f}, "to": {"id": t}, "associationSpec": spec})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            return 207, answer | {"errors": errors, "numErrors": len(errors)}
        return 200, answer

    def archive(self, source: str, target: str, body: Any) -> tuple[int, None]:
        a, b = self._pair(source, target)
        for item in _inputs(body, {"from", "to"}):
            f = _id(_ref(item, "from"), "from.id")
            if not isinstance(item.get("to"), list) or not item["to"]:
                raise ApiError(400, "Invalid input JSON: to must be a non-empty array of {id}")
            for to in item["to"]:
                t = _id(to.get("id") if isinstance(to, dict) else None, "to[].id")
                self._to(a, b, f).pop(t, None)
                self._to(b, a, t).pop(f, None)
        return 204, None

    # -- for tests -----------------------------------------------------------------------------

    def linked(self, source: str, target: str, record_id: str) -> dict[str, set[int]]:
        a, b = self._pair(source, target)
        return {t: set(types) for t, types in self._to(a, b, record_id).items() if t in b.records}

    def link(self, source: str, target: str, f: str, t: str) -> None:
        """A link made by a person in HubSpot (the default type both ways)."""
        a, b = self._pair(source, target)
        self._link(a, b, f, t, {self._types(a, b)[0]})
        self._link(b, a, t, f, {self._types(b, a)[0]})

    # -- shared --------------------------------------------------------------------------------

    def _pair(self, source: str, target: str) -> tuple[ObjectType, ObjectType]:
        return self.object(source), self.object(target)

    @staticmethod
    def _types(a: ObjectType, b: ObjectType) -> tuple[int, int | None]:
        if (a.type_id, b.type_id) not in DEFAULT_TYPES:
            raise ApiError(400, f"no default association type between {a.name} and {b.name} in this local portal")
        return DEFAULT_TYPES[(a.type_id, b.type_id)]

    def _to(self, a: ObjectType, b: ObjectType, record_id: str) -> dict[str, set[int]]:
        return self.links.setdefault((a.type_id, b.type_id), {}).setdefault(record_id, {})

    def _link(self, a: ObjectType, b: ObjectType, f: str, t: str, types: set[int]) -> None:
        self._to(a, b, f).setdefault(t, set()).update(types)

    def _problem(self, a: ObjectType, b: ObjectType, f: str, t: str) -> dict[str, Any] | None:
        context = {"fromObjectId": [f], "toObjectId": [t]}
        missing = [f"{o.singular} {i}" for o, i in ((a, f), (b, t)) if i not in o.records]
        if missing:
            message = f"Could not find {', '.join(missing)}: the record ids must exist"
            sub = "crm.associations.INVALID_OBJECT_IDS"
        else:
            limit = self.max_to.get((a.type_id, b.type_id))
            held = [x for x in self._to(a, b, f) if x in b.records and x != t]
            if limit is None or len(held) < limit:
                return None
            message = f"{a.singular} {f} may be associated with at most {limit} {b.name}; it has {len(held)}"
            sub = "crm.associations.ASSOCIATION_LIMIT_EXCEEDED"
        return {
            "status": "error",
            "category": "VALIDATION_ERROR",
            "subCategory": sub,
            "message": message,
            "context": context,
        }


def _inputs(body: Any, keys: set[str]) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or set(body) - {"inputs"}:
        raise ApiError(400, 'Invalid input JSON: expected {"inputs": [...]} and nothing else')
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "inputs must be a non-empty array")
    if len(inputs) > ASSOCIATION_LIMIT:
        raise ApiError(400, f"Batch input size {len(inputs)} exceeds the limit of {ASSOCIATION_LIMIT}")
    for item in inputs:
        if not isinstance(item, dict) or set(item) - keys:
            raise ApiError(400, f"Invalid input JSON: each input is an object of {sorted(keys)}")
    return inputs


def _ref(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    return value.get("id") if isinstance(value, dict) and set(value) == {"id"} else None


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.isdigit():
        raise ApiError(400, f"Invalid input JSON: {name} must be a record id (digits, as a string), got {value!r}")
    return value


def _type(type_id: int) -> dict[str, Any]:
    label = "Primary" if type_id in (1, 2) else None
    return {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label}
