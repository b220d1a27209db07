"""A strict JSON batch API on 127.0.0.1, in a thread: what the generic HTTP destination is tested against.

Its protocol, which the destination's default settings speak:
- `POST /v1/<object>/batch` with `{"records": [...]}` upserts records by their key field; each
  record carries an `idempotency_key`; the answer is `{"results": [{"index", "ok", "id", "created"}
  | {"index", "ok": false, "error"}]}`, one per record.
- `POST /v1/<object>/batch-delete` with `{"records": [{<key field>: k, "idempotency_key"}]}`; a key
  already gone counts as deleted.
- `GET /v1/<object>/schema` -> `{"fields": [...]}`; `GET /v1/<object>/count` -> `{"count": n}`.
It is strict where real APIs are: a bearer token, `Content-Type: application/json`, a batch size
limit, a payload size limit (413), required fields, unknown fields, field types, lengths and
picklists (per-record errors), a rate limit counted on arrival in a strict sliding window (429
with Retry-After, each one counted as a violation). An `Idempotency-Key` header replays the
first answer to that request; a record's idempotency key is applied at most once. Faults on
demand: queued 429 / 503 answers, connections dropped before or after the batch is applied,
`stall(seconds)` (a call counted late, as by a busy server), and `fail_after(n)`: every write
answers 503 once n batches were applied (a destination that goes down mid-run).
"""

from __future__ import annotations

