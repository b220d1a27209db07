"""Stream destinations against the real brokers (NATS JetStream, RabbitMQ Streams, Redis Streams):
the envelope, only changes published, deduplication of a re-run, a crash mid-publish, the broker
gone mid-run, values JSON cannot carry, and a consumer whose table ends equal to the mart."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import duckdb
import pyarrow.compute as pc
import pytest

from activation.destinations.streams import columnar
from activation.destinations.streams.envelope import BEFORE, KEPT, Encoder, Event, Origin
from activation.syncs.results import SyncError
from examples.stream_consumer import apply
from tests.destinations.cut_proxy import CutProxy
from tests.destinations.streams_support import PORTS, StreamHarness, account_rows, address, ensure_broker

KINDS = ["nats", "rabbitmq_stream", "redis_stream"]


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
    [preview] = streams.preview()  # `activation plan`: counts and sample envelopes, nothing published
    assert preview.counts["insert"] == 10 and streams.events() == []
    assert [e["data"]["op"] for e in preview.as_dict()["events"]] == ["r"] * 3
    assert preview.events[0]["subject"] == "A0001" and preview.events[0]["data"]["after"]["ltv"] == "1000.25"
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


def test_updates_and_deletes_carry_the_values_last_sent_and_exactly_the_fields_that_changed(streams):
    streams.mart(account_rows(range(1, 6)))
    streams.run()
    sent = {e["subject"]: e["data"]["after"] for e in streams.events()}
    assert all(e["data"]["before"] is None and e["data"]["changed"] is None for e in streams.events())  # op r

    streams.sql("UPDATE accounts SET churn = 0.99, name = 'Renamed' WHERE account_id = 'A0002'")
    streams.sql("UPDATE accounts SET active = NOT active WHERE account_id = 'A0004'")
    streams.sql("DELETE FROM accounts WHERE account_id = 'A0003'")
    streams.sql(f"INSERT INTO accounts {account_rows([6])}")
    streams.run()
    tail = {e["subject"]: e["data"] for e in streams.events()[5:]}
    assert {k: d["op"] for k, d in tail.items()} == {"A0002": "u", "A0004": "u", "A0006": "c", "A0003": "d"}
    assert tail["A0002"]["before"] == sent["A0002"]  # the values of the first sync, as published then
    assert tail["A0002"]["changed"] == ["name", "churn"]  # in the mart's column order, the key never
    assert tail["A0002"]["after"] == {**sent["A0002"], "name": "Renamed", "churn": 0.99}
    assert tail["A0004"]["changed"] == ["active"] and tail["A0004"]["before"] == sent["A0004"]
    assert tail["A0003"]["before"] == sent["A0003"] and tail["A0003"]["after"] is None
    assert tail["A0006"]["before"] is None and tail["A0006"]["changed"] is None

    # the next change's before is this run's after: the kept values moved with the state
    streams.sql("UPDATE accounts SET churn = 0.5 WHERE account_id = 'A0002'")
    streams.run()
    [last] = streams.events()[9:]
    assert last["data"]["before"] == tail["A0002"]["after"] and last["data"]["changed"] == ["churn"]


class Crashing:
    """The real broker, but the process dies after `batches` batches were handed to it."""

    def __init__(self, broker, batches: int):
        self.broker, self.left = broker, batches
        self.kind, self.max_payload = broker.kind, broker.max_payload

    def __getattr__(self, name):
        return getattr(self.broker, name)

    async def submit(self, stream, events):
        if self.left == 0:
            raise ConnectionResetError("the process died mid-publish")
        self.left -= 1
        return await self.broker.submit(stream, events)


def crashing_after(streams, batches: int):
    from activation.destinations.streams.engine import broker_module

    real = streams.destination()

    async def open_broker():
        return Crashing(await broker_module(streams.kind).open_broker(real.settings), batches)

    return streams.destination(open_broker=open_broker)


def assert_each_event_once(events: list[dict]) -> None:
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "a consumer would see an event twice"


@pytest.mark.parametrize("kind", KINDS)
def test_a_crash_mid_publish_then_a_redelivery_converge_without_duplicates(kind, tmp_path):
    ensure_broker(kind)
    streams = StreamHarness(tmp_path, kind)
    streams.mart(account_rows(range(1, 31)))
    streams.run()
    streams.sql("UPDATE accounts SET churn = churn + 1 WHERE account_id <= 'A0020'")
    streams.sql("DELETE FROM accounts WHERE account_id IN ('A0025', 'A0026')")
    streams.sql(f"INSERT INTO accounts {account_rows([31, 32, 33])}")
    keys_before = streams.state_keys()
    with pytest.raises(SyncError, match="state did not advance"):
        streams.run(destination=crashing_after(streams, 2))  # 14 of 25 events published and acked
    assert streams.state_keys() == keys_before
    assert len(streams.events()) == 30 + 14
    # before the retry, the mart changes once more for a key already published: a new event, not a duplicate
    streams.sql("UPDATE accounts SET name = 'renamed' WHERE account_id = 'A0001'")
    retry = streams.run()
    events = streams.events()
    assert (retry.stream["duplicates_dropped"], retry.stream["events_acked"]) == (13, 25)
    assert len(events) == 30 + 14 + 12
    assert_each_event_once(events)
    assert [e["data"]["after"]["name"] for e in events if e["subject"] == "A0001"][-1] == "renamed"
    assert consumer_table(events) == streams.mart_as_events()
    # a redelivery of the whole stream (a consumer replaying from the start) changes nothing
    con = sqlite3.connect(":memory:")
    assert sum(apply(con, "accounts", e) for e in events) == len({e["id"] for e in events})
    assert not any(apply(con, "accounts", e) for e in events)
    streams.drop()


def test_a_crash_then_a_retry_of_the_same_change_is_dropped_by_every_broker(streams):
    streams.mart(account_rows(range(1, 21)))
    with pytest.raises(SyncError, match="state did not advance"):
        streams.run(destination=crashing_after(streams, 1))
    assert len(streams.events()) == 7
    retry = streams.run()
    assert (retry.stream["duplicates_dropped"], retry.stream["events_acked"]) == (7, 20)
    events = streams.events()
    assert len(events) == 20
    assert_each_event_once(events)


@pytest.mark.parametrize("kind", KINDS)
def test_the_broker_gone_mid_run_leaves_the_state_and_the_next_run_converges(kind, tmp_path):
    ensure_broker(kind)
    streams = StreamHarness(tmp_path, kind)
    streams.mart(account_rows(range(1, 201)))
    with CutProxy(PORTS[kind], limit=20_000) as proxy:  # its process exits mid-publish, every socket with it
        streams.settings = {**address(kind, proxy.port), "ack_timeout_seconds": 2}
        with pytest.raises(SyncError, match="state did not advance"):
            streams.run()
        assert proxy.gone
    assert streams.state_keys() == []
    published = len(streams.events())
    assert 0 < published < 200
    streams.settings = {}
    again = streams.run()
    assert again.stream["duplicates_dropped"] == published
    events = streams.events()
    assert len(events) == 200
    assert_each_event_once(events)
    assert consumer_table(events) == streams.mart_as_events()
    streams.drop()


def test_values_json_cannot_carry_are_refused_before_publishing_or_set_aside(tmp_path):
    ensure_broker("nats")
    streams = StreamHarness(tmp_path, "nats")
    streams.mart(account_rows(range(1, 6), churn="CASE WHEN i = 4 THEN 'NaN'::DOUBLE ELSE i / 8.0 END"))
    with pytest.raises(SyncError, match=r"churn: 1 row holds NaN.*account_id=A0004") as refused:
        streams.run()
    assert refused.value.problems[0].column == "churn"
    assert streams.events() == []  # nothing published
    streams.sync = {"max_rejects": 1}
    streams.settings = {"max_payload_bytes": 2048}
    streams.sql("UPDATE accounts SET name = repeat('x', 3000) WHERE account_id = 'A0002'")
    with pytest.raises(SyncError, match=r"over max_rejects"):
        streams.run()  # two rows now: over max_rejects
    assert streams.events() == []
    streams.sync = {"max_rejects": 2}
    result = streams.run()
    assert (result.inserted, result.rejected) == (3, 2)
    assert sorted(e["subject"] for e in streams.events()) == ["A0001", "A0003", "A0005"]
    assert "A0004" not in streams.state_keys() and "A0002" not in streams.state_keys()
    streams.drop()


def test_the_batch_encoder_writes_the_bytes_the_row_by_row_encoder_writes():
    # nulls, escapes, exponent decimals, fractional and zoned timestamps; updates whose kept
    # values differ in one field, none, or are unknown; inserts; deletes (a batch of keys only)
    con = duckdb.connect()
    rows = """
        SELECT i AS id, CASE WHEN i % 4 = 0 THEN NULL ELSE 'n"\\' || i || ' 日本' || chr(10) END AS name,
               CAST(i AS DECIMAL(38, 10)) / 1e9 AS ltv, i / {d} AS churn, i % 2 = 0 AS active,
               DATE '2024-01-01' + CAST(i AS INTEGER) AS signed_on,
               TIMESTAMPTZ '2026-03-01 09:00:00+09:00' + INTERVAL (i * 1001) MILLISECOND AS scored_at,
               TIMESTAMP '2026-03-01 09:00:00' + INTERVAL (i) SECOND AS naive_at
        FROM range(0, 40) t(i)"""
    columns = ["id", "name", "ltv", "churn", "active", "signed_on", "scored_at", "naive_at"]
    kept = ", ".join(f"CASE WHEN a.id % 3 = 0 THEN a.{c} ELSE b.{c} END AS {BEFORE}{c}" for c in columns)
    op = "CASE a.id % 5 WHEN 0 THEN 'delete' WHEN 1 THEN 'insert' ELSE 'update' END AS op"
    query = (
        f"SELECT a.*, {op}, {kept}, a.id % 7 <> 0 AS {KEPT} "
        f"FROM ({rows.format(d=7.0)}) a JOIN ({rows.format(d=9.0)}) b USING (id) ORDER BY id"
    )
    batch = con.sql(query).to_arrow_table().combine_chunks().to_batches()[0]
    encoder = Encoder(Origin("d", "s", "m", "r", "v1", dt.datetime(2026, 12, 8, tzinfo=dt.UTC)), ["id"], columns)
    assert columnar.takes(batch.schema, ["id"], columns, set())  # `events` takes the batch path
    fast, slow = encoder.events(batch, "op"), encoder.row_events(batch, "op")
    assert [e.payload for e in fast] == [e.payload for e in slow] and len(fast) == 40
    changed = {e.subject: json.loads(e.payload)["data"]["changed"] for e in fast}
    assert (changed["3"], changed["2"], changed["7"]) == ([], ["churn"], None)  # 7: no kept values
    deletes = batch.select(["id", "op", *[BEFORE + c for c in columns], KEPT]).filter(
        pc.equal(batch.column("op"), "delete")
    )
    assert [e.payload for e in encoder.events(deletes, "op")] == [e.payload for e in encoder.row_events(deletes, "op")]


def test_a_jetstream_batch_given_up_on_leaves_nothing_behind_and_its_late_acks_are_ignored(tmp_path):
    import asyncio

    from activation.destinations.streams.jetstream import open_broker

    ensure_broker("nats")
    streams = StreamHarness(tmp_path, "nats")

    async def give_up_on_a_batch() -> tuple[int, int]:
        broker = await open_broker(streams.destination().settings)
        try:
            await broker.prepare(streams.stream, 60)
            events = [Event(f"id-{i}", b"{}", str(i), "r") for i in range(50)]
            waiting = await broker.submit(streams.stream, events)
            with pytest.raises(TimeoutError):  # what the publisher's acknowledgement timeout does
                await asyncio.wait_for(waiting, 0)
            left = len(broker._batches)
            await asyncio.sleep(0.5)  # the PubAcks arrive for a batch no longer waited for
            return left, await broker.length(streams.stream)
        finally:
            await broker.close()

    assert asyncio.run(give_up_on_a_batch()) == (0, 50)
    streams.drop()
