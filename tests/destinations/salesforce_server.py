"""A local Salesforce org over HTTPS, in a thread, strict where the real API is strict.

It serves the OAuth 2.0 token endpoint (client credentials, JWT bearer checked against the
connected app's certificate), describe, SOQL (COUNT() and Id look-ups by external ID), sObject
Collections upsert and delete, and Bulk API 2.0 ingest jobs (salesforce_bulk.py). Every REST answer
carries `Sforce-Limit-Info: api-usage=N/M`; past the daily allowance it answers 403
REQUEST_LIMIT_EXCEEDED. Past `max_per_second` requests in any second it answers 429 and counts a
violation. Faults on demand: 429 / 503 storms, connections dropped before or after the request is
applied, expired sessions, failed jobs. Requests the real API refuses fail loudly here too: a
missing or stale token, an API version not in vNN.0 form, a wrong Content-Type, an unknown field."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.destinations.salesforce_bulk import BulkJobs
from tests.destinations.salesforce_org import RequestError, SObject, account
from tests.destinations.salesforce_rest import RestApi, json_body

VERSION = re.compile(r"^/services/data/v(\d+\.\d+)(/.*)?$")
MAX_URI_BYTES = 16_384


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) and its key, as PEM files."""
    import ipaddress

    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "salesforce-cert.pem", directory / "salesforce-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_text(private_pem(key))
    return cert_path, key_path


@dataclass
class OrgConfig:
    client_id: str = "3MVG9-local-consumer-key"
    client_secret: str = "local-consumer-secret"
    jwt_public_key: str = ""  # PEM of the connected app's certificate key; empty: JWT flow refused
    jwt_username: str = "integration@example.com"
    audience: str = "https://login.salesforce.com"
    daily_api_limit: int = 100_000
    api_used: int = 0
    max_per_second: int = 1_000
    max_upload_bytes: int = 150_000_000 * 3 // 4  # 150 MB after base64
    processing_seconds: float = 0.05
    versions: tuple[float, float] = (31.0, 63.0)


@dataclass
class Fault:
    kind: str  # "429" | "503" | "401" | "drop_before" | "drop_after" (applied, then no answer)
    times: int
    path: str = ""  # only requests whose path contains this
    method: str = ""
    retry_after: str | None = "1"


@dataclass
class Traffic:
    """What the org saw: for the tests' assertions."""

    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of REST calls answered
    statuses: Counter[int] = field(default_factory=Counter)
    rate_violations: int = 0
    dropped: int = 0
    logins: int = 0


