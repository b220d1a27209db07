"""The REST resources of the local org: describe, SOQL query (COUNT() and look-ups by external ID,
2,000 records a page with nextRecordsUrl), and sObject Collections upsert (PATCH, 200 records,
per-record UpsertResults in request order) and delete (DELETE ?ids=, 200 Ids)."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import re
from decimal import Decimal
from typing import Any

from tests.destinations.salesforce_org import (
    BadValue,
    Field,
    RecordError,
    RequestError,
    SObject,
    cascade,
    child_relationships,
    folded,
    resolve,
)

COLLECTION_LIMIT = 200
PAGE = 2_000
MAX_SOQL = 100_000
COUNT = re.compile(r"^\s*SELECT\s+COUNT\(\)\s+FROM\s+(\w+)(?:\s+WHERE\s+(\w+)\s*!=\s*null)?\s*$", re.I)
SELECT = re.compile(
    r"^\s*SELECT\s+([\w\s,.]+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+([\w.]+)\s+IN\s*\((.*)\))?\s*$", re.I | re.S
)
LITERAL = re.compile(r"\s*(?:'((?:[^'\\]|\\.)*)'|(-?\d+(?:\.\d+)?))\s*(,|$)", re.S)
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
TOO_MANY = "record limit reached. cannot submit more than 200 records into this call"
ROLLED_BACK = "Record rolled back because not all records were valid and the request was using AllOrNone header"


def _not_found() -> RequestError:
    return RequestError(404, "NOT_FOUND", "The requested resource does not exist")


def json_body(body: bytes, ctype: str) -> Any:
    if ctype.split(";")[0].strip() != "application/json":
        message = f"Content-Type header specified in HTTP request is not supported: {ctype or 'none'}"
        raise RequestError(415, "UNSUPPORTED_MEDIA_TYPE", message)
    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class RestApi:
    def __init__(self, objects: dict[str, SObject]):
        self.objects = objects
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self._cursor_ids = itertools.count(1)

    def sobject(self, name: str) -> SObject:
        if name not in self.objects:
            raise _not_found()
        return self.objects[name]

    def route(self, method: str, version: str, rest: str, query: dict[str, list[str]], body: bytes, ctype: str):
        parts = [p for p in rest.split("/") if p]
        if method == "GET" and len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
            return 200, self.describe(self.sobject(parts[1])), "application/json"
        if method == "GET" and parts == ["query"]:
            return 200, self.query((query.get("q") or [""])[0], version), "application/json"
        if method == "GET" and len(parts) == 2 and parts[0] == "query":
            return 200, self.more(parts[1], version), "application/json"
        if parts[:2] == ["composite", "sobjects"]:
            if method == "PATCH" and len(parts) == 4 and float(version) >= 46.0:
                results = self.upsert(self.sobject(parts[2]), parts[3], json_body(body, ctype))
                return 200, results, "application/json"
            if method == "DELETE" and len(parts) == 2 and float(version) >= 42.0:
                return 200, self.delete(query), "application/json"
        raise _not_found()

    def describe(self, sobject: SObject) -> dict[str, Any]:
        return {
            "name": sobject.name,
            "label": sobject.name,
            "keyPrefix": sobject.prefix,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "fields": [f.describe() for f in sobject.fields.values()],
            "childRelationships": child_relationships(self.objects, sobject),
        }

    # --- SOQL -------------------------------------------------------------------------------------
    def query(self, soql: str, version: str) -> dict[str, Any]:
        if len(soql) > MAX_SOQL:
            raise RequestError(400, "MALFORMED_QUERY", "SOQL statements cannot be longer than 100,000 characters.")
        if match := COUNT.match(soql):
            sobject = self.sobject_in_query(match.group(1))
            where = match.group(2)
            if where and where not in sobject.fields:
                raise RequestError(400, "INVALID_FIELD", f"No such column '{where}' on entity '{sobject.name}'")
            counted = [r for r in sobject.records.values() if not where or r.get(where) is not None]
            return {"totalSize": len(counted), "done": True, "records": []}
        match = SELECT.match(soql)
        if not match:
            raise RequestError(400, "MALFORMED_QUERY", f"unexpected token in: {soql[:80]}")
        sobject = self.sobject_in_query(match.group(2))
        names = [n.strip() for n in match.group(1).split(",")]
        for name in names + ([match.group(3)] if match.group(3) else []):
            self.path(sobject, name)
        where = match.group(3)
        if where and "." in where:  # a parent's field: WHERE Account.Customer_Id__c IN (...)
            wanted = {folded(v) for v in self.literals(match.group(4))}
            ids = sorted(
                i for i, r in sobject.records.items() if folded(_plain(self.related(sobject, r, where))) in wanted
            )
        elif where:
            ids = sorted({i for v in self.literals(match.group(4)) for i in sobject.matching(where, v)})
        else:
            ids = sorted(sobject.records)
        rows = [
            {
                "attributes": {"type": sobject.name, "url": f"/services/data/v{version}/sobjects/{sobject.name}/{i}"},
                **self.selected(sobject, sobject.records[i], names, version),
            }
            for i in ids
        ]
        return self.page(rows, len(rows), version)

    def path(self, sobject: SObject, name: str) -> None:
        """A field of the object, or `Relationship.Field` of its parent's (as SOQL allows)."""
        relationship, dot, field = name.partition(".")
        if not dot:
            if name not in sobject.fields:
                raise RequestError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject.name}'")
            return
        lookup = sobject.lookup(relationship)
        if lookup is None:
            message = f"Didn't understand relationship '{relationship}' in field path."
            raise RequestError(400, "INVALID_FIELD", message)
        self.path(self.objects[lookup.reference_to], field)

    def related(self, sobject: SObject, record: dict[str, Any], name: str) -> Any:
        relationship, _, field = name.partition(".")
        lookup = sobject.lookup(relationship)
        parent = self.objects[lookup.reference_to].records.get(record.get(lookup.name) or "")
        return None if parent is None else parent.get(field)

    def selected(self, sobject: SObject, record: dict[str, Any], names: list[str], version: str) -> dict[str, Any]:
        """A row's fields; a parent's field nested under its relationship, null without a parent."""
        out: dict[str, Any] = {}
        for name in names:
            relationship, dot, field = name.partition(".")
            if not dot:
                out[name] = _plain(record.get(name))
                continue
            lookup = sobject.lookup(relationship)
            parent_id = record.get(lookup.name)
            parent = self.objects[lookup.reference_to].records.get(parent_id or "")
            if parent is None:
                out[relationship] = None
                continue
            nested = out.setdefault(
                relationship,
                {
                    "attributes": {
                        "type": lookup.reference_to,
                        "url": f"/services/data/v{version}/sobjects/{lookup.reference_to}/{parent_id}",
                    }
                },
            )
            nested[field] = _plain(parent.get(field))
        return out

    def sobject_in_query(self, name: str) -> SObject:
        if name not in self.objects:
            message = f"sObject type '{name}' is not supported."
            raise RequestError(400, "INVALID_TYPE", message)
        return self.objects[name]

    def literals(self, text: str) -> list[Any]:
        values, position = [], 0
        while position < len(text):
            match = LITERAL.match(text, position)
            if not match:
                raise RequestError(400, "MALFORMED_QUERY", f"unexpected token at: {text[position : position + 20]}")
            if match.group(1) is not None:
                values.append(re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), "\\" + m.group(1)), match.group(1)))
            else:
                values.append(Decimal(match.group(2)))
            position = match.end()
        return values

    def page(self, rows: list[dict[str, Any]], total: int, version: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"totalSize": total, "done": len(rows) <= PAGE, "records": rows[:PAGE]}
        if len(rows) > PAGE:
            locator = f"01g5g00000CURSOR{next(self._cursor_ids)}-{PAGE}"
            self.cursors[locator] = rows[PAGE:]
            answer["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
        return answer

    def more(self, locator: str, version: str) -> dict[str, Any]:
        if locator not in self.cursors:
            raise RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        rows = self.cursors.pop(locator)
        return self.page(rows, len(rows), version)

    # --- sObject Collections ----------------------------------------------------------------------
    def upsert(self, sobject: SObject, key_field: str, body: Any) -> list[dict[str, Any]]:
        sobject.external_id(key_field)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise RequestError(400, "JSON_PARSER_ERROR", 'the body must be {"allOrNone": ..., "records": [...]}')
        if set(body) - {"allOrNone", "records"}:
            raise RequestError(
                400, "JSON_PARSER_ERROR", f'Unrecognized field "{sorted(set(body) - {"allOrNone", "records"})[0]}"'
            )
        records, all_or_none = body["records"], body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise RequestError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        if len(records) > COLLECTION_LIMIT:
            raise RequestError(400, "EXCEEDED_ID_LIMIT", TOO_MANY)
        parsed = [self.parse(sobject, record) for record in records]  # any wrong format refuses the request
        keys = [str(v).casefold() if (v := values.get(key_field)) is not None else "" for values in parsed]
        before = copy.deepcopy(sobject) if all_or_none else None
        results = []
        for values, key, record in zip(parsed, keys, records, strict=True):
            if "Id" in record:
                error = RecordError(
                    "INVALID_FIELD", "Id is not allowed in an upsert by external ID; use only external ids", ("Id",)
                )
                results.append((None, False, [error]))
            elif key and keys.count(key) > 1:
                error = RecordError(
                    "DUPLICATE_VALUE", f"Duplicate external id specified: {values[key_field]}", (key_field,)
                )
                results.append((None, False, [error]))
            else:
                results.append(sobject.upsert(key_field, values))
        if before is not None and any(errors for _, _, errors in results):
            sobject.__dict__.update(before.__dict__)
            rolled = [RecordError("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK)]
            results = [(None, False, errors or rolled) for _, _, errors in results]
        return [
            {"id": i, "success": True, "errors": [], "created": created}
            if not errors
            else {"id": None, "success": False, "errors": [e.json() for e in errors]}
            for i, created, errors in results
        ]

    def parse(self, sobject: SObject, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict) or not isinstance(record.get("attributes"), dict):
            raise RequestError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        if record["attributes"].get("type") != sobject.name:
            raise RequestError(400, "INVALID_TYPE", f"Must send a concrete entity type: {sobject.name}")
        values = {}
        for name, value in record.items():
            if name in ("attributes", "Id"):
                continue
            lookup = sobject.lookup(name) if name not in sobject.fields else None
            if lookup is not None:  # "Account": {"attributes": {"type": "Account"}, "Ext__c": "k"}
                values[lookup.name] = self.by_external_id(lookup, value)
                continue
            spec = sobject.field_or_error(name)
            try:
                values[name] = spec.from_json(value)
            except BadValue as exc:
                raise RequestError(400, "JSON_PARSER_ERROR", f"{exc} (field {name})") from None
        return values

    def by_external_id(self, lookup: Field, value: Any) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("attributes"), dict):
            raise RequestError(400, "JSON_PARSER_ERROR", f"{lookup.relationship}: expected an sObject with attributes")
        if value["attributes"].get("type") != lookup.reference_to:
            raise RequestError(400, "INVALID_TYPE", f"{lookup.relationship}: must be of type {lookup.reference_to}")
        keys = [k for k in value if k != "attributes"]
        if len(keys) != 1:
            message = f"{lookup.relationship}: a foreign key is set by exactly one external ID field, not {keys}"
            raise RequestError(400, "INVALID_FIELD", message)
        return resolve(self.objects, lookup, keys[0], value[keys[0]])

    def delete(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
        if not ids:
            raise RequestError(400, "MISSING_ARGUMENT", "ids: the Ids to delete are missing")
        if len(ids) > COLLECTION_LIMIT:
            raise RequestError(400, "EXCEEDED_ID_LIMIT", TOO_MANY)
        if (query.get("allOrNone") or ["false"])[0] not in ("true", "false"):
            raise RequestError(400, "INVALID_QUERY_FILTER_OPERATOR", "allOrNone must be true or false")
        results = []
        for record_id in ids:
            sobject = next((o for o in self.objects.values() if record_id.startswith(o.prefix)), None)
            error = sobject.delete(record_id) if sobject else RecordError("MALFORMED_ID", f"malformed id {record_id}")
            if sobject is not None and error is None:
                cascade(self.objects, sobject, record_id)
            results.append(
                {"id": record_id, "success": True, "errors": []}
                if error is None
                else {"id": None, "success": False, "errors": [error.json()]}
            )
        return results
