"""Redis Streams (redis-py): a sync appends to the stream key `<table>`. Redis has no
deduplication of its own, so each event is added by one Lua script, atomically: `SET <stream>:dedup:<id>
NX EX <retry horizon>` and, only when that key was new, `XADD`. A retry within the horizon finds the
key and adds nothing (the script answers nil: a duplicate dropped); the dedup keys expire after
the horizon, so they cost memory for one horizon's events only. (Explicit XADD ids would need
ids above the stream's last, which a retry after other writes cannot reuse.) A batch is one
pipeline of EVALSHA calls: one round trip per batch; the stream's length is XLEN."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Sequence

import redis.asyncio as redis

from activation.destinations.streams.config import RedisStreamSettings
from activation.destinations.streams.envelope import Event
from activation.destinations.streams.publisher import Acks

ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[4] ~= '' then
    return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[2], 'event', ARGV[3])
  end
  return redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'event', ARGV[3])
end
return false
"""


class RedisStream:
    kind = "redis"

    def __init__(self, settings: RedisStreamSettings, client: redis.Redis, sha: str):
        self.settings, self.client, self.sha = settings, client, sha
        self.max_payload = settings.max_payload_bytes
        self.ttl = str(math.ceil(settings.retry_horizon_seconds))
        self.maxlen = str(settings.maxlen or "")

    @classmethod
    async def connect(cls, settings: RedisStreamSettings) -> RedisStream:
        password = os.environ[settings.password_env] if settings.password_env else None
        client = redis.Redis.from_url(settings.url, password=password, socket_timeout=settings.ack_timeout_seconds)
        sha = await client.script_load(ADD_ONCE)
        return cls(settings, client, sha)

    async def prepare(self, stream: str, horizon_seconds: float) -> list[str]:
        if self.settings.maxlen:
            return [f"{stream} is trimmed to about {self.settings.maxlen:,} events (maxlen): older ones are dropped"]
        return []

    async def length(self, stream: str) -> int | None:
        return await self.client.xlen(stream)

    async def submit(self, stream: str, events: Sequence[Event]) -> Awaitable[Acks]:
        pipe = self.client.pipeline(transaction=False)
        for e in events:
            pipe.evalsha(self.sha, 2, stream, f"{stream}:dedup:{e.id}", self.ttl, e.id, e.payload, self.maxlen)
        return asyncio.ensure_future(_acks(pipe))  # sent now; the publisher awaits the answers later

    async def close(self) -> None:
        await self.client.aclose()


async def _acks(pipe) -> Acks:
    answers = await pipe.execute()
    return Acks(len(answers), sum(1 for a in answers if a is None))


async def open_broker(settings: RedisStreamSettings) -> RedisStream:
    return await RedisStream.connect(settings)
