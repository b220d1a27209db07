"""A local HubSpot API for tests and benchmarks: a real HTTP server in a thread serving a
hubspot_portal.Portal behind HubSpot's private-app authentication, its ten-secondly rolling rate
limit (429 with HubSpot's body and X-HubSpot-RateLimit-* headers), its request limits and error
shapes, plus faults on demand (429 / 5xx storms, connections dropped before or after the write).

It counts what it saw: every request, calls that reached a route (answered or refused), upsert
batch sizes, the 429s its window sent, and `violations` (every 4xx other than a 429: a request
the real API would refuse).
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

from tests.destinations.hubspot_portal import ApiError, Portal, demo_portal

_OBJECTS = r"/crm/v3/objects/(?P<object>[A-Za-z0-9_-]+)"
_ASSOCIATIONS = r"/crm/v4/associations/(?P<source>[A-Za-z0-9_-]+)/(?P<target>[A-Za-z0-9_-]+)"
_ROUTES = [
    ("GET", re.compile(r"^/crm/v3/properties/(?P<object>[A-Za-z0-9_-]+)$"), "describe"),
    ("POST", re.compile(rf"^{_OBJECTS}/batch/upsert$"), "upsert"),
    ("POST", re.compile(rf"^{_OBJECTS}/batch/read$"), "read"),
    ("POST", re.compile(rf"^{_OBJECTS}/batch/archive$"), "archive"),
    ("POST", re.compile(rf"^{_OBJECTS}/search$"), "search"),
    ("POST", re.compile(rf"^{_ASSOCIATIONS}/batch/read$"), "associations.read"),
    ("POST", re.compile(rf"^{_ASSOCIATIONS}/batch/associate/default$"), "associations.associate"),
    ("POST", re.compile(rf"^{_ASSOCIATIONS}/batch/archive$"), "associations.archive"),
]
FAULTS = (429, 500, 502, 503, 504, "drop", "drop_after", "daily")


class HubSpotServer:
    """Start with `with HubSpotServer() as hubspot:`; point the client's base_url at `.url`."""

    def __init__(
        self,
        portal: Portal | None = None,
        *,
        token: str = "pat-na1-local-test-token",
        max_requests: int = 100,  # per rolling window: a private app on a Starter portal
        interval_seconds: float = 10.0,
        retry_after: bool = True,  # send Retry-After with the window's 429s
        max_body_bytes: int = 3_000_000,  # not documented by HubSpot; a knob for the tests
    ):
        self.portal = portal or demo_portal()
        self.token, self.max_requests, self.interval = token, max_requests, interval_seconds
        self.retry_after, self.max_body_bytes = retry_after, max_body_bytes
        self.requests = 0
        self.calls: Counter[str] = Counter()
        self.upsert_sizes: list[int] = []
        self.rate_limited = 0  # 429s the window sent
        self.injected = 0  # faults served from the queue
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._faults: list[tuple[str | None, int | str, float]] = []
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.app = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, name="hubspot-server", daemon=True)

    def __enter__(self) -> HubSpotServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    # -- what tests ask for --------------------------------------------------------------------

    def fail(self, *faults: int | str, route: str | None = None, retry_after: float = 1) -> None:
        """Answer the next requests (to `route` only, if given) with these faults, in order:
        429 or 5xx statuses, "drop" (the connection closes before the request is applied),
        "drop_after" (applied, then closed before the answer) or "daily" (the portal's daily
        limit is spent: a 429 with policyName DAILY)."""
        for fault in faults:
            assert fault in FAULTS, fault
        with self._lock:
            self._faults.extend((route, fault, retry_after) for fault in faults)

    def use_window(self, count: int | None = None, over_seconds: float = 0.0) -> None:
        """Spend the rolling window as another app on the same portal would, its calls spread
        evenly over the last `over_seconds` (0: all of them now)."""
        count = count if count is not None else self.max_requests
        with self._lock:
            now = time.monotonic()
            step = over_seconds / (count - 1) if count > 1 else 0.0
            self._window.extend(now - over_seconds + i * step for i in range(count))

    # -- serving -------------------------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        with self._lock:
            self.requests += 1
        path = request.path.split("?", 1)[0]
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        route, match = _route(request.command, path)
        try:
            if length > self.max_body_bytes:
                raise ApiError(413, f"Request body of {length} bytes is over the {self.max_body_bytes} bytes allowed")
            self._authenticate(request.headers.get("Authorization", ""))
            limited = self._spend_window()
            if limited is not None:
                self._answer(request, 429, _rate_limit_body(), limited)
                return
            fault = self._next_fault(route)
            if fault is not None and self._fault(request, *fault):
                return
            if route is None:
                raise ApiError(404, f"No route for {request.command} {path}", "OBJECT_NOT_FOUND")
            with self._lock:
                self.calls[route] += 1
            body = self._json(request, raw) if request.command == "POST" else None
            with self.portal.lock:
                if route == "describe":
                    status, answer = self.portal.describe(match["object"])
                elif route.startswith("associations."):
                    endpoint = getattr(self.portal.associations, route.partition(".")[2])
                    status, answer = endpoint(match["source"], match["target"], body)
                else:
                    if route == "upsert" and isinstance(body, dict) and isinstance(body.get("inputs"), list):
                        self.upsert_sizes.append(len(body["inputs"]))
                    status, answer = getattr(self.portal, route)(match["object"], body)
            if fault is not None and fault[0] == "drop_after":
                _drop(request)
                return
            self._answer(request, status, answer)
        except ApiError as exc:
            with self._lock:
                self.violations.append(f"{exc.status} {request.command} {path}: {exc.body['message']}")
            self._answer(request, exc.status, exc.body)
        except Exception as exc:  # a bug in this server: make the test fail, not retry quietly
            with self._lock:
                self.violations.append(f"500 {request.command} {path}: test server bug {exc!r}")
            self._answer(request, 500, {"status": "error", "message": repr(exc), "category": "INTERNAL_ERROR"})

    def _authenticate(self, header: str) -> None:
        if not header.startswith("Bearer "):
            raise ApiError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and private "
                "app access tokens.",
                "INVALID_AUTHENTICATION",
            )
        if header.removeprefix("Bearer ") != self.token:
            raise ApiError(401, "The access token provided is not valid.", "INVALID_AUTHENTICATION")

    def _spend_window(self) -> dict[str, str] | None:
        """None when the call fits the rolling window (and is counted), else the 429's headers."""
        with self._lock:
            now = time.monotonic()
            while self._window and now - self._window[0] >= self.interval:
                self._window.popleft()
            if len(self._window) < self.max_requests:
                self._window.append(now)
                return None
            self.rate_limited += 1
            headers = {}
            if self.retry_after:
                wait = self._window[0] + self.interval - now
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return headers

    def _next_fault(self, route: str | None) -> tuple[int | str, float] | None:
        with self._lock:
            for n, (wanted, fault, retry_after) in enumerate(self._faults):
                if wanted is None or wanted == route:
                    del self._faults[n]
                    self.injected += 1
                    return fault, retry_after
        return None

    def _fault(self, request: _Handler, fault: int | str, retry_after: float) -> bool:
        """Serve the fault; False for drop_after, which the request is applied before."""
        if fault == "drop":
            _drop(request)
        elif fault == 429:
            self._answer(request, 429, _rate_limit_body(), {"Retry-After": str(retry_after)})
        elif fault == "daily":
            self._answer(request, 429, _rate_limit_body("DAILY"))
        elif isinstance(fault, int):
            page = f"<html><body><h1>{fault} Server Error</h1></body></html>".encode()
            request.send_response(fault)
            request.send_header("Content-Type", "text/html")
            request.send_header("Content-Length", str(len(page)))
            request.end_headers()
            request.wfile.write(page)
        return fault != "drop_after"

    def _json(self, request: _Handler, raw: bytes) -> Any:
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("application/json"):
            raise ApiError(415, f"Content type '{content_type}' not supported; send application/json")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"Invalid input JSON: {exc}") from None

    def _answer(self, request: _Handler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        request.send_response(status)
        if body is not None:
            request.send_header("Content-Type", "application/json;charset=utf-8")
        if status != 204:
            request.send_header("Content-Length", str(len(data)))
        with self._lock:
            remaining = max(self.max_requests - len(self._window), 0)
            used = self.requests
        for name, value in {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.interval * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.max_requests),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Daily": "500000",
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(500000 - used, 0)),
            "X-HubSpot-Correlation-Id": str(uuid4()),
            **(headers or {}),
        }.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API

    def setup(self) -> None:
        super().setup()
        # headers and body leave in two writes; with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a call), which would make the server, not the limit, the bottleneck
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.app.handle(self)  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802
        self.server.app.handle(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _route(method: str, path: str) -> tuple[str | None, re.Match[str] | None]:
    for wanted, pattern, name in _ROUTES:
        match = pattern.match(path)
        if match and method == wanted:
            return name, match
    return None, None


def _drop(request: _Handler) -> None:
    request.close_connection = True
    try:
        request.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _rate_limit_body(policy: str = "TEN_SECONDLY_ROLLING") -> dict[str, str]:
    return {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid4()),
        "policyName": policy,
        "requestId": str(uuid4()),
    }