import collections
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class StrictApi:
    def __init__(
        self,
        *,
        token: str = "test-token",
        key_field: str = "external_id",
        schema: dict[str, list[dict[str, Any]]] | None = None,
        max_batch: int = 50,
        max_payload: int = 256_000,
        rate: tuple[int, float] | None = None,  # (requests, per seconds)
        keep: bool = True,  # False: validate and count, keep nothing (a sink, for measuring the client)
    ):
        self.token, self.key_field, self.schema = token, key_field, schema or {}
        self.max_batch, self.max_payload, self.rate, self.keep = max_batch, max_payload, rate, keep
        self.accepted = 0
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, dict]] = collections.defaultdict(dict)
        self.applied: collections.Counter[str] = collections.Counter()  # idempotency key -> times applied
        self.replayed = 0  # records whose idempotency key had been applied already
        self.replayed_requests = 0  # requests answered from an earlier Idempotency-Key
        self.requests: list[tuple[str, str, int]] = []  # (method, path, records)
        self.bodies: list[bytes] = []  # raw bodies of the writes, as they arrived
        self.arrivals: collections.deque[float] = collections.deque()
        self.rate_violations = 0
        self.answers: collections.Counter[int] = collections.Counter()
        self.faults: collections.deque[tuple[str, float]] = collections.deque()
        self.stalls: collections.deque[float] = collections.deque()
        self.refuse: dict[str, str] = {}  # key -> the error its upsert gets
        self.refuse_delete: dict[str, str] = {}
        self.batches_applied = 0
        self.down_after: int | None = None
        self._cached: dict[str, tuple[int, bytes]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- control ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StrictApi:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def queue(self, fault: str, times: int = 1, retry_after: float = 1.0) -> None:
        """The next `times` writes (POSTs) answer `429` (with Retry-After) or `503`, or have their
        connection dropped: `drop_before` (nothing applied), `drop_after` (applied, no answer)."""
        self.faults.extend([(fault, retry_after)] * times)

    def stall(self, seconds: float) -> None:
        """The next request waits `seconds` before the rate limit counts it, as a busy server
        queues a call before it stamps it: the same call reaches the window late."""
        self.stalls.append(seconds)

    def fail_after(self, batches: int | None) -> None:
        self.down_after = None if batches is None else self.batches_applied + batches

    def writes(self) -> int:
        return sum(1 for method, _, _ in self.requests if method == "POST")

    # -- the protocol --------------------------------------------------------------------------------
    def _too_fast(self, now: float) -> bool:
        if self.rate is None:
            return False
        limit, window = self.rate
        while self.arrivals and now - self.arrivals[0] >= window:
            self.arrivals.popleft()
        if len(self.arrivals) >= limit:
            return True
        self.arrivals.append(now)
        return False

    def _check(self, obj: str, index: int, record: Any) -> str | None:
        if not isinstance(record, dict):
            return "INVALID_RECORD: a record is a JSON object"
        key = record.get(self.key_field)
        if not isinstance(key, str) or not key:
            return f"MISSING_KEY: {self.key_field} must be a non-empty string"
        if not isinstance(record.get("idempotency_key"), str):
            return "MISSING_IDEMPOTENCY_KEY"
        fields = {f["name"]: f for f in self.schema.get(obj, [])}
        for name, value in record.items():
            if name in ("idempotency_key", self.key_field) or not fields:
                continue
            if name not in fields:
                return f"INVALID_FIELD: {obj} has no field {name}"
            problem = _type_problem(fields[name], value)
            if problem:
                return f"{problem} ({name})"
        existing = self.records[obj].get(key, {})
        for name, field in fields.items():  # a create needs every required field; an update may leave it out
            if field.get("required") and name != self.key_field:
                value = record[name] if name in record else existing.get(name)
                if value in (None, ""):
                    return f"REQUIRED_FIELD_MISSING: {name}"
        return self.refuse.get(key)

    def upsert(self, obj: str, records: list) -> list[dict]:
        results = []
        for i, record in enumerate(records):
            error = self._check(obj, i, record)
            if error:
                results.append({"index": i, "ok": False, "error": error})
                continue
            key, idem = record[self.key_field], record["idempotency_key"]
            if self.applied[idem]:
                self.replayed += 1
                results.append({"index": i, "ok": True, "id": key, "created": False, "replayed": True})
                continue
            created = key not in self.records[obj]
            self.accepted += 1
            if self.keep:
                fields = {k: v for k, v in record.items() if k != "idempotency_key"}
                self.records[obj][key] = {**self.records[obj].get(key, {}), **fields}  # fields not sent are kept
                self.applied[idem] += 1
            results.append({"index": i, "ok": True, "id": key, "created": created})
        return results

    def delete(self, obj: str, records: list) -> list[dict]:
        results = []
        for i, record in enumerate(records):
            key = record.get(self.key_field) if isinstance(record, dict) else None
            if not isinstance(key, str) or not isinstance(record.get("idempotency_key"), str):
                results.append({"index": i, "ok": False, "error": "INVALID_RECORD: key and idempotency_key needed"})
            elif key in self.refuse_delete:
                results.append({"index": i, "ok": False, "error": self.refuse_delete[key]})
            else:
                if not self.applied[record["idempotency_key"]]:
                    self.applied[record["idempotency_key"]] += 1
                existed = self.records[obj].pop(key, None) is not None
                results.append({"index": i, "ok": True, "id": key, "deleted": existed})
        return results


def _type_problem(field: dict, value: Any) -> str | None:
    if value is None:
        return None
    kind = field.get("type", "string")
    if kind in ("string", "textarea", "picklist", "id"):
        if not isinstance(value, str):
            return "INVALID_TYPE: expected a string"
        if field.get("length") and len(value) > field["length"]:
            return f"STRING_TOO_LONG: {len(value)} characters over {field['length']}"
        if kind == "picklist" and field.get("picklist") is not None and value not in field["picklist"]:
            return f"INVALID_PICKLIST_VALUE: {value!r}"
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return "INVALID_TYPE: expected an integer"
    elif kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "INVALID_TYPE: expected a number"
    elif kind == "boolean" and not isinstance(value, bool):
        return "INVALID_TYPE: expected a boolean"
    elif kind == "date" and not (isinstance(value, str) and DATE.match(value)):
        return "INVALID_TYPE: expected YYYY-MM-DD"
    elif kind == "datetime" and not (isinstance(value, str) and DATETIME.match(value)):
        return "INVALID_TYPE: expected an ISO 8601 UTC datetime ending in Z"
    return None


def _handler(api: StrictApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms a call), which would make this server, not the limit, set the pace
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *_args: object) -> None:
            pass

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            api.answers[status] += 1
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            self.connection.shutdown(2)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length and length <= api.max_payload else b""
            match = re.fullmatch(r"/v1/([A-Za-z0-9_]+)/(batch|batch-delete|schema|count)", self.path)
            if api.stalls:
                time.sleep(api.stalls.popleft())
            with api.lock:
                fault = api.faults.popleft() if api.faults and method == "POST" else None
                now = time.monotonic()
                records = 0
                try:
                    records = len(json.loads(raw).get("records", [])) if raw else 0
                except (ValueError, AttributeError):
                    pass
                api.requests.append((method, self.path, records))
                if method == "POST" and api.keep:
                    api.bodies.append(raw)
                if api._too_fast(now):
                    api.rate_violations += 1
                    return self._answer(429, {"error": "RATE_LIMITED"}, {"Retry-After": "1"})
                if fault and fault[0] == "429":
                    return self._answer(429, {"error": "RATE_LIMITED"}, {"Retry-After": f"{fault[1]:g}"})
                if fault and fault[0] == "503":
                    return self._answer(503, {"error": "SERVICE_UNAVAILABLE"})
                if fault and fault[0] == "drop_before":
                    return self._drop()
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._answer(401, {"error": "INVALID_TOKEN"})
                if not match:
                    return self._answer(404, {"error": f"no such endpoint {method} {self.path}"})
                obj, action = match.groups()
                if method == "GET" and action == "schema":
                    return self._answer(200, {"fields": api.schema.get(obj, [])})
                if method == "GET" and action == "count":
                    return self._answer(200, {"count": len(api.records[obj])})
                if method != "POST" or action not in ("batch", "batch-delete"):
                    return self._answer(405, {"error": "method not allowed"})
                if api.down_after is not None and api.batches_applied >= api.down_after:
                    return self._answer(503, {"error": "SERVICE_UNAVAILABLE"})
                if self.headers.get("Content-Type") != "application/json":
                    return self._answer(415, {"error": "Content-Type must be application/json"})
                if length > api.max_payload:  # the body is left unread: this connection ends here
                    self.close_connection = True
                    too_big = {"error": f"PAYLOAD_TOO_LARGE: {length} bytes over {api.max_payload}"}
                    return self._answer(413, too_big, {"Connection": "close"})
                replay = self.headers.get("Idempotency-Key")
                if replay and replay in api._cached:
                    status, body = api._cached[replay]
                    api.replayed_requests += 1
                    return self._answer(status, body, {"Idempotent-Replayed": "true"})
                try:
                    payload = json.loads(raw)
                except ValueError:
                    return self._answer(400, {"error": "the body is not JSON"})
                batch = payload.get("records") if isinstance(payload, dict) else None
                if not isinstance(batch, list) or not batch:
                    return self._answer(400, {"error": 'the body must be {"records": [...]}, not empty'})
                if len(batch) > api.max_batch:
                    over = f"BATCH_TOO_LARGE: {len(batch)} records over the limit of {api.max_batch}"
                    return self._answer(400, {"error": over})
                results = api.upsert(obj, batch) if action == "batch" else api.delete(obj, batch)
                api.batches_applied += 1
                body = json.dumps({"results": results}).encode()
                if replay and api.keep:
                    api._cached[replay] = (200, body)
                if fault and fault[0] == "drop_after":
                    return self._drop()
                return self._answer(200, body)

    return Handler
