"""The local API servers of tests/destinations/, each in its own process, with what they counted.

A server in the benchmark's own process would share its interpreter (and its GIL) with the sync,
and its records would count in the sync's peak memory. Here each runs in a spawned child; the
parent asks it, over a pipe, for the secrets its client needs, and for what it saw since the last
`reset`: the calls its rate limit admitted (with their times, on the machine's monotonic clock,
which every process shares), the 429s its window sent, and the records it holds.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("salesforce", "hubspot", "http")


@dataclass(frozen=True)
class ServerLimit:
    """The rate the server enforces: `requests` per `per_seconds`, in its own window semantics."""

    requests: int
    per_seconds: float


@dataclass
class Served:
    """A started server, and how the child reads and drives it."""

    server: Any
    secrets: dict[str, str]  # environment variables its client reads
    refused: Callable[[], int]  # 429s its window has sent
    records: Callable[[], int]  # records it holds
    spend: Callable[[], None]  # fill its window as another client would, evenly over the last window


def _spread(limit: ServerLimit) -> list[float]:
    """`requests` call times, evenly over the last window, the last one now."""
    now, n = time.monotonic(), limit.requests
    step = limit.per_seconds / n
    return [now - (n - 1 - i) * step for i in range(n)]


def _salesforce(limit: ServerLimit, tls_dir: str, admitted: list[float]) -> Served:
    from tests.destinations.salesforce_server import OrgConfig, SalesforceServer

    if limit.per_seconds != 1.0:
        raise ValueError("the local Salesforce org limits requests per second only")
    config = OrgConfig(max_per_second=limit.requests, daily_api_limit=10_000_000)
    server = SalesforceServer(Path(tls_dir) / "salesforce-cert.pem", Path(tls_dir) / "salesforce-key.pem", config)
    admit = server.admit

    def counted() -> Any:
        refused = admit()
        if refused is None:
            admitted.append(time.monotonic())
        return refused

    def spend() -> None:
        with server.lock:
            server._window.extend(_spread(limit))

    server.admit = counted
    secrets = {"BENCH_SF_CLIENT_ID": config.client_id, "BENCH_SF_CLIENT_SECRET": config.client_secret}
    return Served(
        server,
        secrets,
        lambda: server.traffic.rate_violations,
        lambda: len(server.objects["Account"].records),
        spend,
    )


def _hubspot(limit: ServerLimit, admitted: list[float]) -> Served:
    from tests.destinations.hubspot_server import HubSpotServer

    server = HubSpotServer(max_requests=limit.requests, interval_seconds=limit.per_seconds)
    spend_window = server._spend_window

    def counted() -> Any:
        limited = spend_window()
        if limited is None:
            admitted.append(time.monotonic())
        return limited

    server._spend_window = counted
    return Served(
        server,
        {"BENCH_HUBSPOT_TOKEN": server.token},
        lambda: server.rate_limited,
        lambda: len(server.portal.records("customer_scores")),
        lambda: server.use_window(over_seconds=limit.per_seconds * (limit.requests - 1) / limit.requests),
    )


def _http(limit: ServerLimit, admitted: list[float]) -> Served:
    from tests.destinations.conftest import SCHEMA
    from tests.destinations.http_server import StrictApi

    server = StrictApi(schema=SCHEMA, rate=(limit.requests, limit.per_seconds), max_batch=1_000, max_payload=2_000_000)
    too_fast = server._too_fast

    def counted(now: float) -> bool:
        refused = too_fast(now)
        if not refused:
            admitted.append(now)
        return refused

    def spend() -> None:
        with server.lock:
            server.arrivals.extend(_spread(limit))

    server._too_fast = counted
    server.bodies = _Discard()  # it keeps every raw body for the tests; the benchmark needs none
    return Served(
        server,
        {"BENCH_HTTP_TOKEN": server.token},
        lambda: server.rate_violations,
        lambda: len(server.records["accounts"]),
        spend,
    )


class _Discard(list):
    def append(self, _item: Any) -> None:
        pass


def serve(kind: str, limit: ServerLimit, tls_dir: str, conn: Any) -> None:
    """The child: start the server, answer the parent's commands until `stop`."""
    admitted: list[float] = []
    if kind == "salesforce":
        served = _salesforce(limit, tls_dir, admitted)
    elif kind == "hubspot":
        served = _hubspot(limit, admitted)
    else:
        served = _http(limit, admitted)
    with served.server as server:
        conn.send({"url": server.url, "secrets": served.secrets})
        refused_before = 0
        while True:
            command = conn.recv()
            if command == "stop":
                break
            if command == "reset":
                admitted.clear()
                refused_before = served.refused()
            elif command == "spend":
                served.spend()
            elif command == "stats":
                times = sorted(admitted)
                conn.send(
                    {"admitted": times, "rate_limited": served.refused() - refused_before, "records": served.records()}
                )
                continue
            conn.send(None)


class ServerProcess:
    """`with ServerProcess("hubspot", ServerLimit(190, 10.0)) as server:` -> server.url, .secrets."""

    def __init__(self, kind: str, limit: ServerLimit, tls_dir: str = ""):
        if kind not in KINDS:
            raise ValueError(f"{kind!r}: one of {KINDS}")
        self.kind, self.limit = kind, limit
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._process = spawn.Process(target=serve, args=(kind, limit, tls_dir, child), daemon=True)
        self.url, self.secrets = "", {}

    def __enter__(self) -> ServerProcess:
        self._process.start()
        if not self._conn.poll(60):
            raise RuntimeError(f"the {self.kind} server did not start within 60 s")
        hello = self._conn.recv()
        self.url, self.secrets = hello["url"], hello["secrets"]
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def reset(self) -> None:
        """Forget what it admitted and refused so far (its window stays as it is)."""
        self._conn.send("reset")
        self._conn.recv()

    def spend(self) -> None:
        """Fill its window with calls spread evenly over the last window, as another client's."""
        self._conn.send("spend")
        self._conn.recv()

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        return self._conn.recv()


def server_share(admitted: list[float], limit: ServerLimit) -> float | None:
    """How full the server's window was, on average, while the sync called it: the calls admitted
    within `per_seconds` of each instant from the first admission to the last window's start,
    averaged, against `requests`. A sync at exactly the allowed rate scores 1.0, whether it sends
    evenly or each window's calls at once; None when the calls span less than two windows."""
    if len(admitted) < 2:
        return None
    window = limit.per_seconds
    first, last = admitted[0], admitted[-1] - window  # window starts s in [first, last]
    if last - first < window:
        return None
    # each call is in the windows [s, s + window) with s in [t - window, t], clipped to [first, last]
    covered = sum(max(0.0, min(last, t) - max(first, t - window)) for t in admitted)
    return covered / (last - first) / limit.requests
