"""The publish loop every broker shares: events go out in the order read (so a key's events keep
their order), up to `max_in_flight` unacknowledged at a time, and nothing counts as published
before the broker acknowledged it. A batch is handed to the broker as soon as it is encoded,
while the broker's acknowledgements of earlier batches arrive, so reading the warehouse,
encoding and publishing overlap with the round trips; memory holds the batches in flight only.
Any failure raises: the caller then leaves the sync state where it was."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from activation.destinations.streams.envelope import Event


@dataclass(frozen=True)
class Acks:
    acked: int  # events the broker acknowledged (stored, or dropped as a duplicate)
    duplicates: int = 0  # of those, dropped as duplicates of an event it already holds


class Broker(Protocol):
    """One connected broker (jetstream.py, rabbitmq_stream.py, redis_stream.py)."""

    kind: str
    max_payload: int  # bytes an event may have at most

    async def prepare(self, stream: str, horizon_seconds: float) -> list[str]:
        """Create the stream if missing, check its deduplication covers the retry horizon; warnings."""

    async def length(self, stream: str) -> int | None:
        """Events the stream holds (stream info, XLEN), or None where the broker cannot say."""

    async def submit(self, stream: str, events: Sequence[Event]) -> Awaitable[Acks]:
        """Send the events in order; returns what completes when every one of them was acknowledged."""

    async def close(self) -> None: ...


@dataclass
class Published:
    """What one sync's run published, as the broker acknowledged it."""

    stream: str
    by_op: Counter = field(default_factory=Counter)  # events acknowledged, by op
    sent: int = 0
    acked: int = 0
    duplicates: int = 0
    bytes: int = 0
    seconds: float = 0.0
    length_before: int | None = None
    length_after: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.acked - self.duplicates

    def as_dict(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "events_by_op": dict(self.by_op),
            "events_sent": self.sent,
            "events_acked": self.acked,
            "duplicates_dropped": self.duplicates,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "length_before": self.length_before,
            "length_after": self.length_after,
        }


async def publish(
    broker: Broker,
    published: Published,
    batches: Iterable[list[Event]],
    *,
    max_in_flight: int,
    timeout: float,
    progress: Callable[[int], None] = lambda _n: None,
) -> None:
    """Publish every batch; `published` counts what was acknowledged (so a failure shows how far it got)."""
    pending: deque[tuple[Awaitable[Acks], Counter, int]] = deque()
    in_flight = 0
    started = time.monotonic()

    async def settle(limit: int) -> None:
        nonlocal in_flight
        while pending and in_flight > limit:
            waiting, ops, n = pending.popleft()
            acks = await asyncio.wait_for(waiting, timeout)
            if acks.acked != n:
                raise RuntimeError(f"{published.stream}: the broker acknowledged {acks.acked:,} of {n:,} events")
            in_flight -= n
            published.acked += acks.acked
            published.duplicates += acks.duplicates
            published.by_op.update(ops)
            progress(published.acked)

    try:
        for events in batches:
            if not events:
                continue
            await settle(max(max_in_flight - len(events), 0))
            size = 0
            for event in events:
                size += len(event.payload)
            waiting = await broker.submit(published.stream, events)
            pending.append((waiting, Counter(e.op for e in events), len(events)))
            in_flight += len(events)
            published.sent += len(events)
            published.bytes += size
            await asyncio.sleep(0)  # let the client flush and read acknowledgements
        await settle(0)
    except BaseException:
        await _count_what_arrived(settle, timeout)
        for waiting, _, _ in pending:  # never to be answered now: no coroutine or task left dangling
            waiting.close() if asyncio.iscoroutine(waiting) else waiting.cancel()
        raise
    finally:
        getattr(batches, "close", lambda: None)()  # the warehouse's result set, left mid-way
        published.seconds = time.monotonic() - started


async def _count_what_arrived(settle, timeout: float) -> None:
    """After a failure, the acknowledgements already on their way, for the error to say how far it got."""
    try:
        await asyncio.wait_for(settle(0), min(timeout, 5.0))
    except BaseException:  # noqa: BLE001 - the failure being raised is the one to report
        pass
