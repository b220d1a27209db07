"""The demo's marts into the three brokers through Dagster automation, as `dg dev` runs them
(examples/syncs_streams.yml), and the reference consumer (examples/stream_consumer.py) ending
equal to the marts after a day of changes, a broker gone mid-publish, a retry and a redelivery.

The Definitions are the project's own (`build_definitions`, what `dg dev` loads) over a real
instance; each tick is the stream groups' automation sensors evaluated in process, and the runs
it requests are executed with the `activate` job. Every broker is reached through a proxy in its
own process (tests/destinations/cut_proxy.py), so a test can make it go away mid-run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import uuid

import dagster as dg
import duckdb
import pytest
import yaml

from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.destinations.streams.envelope import dumps
from activation.settings import PROJECT_ROOT, Settings
from examples import stream_consumer
from tests.destinations.cut_proxy import CutProxy
from tests.destinations.streams_support import PORTS, address, drop_stream, ensure_broker, read_events
from tests.integration.test_automation_converges import Daemon, report_full_build
from tests.integration.test_end_to_end import mart_relation

EXAMPLE = PROJECT_ROOT / "examples" / "syncs_streams.yml"
KIND_OF = {"alerts": "nats", "search": "rabbitmq_stream", "cache": "redis_stream"}
CUT_AFTER = 1  # events on day 2: the broker goes away as the second event of the day goes out


class Streams:
    """The example's three syncs on streams of their own, each broker behind a proxy."""

    def __init__(self, tmp_path):
        self.suffix = uuid.uuid4().hex[:8]
        config = yaml.safe_load(EXAMPLE.read_text())
        self.proxies = {name: CutProxy(PORTS[kind]) for name, kind in KIND_OF.items()}
        for name, destination in config["destinations"].items():
            # one event per batch: RabbitMQ stores a batch's frame whole or not at all, so the cut falls between
            destination["settings"].update(
                address(KIND_OF[name], self.proxies[name].port), ack_timeout_seconds=3, batch_size=1
            )
        for sync in config["syncs"].values():
            sync["table"] = f"{sync['table']}_{self.suffix}"
        self.syncs = config["syncs"]
        self.path = tmp_path / "syncs.yml"
        self.path.write_text(yaml.safe_dump(config))
        self.keys = {dg.AssetKey([s["destination"], s["table"]]) for s in self.syncs.values()}

    def restart_proxies(self, events: int | None = None) -> None:
        for name, proxy in list(self.proxies.items()):
            proxy.close()
            self.proxies[name] = CutProxy(PORTS[KIND_OF[name]], events=events, port=proxy.port)

    def events(self, sync: str) -> list[dict]:
        spec = self.syncs[sync]
        return asyncio.run(read_events(KIND_OF[spec["destination"]], spec["table"]))

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        for spec in self.syncs.values():
            asyncio.run(drop_stream(KIND_OF[spec["destination"]], spec["table"]))


@pytest.fixture
def story(lake, prepared_project, tmp_path, monkeypatch):
    for kind in KIND_OF.values():
        ensure_broker(kind)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(lake.day1, warehouse)
    streams = Streams(tmp_path)
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(streams.path))
    try:
        with dg.instance_for_test() as instance:
            yield warehouse, streams, instance
    finally:
        streams.close()


def stream_sensors_daemon(defs: dg.Definitions, instance: dg.DagsterInstance) -> Daemon:
    """The ticks of the three `<destination>_stream_automation` sensors, as the daemon runs them."""
    names = [f"{d}_stream_automation" for d in KIND_OF]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors if s.name in names)
    return Daemon(defs, instance, sensors=names)


