"""The HubSpot client behind the ObjectClient protocol: batch upsert by a unique property, archive
by it, describe through the properties API and count through the search API. Every call goes
through the destination's limiter and retry transport (destinations/api/limits.py).

It speaks HTTP with httpx against the documented CRM v3 endpoints. hubspot-api-client 12.0.0 has
batch upsert, but each API area builds its own urllib3 pool with its own retries and raises on
every non-2xx answer, so routing its calls through our Transport meant undoing both; the five
JSON endpoints used here are simpler to call directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx

from activation.destinations.api.client import CallStats, DestinationDown, FieldInfo, Outcome, Record, Reference
from activation.destinations.api.limits import Log, RateLimiter, Transport
from activation.destinations.hubspot.associations import Wanted, set_links
from activation.destinations.hubspot.schema import field_info, key_problem
from activation.destinations.hubspot.settings import Settings
from activation.destinations.hubspot.values import UnsendableValue, property_value

# objectType in a path: a name (contacts, companies, p123_scores) or an objectTypeId (2-12345).
_OBJECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class HubSpotError(RuntimeError):
    """HubSpot refused a request as a whole (token, scopes, object, limits); nothing to retry."""


class HubSpotDown(HubSpotError, DestinationDown):
    """HubSpot refused the portal as a whole (its token, its daily limit): no object can be synced."""


class HubSpotClient:
    """One portal, reached with one private app token."""

    kind = "hubspot"
    associates = True  # a foreign key is an association (associations.py), no property of the object

    def __init__(self, settings: Settings, token: str, limiter: RateLimiter, log: Log):
        self.settings = settings
        self.stats = CallStats()
        self._log = log
        self._http = httpx.Client(
            base_url=settings.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=settings.timeout_seconds,
        )
        # httpx's connection errors (dropped connections, timeouts) are not OSErrors
        self._transport = Transport(limiter, self.stats, transient=(httpx.TransportError,), log=log)
        self._properties: dict[str, dict[str, dict[str, Any]]] = {}
        # object -> foreign-key field -> (parent object, the parent's key property)
        self._references: dict[str, dict[str, tuple[str, str]]] = {}

    # -- the ObjectClient protocol -------------------------------------------------------------

    def describe(self, object_name: str) -> dict[str, FieldInfo]:
        return {name: field_info(prop) for name, prop in self._described(object_name).items()}

    def batch_size(self, changes: int) -> int:
        return self.settings.batch_size

    def set_references(self, object_name: str, references: dict[str, tuple[str, str]]) -> None:
        """The object's foreign keys (field -> (parent object, its key property)): set as
        associations, never sent as properties, a None among them clearing the link."""
        self._references[object_name] = dict(references)

    def upsert(self, object_name: str, key_field: str, records: Sequence[Record]) -> list[Outcome]:
        properties = self._key_checked(object_name, key_field)
        references = dict(self._references.get(object_name, {}))
        for record in records:
            for name, value in record.items():
                if isinstance(value, Reference):
                    references.setdefault(name, (value.object, value.field))
        outcomes: list[Outcome | None] = [None] * len(records)
        inputs: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, record in enumerate(records):
            try:
                key = self._key_text(record.get(key_field), key_field, properties)
                if key in seen:
                    raise UnsendableValue(f"{key_field} {key!r} appears twice in one batch")
                values = {
                    name: _spelled(name, value, properties)
                    for name, value in record.items()
                    if name != key_field  # sent as the input's id; hs_object_id cannot be set
                    and name not in references  # an association, set after the upsert
                }
            except UnsendableValue as exc:
                outcomes[index] = self._failed(index, str(exc))
                continue
            seen.add(key)
            # objectWriteTraceId turns on HubSpot's multi-status answer: a refused input comes
            # back as an error naming its trace id while the others are written.
            inputs.append({"idProperty": key_field, "id": key, "properties": values, "objectWriteTraceId": str(index)})
        size = self.settings.batch_size
        for start in range(0, len(inputs), size):
            self._upsert_batch(object_name, key_field, inputs[start : start + size], outcomes)
        for name, (parent, parent_key) in references.items():
            self._relate(object_name, name, parent, parent_key, records, outcomes)
        return _answered(outcomes)

    def _relate(
        self,
        object_name: str,
        name: str,
        parent: str,
        parent_key: str,
        records: Sequence[Record],
        outcomes: list[Outcome | None],
    ) -> None:
        """The foreign key `name` of the records HubSpot took, as associations to `parent`."""
        parent_properties = self._key_checked(parent, parent_key)
        wanted = []
        for index, record in enumerate(records):
            outcome = outcomes[index]
            if name not in record or outcome is None or not outcome.ok or outcome.record_id is None:
                continue
            value = record[name]
            try:
                key = None if value is None else self._key_text(_key_of(value), parent_key, parent_properties)
            except UnsendableValue as exc:
                outcomes[index] = self._failed(index, f"{name}: {exc}")
                continue
            wanted.append(Wanted(index, outcome.record_id, key))
        if not wanted:
            return
        linked = set_links(self, object_name, parent, parent_key, wanted)
        for index, message in linked.refused.items():
            outcomes[index] = self._failed(index, message)
        self._log(
            f"{object_name} -> {parent} associations ({name}): {linked.created:,} created, {linked.removed:,} "
            f"removed, {len(linked.refused):,} refused; {linked.kept_foreign:,} link(s) to {parent} without "
            f"{parent_key} left as they were"
        )

    def delete(self, object_name: str, key_field: str, keys: Sequence[Any]) -> list[Outcome]:
        """Batch archive takes record ids: read them by the unique property, then archive them.
        A key HubSpot does not know is already gone, which is what a delete wants."""
        properties = self._key_checked(object_name, key_field)
        outcomes: list[Outcome | None] = [None] * len(keys)
        wanted: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            try:
                wanted.setdefault(self._key_text(key, key_field, properties), []).append(index)
            except UnsendableValue as exc:
                outcomes[index] = self._failed(index, str(exc))
        texts = list(wanted)
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            found, unknown = self._record_ids(object_name, key_field, chunk)
            refused = self._archive(object_name, sorted(set(found.values()))) if found else ""
            for text in chunk:
                for index in wanted[text]:
                    if text in unknown:
                        outcomes[index] = self._failed(index, unknown[text])
                    elif refused and text in found:
                        outcomes[index] = self._failed(index, refused)
                    else:
                        outcomes[index] = Outcome(index, True, record_id=found.get(text))
        return _answered(outcomes)

    def count(self, object_name: str, key_field: str | None = None) -> int | None:
        """Records of the object (with `key_field` set, when given), from the search API's total
        (HubSpot indexes new records for search within seconds, so a count right after a write may lag)."""
        path = f"/crm/v3/objects/{_checked(object_name)}/search"
        groups = [{"filters": [{"propertyName": key_field, "operator": "HAS_PROPERTY"}]}] if key_field else []
        response = self._call("POST", path, {"filterGroups": groups, "limit": 1, "properties": ["hs_object_id"]})
        if response.status_code != 200:
            raise HubSpotError(f"HubSpot could not count {object_name!r}: {_error_text(response)}")
        return int(response.json()["total"])

    def close(self) -> None:
        self._http.close()

    # -- upsert --------------------------------------------------------------------------------

    def _upsert_batch(
        self, object_name: str, key_field: str, inputs: list[dict[str, Any]], outcomes: list[Outcome | None]
    ) -> None:
        response = self._call("POST", f"/crm/v3/objects/{object_name}/batch/upsert", {"inputs": inputs})
        code = response.status_code
        if code in (400, 413):
            # The batch was refused as a whole: too large, or an input HubSpot judged before the
            # multi-status stage. Halves find the records it refuses; the others are written.
            if len(inputs) > 1:
                half = len(inputs) // 2
                reason = _error_text(response)
                self._log(f"HubSpot refused a batch of {len(inputs)} {object_name} ({reason}); splitting it")
                self._upsert_batch(object_name, key_field, inputs[:half], outcomes)
                self._upsert_batch(object_name, key_field, inputs[half:], outcomes)
            else:
                index = int(inputs[0]["objectWriteTraceId"])
                outcomes[index] = self._failed(index, _error_text(response))
            return
        if code not in (200, 207):
            raise HubSpotError(f"batch upsert of {object_name!r} answered HTTP {code}: {_error_text(response)}")
        body = response.json()
        traces = {item["objectWriteTraceId"]: int(item["objectWriteTraceId"]) for item in inputs}
        by_key = {item["id"]: int(item["objectWriteTraceId"]) for item in inputs}
        folded = {item["id"].casefold(): int(item["objectWriteTraceId"]) for item in inputs}
        for result in body.get("results") or ():
            index = traces.get(str(result.get("objectWriteTraceId")))
            if index is None:  # placed by the key's value (HubSpot does not keep the input order)
                value = str((result.get("properties") or {}).get(key_field, ""))
                index = by_key.get(value, folded.get(value.casefold()))
            if index is not None:
                outcomes[index] = Outcome(index, True, record_id=str(result["id"]), created=result.get("new"))
        unplaced = ""
        for error in body.get("errors") or ():
            message = _batch_error_text(error)
            ids = (error.get("context") or {}).get("objectWriteTraceId") or ()
            placed = [traces[t] for t in ids if t in traces]
            for index in placed:
                outcomes[index] = self._failed(index, message)
            if not placed:
                unplaced = message
        for item in inputs:
            index = int(item["objectWriteTraceId"])
            if outcomes[index] is None:
                reason = unplaced or "HubSpot answered neither a result nor an error for this record"
                outcomes[index] = self._failed(index, reason)

    # -- delete --------------------------------------------------------------------------------

    def _record_ids(self, object_name: str, key_field: str, keys: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(key -> record id for the keys HubSpot has, key -> reason for keys it did not answer);
        keys in neither are gone."""
        if key_field == "hs_object_id":
            return {key: key for key in keys}, {}
        body = {
            "idProperty": key_field,
            "inputs": [{"id": key} for key in keys],
            "properties": [key_field],
            "propertiesWithHistory": [],  # required by the endpoint's schema, even when empty
        }
        response = self._call("POST", f"/crm/v3/objects/{object_name}/batch/read", body)
        if response.status_code not in (200, 207):
            reason = f"HubSpot could not look the records up: {_error_text(response)}"
            return {}, {key: reason for key in keys}
        answer = response.json()
        exact = {key: key for key in keys}
        folded = {key.casefold(): key for key in keys}
        found: dict[str, str] = {}
        for result in answer.get("results") or ():
            value = str((result.get("properties") or {}).get(key_field, ""))
            key = exact.get(value) or folded.get(value.casefold())
            if key is not None:
                found[key] = str(result["id"])
        gone: set[str] = set()
        unknown: dict[str, str] = {}
        for error in answer.get("errors") or ():
            ids = [str(i) for i in (error.get("context") or {}).get("ids") or ()]
            if error.get("category") == "OBJECT_NOT_FOUND":
                gone.update(exact.get(i) or folded.get(i.casefold(), i) for i in ids)
            else:
                unknown.update({exact.get(i, i): _batch_error_text(error) for i in ids})
        for key in keys:
            if key not in found and key not in gone and key not in unknown:
                unknown[key] = "HubSpot answered neither the record nor 'not found' for this key"
        return found, unknown

    def _archive(self, object_name: str, record_ids: list[str]) -> str:
        """Archive the records; '' when done, else HubSpot's reason."""
        body = {"inputs": [{"id": record_id} for record_id in record_ids]}
        response = self._call("POST", f"/crm/v3/objects/{object_name}/batch/archive", body)
        if response.status_code in (200, 204):
            return ""
        return f"HubSpot refused to archive: {_error_text(response)}"

    # -- shared --------------------------------------------------------------------------------

    @staticmethod
    def error_text(response: httpx.Response) -> str:
        return _error_text(response)

    def _described(self, object_name: str) -> dict[str, dict[str, Any]]:
        if object_name not in self._properties:
            response = self._call("GET", f"/crm/v3/properties/{_checked(object_name)}")
            if response.status_code != 200:
                raise HubSpotError(f"HubSpot could not describe object {object_name!r}: {_error_text(response)}")
            self._properties[object_name] = {prop["name"]: prop for prop in response.json()["results"]}
        return self._properties[object_name]

    def _key_checked(self, object_name: str, key_field: str) -> dict[str, dict[str, Any]]:
        properties = self._described(object_name)
        problem = key_problem(object_name, key_field, properties)
        if problem:
            raise HubSpotError(problem)
        return properties

    @staticmethod
    def _key_text(key: Any, key_field: str, properties: dict[str, dict[str, Any]]) -> str:
        text = _spelled(key_field, key, properties)
        if text == "":
            raise UnsendableValue(f"{key_field} is empty; HubSpot finds records by a non-empty value")
        return text

    def _failed(self, index: int, message: str) -> Outcome:
        self.stats.note_error(message)
        return Outcome(index, False, error=message)

    def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        def send() -> httpx.Response:
            response = self._http.request(method, path, json=body)
            if response.status_code == 429 and _json(response).get("policyName") == "DAILY":
                self.stats.rate_limited += 1  # retrying is pointless until the portal's day turns
                raise HubSpotDown(f"HubSpot's daily API limit is used up: {_error_text(response)}")
            return response

        response = self._transport.call(send, lambda r: r.status_code, _header)
        if response.status_code == 401:
            raise HubSpotDown(
                f"HubSpot refused the private app token in ${self.settings.token_env} (HTTP 401: "
                f"{_error_text(response)}); private app tokens are not refreshed: put a valid token there"
            )
        if response.status_code == 403:
            raise HubSpotError(
                f"the private app behind ${self.settings.token_env} may not {method} {path} (HTTP 403: "
                f"{_error_text(response)}); grant the app the scope HubSpot names"
            )
        return response


