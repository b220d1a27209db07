"""Stream destination into NATS JetStream: a snapshot of an N-row mart and a 1% change, against
the raw nats-py client publishing the same prepared events (same payloads, same Nats-Msg-Id
headers, publish_async with the same bound of in-flight acks) in the same run.

    uv run python bench/streams_jetstream.py [--rows 100000 1000000]

Each step runs in a fresh process (`python bench/streams_jetstream.py --step ...`); peak RSS is
that whole process's VmHWM (interpreter, imports, DuckDB, Arrow, nats-py), what a container sees.
"ours, start to last ack" is the whole sync: warehouse opened, the diff of every row planned, the
values checked, every event read, encoded, published and acknowledged, the state committed; "ours,
publishing" is its publish phase (read, encode, publish, acks); "raw" publishes the same events,
already encoded in memory (read from a file before its clock starts), with nats-py's publish_async
and the same bound of 4096 in flight."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MART = """
    SELECT printf('A%08d', i) AS account_id, 'Account ' || i || ' ' || repeat('x', i % 40) AS name,
           CAST(i * 10 + 0.25 AS DECIMAL(14,2)) AS ltv, (i % 1000) / 1000.0 AS churn, i % 2 = 0 AS active,
           DATE '2024-01-01' + CAST(i % 700 AS INTEGER) AS signed_on,
           TIMESTAMPTZ '2026-03-01 09:00:00+00' + INTERVAL (i % 86400) SECOND AS scored_at,
           CASE i % 3 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' ELSE NULL END AS segment
    FROM range(1, {rows} + 1) t(i)"""


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


def _harness(tmp: Path, stream: str):
    from activation.syncs.spec import SyncConfig

    config = SyncConfig.model_validate(
        {
            "destinations": {"bench": {"type": "nats", "settings": {"storage": "memory"}}},
            "syncs": {"accounts": {"source": "accounts", "destination": "bench", "table": stream,
                                   "primary_key": "account_id", "mode": "mirror"}},
        }
    )  # fmt: skip
    return config


def step_sync(tmp: str, stream: str, dump: str) -> dict:
    """Our sync (snapshot or change, whatever the state says), then (off the clock) the events it
    published dumped for the raw client."""
    from activation.destinations.streams.engine import StreamDestination, broker_module
    from activation.orchestration.resources import DuckDBWarehouse
    from activation.syncs.model import MartRelation

    broker_module("nats")  # nats-py imported before the clock, as the raw client's step does
    config = _harness(Path(tmp), stream)
    spec = config.syncs["accounts"]
    destination = StreamDestination("bench", config.destinations["bench"])
    started = time.monotonic()
    with DuckDBWarehouse(path=str(Path(tmp) / "warehouse.duckdb")).open(
        "bench", "nats:bench", log=lambda _m: None
    ) as wh:
        [result] = destination.sync(wh, [spec], {"accounts": MartRelation("main", "accounts")}, log=lambda _m: None)
    seconds = time.monotonic() - started
    out = {"events": result.stream["events_acked"], "seconds": seconds, "publish_seconds": result.stream["seconds"],
           "bytes": result.stream["bytes"], "peak_mb": _hwm_mb(), "by_op": result.stream["events_by_op"]}  # fmt: skip
    stored = out["events"] - result.stream["duplicates_dropped"]
    asyncio.run(_dump(stream, dump, result.stream["length_before"] or 0, stored))
    return out


async def _dump(stream: str, path: str, skip: int, count: int) -> None:
    """The `count` events just published (after the `skip` first), as the raw client will send them,
    read by sequence (an ephemeral pull consumer from sequence skip + 1), so any size is read whole."""
    import nats
    from nats.js import api

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    start = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=skip + 1,
                               ack_policy=api.AckPolicy.ALL, max_ack_pending=-1)  # fmt: skip
    sub = await js.pull_subscribe("", stream=stream, config=start)
    seen = 0
    with open(path, "wb") as f:
        while seen < count:
            messages = await sub.fetch(min(1000, count - seen), timeout=30)
            for m in messages:
                seen += 1
                f.write(m.headers["Nats-Msg-Id"].encode() + b"\t" + m.data + b"\n")
            await messages[-1].ack()  # AckPolicy.ALL: every message up to it
    await sub.unsubscribe()
    await nc.close()


def step_raw(dump: str, in_flight: int) -> dict:
    """The raw nats-py client: the same events, already encoded, published with acks."""
    events = [line.rstrip(b"\n").split(b"\t", 1) for line in open(dump, "rb")]
    return asyncio.run(_raw(events, in_flight))


async def _raw(events, in_flight: int) -> dict:
    import nats
    from nats.js import api

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream(publish_async_max_pending=in_flight)
    stream = f"raw_{uuid.uuid4().hex[:8]}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[f"raw.{stream}"], storage=api.StorageType.MEMORY,
                                         duplicate_window=900))  # fmt: skip
    started = time.monotonic()
    futures = []
    for msg_id, payload in events:
        futures.append(await js.publish_async(f"raw.{stream}", payload, headers={"Nats-Msg-Id": msg_id.decode()}))
    acks = await asyncio.gather(*futures)
    seconds = time.monotonic() - started
    await js.delete_stream(stream)
    await nc.close()
    return {"events": len(acks), "seconds": seconds, "peak_mb": _hwm_mb()}


def step_make(tmp: str, rows: int) -> dict:
    import duckdb

    with duckdb.connect(str(Path(tmp) / "warehouse.duckdb")) as con:
        con.execute(f"CREATE OR REPLACE TABLE accounts AS {MART.format(rows=rows)}")
    return {}


def step_change(tmp: str, rows: int) -> dict:
    """1% of the rows: 80% updated, 10% inserted, 10% deleted."""
    import duckdb

    n = rows // 100
    with duckdb.connect(str(Path(tmp) / "warehouse.duckdb")) as con:
        con.execute("UPDATE accounts SET churn = churn + 1 WHERE hash(account_id) % 125 = 0")
        con.execute("DELETE FROM accounts WHERE hash(account_id) % 1000 = 7")
        new = MART.format(rows=rows + n // 10).replace("range(1,", f"range({rows + 1},")
        con.execute(f"INSERT INTO accounts {new}")
    return {}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--step", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drop(stream: str) -> None:
    async def go():
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--step", nargs="+")
    args = parser.parse_args()
    if args.step:
        name, *rest = args.step
        steps = {"sync": step_sync, "raw": lambda d, n: step_raw(d, int(n)), "make": lambda t, r: step_make(t, int(r)),
                 "change": lambda t, r: step_change(t, int(r))}  # fmt: skip
        print(json.dumps(steps[name](*rest)))
        return
    rows_out = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            stream = f"bench_{uuid.uuid4().hex[:8]}"
            dump = str(Path(tmp) / "events.bin")
            try:
                child("make", tmp, str(rows))
                for label in ("snapshot", "1% change"):
                    if label != "snapshot":
                        child("change", tmp, str(rows))
                    ours = child("sync", tmp, stream, dump)
                    raw = child("raw", dump, "4096")
                    rows_out.append((rows, label, ours, raw))
            finally:
                drop(stream)
    print("| mart rows | run | events | ours: seconds, start to last ack | ours: events/s, start to last ack | "
          "ours: events/s, publishing | raw nats-py: events/s | ours / raw, whole sync | ours / raw, publishing | "
          "peak RSS ours | peak RSS raw |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rows, label, ours, raw in rows_out:
        rate, raw_rate = ours["events"] / ours["seconds"], raw["events"] / max(raw["seconds"], 1e-9)
        publishing = ours["events"] / max(ours["publish_seconds"], 1e-9)
        print(
            f"| {rows:,} | {label} | {ours['events']:,} | {ours['seconds']:.2f} | {rate:,.0f} | {publishing:,.0f} | "
            f"{raw_rate:,.0f} | {rate / raw_rate:.2f} | {publishing / raw_rate:.2f} | {ours['peak_mb']:.0f} MB | "
            f"{raw['peak_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
