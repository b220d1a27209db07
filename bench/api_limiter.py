"""How often the shared limiter meets a 429 when it is set to exactly the server's own limit.

    uv run python bench/api_limiter.py                   # 40 trials, each way
    uv run python bench/api_limiter.py --trials 100 --calls 40

A trial opens a Salesforce client on the local org (tests/destinations/salesforce_server.py,
which answers 429 past `max_per_second` requests in any second) with a RateLimiter of exactly that
many per second, and makes `--calls` calls: upserts of 20 Accounts through sObject Collections
(a body to read before the org counts the call, as most of a sync's calls have). The org runs
either in this process (as the tests run it: one interpreter, so the GIL adds to the jitter) or
in a process of its own. Printed: trials that met at least one 429, the 429s in all, and the
share of the allowed rate the calls used: (calls - 1) / (rate x seconds from the first answer to
the last), with calls = k x rate + 1, so that a limiter that sends each second's calls at once
and the next second's one window later scores exactly 1 / (its window / the server's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_servers import ServerLimit, ServerProcess  # noqa: E402

from activation.destinations.api.limits import RateLimiter  # noqa: E402
from activation.destinations.salesforce import Settings, open_client  # noqa: E402
from tests.destinations.salesforce_server import OrgConfig, SalesforceServer, self_signed_certificate  # noqa: E402

KEY = "Customer_Id__c"


def trial(url: str, cert: str, rate: int, calls: int, offset: int) -> tuple[float, int]:
    """(seconds from the first call's answer to the last one's, 429s the client met)."""
    settings = Settings(
        login_url=url,
        auth="client_credentials",
        client_id_env="BENCH_SF_CLIENT_ID",
        client_secret_env="BENCH_SF_CLIENT_SECRET",
        ca_bundle=cert,
    )
    client = open_client(settings, RateLimiter(rate, 1.0), log=lambda _: None)
    try:
        answered = []
        for n in range(calls):
            start = offset + n * 20
            records = [{KEY: f"J{i:07d}", "Name": f"Account {i}"} for i in range(start, start + 20)]
            assert all(o.ok for o in client.upsert("Account", KEY, records))
            answered.append(time.monotonic())
        return answered[-1] - answered[0], client.stats.rate_limited
    finally:
        client.close()


def measure(where: str, url: str, cert: str, rate: int, calls: int, trials: int, violations) -> None:
    hit = total = 0
    shares = []
    for n in range(trials):
        time.sleep(1.1)  # the org's window empties between trials
        seconds, limited = trial(url, cert, rate, calls, n * calls * 20)
        hit += bool(limited)
        total += limited
        shares.append((calls - 1) / (rate * seconds))
    shares.sort()
    print(
        f"{where:<22} {rate:>4}/s {trials:>6} {calls:>5} {hit:>13} {total:>6} {violations():>10}  "
        f"{shares[len(shares) // 2]:.1%} (min {shares[0]:.1%}, max {shares[-1]:.1%})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--calls", type=int, default=31, help="calls per trial (k x rate + 1)")
    parser.add_argument("--rate", type=int, default=10, help="the org's limit per second, and the limiter's")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="activation_limiter_"))
    cert, key = self_signed_certificate(tmp)
    config = OrgConfig(max_per_second=args.rate, daily_api_limit=10_000_000)
    os.environ.update(
        {
            "BENCH_SF_CLIENT_ID": config.client_id,
            "BENCH_SF_CLIENT_SECRET": config.client_secret,
            "NO_PROXY": "127.0.0.1",
        }
    )
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"{'org runs':<22} {'limit':>6} {'trials':>6} {'calls':>5} {'trials w/ 429':>13} {'429s':>6} {'org 429s':>10}  "
        "share of the rate (median)"
    )
    with SalesforceServer(cert, key, config) as org:
        measure("in this process", org.url, str(cert), args.rate, args.calls, args.trials,
                lambda: org.traffic.rate_violations)  # fmt: skip
    with ServerProcess("salesforce", ServerLimit(args.rate, 1.0), str(tmp)) as org:
        org.reset()
        measure("in its own process", org.url, str(cert), args.rate, args.calls, args.trials,
                lambda: org.stats()["rate_limited"])  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
