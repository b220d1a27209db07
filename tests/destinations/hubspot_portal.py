"""The data side of a local HubSpot portal: object types with their properties and records, and
the checks HubSpot applies to batch upserts, reads, archives and searches, answered in HubSpot's
shapes. Strict on purpose: what the real API refuses, this refuses. hubspot_server.py serves it.

Values are stored as HubSpot returns them: strings, dates as YYYY-MM-DD, datetimes as ISO 8601
UTC with milliseconds, a cleared property absent.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.destinations.hubspot_properties import BUILT_IN, Invalid, Prop
from tests.destinations.hubspot_requests import (
    ApiError,
    batch_inputs,
    problems_details,
    problems_message,
    refuse_duplicates,
    refuse_unknown_fields,
    require_fields,
)

SEARCH_LIMIT = 200  # results per search page


@dataclass
class ObjectType:
    name: str  # contacts, companies, customer_scores
    type_id: str  # 0-1, 0-2, 2-12345
    singular: str  # CONTACT, COMPANY, ...: HubSpot's word in its messages
    properties: dict[str, Prop]
    id_properties: frozenset[str] = frozenset()  # usable as idProperty without hasUniqueValue
    records: dict[str, dict[str, str]] = field(default_factory=dict)  # record id -> properties
    archived: dict[str, dict[str, str]] = field(default_factory=dict)
    index: dict[str, dict[str, str]] = field(default_factory=dict)  # id property -> value -> record id

    def __post_init__(self) -> None:
        self.properties = {p.name: p for p in BUILT_IN} | self.properties
        for name in self.keys():
            self.index.setdefault(name, {})

    def keys(self) -> list[str]:
        return [p.name for p in self.properties.values() if p.unique or p.name in self.id_properties]

    def find(self, id_property: str, value: str) -> str | None:
        if id_property == "hs_object_id":
            return value if value in self.records else None
        return self.index[id_property].get(value)

    def write(self, record_id: str | None, values: dict[str, str], now: str, new_id: str) -> tuple[str, bool]:
        new = record_id is None
        if new:
            record_id = new_id
            self.records[record_id] = {"hs_object_id": record_id, "createdate": now}
        record = self.records[record_id]
        for name, value in values.items():
            if name in self.index and record.get(name):
                self.index[name].pop(record[name], None)
            if value == "":
                record.pop(name, None)
            else:
                record[name] = value
                if name in self.index:
                    self.index[name][value] = record_id
        record["hs_lastmodifieddate"] = now
        return record_id, new

    def archive(self, record_id: str) -> None:
        record = self.records.pop(record_id, None)
        if record is not None:
            for name in self.index:
                if record.get(name):
                    self.index[name].pop(record[name], None)
            self.archived[record_id] = record


class Portal:
    """One HubSpot account's CRM data; every method is one API call's effect and answer."""

    def __init__(
        self, objects: list[ObjectType], *, seed: int = 7, echo_trace_ids: bool = True, multi_status: bool = True
    ):
        self.objects = {o.name: o for o in objects} | {o.type_id: o for o in objects}
        self.lock = threading.Lock()
        self.echo_trace_ids = echo_trace_ids  # results carry the input's objectWriteTraceId
        # HubSpot documents multi-status (207, per-input errors) for inputs with objectWriteTraceId;
        # False: every upsert is all or nothing, as without trace ids
        self.multi_status = multi_status
        self._next_id = 1000
        self._random = random.Random(seed)
        from tests.destinations.hubspot_associations import Associations  # it builds on this module

        self.associations = Associations(self.object)  # the v4 associations endpoints

    def object(self, name: str) -> ObjectType:
        if name not in self.objects:
            raise ApiError(400, f"Unable to infer object type from: {name}")
        return self.objects[name]

    # -- endpoints -----------------------------------------------------------------------------

    def describe(self, name: str) -> tuple[int, dict[str, Any]]:
        return 200, {"results": [p.as_json() for p in self.object(name).properties.values()]}

    def upsert(self, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        obj = self.object(name)
        inputs = batch_inputs(body, {"inputs"}, {"id", "idProperty", "properties", "objectWriteTraceId"})
        for item in inputs:
            require_fields(item, ("id", "idProperty", "properties"))
            if not isinstance(item["properties"], dict) or not all(
                isinstance(v, str) for v in item["properties"].values()
            ):
                raise ApiError(400, "Invalid input JSON: properties must map property names to strings")
            _id_property(obj, item["idProperty"])
        refuse_duplicates([item["id"] for item in inputs], "Duplicate IDs found in batch input")
        traced = all("objectWriteTraceId" in item for item in inputs) and self.multi_status
        if traced:
            refuse_duplicates([item["objectWriteTraceId"] for item in inputs], "Duplicate objectWriteTraceIds")
        checked = [self._checked(obj, item) for item in inputs]
        problems = [(item, errors) for item, (_, _, errors) in zip(inputs, checked, strict=True) if errors]
        if problems and not traced:  # without trace ids one bad input fails the batch, nothing written
            raise ApiError(400, problems_message(problems[0][1]), errors=problems_details(problems[0][1]))
        now = _now()
        results, errors = [], []
        for item, (record_id, values, problem) in zip(inputs, checked, strict=True):
            trace = item.get("objectWriteTraceId")
            if problem:
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": problems_message(problem),
                        "context": {"objectWriteTraceId": [trace]},
                        "errors": problems_details(problem),
                    }
                )
                continue
            self._next_id += 1
            record_id, new = obj.write(record_id, values, now, str(self._next_id))
            result = _result(obj.records[record_id], record_id) | {"new": new}
            if trace is not None and self.echo_trace_ids:
                result["objectWriteTraceId"] = trace
            results.append(result)
        self._random.shuffle(results)  # HubSpot does not promise the input order
        answer = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": _now()}
        if errors:
            return 207, answer | {"errors": errors, "numErrors": len(errors)}
        return 200, answer

    def read(self, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        obj = self.object(name)
        top = {"inputs", "idProperty", "properties", "propertiesWithHistory", "archived"}
        inputs = batch_inputs(body, top, {"id"})
        require_fields(body, ("properties", "propertiesWithHistory"))
        id_property = body.get("idProperty") or "hs_object_id"
        _id_property(obj, id_property)
        wanted = [p for p in body["properties"] if isinstance(p, str)]
        results, missing = [], []
        for item in inputs:
            require_fields(item, ("id",))
            record_id = obj.find(id_property, str(item["id"]))
            if record_id is None:
                missing.append(str(item["id"]))
                continue
            record = obj.records[record_id]
            results.append(_result({p: record[p] for p in wanted if p in record} | _stamps(record), record_id))
        answer = {"status": "COMPLETE", "results": results, "startedAt": _now(), "completedAt": _now()}
        if missing:
            message = (
                f"Could not get some {obj.singular} objects, they may be deleted or not exist. "
                "Check that ids are valid."
            )
            error = {"status": "error", "category": "OBJECT_NOT_FOUND", "message": message, "context": {"ids": missing}}
            return 207, answer | {"errors": [error], "numErrors": 1}
        return 200, answer

    def archive(self, name: str, body: Any) -> tuple[int, None]:
        obj = self.object(name)
        inputs = batch_inputs(body, {"inputs"}, {"id"})
        for item in inputs:
            require_fields(item, ("id",))
            if not str(item["id"]).isdigit():
                raise ApiError(400, f"Object IDs must be numeric: {item['id']!r} (archive takes record ids)")
        for item in inputs:  # a record already archived or never there is not an error
            obj.archive(str(item["id"]))
        return 204, None

    def search(self, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        obj = self.object(name)
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid input JSON: expected an object")
        refuse_unknown_fields(body, {"filterGroups", "sorts", "query", "properties", "limit", "after"})
        having = _has_property_filters(obj, body.get("filterGroups") or [])
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= SEARCH_LIMIT:
            raise ApiError(400, f"limit must be an integer from 0 to {SEARCH_LIMIT}, got {limit!r}")
        after = int(body.get("after") or 0)
        matching = [i for i in sorted(obj.records, key=int) if _matches(obj.records[i], having)]
        ids = matching[after : after + limit]
        results = [_result(_stamps(obj.records[i]), i) for i in ids]
        answer: dict[str, Any] = {"total": len(matching), "results": results}
        if after + limit < len(matching):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return 200, answer

    # -- for tests -----------------------------------------------------------------------------

    def records(self, name: str) -> list[dict[str, str]]:
        with self.lock:
            return [dict(r) for r in self.object(name).records.values()]

    def record(self, name: str, prop: str, value: str) -> dict[str, str] | None:
        with self.lock:
            obj = self.object(name)
            found = [r for r in obj.records.values() if r.get(prop) == value]
            assert len(found) <= 1, f"{len(found)} {name} records have {prop}={value!r}"
            return dict(found[0]) if found else None

    def _checked(self, obj: ObjectType, item: dict[str, Any]) -> tuple[str | None, dict[str, str], list]:
        """(the record it updates or None, canonical values, problems) for one upsert input."""
        id_property = obj.properties[item["idProperty"]]
        problems: list[tuple[str, str, str]] = []
        values: dict[str, str] = {}
        try:
            key = id_property.canonical(str(item["id"]))
            values[id_property.name] = key
        except Invalid as exc:
            return None, {}, [(exc.code, exc.message, id_property.name)]
        record_id = obj.find(id_property.name, key)
        if id_property.name == "hs_object_id":
            values.pop("hs_object_id")
            if record_id is None:
                problems.append(("OBJECT_NOT_FOUND", f"no {obj.singular} with hs_object_id {key}", "hs_object_id"))
        for name, value in item["properties"].items():
            prop = obj.properties.get(name)
            if prop is None:
                problems.append(("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist', name))
            elif prop.read_only or prop.calculated:
                problems.append(("READ_ONLY_VALUE", f"{name} is a read only property; its value cannot be set.", name))
            elif name == id_property.name and value != item["id"]:
                problems.append(("INVALID_ID", f"{name} is the idProperty; it differs from the input's id", name))
            else:
                try:
                    values[name] = prop.canonical(value)
                except Invalid as exc:
                    problems.append((exc.code, exc.message, name))
                    continue
                holder = obj.index.get(name, {}).get(values[name]) if prop.unique and values[name] else None
                if holder is not None and holder != record_id:
                    message = f"{values[name]} is already the {name} of {obj.singular} {holder}"
                    problems.append(("CONFLICTING_UNIQUE_VALUE", message, name))
        return record_id, values, problems


def _has_property_filters(obj: ObjectType, groups: Any) -> list[list[str]]:
    """Filter groups (OR of groups, AND within one; HubSpot allows 5 groups, 10 filters each, 25 in all)
    as the properties each requires: HAS_PROPERTY only, any other operator is refused, not guessed."""
    if not isinstance(groups, list) or len(groups) > 5:
        raise ApiError(400, "filterGroups must be a list of at most 5 filter groups")
    out, total = [], 0
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or not filters or len(filters) > 10:
            raise ApiError(400, "each filter group needs 1 to 10 filters")
        total, names = total + len(filters), []
        for f in filters:
            if not isinstance(f, dict) or f.get("operator") != "HAS_PROPERTY" or set(f) - {"propertyName", "operator"}:
                raise ApiError(400, f"this local HubSpot answers HAS_PROPERTY filters only, got {f!r}")
            if f.get("propertyName") not in obj.properties:
                raise ApiError(400, f"There was a problem with the request: unknown property {f.get('propertyName')!r}")
            names.append(f["propertyName"])
        out.append(names)
    if total > 25:
        raise ApiError(400, "a search takes at most 25 filters")
    return out


def _matches(record: dict[str, str], groups: list[list[str]]) -> bool:
    return not groups or any(all(record.get(name) not in (None, "") for name in names) for names in groups)


def _id_property(obj: ObjectType, name: str) -> None:
    if name not in obj.properties:
        raise ApiError(400, f'Property "{name}" does not exist on {obj.singular}')
    if name not in obj.keys():
        raise ApiError(400, f"{name} is not a unique identifier property of {obj.singular}; it cannot be an idProperty")


def _stamps(record: dict[str, str]) -> dict[str, str]:
    return {k: record[k] for k in ("hs_object_id", "createdate", "hs_lastmodifieddate") if k in record}


def _result(properties: dict[str, str], record_id: str) -> dict[str, Any]:
    return {
        "id": record_id,
        "properties": dict(properties),
        "createdAt": properties.get("createdate"),
        "updatedAt": properties.get("hs_lastmodifieddate"),
        "archived": False,
    }


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def demo_portal(**options: Any) -> Portal:
    """Contacts, companies and a custom object with one property of each kind the tests need."""
    contacts = ObjectType(
        "contacts",
        "0-1",
        "CONTACT",
        {
            p.name: p
            for p in (
                Prop("email", "string", "text"),
                Prop("firstname", "string", "text"),
                Prop("lifecyclestage", "enumeration", "radio", ("lead", "customer")),
            )
        },
        id_properties=frozenset({"email"}),
    )
    companies = ObjectType(
        "companies",
        "0-2",
        "COMPANY",
        {p.name: p for p in (Prop("name", "string", "text"), Prop("company_key", "string", "text", unique=True))},
    )
    scores = ObjectType(
        "customer_scores",
        "2-12345",
        "CUSTOMER_SCORE",
        {
            p.name: p
            for p in (
                Prop("customer_key", "string", "text", unique=True),
                Prop("name", "string", "text"),
                Prop("notes", "string", "textarea"),
                Prop("score", "number", "number"),
                Prop("active", "bool", "booleancheckbox"),
                Prop("signup_date", "date", "date"),
                Prop("last_seen", "datetime", "date"),
                Prop("tier", "enumeration", "select", ("bronze", "silver", "gold")),
                Prop("channels", "enumeration", "checkbox", ("email", "phone", "sms")),
                Prop("score_band", "string", "calculation_equation", calculated=True, read_only=True),
            )
        },
    )
    return Portal([contacts, companies, scores], **options)
