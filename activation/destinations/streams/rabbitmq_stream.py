"""RabbitMQ Streams (rstream, the stream protocol on port 5552): a sync publishes into the stream
`<table>`. RabbitMQ deduplicates by producer name + publishing id: it drops a message whose id is
not above the last one it stored for that name (and still confirms it). So a run's producer is
named after (sync, state version, a digest of the run's event ids), and its events are numbered
1..N in key order: a retry of the same change against the same state has the same name and the
same numbers, and what was stored is dropped; a change with other content has another digest,
so another name, and is published whole. The digest costs a first pass over the change (read
and encoded, not sent). The stream's "length" as the checks read it is the producer's last
stored publishing id (`query_publisher_sequence`; RabbitMQ 3.10 has no stream statistics)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Sequence

from rstream import AMQPMessage, ConfirmationStatus, Producer, Properties

from activation.destinations.streams.config import RabbitStreamSettings
from activation.destinations.streams.envelope import Event
from activation.destinations.streams.publisher import Acks

FRAME_BYTES = 512 * 1024  # messages per send_batch kept under the protocol's 1 MiB frame


class RabbitStream:
    kind = "rabbitmq"
    needs_digest = True  # the producer's name carries a digest of the run's events (see above)

    def __init__(self, settings: RabbitStreamSettings, producer: Producer):
        self.settings, self.producer = settings, producer
        self.max_payload = settings.max_payload_bytes
        self.name: str | None = None  # this run's producer name, set by `begin`
        self.next_id = 1
        self.stored_before = 0
        self._waiting: dict[int, tuple[asyncio.Future, list[int]]] = {}

    @classmethod
    async def connect(cls, settings: RabbitStreamSettings) -> RabbitStream:
        password = os.environ[settings.password_env] if settings.password_env else "guest"
        producer = Producer(
            settings.host, settings.port, vhost=settings.vhost, username=settings.user, password=password,
            max_retries=2, connection_name="activation", load_balancer_mode=settings.load_balancer,
        )  # fmt: skip
        await producer.start()
        return cls(settings, producer)

    async def begin(self, stream: str, sync: str, state_version: str | None, digest: str) -> None:
        """Name this run's producer; what RabbitMQ stored under the name already is dropped again."""
        self.name = f"activation:{sync}:{state_version or 'new'}:{digest}"
        self.next_id = 1
        self.stored_before = await self.length(stream)

    async def prepare(self, stream: str, horizon_seconds: float) -> list[str]:
        if not await self.producer.stream_exists(stream):
            if not self.settings.create_streams:
                raise RuntimeError(f"RabbitMQ stream {stream} does not exist (create_streams: false)")
            await self.producer.create_stream(stream, exists_ok=True)
        return []

    async def length(self, stream: str) -> int | None:
        """What this run's producer has stored (its last publishing id), the deduplication's own measure."""
        client = await self.producer.default_client
        return await client.query_publisher_sequence(stream, self.name or "")

    async def submit(self, stream: str, events: Sequence[Event]) -> Awaitable[Acks]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        ids = list(range(self.next_id, self.next_id + len(events)))
        self.next_id += len(events)
        state = {"left": len(ids), "failed": None}

        def confirmed(status: ConfirmationStatus) -> None:
            if not status.is_confirmed and state["failed"] is None:
                state["failed"] = f"RabbitMQ refused message {status.message_id} (code {status.response_code})"
            state["left"] -= 1
            if state["left"] == 0 and not done.done():
                done.set_result(state["failed"])

        chunk, size = [], 0
        for pid, event in zip(ids, events, strict=True):
            message = AMQPMessage(
                body=event.payload,
                properties=Properties(
                    message_id=event.id, subject=event.subject, content_type="application/cloudevents+json"
                ),
            )
            message.publishing_id = pid  # (its constructor hands the keyword on to the AMQP message's)
            chunk.append(message)
            size += len(event.payload) + 200
            if size > FRAME_BYTES:
                await self.producer.send_batch(stream, chunk, publisher_name=self.name, on_publish_confirm=confirmed)
                chunk, size = [], 0
        if chunk:
            await self.producer.send_batch(stream, chunk, publisher_name=self.name, on_publish_confirm=confirmed)
        return self._acks(done, ids)

    async def _acks(self, done: asyncio.Future, ids: list[int]) -> Acks:
        failed = await done
        if failed:
            raise RuntimeError(failed)
        duplicates = sum(1 for pid in ids if pid <= self.stored_before)  # confirmed, and dropped
        return Acks(len(ids), duplicates)

    async def close(self) -> None:
        try:
            await self.producer.close()
        except Exception:  # noqa: BLE001 - a connection already gone has nothing to close
            pass


async def open_broker(settings: RabbitStreamSettings) -> RabbitStream:
    return await RabbitStream.connect(settings)
