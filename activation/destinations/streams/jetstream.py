"""NATS JetStream (nats-py): a sync publishes to the subject `<subject_prefix>.<table>`, captured by
the stream `<table>`. Each event carries `Nats-Msg-Id: <event id>`; JetStream drops a second
message with an id it saw within the stream's `duplicate_window` (its PubAck says `duplicate`).
The window must cover the retry horizon: a stream we create gets `max(2 min, horizon)`, an existing
one with a shorter window refuses the sync (a retry past it could be stored twice).

Publishing: a batch's messages are plain publishes whose reply subject names the batch
(`<inbox>.<batch>`), and one subscription counts the PubAcks per batch (stored, duplicate, or
an error), so a batch is one future, not one per message. nats-py's `publish_async` waits on a
semaphore and creates a future and a PubAck per message, which cost more than the encoding of
the event itself (bench/README.md). A message the server never answers leaves its batch short:
the publisher's acknowledgement timeout fails the run, and the state stays where it was."""

from __future__ import annotations

import asyncio
import json
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


class _Batch:
    """The PubAcks one batch is waiting for."""

    def __init__(self, size: int):
        self.left, self.duplicates, self.error = size, 0, None
        self.done: asyncio.Future[Acks] = asyncio.get_running_loop().create_future()
        self.size = size


class JetStream:
    kind = "nats"

    def __init__(self, settings: NatsSettings, nc, js):
        self.settings, self.nc, self.js = settings, nc, js
        self.max_payload = min(settings.max_payload_bytes, nc.max_payload)
        self.inbox = nc.new_inbox()
        self._batches: dict[str, _Batch] = {}
        self._next = 0

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
        broker = cls(settings, nc, nc.jetstream())
        await nc.subscribe(f"{broker.inbox}.*", cb=broker._on_ack, pending_msgs_limit=settings.max_in_flight * 2)
        return broker

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
        self._next += 1
        name = str(self._next)
        batch = self._batches[name] = _Batch(len(events))
        # answered, failed, or given up on (the publisher's timeout cancels it): forget the batch,
        # so PubAcks that arrive late find nothing and a long run's map holds the batches in flight only
        batch.done.add_done_callback(lambda _done: self._batches.pop(name, None))
        subject, reply, publish = self.subject(stream), f"{self.inbox}.{name}", self.nc.publish
        for e in events:
            await publish(subject, e.payload, reply=reply, headers={"Nats-Msg-Id": e.id})
        return batch.done

    async def _on_ack(self, msg) -> None:
        batch = self._batches.get(msg.subject.rpartition(".")[2])
        if batch is None or batch.done.done():
            return
        data = msg.data
        if msg.headers and msg.headers.get("Status") == "503":
            batch.error = batch.error or "no JetStream stream captures the subject (no responders)"
        elif b'"error"' in data:
            batch.error = batch.error or f"JetStream refused a message: {json.loads(data)['error']}"
        elif b'"duplicate"' in data and json.loads(data).get("duplicate"):  # (parsed only when it may be one)
            batch.duplicates += 1
        batch.left -= 1
        if batch.left == 0:
            if batch.error:
                batch.done.set_exception(RuntimeError(batch.error))
            else:
                batch.done.set_result(Acks(batch.size, batch.duplicates))

    async def close(self) -> None:
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001 - a connection already gone has nothing to drain
            await self.nc.close()


async def open_broker(settings: NatsSettings) -> JetStream:
    return await JetStream.connect(settings)
