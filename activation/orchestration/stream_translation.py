"""What Dagster shows of a sync into a stream (NATS JetStream, RabbitMQ Streams, Redis Streams):
its description, its metadata before any run, its checks and what a run published. The
translator (translator.py) calls these from its `get_*` methods, so a subclass still overrides
one method per attribute; this module keeps the streams' wording out of the tables' and APIs'."""

from __future__ import annotations

from typing import Any

from activation.syncs.outcome import ACKED, FITS, GUARDS, KEYS, PUBLISHED, REJECTS, VISIBLE
from activation.syncs.results import SyncResult
from activation.syncs.spec import DestinationSpec, SyncSpec

OPS = ("c", "u", "d", "r")


def description(sync: SyncSpec, kind: str) -> str:
    deletes = "inserts, updates and deletes" if sync.mode.deletes else "inserts and updates"
    return (
        f"The {deletes} of `{sync.source}` published as change events (CloudEvents, Debezium-shaped) into "
        f"the {kind} stream `{sync.table}` of destination `{sync.destination}`, keyed by {sync.primary_key}."
    )


def metadata(sync: SyncSpec, spec: DestinationSpec) -> dict[str, Any]:
    """Before any run: where, how events are keyed, enveloped and deduplicated."""
    from activation.destinations.streams import config as streams
    from activation.destinations.streams.envelope import VERSION

    return {
        "dagster/table_name": f"{sync.destination}.{sync.table}",
        "stream": sync.table,
        "broker": streams.endpoint(spec),
        "envelope": f"CloudEvents 1.0, data in Debezium's shape, envelopeversion {VERSION}",
        "first_sync": sync.initial,
        "retry_horizon_seconds": streams.settings(spec).retry_horizon_seconds,
    }


def check_descriptions(sync: SyncSpec) -> dict[str, str]:
    return {
        KEYS: f"Before publishing: the key {sync.primary_key} of mart {sync.source} is not null and unique.",
        FITS: "Before publishing: no value JSON cannot carry (NaN, infinity) and no event over the broker's "
        "payload limit, found in the warehouse (within max_rejects they are set aside).",
        GUARDS: "Before publishing: the planned inserts, updates and deletes stay within the sync's guards.",
        PUBLISHED: "After publishing: the events published, by op, are the changes the plan found (less the rows "
        "set aside).",
        ACKED: "After publishing: the broker acknowledged every event sent (stored, or dropped as a duplicate).",
        VISIBLE: "After publishing: the stream holds the events stored (stream info, XLEN): its length grew by "
        "the events acknowledged and not dropped as duplicates.",
        REJECTS: f"After publishing: rows set aside are within {sync.checks.max_rejected}.",
    }


def run_metadata(result: SyncResult) -> dict[str, Any]:
    """What a run published: events by op, bytes, the rate, what the broker dropped and holds."""
    stream = result.stream or {}
    by_op = stream.get("events_by_op", {})
    seconds = stream.get("seconds") or 0.0
    acked = stream.get("events_acked", 0)
    found: dict[str, Any] = {
        **{f"events_{op}": int(by_op.get(op, 0)) for op in OPS},
        "events_published": acked,
        "duplicates_dropped_by_broker": stream.get("duplicates_dropped", 0),
        "bytes_published": stream.get("bytes", 0),
        "events_per_second": round(acked / seconds, 1) if seconds else 0.0,
        "publish_seconds": seconds,
    }
    if stream.get("length_after") is not None:
        found["dagster/row_count"] = stream["length_after"]
        found["stream_length"] = stream["length_after"]
    return found