def mart_as_events(warehouse, model: str, key: str) -> dict[str, dict]:
    """The mart's rows as the envelope carries them (decimals as text, UTC timestamps)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(f"SELECT * FROM {mart_relation(model)}").to_arrow_table().to_pylist()
    return {r[key]: json.loads(dumps(r)) for r in rows}


def consumer_rows(path, table: str, key: str) -> dict[str, dict]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return {r[key]: dict(r) for r in con.execute(f'SELECT * FROM "{table}"')}
    finally:
        con.close()


def consume(streams: Streams, sync: str, path) -> int:
    """What the consumer of one stream applies: NATS through the example's durable consumer (acks,
    redeliveries); RabbitMQ and Redis by reading the stream from the start, as a replaying consumer."""
    spec = streams.syncs[sync]
    if KIND_OF[spec["destination"]] == "nats":
        return asyncio.run(stream_consumer.consume_jetstream(spec["table"], str(path), spec["table"], ack_wait=1.0))
    con = sqlite3.connect(path)
    try:
        return sum(stream_consumer.apply(con, spec["table"], e) for e in streams.events(sync))
    finally:
        con.close()


async def jetstream_consumer(stream: str, durable: str):
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{PORTS['nats']}")
    try:
        return await nc.jetstream().consumer_info(stream, durable)
    finally:
        await nc.close()


def checks_passed(run: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in run.get_asset_check_evaluations()}


def state_rows(warehouse, destination: str, sync: str) -> list[tuple]:
    path = warehouse.parent / "activation_state" / f"{destination}.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f'SELECT * FROM "sync__{sync}" ORDER BY ALL').fetchall()


def assert_consumers_equal_marts(warehouse, streams: Streams, tmp_path) -> None:
    for sync, spec in streams.syncs.items():
        rows = consumer_rows(tmp_path / f"{sync}.sqlite", spec["table"], spec["primary_key"])
        assert rows == mart_as_events(warehouse, spec["source"], spec["primary_key"]), sync


def test_the_demo_marts_stream_through_automation_and_the_consumers_converge(story, lake, tmp_path, monkeypatch):
    warehouse, streams, instance = story
    defs = build_definitions(Settings.from_env())
    graph = defs.resolve_asset_graph()
    assert {graph.get(k).group_name for k in streams.keys} == {f"{d}_stream" for d in KIND_OF}
    assert {next(iter(graph.get(k).kinds)) for k in streams.keys} == {"nats", "rabbitmq", "redis"}
    daemon = stream_sensors_daemon(defs, instance)

    # Day 1: the session's dbt build made the marts; the tick publishes each one's snapshot.
    report_full_build(defs, instance)
    assert daemon.tick() == [streams.keys], "the three streams, in one run"
    [day1] = daemon.runs
    assert day1.success and all(checks_passed(day1).values()), checks_passed(day1)
    for sync in streams.syncs:
        assert {e["data"]["op"] for e in streams.events(sync)} == {"r"}
        assert consume(streams, sync, tmp_path / f"{sync}.sqlite") > 0
    assert_consumers_equal_marts(warehouse, streams, tmp_path)
    assert daemon.tick() == [], "nothing changed"

    # Day 2: a day of changes, built; every broker goes away mid-publish.
    shutil.copy(lake.day2, warehouse)
    states = {s: state_rows(warehouse, spec["destination"], s) for s, spec in streams.syncs.items()}
    lengths = {s: len(streams.events(s)) for s in streams.syncs}
    streams.restart_proxies(events=CUT_AFTER)
    report_full_build(defs, instance)
    assert daemon.tick() == [streams.keys]
    crashed = daemon.runs[-1]
    assert not crashed.success
    failures = [f.event_specific_data.error.message for f in crashed.get_step_failure_events()]
    assert len(failures) == 3 and all("state did not advance" in m for m in failures), failures
    assert all(p.gone for p in streams.proxies.values())
    for sync, before in states.items():
        assert state_rows(warehouse, streams.syncs[sync]["destination"], sync) == before, f"{sync}: state moved"
    partly = {s: len(streams.events(s)) - lengths[s] for s in streams.syncs}
    assert all(n > 0 for n in partly.values()), f"the cut came before any event of the day landed: {partly}"

    # The JetStream consumer reads what landed, applies the first event and dies before its ack.
    real_apply = stream_consumer.apply

    def dies_before_the_ack(con, table, event):
        real_apply(con, table, event)
        raise ConnectionResetError("the consumer died before acknowledging")

    monkeypatch.setattr(stream_consumer, "apply", dies_before_the_ack)
    with pytest.raises(ConnectionResetError):
        consume(streams, "customer_scores_events", tmp_path / "customer_scores_events.sqlite")
    monkeypatch.setattr(stream_consumer, "apply", real_apply)

    # The brokers are back; the run is retried (Dagster's run retry: the same selection again).
    streams.restart_proxies()
    retry = defs.resolve_job_def(ACTIVATE_JOB).execute_in_process(
        asset_selection=sorted(streams.keys), instance=instance, raise_on_error=False
    )
    assert retry.success and all(checks_passed(retry).values()), checks_passed(retry)
    dropped = {
        m.asset_key.path[0]: m.metadata["duplicates_dropped_by_broker"].value
        for m in (e.event_specific_data.materialization for e in retry.get_asset_materialization_events())
    }
    assert dropped == {streams.syncs[s]["destination"]: partly[s] for s in streams.syncs}, dropped
    for sync in streams.syncs:
        events = streams.events(sync)
        assert len({e["id"] for e in events}) == len(events), f"{sync}: a consumer would see an event twice"
        day2 = events[lengths[sync] :]
        assert day2 and {e["data"]["op"] for e in day2} <= {"c", "u", "d"}
        # each of the day's events applied once: the JetStream consumer's one applied before its crash
        # comes again (never acknowledged) and is skipped; the replaying consumers skip all of day 1
        already = 1 if sync == "customer_scores_events" else 0
        assert consume(streams, sync, tmp_path / f"{sync}.sqlite") == len(day2) - already
    assert_consumers_equal_marts(warehouse, streams, tmp_path)
    table = streams.syncs["customer_scores_events"]["table"]
    info = asyncio.run(jetstream_consumer(table, f"{table}_sqlite"))
    assert info.delivered.consumer_seq > info.delivered.stream_seq, "JetStream redelivered the unacknowledged event"
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == info.delivered.stream_seq

    # A redelivery of everything (a consumer replaying from the start) changes nothing.
    for sync, spec in streams.syncs.items():
        con = sqlite3.connect(tmp_path / f"{sync}.sqlite")
        assert not any(real_apply(con, spec["table"], e) for e in streams.events(sync))
        con.close()
    assert_consumers_equal_marts(warehouse, streams, tmp_path)
    assert daemon.tick() == [], "converged: the retry left nothing for automation"