class SalesforceServer:
    def __init__(self, cert: Path, key: Path, config: OrgConfig | None = None):
        self.config = config or OrgConfig()
        self.objects: dict[str, SObject] = {"Account": account()}
        self.bulk = BulkJobs(self.objects, self.config.max_upload_bytes, self.config.processing_seconds)
        self.rest = RestApi(self.objects)
        self.traffic = Traffic()
        self.api_used = self.config.api_used
        self.faults: deque[Fault] = deque()
        self.tokens: set[str] = set()
        self.lock = threading.RLock()
        self._window: deque[float] = deque()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> SalesforceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- faults on demand -------------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, path: str = "", method: str = "", retry_after: str | None = "1"):
        self.faults.append(Fault(kind, times, path, method, retry_after))

    def expire_sessions(self) -> None:
        with self.lock:
            self.tokens.clear()

    def fault_for(self, method: str, path: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.method in ("", method) and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault.kind + (f":{fault.retry_after}" if fault.retry_after else "")
        return None

    # --- OAuth 2.0 --------------------------------------------------------------------------------
    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if form.get("client_id") != self.config.client_id or form.get("client_secret") != self.config.client_secret:
                return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self._jwt_problem(form.get("assertion", ""))
            if problem:
                return 400, {"error": problem[0], "error_description": problem[1]}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
        token = "00D5g000004LOCAL!" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
            self.traffic.logins += 1
        return 200, {
            "access_token": token,
            "instance_url": self.url,
            "id": f"{self.config.audience}/id/00D5g000004LOCAL/0055g00000AAAAAAA1",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "scope": "api",
        }

    def _jwt_problem(self, assertion: str) -> tuple[str, str] | None:
        if not self.config.jwt_public_key:
            return "invalid_grant", "the connected app has no certificate for the JWT bearer flow"
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.config.jwt_public_key,
                algorithms=["RS256"],
                audience=self.config.audience,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            return "invalid_grant", "expired assertion"
        except jwt.InvalidAudienceError:
            return "invalid_grant", "audience is invalid"
        except jwt.PyJWTError:
            return "invalid_grant", "invalid assertion"
        if header.get("alg") != "RS256":
            return "invalid_grant", "invalid assertion"
        if claims["iss"] != self.config.client_id:
            return "invalid_client_id", "client identifier invalid"
        if claims["sub"] != self.config.jwt_username:
            return "invalid_grant", "user hasn't approved this consumer"
        if claims["exp"] > time.time() + 300:  # Salesforce wants expiry within a few minutes
            return "invalid_grant", "invalid assertion: exp too far in the future"
        return None

    # --- limits -----------------------------------------------------------------------------------
    def admit(self) -> tuple[int, str, str] | None:
        """The daily allowance, then the per-second limit; counts the call when it is admitted."""
        with self.lock:
            if self.api_used >= self.config.daily_api_limit:
                return 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
            now = time.monotonic()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.config.max_per_second:
                self.traffic.rate_violations += 1
                return 429, "REQUEST_LIMIT_EXCEEDED", f"more than {self.config.max_per_second} requests a second"
            self._window.append(now)
            self.api_used += 1
            return None

    def limit_info(self) -> str:
        return f"api-usage={self.api_used}/{self.config.daily_api_limit}"

    # --- routing ----------------------------------------------------------------------------------
    def route(self, method: str, version: str, rest: str, query: dict[str, list[str]], body: bytes, ctype: str):
        """(status, JSON or CSV text, content type) for one admitted REST call."""
        if rest.startswith("/jobs/ingest"):
            if float(version) < 41.0:
                raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
            return self._jobs(method, rest, body, ctype, version)
        return self.rest.route(method, version, rest, query, body, ctype)

    def _jobs(self, method: str, rest: str, body: bytes, ctype: str, version: str):
        parts = [p for p in rest.split("/") if p][2:]
        if not parts:
            if method != "POST":
                raise RequestError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are POST")
            return 200, self.bulk.create(json_body(body, ctype), version), "application/json"
        job_id = parts[0]
        if len(parts) == 1 and method == "GET":
            return 200, self.bulk.info(job_id), "application/json"
        if len(parts) == 1 and method == "PATCH":
            payload = json_body(body, ctype)
            if not isinstance(payload, dict) or set(payload) != {"state"}:
                raise RequestError(400, "JSON_PARSER_ERROR", 'the body must be {"state": ...}')
            return 200, self.bulk.set_state(job_id, payload["state"]), "application/json"
        if len(parts) == 2 and parts[1] == "batches" and method == "PUT":
            if ctype.split(";")[0].strip() != "text/csv":
                raise RequestError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type {ctype or 'none'} is not text/csv")
            self.bulk.upload(job_id, body)
            return 201, None, ""
        if len(parts) == 2 and method == "GET":
            return 200, self.bulk.results(job_id, parts[1]), "text/csv"
        raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")


def _handler(server: SalesforceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms a call), which would make this org, not the limit, set the pace
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _send(self, status: int, body: Any, ctype: str = "application/json", headers: dict | None = None):
            raw = (
                b""
                if body is None
                else body.encode()
                if isinstance(body, str)
                else json.dumps(body, default=str).encode()
            )
            with server.lock:  # counted before the answer leaves: a client reading it sees the count
                server.traffic.statuses[status] += 1
            self.send_response(status)
            if raw:
                self.send_header("Content-Type", f"{ctype};charset=UTF-8" if ctype else "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def _drop(self) -> None:
            with server.lock:
                server.traffic.dropped += 1
            self.close_connection = True
            self.connection.shutdown(2) if hasattr(self.connection, "shutdown") else None

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            if len(self.path.encode()) > MAX_URI_BYTES:
                return self._send(414, [{"errorCode": "URI_TOO_LONG", "message": "the URI is too long"}])
            fault = server.fault_for(method, url.path)
            kind, _, retry_after = (fault or "").partition(":")
            if kind in ("429", "503"):
                headers = {"Retry-After": retry_after} if kind == "429" and retry_after else {}
                code = "REQUEST_LIMIT_EXCEEDED" if kind == "429" else "SERVER_UNAVAILABLE"
                return self._send(int(kind), [{"errorCode": code, "message": "try again later"}], headers=headers)
            if kind == "drop_before":
                return self._drop()
            if kind == "401":  # a session revoked between two calls
                return self._send(401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}])
            if url.path == "/services/oauth2/token":
                return self._token(method, body, kind == "drop_after")
            headers: dict[str, str] = {}
            try:
                status, payload, ctype = self._rest(method, url, body)
            except RequestError as exc:
                status, payload, ctype = (
                    exc.status,
                    [{"errorCode": exc.code, "message": exc.message}],
                    "application/json",
                )
                headers = exc.headers
            if kind == "drop_after":
                return self._drop()
            self._send(status, payload, ctype, {**headers, "Sforce-Limit-Info": server.limit_info()})

        def _token(self, method: str, body: bytes, drop: bool) -> None:
            if method != "POST":
                return self._send(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
            if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
                return self._send(400, {"error": "invalid_request", "error_description": "unsupported content type"})
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            status, answer = server.token(form)
            return self._drop() if drop else self._send(status, answer)

        def _rest(self, method: str, url: Any, body: bytes) -> tuple[int, Any, str]:
            match = VERSION.match(url.path)
            low, high = server.config.versions
            if not match or not re.fullmatch(r"\d{2}\.0", match.group(1)) or not low <= float(match.group(1)) <= high:
                raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
            auth = self.headers.get("Authorization", "")
            with server.lock:
                valid = auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in server.tokens
            if not valid:
                raise RequestError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            refused = server.admit()
            if refused:
                status, code, message = refused
                raise RequestError(status, code, message, {"Retry-After": "1"} if status == 429 else None)
            with server.lock:
                server.traffic.requests.append((method, url.path))
                ctype = self.headers.get("Content-Type", "")
                query = parse_qs(url.query)
                return server.route(method, match.group(1), match.group(2) or "", query, body, ctype)

    return Handler
