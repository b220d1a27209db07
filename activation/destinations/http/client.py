"""A generic HTTP endpoint as an ObjectClient: JSON batches of records, each answered on its own.

Every request goes through the destination's RateLimiter and the retry Transport (429 with
Retry-After, 5xx backoff, dropped connections). Each record carries an idempotency key, and each
request one over its records' keys, derived from the sync, the state's version, the record's
key, the operation and its content: a batch retried after a dropped answer, or re-sent by the
next run after a crash, carries the same keys, so an endpoint that honours them applies it once;
the same content sent again after the state moved on (a row that left and came back) is new.

Answers: 2xx with per-record results (settings.response maps where they are); 401/403 stop the
sync (the credentials); any other 4xx refuses every record of the batch with the endpoint's
message, kept as rejects and sent again next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from activation.destinations.api.client import CallStats, FieldInfo, Outcome, Record
from activation.destinations.api.limits import RateLimiter, Transport
from activation.destinations.http.settings import Settings
from activation.destinations.http.template import canonical, dumps, render

Log = Callable[[str], None]
ERROR_TEXT = 300  # characters of an error answer kept as a reject's reason


class EndpointError(RuntimeError):
    """The endpoint answered in a way the sync cannot go on from (credentials, a missing URL, no results)."""


def path_get(data: Any, path: str | None) -> Any:
    """The value at a dotted path ("data.results", "0.ok"), or None."""
    if path is None:
        return None
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class HttpClient:
    kind = "http"

    def __init__(self, settings: Settings, limiter: RateLimiter, log: Log, headers: dict[str, str]):
        self.settings = settings
        self.stats = CallStats()
        self.deletes = settings.delete_url is not None  # mirror needs somewhere to send deletes
        self.scope = "unscoped"
        self.key_comparison = settings.key_comparison  # read by api/twins.py
        self._pool = httpx.HTTPTransport()  # keep-alive connections
        self._http = httpx.Client(timeout=settings.timeout_seconds, headers=headers, transport=self._pool)
        retry = settings.retry
        self._transport = Transport(
            limiter,
            self.stats,
            attempts=retry.attempts,
            first_pause=retry.first_pause_seconds,
            max_pause=retry.max_pause_seconds,
            transient=(httpx.TransportError,),
            log=log,
        )

    def set_idempotency_scope(self, scope: str) -> None:
        """The sync and the state version its change is computed against (set by the engine)."""
        self.scope = scope

    # -- calls -------------------------------------------------------------------------------
    def _request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> httpx.Response:
        extra = dict(headers or {})
        if body is not None:
            extra["Content-Type"] = "application/json"
        response = self._transport.call(
            lambda: self._exchange(self._http.build_request(method, url, content=body, headers=extra)),
            lambda r: r.status_code,
            lambda r, name: r.headers.get(name),
        )
        if response.status_code in (401, 403):
            raise EndpointError(
                f"{method} {url}: HTTP {response.status_code}; check the credentials in the environment variable(s) "
                f"{self.settings.secrets() or '(none configured)'}"
            )
        if response.status_code in (404, 405):
            raise EndpointError(f"{method} {url}: HTTP {response.status_code}; check the destination's URL settings")
        return response

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """One request through the connection pool, its answer read whole. Not `Client.send`: it
        binds each response to its stream in a reference cycle, which kept every request body alive
        until a full garbage collection (memory grew with the change)."""
        response = self._pool.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def _url(self, template: str, object_name: str) -> str:
        return template.replace("{object}", object_name)

    def _send(self, method: str, url: str, bodies: list[Any], keys: list[str]) -> list[Outcome]:
        s = self.settings
        payload = bodies if s.records_field is None else {s.records_field: bodies}
        headers = {s.idempotency_header: _digest(*keys)} if s.idempotency_header else {}
        response = self._request(method, url, dumps(payload), headers)
        if response.status_code >= 400:
            reason = f"HTTP {response.status_code}: {response.text[:ERROR_TEXT]}"
            return [Outcome(index=i, ok=False, error=reason) for i in range(len(bodies))]
        return self._outcomes(response, len(bodies), url)

    def _outcomes(self, response: httpx.Response, sent: int, url: str) -> list[Outcome]:
        m = self.settings.response
        if m.results is None:
            return [Outcome(index=i, ok=True) for i in range(sent)]
        try:
            results = path_get(response.json(), m.results)
        except json.JSONDecodeError as exc:
            raise EndpointError(f"{url}: the answer is not JSON ({response.text[:ERROR_TEXT]!r})") from exc
        if not isinstance(results, list):
            raise EndpointError(f"{url}: the answer has no results array at {m.results!r}; set settings.response")
        found: dict[int, Outcome] = {}
        for position, result in enumerate(results):
            index = path_get(result, m.index) if m.index else position
            if not isinstance(index, int) or not 0 <= index < sent or index in found:
                raise EndpointError(f"{url}: result {position} names record {index!r} of a batch of {sent}")
            error = path_get(result, m.error)
            ok = bool(path_get(result, m.ok)) if m.ok else not error
            created = path_get(result, m.created)
            found[index] = Outcome(
                index=index,
                ok=ok,
                error="" if ok else str(error or "refused without a message"),
                record_id=None if path_get(result, m.id) is None else str(path_get(result, m.id)),
                created=created if isinstance(created, bool) else None,
            )
        missing = "the endpoint answered no result for this record"
        return [found.get(i) or Outcome(index=i, ok=False, error=missing) for i in range(sent)]

    # -- the ObjectClient protocol ---------------------------------------------------------------
    def describe(self, object_name: str) -> dict[str, FieldInfo] | None:
        s = self.settings
        if s.fields is not None:
            return {name: FieldInfo(name=name, **rule.model_dump()) for name, rule in s.fields.items()}
        if s.schema_url is None:
            return None
        url = self._url(s.schema_url, object_name)
        response = self._request("GET", url)
        fields = path_get(response.json(), "fields")
        if response.status_code >= 400 or not isinstance(fields, list):
            raise EndpointError(f"GET {url}: HTTP {response.status_code}, no fields array: {response.text[:200]}")
        known = set(FieldInfo.__dataclass_fields__)
        out = {}
        for field in fields:
            values = {k: v for k, v in field.items() if k in known}
            if "picklist" in values and values["picklist"] is not None:
                values["picklist"] = tuple(values["picklist"])
            out[field["name"]] = FieldInfo(**values)
        return out

    def batch_size(self, changes: int) -> int:
        return self.settings.batch_size

    def _idempotency_key(self, object_name: str, key: Any, operation: str, content: Any) -> str:
        return _digest(self.scope, object_name, canonical(key), operation, canonical(content))

    def upsert(self, object_name: str, key_field: str, records: Sequence[Record]) -> list[Outcome]:
        s = self.settings
        bodies, keys = [], []
        for record in records:
            idem = self._idempotency_key(object_name, record[key_field], "upsert", record)
            values = {**record, "_key": record[key_field], "_object": object_name, "_operation": "upsert"}
            values["_idempotency_key"] = idem
            try:
                body = dict(record) if s.body_template is None else render(s.body_template, values)
            except KeyError as exc:
                raise EndpointError(
                    f"body_template: placeholder {{{{ {exc.args[0]} }}}} is not a field the sync maps into "
                    f"{object_name} ({sorted(record)}) nor one of _key, _object, _operation, _idempotency_key"
                ) from None
            if s.idempotency_field and isinstance(body, dict):
                body.setdefault(s.idempotency_field, idem)
            bodies.append(body)
            keys.append(idem)
        return self._send(s.method, self._url(s.url, object_name), bodies, keys)

    def delete(self, object_name: str, key_field: str, keys: Sequence[Any]) -> list[Outcome]:
        s = self.settings
        if s.delete_url is None:
            raise EndpointError(f"{object_name}: this http destination has no delete_url; it cannot delete")
        bodies, idems = [], []
        for key in keys:
            idem = self._idempotency_key(object_name, key, "delete", None)
            body = {key_field: key}
            if s.idempotency_field:
                body[s.idempotency_field] = idem
            bodies.append(body)
            idems.append(idem)
        return self._send(s.delete_method, self._url(s.delete_url, object_name), bodies, idems)

    def count(self, object_name: str, key_field: str | None = None) -> int | None:
        """What the endpoint's count_url answers for the object (it knows which records are synced)."""
        s = self.settings
        if s.count_url is None:
            return None
        response = self._request("GET", self._url(s.count_url, object_name))
        value = path_get(response.json(), s.count_path) if response.status_code < 400 else None
        return int(value) if isinstance(value, int | float) else None

    def close(self) -> None:
        self._http.close()
