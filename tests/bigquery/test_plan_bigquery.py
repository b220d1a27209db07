"""BigQueryPlanner on the emulator: the diff, when state advances, and the pre-write checks.

These read through REST pages (no Storage Read client); the end-to-end test reads through the
Storage Read API.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from activation.bigquery import quote_bigquery
from activation.syncs.load import DestinationSync, SyncError
from activation.syncs.plan import MartRelation
from activation.syncs.plan_bigquery import BigQueryPlanner
from activation.syncs.spec import SyncConfig
from tests.compare import _norm, destination_rows
from tests.syncs.test_load import engine_for

pytestmark = pytest.mark.bigquery

ITEMS = "SELECT FORMAT('K%03d', i) AS id, CONCAT('name ', CAST(i AS STRING)) AS name, i * 1.5 AS score"


def spec(**overrides):
    body = {"source": "items", "destination": "app", "table": "items", "primary_key": "id", "mode": "mirror"}
    body.update(overrides)
    config = SyncConfig.model_validate({"destinations": {"app": {"url_env": "X"}}, "syncs": {"items": body}})
    return config.syncs["items"]


@pytest.fixture
def mart(bq):
    """A dataset of its own holding the mart `items` (20 rows); dropped afterwards."""
    dataset = f"marts_{uuid.uuid4().hex[:8]}"
    bq.client.create_dataset(dataset)
    relation = MartRelation(dataset, "items")

    def run(sql: str) -> None:
        bq.client.query(sql.replace("{items}", quote_bigquery(bq.client.project, dataset, "items"))).result()

    run(f"CREATE TABLE {{items}} AS {ITEMS} FROM UNNEST(GENERATE_ARRAY(1, 20)) AS i")
    yield relation, run
    bq.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


@pytest.fixture
def planner(bq):
    dataset = f"state_{uuid.uuid4().hex[:8]}"
    yield BigQueryPlanner(bq.client, dataset, "sqlite://:/items.sqlite")
    bq.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def mart_rows(bq, relation: MartRelation) -> list[tuple]:
    table = quote_bigquery(bq.client.project, relation.schema, relation.name)
    rows = bq.client.query(f"SELECT id, name, score FROM {table} ORDER BY id").result()
    return [tuple(_norm(v) for v in row.values()) for row in rows]


def test_only_changes_leave_bigquery_and_state_advances_only_on_commit(bq, mart, planner, tmp_path):
    relation, run = mart
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    sync = DestinationSync(engine, planner, print)
    (first,) = sync.run([spec()], {"items": relation})
    assert (first.inserted, first.updated, first.deleted) == (20, 0, 0)
    assert destination_rows(url, "items", ["id", "name", "score"], ["id"]) == mart_rows(bq, relation)

    run("UPDATE {items} SET name = 'renamed' WHERE id IN ('K002', 'K003')")
    run("DELETE FROM {items} WHERE id = 'K004'")
    run(f"INSERT INTO {{items}} {ITEMS} FROM UNNEST(GENERATE_ARRAY(21, 23)) AS i")

    # Planned but never committed (the destination write failed or the process died):
    # the next plan finds the same changes.
    plan = planner.plan(planner.describe(spec(), relation))
    assert (plan.full, plan.new_keys, plan.changed_keys, plan.deleted_keys) == (False, 3, 2, 1)
    sent = planner.rows(plan, 1000).read_all()
    assert sorted(sent.column("id").to_pylist()) == ["K002", "K003", "K021", "K022", "K023"]
    assert planner.deleted(plan, 1000).read_all().column("id").to_pylist() == ["K004"]
    again = planner.plan(planner.describe(spec(), relation))
    assert (again.new_keys, again.changed_keys, again.deleted_keys) == (3, 2, 1)

    (second,) = sync.run([spec()], {"items": relation})
    assert (second.inserted, second.updated, second.deleted, second.rows_sent) == (3, 2, 1, 5)
    assert destination_rows(url, "items", ["id", "name", "score"], ["id"]) == mart_rows(bq, relation)
    (third,) = sync.run([spec()], {"items": relation})
    assert (third.inserted, third.updated, third.deleted, third.rows_sent) == (0, 0, 0, 0)
    left = [t.table_id for t in bq.client.list_tables(planner.dataset)]
    assert left == ["items__state"], "work tables are dropped once the state is committed"

    described = planner.describe(spec(), relation)
    assert planner.scope_violations(described, {"name": "renamed"}, described.columns) == 20
    assert planner.too_long(described, "name", 6) == [(k, 7) for k in ["K002", "K003", "K010", "K011", "K012"]]
    assert planner.string_lengths(described) == {"id": 4, "name": 7}

    # Old hashes mean nothing for another destination or after `forget`: compare everything.
    other = BigQueryPlanner(bq.client, planner.dataset, "mysql://db:3306/app")
    assert other.plan(other.describe(spec(), relation)).reason.startswith("columns, key, destination")
    planner.forget(spec())
    assert planner.plan(planner.describe(spec(), relation)).reason == "first sync: no state yet"
    engine.dispose()


def test_bad_keys_are_refused_naming_table_column_and_key(bq, mart, planner, tmp_path):
    relation, run = mart
    engine = engine_for(f"sqlite:///{tmp_path / 'app.sqlite'}")
    run(f"INSERT INTO {{items}} {ITEMS} FROM UNNEST([5, 5]) AS i")
    with pytest.raises(SyncError, match=r"items -> items: duplicate key \('id',\) in the mart \('K005' x3\)"):
        DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    run("UPDATE {items} SET id = NULL WHERE id = 'K005'")
    with pytest.raises(SyncError, match="items -> items: 3 row\\(s\\) have a NULL key in column 'id'"):
        DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    with pytest.raises(SyncError, match="mart items .* is not in the warehouse"):
        DestinationSync(engine, planner, print).run([spec()], {"items": MartRelation(relation.schema, "nope")})
    engine.dispose()


def test_identifiers_are_validated_before_they_reach_sql():
    assert quote_bigquery("my-project", "app", "items") == "`my-project`.`app`.`items`"
    for bad in ["a`b", "a.b", "", "x y"]:
        with pytest.raises(ValueError, match="not a valid BigQuery"):
            quote_bigquery(bad)


def test_nested_and_temporal_types_arrive_intact(bq, mart, planner, tmp_path):
    """Arrays and structs travel as JSON text; NUMERIC, DATE, DATETIME and TIMESTAMP keep their values."""
    relation, run = mart
    run(
        "CREATE OR REPLACE TABLE {items} AS SELECT 'K1' AS id, [1, 2, 3] AS tags, STRUCT('a' AS x, 2 AS y) AS attrs, "
        "CAST(12.34 AS NUMERIC) AS fee, DATE '2024-02-29' AS day, DATETIME '2024-01-02 03:04:05.123456' AS local_at, "
        "TIMESTAMP '2024-01-02 03:04:05.5+00' AS at, TRUE AS flag"
    )
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    (result,) = DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    assert result.inserted == 1
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT tags, attrs, fee, day, local_at, at, flag FROM items").one()
    engine.dispose()
    assert [json.loads(row[0]), json.loads(row[1])] == [[1, 2, 3], {"x": "a", "y": 2}]
    assert Decimal(str(row[2])) == Decimal("12.34")
    assert str(row[3]) == "2024-02-29"
    assert str(row[4]).startswith("2024-01-02 03:04:05.123456")
    assert str(row[5]).startswith("2024-01-02 03:04:05.5")
    assert row[6] in (1, True)


def test_a_crash_between_destination_commit_and_state_commit_resends_the_same_changes(
    bq, mart, planner, tmp_path, monkeypatch
):
    relation, run = mart
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    # An edit keeps the row count (a changed count makes the engine compare everything instead).
    run("UPDATE {items} SET score = -1 WHERE id = 'K007'")

    def crash(plan):
        raise KeyboardInterrupt("killed after the destination committed")

    with monkeypatch.context() as patched:
        patched.setattr(planner, "commit", crash)
        with pytest.raises(KeyboardInterrupt):
            DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    assert destination_rows(url, "items", ["id", "name", "score"], ["id"]) == mart_rows(bq, relation)

    # The state did not advance: the retry sends the same change again, applied idempotently.
    (retry,) = DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    assert retry.reason == "incremental" and retry.rows_sent == 1
    assert destination_rows(url, "items", ["id", "name", "score"], ["id"]) == mart_rows(bq, relation)
    (after,) = DestinationSync(engine, planner, print).run([spec()], {"items": relation})
    assert (after.inserted, after.updated, after.deleted, after.rows_sent) == (0, 0, 0, 0)
    engine.dispose()