def _answered(outcomes: list[Outcome | None]) -> list[Outcome]:
    missing = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise AssertionError(f"records {missing[:5]} got no outcome")  # a bug here, never HubSpot's
    return [outcome for outcome in outcomes if outcome is not None]


def _key_of(value: Any) -> Any:
    return value.key if isinstance(value, Reference) else value


def _checked(object_name: str) -> str:
    if not _OBJECT_NAME.match(object_name):
        raise HubSpotError(f"{object_name!r} is not a HubSpot object type name or id (e.g. contacts, 2-12345)")
    return object_name


def _spelled(name: str, value: Any, properties: dict[str, dict[str, Any]]) -> str:
    kind = (properties.get(name) or {}).get("type")
    try:
        return property_value(value, kind)
    except UnsendableValue as exc:
        raise UnsendableValue(f"{name}: {exc}") from None


def _header(response: httpx.Response, name: str) -> str | None:
    """Response headers for the Transport. HubSpot's 429 may come without Retry-After; its
    X-HubSpot-RateLimit-Interval-Milliseconds is then the wait after which the rolling window
    that refused us holds none of the calls it counted."""
    value = response.headers.get(name)
    if value is None and name.lower() == "retry-after" and response.status_code == 429:
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval and interval.isdigit():
            return str(int(interval) / 1000)
    return value


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(response: httpx.Response) -> str:
    body = _json(response)
    if body.get("message"):
        category = body.get("category") or body.get("policyName")
        return f"{category}: {body['message']}" if category else str(body["message"])
    return f"HTTP {response.status_code} {response.text[:300]}".strip()


def _batch_error_text(error: dict[str, Any]) -> str:
    category, message = error.get("category"), error.get("message") or "no message"
    return f"{category}: {message}" if category else str(message)
