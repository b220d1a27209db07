"""API destinations end to end: a DuckDB mart synced into the local Salesforce, HubSpot and HTTP
servers of tests/destinations/ through the real path (ApiDestination.sync, the vendor's client,
the registry's one limiter per destination), each under a rate limit the server enforces.

    uv run python bench/api_destinations.py                 # a change of 100,000 rows (~8 minutes)
    uv run python bench/api_destinations.py --rows 10000    # quick
    uv run python bench/api_destinations.py --only hubspot --only http

Per destination: a mart of 2 x ROWS rows, sent whole (the initial load), then a change of ROWS
rows (80% updated, 10% inserted, 10% deleted: mode mirror), then a change of ROWS / 10, each
step one window after the last one's calls (so the server's window holds only its own). So
the peak memory is measured for ROWS/10, ROWS and 2 x ROWS records sent. Where the window is
long enough (HubSpot's ten seconds), a last step, "busy start", sends another ROWS / 10 right
after another client filled the server's window, its calls spread evenly over the last window
(as another app on the portal, or the same destination's previous run in another process): the
first call meets a 429, and the target is no second one (with a small --rows its few calls may
fit in the room the other client left, and meet none).

Rate limits. The server enforces X requests per window and the destination's `rate_limit` is set
to exactly the same X (no headroom), so any gap between the limiter and the server shows up as a
429. The values keep each destination at one to three minutes on this 2-core machine and stay
well under what client and server manage unlimited (85-190 calls/s here), so the limit, not the
CPU, sets the pace:
- salesforce_bulk: 10 per second. Bulk API 2.0 carries 10,000 records a job in ~5 calls
  (create, upload, close, poll, results; the polls pace themselves), so the calls are few and
  records/s is the figure to read.
- salesforce_rest: the same org and limit with the Bulk threshold out of reach, so every record
  goes through sObject Collections (200 a call): the limit binds.
- hubspot: 190 per 10 seconds, HubSpot's documented burst limit for a private app on a
  Professional or Enterprise portal, in its ten-secondly rolling window; 100 inputs a call.
- http: 20 per second, batches of 200 records.

Columns: calls are the sync's HTTP requests (describes, retries, Bulk polls; the OAuth token is
fetched when the client opens, before the count starts); "share" is calls / (X x seconds of the
whole sync, its warehouse work included; not shown for a sync shorter than three windows, where
a window's calls going at once says nothing); "server" is how full the server's window was on
average while the sync called it (api_servers.py: server_share); 429s are those the sync
received (the target: none beyond a first one); peak RSS is the whole sync process (a fresh
child per step: interpreter, imports, DuckDB, Arrow, client), what a container limit sees; the
servers run in processes of their own, so they are not in it.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_servers import ServerLimit, ServerProcess, server_share  # noqa: E402

from activation.destinations.api.engine import ApiDestination  # noqa: E402
from activation.orchestration.resources import DuckDBWarehouse  # noqa: E402
from activation.syncs.model import MartRelation  # noqa: E402
from activation.syncs.spec import SyncConfig  # noqa: E402

# The busy start needs a window longer than a sync process takes to start (~3 s)
BUSY_WINDOW = 5.0


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str  # the server and the destination type
    limit: ServerLimit
    table: str
    key: str
    columns: dict[str, str]  # API field -> mart column
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self, url: str, tls_dir: str) -> dict[str, Any]:
        if self.kind == "salesforce":
            base = {
                "login_url": url,
                "auth": "client_credentials",
                "client_id_env": "BENCH_SF_CLIENT_ID",
                "client_secret_env": "BENCH_SF_CLIENT_SECRET",
                "ca_bundle": str(Path(tls_dir) / "salesforce-cert.pem"),
                "bulk_poll_seconds": 0.1,  # the local org finishes a job in well under a second
                "bulk_poll_max_seconds": 1.0,
            }
        elif self.kind == "hubspot":
            base = {"base_url": url, "token_env": "BENCH_HUBSPOT_TOKEN"}
        else:
            base = {
                "url": f"{url}/v1/{{object}}/batch",
                "delete_url": f"{url}/v1/{{object}}/batch-delete",
                "schema_url": f"{url}/v1/{{object}}/schema",
                "bearer_token_env": "BENCH_HTTP_TOKEN",
            }
        return {
            "type": self.kind,
            "settings": {**base, **self.settings},
            "rate_limit": {"requests": self.limit.requests, "per_seconds": self.limit.per_seconds},
        }


SALESFORCE_COLUMNS = {
    "Customer_Id__c": "customer_key",
    "Name": "name",
    "Segment__c": "segment",
    "Lifetime_Value__c": "ltv",
    "Churn_Risk__c": "churn",
    "Is_Active__c": "active",
    "First_Order__c": "signed_on",
    "Last_Seen__c": "scored_at",
}
NO_BULK = {"bulk_threshold": 150_000_000, "bulk_job_records": 150_000_000}
DESTINATIONS = [
    Destination("salesforce_bulk", "salesforce", ServerLimit(10, 1.0), "Account", "Customer_Id__c", SALESFORCE_COLUMNS),
    Destination(
        "salesforce_rest", "salesforce", ServerLimit(10, 1.0), "Account", "Customer_Id__c", SALESFORCE_COLUMNS, NO_BULK
    ),
    Destination(
        "hubspot",
        "hubspot",
        ServerLimit(190, 10.0),
        "customer_scores",
        "customer_key",
        {
            "customer_key": "customer_key",
            "name": "name",
            "score": "ltv",
            "active": "active",
            "signup_date": "signed_on",
            "last_seen": "scored_at",
            "tier": "tier",
        },
    ),
    Destination(
        "http",
        "http",
        ServerLimit(20, 1.0),
        "accounts",
        "external_id",
        {
            "external_id": "customer_key",
            "Name": "name",
            "LTV": "ltv",
            "Churn": "churn",
            "Active": "active",
            "SignedOn": "signed_on",
            "ScoredAt": "scored_at",
            "Segment": "tier",
        },
        {"batch_size": 200},
    ),
]


# -- the mart ----------------------------------------------------------------------------------
def build_mart(path: str, rows: int) -> None:
    with duckdb.connect(path) as con:
        con.execute(f"""
            CREATE OR REPLACE TABLE scores AS
            SELECT printf('C%08d', i) AS customer_key, 'Customer ' || i AS name,
                   ['Enterprise', 'Mid-Market', 'SMB'][i % 3 + 1] AS segment,
                   ['gold', 'silver', 'bronze'][i % 3 + 1] AS tier,
                   CAST(i * 10 + 0.25 AS DECIMAL(12, 2)) AS ltv,
                   CAST(i % 10000 / 100 AS DECIMAL(5, 2)) AS churn,
                   i % 2 = 0 AS active,
                   DATE '2020-01-01' + CAST(i % 2000 AS INTEGER) AS signed_on,
                   TIMESTAMPTZ '2026-03-01 09:00:00+00' + INTERVAL (i) SECOND AS scored_at
            FROM range({rows}) t(i)""")


def change(path: str, rows: int, seed: int) -> None:
    """Exactly `rows` rows change: 80% updated, 10% deleted, 10% inserted (copies under new keys)."""
    updates, deletes = rows * 8 // 10, rows // 10
    inserts = rows - updates - deletes
    with duckdb.connect(path) as con:
        con.execute(
            f"CREATE TEMP TABLE picked AS SELECT customer_key, row_number() OVER (ORDER BY hash(customer_key, {seed})) "
            "AS r FROM scores"
        )
        con.execute(
            "UPDATE scores SET ltv = ltv + 1, scored_at = scored_at + INTERVAL 1 SECOND "
            f"WHERE customer_key IN (SELECT customer_key FROM picked WHERE r <= {updates})"
        )
        con.execute(
            f"INSERT INTO scores SELECT * REPLACE ('N{seed}-' || customer_key AS customer_key) FROM scores "
            f"WHERE customer_key IN (SELECT customer_key FROM picked WHERE r > {updates} AND r <= {updates + inserts})"
        )
        con.execute(
            "DELETE FROM scores WHERE customer_key IN "
            f"(SELECT customer_key FROM picked WHERE r > {updates + inserts} AND r <= {rows})"
        )


def mart_rows(path: str) -> int:
    with duckdb.connect(path, read_only=True) as con:
        return con.execute("SELECT count(*) FROM scores").fetchone()[0]


# -- one sync, in a fresh process -----------------------------------------------------------------
def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def step_sync(dest: Destination, destination: dict[str, Any], warehouse: str, env: dict[str, str]) -> dict:
    os.environ.update(env)
    config = SyncConfig.model_validate(
        {
            "destinations": {dest.name: destination},
            "syncs": {
                "scores": {
                    "source": "scores",
                    "destination": dest.name,
                    "table": dest.table,
                    "primary_key": dest.key,
                    "mode": "mirror",
                    "columns": dest.columns,
                    "guards": {"max_deletes": "100%", "max_updates": "100%"},
                }
            },
        }
    )
    spec = config.syncs["scores"]
    start_mb = _status_mb("VmRSS")
    t0 = time.perf_counter()
    with DuckDBWarehouse(path=warehouse).open(dest.name, f"{dest.kind}:{dest.name}", log=lambda _: None) as wh:
        destination_ = ApiDestination(dest.name, config.destinations[dest.name])
        [result] = destination_.sync(wh, [spec], {"scores": MartRelation("main", "scores")}, log=lambda _: None)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "sent": result.rows_sent,
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "rejected": result.rejected,
        "calls": result.api.calls,
        "retries": result.api.retries,
        "rate_limited": result.api.rate_limited,
        "server_errors": result.api.server_errors,
        "errors": result.api.errors[:3],
        "peak_mb": _status_mb("VmHWM"),
        "start_mb": start_mb,
    }


def _child(conn: Any, step: Callable[..., dict], args: tuple) -> None:
    """In the fresh process: say it is ready (imports done), wait for the go, run the step."""
    conn.send("ready")
    conn.recv()
    try:
        conn.send(("ok", step(*args)))
    except BaseException as exc:  # the parent raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def run(step: Callable[..., dict], *args: Any, before: Callable[[], None] | None = None) -> dict:
    """One step in a fresh process, so its peak memory is its own; `before` runs in this process
    once the child has started, just before the step begins."""
    spawn = multiprocessing.get_context("spawn")
    conn, theirs = spawn.Pipe()
    child = spawn.Process(target=_child, args=(theirs, step, args))
    child.start()
    try:
        conn.recv()
        if before is not None:
            before()
        conn.send("go")
        status, value = conn.recv()
    finally:
        child.join()
    if status != "ok":
        raise RuntimeError(f"{step.__name__} failed: {value}")
    return value


# -- the table ----------------------------------------------------------------------------------
HEADER = (
    f"{'destination':<16} {'step':<15} {'rows sent':>9} {'seconds':>8} {'rows/s':>7} {'calls':>6} {'limit':>9} "
    f"{'share':>6} {'server':>7} {'429s':>5} {'retries':>7} {'peak RSS MB':>11} {'at start':>8}  check"
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def line(dest: Destination, step: str, r: dict, server: dict, expected: int) -> str:
    limit = dest.limit
    rate = limit.requests / limit.per_seconds
    # a sliding window lets a whole window's calls go at once: over a few windows that first burst
    # says nothing about the pace, so short runs print no share
    share = r["calls"] / (rate * r["seconds"]) if r["seconds"] >= 3 * limit.per_seconds else None
    on_server = server_share(server["admitted"], limit)
    check = "ok"
    if server["records"] != expected or r["rejected"]:
        check = f"server holds {server['records']:,}, mart {expected:,}, rejected {r['rejected']:,} {r['errors']}"
    moved = r["sent"] + r["deleted"]
    what = f"+{r['inserted']:,} ~{r['updated']:,} -{r['deleted']:,}; server sent {server['rate_limited']} 429s"
    rate_text = f"{limit.requests}/{limit.per_seconds:g}s"
    return (
        f"{dest.name:<16} {step:<15} {moved:>9,} {r['seconds']:>8.1f} {moved / r['seconds']:>7,.0f} "
        f"{r['calls']:>6,} {rate_text:>9} {_pct(share):>6} {_pct(on_server):>7} {r['rate_limited']:>5} "
        f"{r['retries']:>7} {r['peak_mb']:>11.0f} {r['start_mb']:>8.0f}  {check} ({what})"
    )


def bench(dest: Destination, rows: int, tmp: Path, tls_dir: str) -> dict[int, float]:
    """The steps of one destination; returns the peak RSS (MB) per records sent and deleted."""
    folder = tmp / dest.name
    folder.mkdir()
    warehouse = str(folder / "warehouse.duckdb")
    build_mart(warehouse, 2 * rows)
    steps = [("initial", 0), (f"change {rows:,}", rows), (f"change {rows // 10:,}", rows // 10)]
    if dest.limit.per_seconds >= BUSY_WINDOW:
        steps.append(("busy start", rows // 10))
    peaks = {}
    with ServerProcess(dest.kind, dest.limit, tls_dir) as server:
        env = {**server.secrets, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        destination = dest.config(server.url, tls_dir)
        for seed, (step, changed) in enumerate(steps):
            if changed:
                change(warehouse, changed, seed)
            if seed:
                time.sleep(dest.limit.per_seconds)  # the last step's calls leave the server's window
            server.reset()
            busy = server.spend if step == "busy start" else None
            r = run(step_sync, dest, destination, warehouse, env, before=busy)
            print(line(dest, step, r, server.stats(), mart_rows(warehouse)), flush=True)
            if step != "busy start":
                peaks[r["sent"] + r["deleted"]] = r["peak_mb"]
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="the change (the mart holds twice as many)")
    names = [d.name for d in DESTINATIONS]
    parser.add_argument("--only", action="append", choices=names, help="one destination (repeatable)")
    parser.add_argument(
        "--limit", action="append", default=[], metavar="NAME=REQUESTS/SECONDS", help="another rate limit for one"
    )
    args = parser.parse_args()
    limits = {}
    for text in args.limit:
        name, _, rate = text.partition("=")
        requests, _, seconds = rate.partition("/")
        limits[name] = ServerLimit(int(requests), float(seconds or 1))
    tmp = Path(tempfile.mkdtemp(prefix="activation_api_bench_"))
    try:
        from tests.destinations.salesforce_server import self_signed_certificate

        self_signed_certificate(tmp)
        print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
        print(HEADER)
        print("-" * len(HEADER))
        peaks = {}
        for dest in DESTINATIONS:
            if args.only and dest.name not in args.only:
                continue
            if dest.name in limits:
                dest = dataclasses.replace(dest, limit=limits[dest.name])
            peaks[dest.name] = bench(dest, args.rows, tmp, str(tmp))
        print("\npeak RSS (MB) of the sync process by records sent and deleted:")
        for name, by_size in peaks.items():
            print(f"  {name:<16} " + ", ".join(f"{n:,}: {mb:.0f}" for n, mb in sorted(by_size.items())))
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
