"""RabbitMQ Streams (rstream, the stream protocol on port 5552): a sync publishes into the stream
`<table>`. RabbitMQ deduplicates by producer name + publishing id: it drops a message whose id is
not above the last one it stored for that name (and still confirms it). A run's producer is
named after (sync, state version), and its events are numbered on from the last id the broker
stored for that name (`query_publisher_sequence`), so ids only grow.

A retry against the same state version (the last one failed mid-way) finds that name's last id
above 0: K events already landed. Which ones, it reads back from the stream (the K events of this
sync and state version since the first attempt began, a time the first attempt stored beside the
stream with `store_offset`): those it skips (counted as duplicates dropped), the rest it publishes,
whether the mart changed in between or not. So consumers see each event once even when the
retry's change differs from the attempt that failed. The read-back costs the events since the
first attempt only. The stream's "length" as the checks read it is the producer's last stored
publishing id (RabbitMQ 3.10 has no stream statistics)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Sequence

import orjson
from rstream import (
    AMQPMessage,
    ConfirmationStatus,
    Consumer,
    ConsumerOffsetSpecification,
    OffsetType,
    Producer,
    Properties,
    amqp_decoder,
)

from activation.destinations.streams.config import RabbitStreamSettings
from activation.destinations.streams.envelope import Event
from activation.destinations.streams.publisher import Acks

FRAME_BYTES = 512 * 1024  # messages per send_batch kept under the protocol's 1 MiB frame
CLOCK_SKEW_MS = 60_000  # the read-back starts this much before the first attempt (client and broker clocks)
READ_BACK_IDLE_SECONDS = 2.0  # no message for this long: the read-back reached the stream's end


class LandedUnknown(RuntimeError):
    """The broker stored events of an earlier attempt that the read-back could not find."""


class RabbitStream:
    kind = "rabbitmq"

    def __init__(self, settings: RabbitStreamSettings, producer: Producer):
        self.settings, self.producer = settings, producer
        self.max_payload = settings.max_payload_bytes
        self.name: str | None = None  # this run's producer name, set by `begin`
        self.next_id = 1
        self.stored_before = 0
        self.landed: set[str] = set()  # ids of this change's events an earlier attempt stored

    @classmethod
    async def connect(cls, settings: RabbitStreamSettings) -> RabbitStream:
        password = os.environ[settings.password_env] if settings.password_env else "guest"
        producer = Producer(
            settings.host, settings.port, vhost=settings.vhost, username=settings.user, password=password,
            max_retries=2, connection_name="activation", load_balancer_mode=settings.load_balancer,
        )  # fmt: skip
        await producer.start()
        return cls(settings, producer)

    async def begin(self, stream: str, sync: str, state_version: str | None) -> None:
        """Name this run's producer and find what earlier attempts of the same change stored."""
        self.name = f"activation:{sync}:{state_version or 'new'}"
        client = await self.producer.default_client
        self.stored_before = await client.query_publisher_sequence(stream, self.name)
        self.next_id = self.stored_before + 1
        since = f"{self.name}:since"
        if not self.stored_before:  # the first attempt: when it began, for a retry to read back from
            await client.store_offset(stream, since, int(time.time() * 1000))
            self.landed = set()
            return
        started_ms = await client.query_offset(stream, since)
        self.landed = await self._read_back(stream, sync, state_version, started_ms)

    async def _read_back(self, stream: str, sync: str, state_version: str | None, started_ms: int) -> set[str]:
        settings = self.settings
        password = os.environ[settings.password_env] if settings.password_env else "guest"
        consumer = Consumer(
            settings.host, settings.port, vhost=settings.vhost, username=settings.user, password=password,
            load_balancer_mode=settings.load_balancer, max_retries=2,
        )  # fmt: skip
        found: set[str] = set()
        arrived = asyncio.Event()

        async def on_message(message: AMQPMessage, _context) -> None:
            source = orjson.loads(bytes(message.body)).get("data", {}).get("source", {})
            if source.get("sync") == sync and source.get("state_version") == state_version:
                found.add(_text(message.properties.message_id))
            arrived.set()

        await consumer.start()
        try:
            at = ConsumerOffsetSpecification(OffsetType.TIMESTAMP, started_ms - CLOCK_SKEW_MS)
            await consumer.subscribe(stream, on_message, decoder=amqp_decoder, offset_specification=at)
            while len(found) < self.stored_before:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), READ_BACK_IDLE_SECONDS)
                except TimeoutError:
                    raise LandedUnknown(
                        f"RabbitMQ stream {stream}: an earlier attempt stored {self.stored_before:,} events of this "
                        f"change (producer {self.name}), the stream holds {len(found):,} of them since it began: "
                        "publishing again could duplicate events; nothing was published"
                    ) from None
        finally:
            await consumer.close()
        return found

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
        given = len(events)
        if self.landed:  # stored by an earlier attempt of this change: dropped here, as the broker would
            events = [e for e in events if e.id not in self.landed]
        if not events:
            done.set_result(None)
            return self._acks(done, [], given)
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
        return self._acks(done, ids, given)

    async def _acks(self, done: asyncio.Future, ids: list[int], given: int) -> Acks:
        failed = await done
        if failed:
            raise RuntimeError(failed)
        return Acks(given, given - len(ids))

    async def close(self) -> None:
        try:
            await self.producer.close()
        except Exception:  # noqa: BLE001 - a connection already gone has nothing to close
            pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # AMQP 1.0 hands it back as bytes


async def open_broker(settings: RabbitStreamSettings) -> RabbitStream:
    return await RabbitStream.connect(settings)
