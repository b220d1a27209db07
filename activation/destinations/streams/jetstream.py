"""NATS JetStream (nats-py): a sync publishes to the subject `<subject_prefix>.<table>`, captured by
the stream `<table>`. Each event carries `Nats-Msg-Id: <event id>`; JetStream drops a second
message with an id it saw within the stream's `duplicate_window` (its PubAck says `duplicate`).
The window must cover the retry horizon: a stream we create gets `max(2 min, horizon)`, an existing
one with a shorter window refuses the sync (a retry past it could be stored twice)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Sequence

import nats
from nats.js import api
from nats.js.errors import NotFoundError

from activation.destinations.streams.config import NatsSettings
from activation.destinations.streams.envelope import Event
from activation.destinations.streams.publisher import Acks

DEFAULT_WINDOW = 120.0


class StreamRefused(RuntimeError):
    """The broker's stream cannot take the sync as configured (missing, a short duplicate window)."""


class JetStream:
    kind = "nats"

    def __init__(self, settings: NatsSettings, nc, js):
        self.settings, self.nc, self.js = settings, nc, js
        self.max_payload = min(settings.max_payload_bytes, nc.max_payload)

    @classmethod
    async def connect(cls, settings: NatsSettings) -> JetStream:
        options: dict = {
            "servers": settings.servers,
            "connect_timeout": 5,
            "max_reconnect_attempts": 2,
            "reconnect_time_wait": 0.5,
        }
        if settings.user_env:
            options["user"] = os.environ[settings.user_env]
        if settings.password_env:
            options["password"] = os.environ[settings.password_env]
        if settings.token_env:
            options["token"] = os.environ[settings.token_env]
        nc = await nats.connect(**options)
        js = nc.jetstream(publish_async_max_pending=settings.max_in_flight)
        return cls(settings, nc, js)

    def subject(self, stream: str) -> str:
        return f"{self.settings.subject_prefix}.{stream}"

    async def prepare(self, stream: str, horizon_seconds: float) -> list[str]:
        try:
            info = await self.js.stream_info(stream)
        except NotFoundError:
            if not self.settings.create_streams:
                raise StreamRefused(f"JetStream stream {stream} does not exist (create_streams: false)") from None
            config = api.StreamConfig(
                name=stream,
                subjects=[self.subject(stream)],
                storage=api.StorageType.FILE if self.settings.storage == "file" else api.StorageType.MEMORY,
                duplicate_window=max(DEFAULT_WINDOW, horizon_seconds),
            )
            await self.js.add_stream(config)
            return []
        window = info.config.duplicate_window or DEFAULT_WINDOW
        if self.subject(stream) not in (info.config.subjects or []):
            raise StreamRefused(
                f"JetStream stream {stream} does not capture the subject {self.subject(stream)} "
                f"(its subjects: {info.config.subjects})"
            )
        if window < horizon_seconds:
            raise StreamRefused(
                f"JetStream stream {stream} deduplicates for {window:g} s (duplicate_window), shorter than the "
                f"retry horizon of {horizon_seconds:g} s (settings.retry_horizon_seconds): a retry after the "
                "window would store events twice. Raise the stream's duplicate_window, or lower the horizon"
            )
        return []

    async def length(self, stream: str) -> int | None:
        return (await self.js.stream_info(stream)).state.messages

    async def submit(self, stream: str, events: Sequence[Event]) -> Awaitable[Acks]:
        subject, publish = self.subject(stream), self.js.publish_async
        futures = [await publish(subject, e.payload, headers={"Nats-Msg-Id": e.id}) for e in events]
        return _acks(futures)

    async def close(self) -> None:
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001 - a connection already gone has nothing to drain
            await self.nc.close()


async def _acks(futures) -> Acks:
    done = await asyncio.gather(*futures)
    return Acks(len(done), sum(1 for ack in done if ack.duplicate))


async def open_broker(settings: NatsSettings) -> JetStream:
    return await JetStream.connect(settings)
