"""Stream destinations against the real brokers (NATS JetStream, RabbitMQ Streams, Redis Streams):
the envelope, only changes published, deduplication of a re-run, a crash mid-publish, the broker
gone mid-run, values JSON cannot carry, and a consumer whose table ends equal to the mart."""

from __future__ import annotations

import sqlite3

import pytest

from examples.stream_consumer import apply
from tests.destinations.streams_support import StreamHarness, account_rows, ensure_broker

KINDS = ["nats"]


@pytest.fixture(params=KINDS)
def streams(request, tmp_path):
    ensure_broker(request.param)
    harness = StreamHarness(tmp_path, request.param)
    yield harness
    harness.drop()


def consumer_table(events: list[dict]) -> dict[str, dict]:
    con = sqlite3.connect(":memory:")
    con.row_factory = sqlite3.Row
    for event in events:
        apply(con, "accounts", event)
    return {r["account_id"]: dict(r) for r in con.execute("SELECT * FROM accounts")}


def test_a_snapshot_then_only_changes_as_documented_events(streams):
    streams.mart(account_rows(range(1, 11)))
    first = streams.run()
    assert (first.inserted, first.updated, first.deleted, first.rows_sent) == (10, 0, 0, 10)
    events = streams.events()
    assert [e["data"]["op"] for e in events] == ["r"] * 10
    event = events[0]
    assert event["specversion"] == "1.0" and event["envelopeversion"] == "1"
    assert event["subject"] == "A0001" and event["data"]["key"] == {"account_id": "A0001"}
    assert event["data"]["after"]["ltv"] == "1000.25"  # decimals as exact text
    assert event["data"]["after"]["scored_at"] == "2026-03-01T00:01:00Z"  # UTC
    assert event["data"]["source"]["sync"] == "scores" and event["data"]["source"]["state_version"] is None
    assert first.stream["events_acked"] == 10 and first.stream["length_after"] == 10

    assert streams.run().rows_sent == 0  # nothing changed: nothing published

    streams.sql("UPDATE accounts SET churn = 0.99 WHERE account_id = 'A0002'")
    streams.sql("DELETE FROM accounts WHERE account_id = 'A0003'")
    streams.sql(f"INSERT INTO accounts {account_rows([11])}")
    changed = streams.run()
    assert (changed.inserted, changed.updated, changed.deleted) == (1, 1, 1)
    tail = streams.events()[10:]
    assert [(e["data"]["op"], e["subject"]) for e in tail] == [("u", "A0002"), ("c", "A0011"), ("d", "A0003")]
    assert tail[2]["data"]["after"] is None
    assert consumer_table(streams.events()) == streams.mart_as_events()
