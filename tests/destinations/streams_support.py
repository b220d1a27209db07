"""The brokers the stream tests use for real (started or enabled when down, as the databases are),
a DuckDB warehouse with an `accounts` mart, and a sync between them through the real engine."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from activation.destinations.streams.engine import StreamDestination
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncConfig
from tests.destinations.mart_harness import MartHarness

PORTS = {"nats": 4222, "rabbitmq_stream": 5552, "redis_stream": 6379}


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _open(port):
            return True
        time.sleep(0.25)
    return False


def ensure_broker(kind: str) -> None:
    """Start (or, for RabbitMQ, enable the stream plugin of) the broker when it is not listening."""
    port = PORTS[kind]
    if _open(port):
        return
    if kind == "nats" and shutil.which("nats-server"):
        subprocess.Popen(["nats-server", "-js", "-sd", "/var/lib/nats-server"], start_new_session=True)
    elif kind == "redis_stream" and shutil.which("redis-server"):
        subprocess.run(["redis-server", "--daemonize", "yes", "--save", ""], check=False)
    elif kind == "rabbitmq_stream" and shutil.which("rabbitmq-plugins"):
        subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_stream"], check=False, capture_output=True)
    if not _wait(port, 30):
        raise RuntimeError(f"{kind}: nothing listens on 127.0.0.1:{port}, and starting it failed")


def address(kind: str, port: int) -> dict[str, Any]:
    """The settings that point a destination of `kind` at 127.0.0.1:`port` (a proxy to its broker)."""
    if kind == "nats":
        return {"servers": [f"nats://127.0.0.1:{port}"]}
    if kind == "redis_stream":
        return {"url": f"redis://127.0.0.1:{port}/0"}
    return {"port": port, "load_balancer": True}


def account_rows(ids, *, churn: str = "i / 8.0", name: str = "'Account ' || i") -> str:
    values = ", ".join(f"({i})" for i in ids) or "(NULL)"
    where = "" if ids else "WHERE false"
    return f"""
        SELECT printf('A%04d', i) AS account_id, {name} AS name,
               CAST(i * 1000 + 0.25 AS DECIMAL(12,2)) AS ltv, {churn} AS churn, i % 2 = 0 AS active,
               TIMESTAMPTZ '2026-03-01 09:00:00+09:00' + INTERVAL (i) MINUTE AS scored_at
        FROM (VALUES {values}) t(i) {where}"""


@dataclass
class StreamHarness(MartHarness):
    tmp: Path
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"events_{uuid.uuid4().hex[:8]}")
    log: list[str] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"t_{self.name}"

    def config(self) -> SyncConfig:
        sync = {
            "source": "accounts",
            "destination": self.name,
            "table": self.stream,
            "primary_key": "account_id",
            "mode": "mirror",
            **self.sync,
        }
        destination = {"type": self.kind, "settings": {"batch_size": 7, **self.settings}}
        return SyncConfig.model_validate({"destinations": {self.name: destination}, "syncs": {"scores": sync}})

    def destination(self, **kwargs) -> StreamDestination:
        return StreamDestination(self.name, self.config().destinations[self.name], **kwargs)

    @property
    def identity(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def destination_url(self) -> str:
        return f"{self.kind}://127.0.0.1:{PORTS[self.kind]}"

    def run(self, *, full_resync: bool = False, destination: StreamDestination | None = None) -> SyncResult:
        return self.sync_once(destination or self.destination(), full_resync=full_resync)

    def mart_as_events(self) -> dict[str, dict]:
        """The mart's rows as the envelope carries them (decimals as text, UTC timestamps)."""
        from activation.destinations.streams.envelope import dumps

        with duckdb.connect(str(self.warehouse_path), read_only=True) as con:
            table = con.sql("SELECT * FROM accounts").to_arrow_table()
        rows = table.to_pylist()
        return {r["account_id"]: json.loads(dumps(r)) for r in rows}

    def events(self) -> list[dict]:
        return asyncio.run(read_events(self.kind, self.stream))

    def drop(self) -> None:
        asyncio.run(drop_stream(self.kind, self.stream))


async def read_events(kind: str, stream: str) -> list[dict]:
    """Every event the stream holds, in order, decoded."""
    if kind == "nats":
        import nats
        import nats.js.errors

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                return []
            if not info.state.messages:
                return []
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append(json.loads(msg.data))
            return out
        finally:
            await nc.close()
    if kind == "redis_stream":
        import redis.asyncio as redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            entries = await client.xrange(stream)
            return [json.loads(fields[b"event"]) for _, fields in entries]
        finally:
            await client.aclose()
    return await _rabbit_events(stream)


async def _rabbit_events(stream: str) -> list[dict]:
    from rstream import AMQPMessage, Consumer, ConsumerOffsetSpecification, OffsetType, amqp_decoder

    out: list[dict] = []
    consumer = Consumer("127.0.0.1", 5552, username="guest", password="guest")
    await consumer.start()
    done = asyncio.Event()
    if not await consumer.stream_exists(stream):
        await consumer.close()
        return []

    async def on_message(message: AMQPMessage, context) -> None:
        out.append(json.loads(bytes(message.body)))

    await consumer.subscribe(
        stream, on_message, decoder=amqp_decoder, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST)
    )
    idle = 0
    last = -1
    while idle < 3:  # no new message for 0.3 s: the stream was read to its end
        await asyncio.sleep(0.1)
        idle = idle + 1 if len(out) == last else 0
        last = len(out)
    done.set()
    await consumer.close()
    return out


async def drop_stream(kind: str, stream: str) -> None:
    try:
        if kind == "nats":
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                await nc.jetstream().delete_stream(stream)
            finally:
                await nc.close()
        elif kind == "redis_stream":
            import redis.asyncio as redis

            client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
            keys = [k async for k in client.scan_iter(f"{stream}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        else:
            from rstream import Producer

            producer = Producer("127.0.0.1", 5552, username="guest", password="guest")
            await producer.start()
            await producer.delete_stream(stream, missing_ok=True)
            await producer.close()
    except Exception:  # noqa: BLE001 - a stream never created has nothing to drop
        pass
