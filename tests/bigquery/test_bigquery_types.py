"""What only BigQuery has: its identifiers, and its nested and temporal types on the way out.

The warehouse behaviours themselves (diff, state, keys, rejects, history, masking, dry run) run
on DuckDB and on this emulator alike: tests/warehouses.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.warehouses.bigquery import BigQuery, quote_bigquery
from tests.syncs.test_load import engine_for, items_config

pytestmark = pytest.mark.bigquery


def test_identifiers_are_validated_before_they_reach_sql():
    assert quote_bigquery("my-project", "app", "items") == "`my-project`.`app`.`items`"
    for bad in ["a`b", "a.b", "", "x y"]:
        with pytest.raises(ValueError, match="not a valid BigQuery"):
            quote_bigquery(bad)


def test_nested_and_temporal_types_arrive_intact(bq, tmp_path):
    """Arrays and structs travel as JSON text; NUMERIC, DATE, DATETIME and TIMESTAMP keep their values.
    Read through REST pages here (no Storage Read client); the warehouse suite reads through the API."""
    marts, state = f"marts_{uuid.uuid4().hex[:8]}", f"state_{uuid.uuid4().hex[:8]}"
    bq.client.create_dataset(marts)
    bq.client.query(
        f"CREATE TABLE {quote_bigquery(bq.client.project, marts, 'items')} AS SELECT 'K1' AS id, [1, 2, 3] AS tags, "
        "STRUCT('a' AS x, 2 AS y) AS attrs, CAST(12.34 AS NUMERIC) AS fee, DATE '2024-02-29' AS day, "
        "DATETIME '2024-01-02 03:04:05.123456' AS local_at, TIMESTAMP '2024-01-02 03:04:05.5+00' AS at, TRUE AS flag"
    ).result()
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    try:
        warehouse = BigQuery(bq.client, state, "sqlite://:/items.sqlite")
        spec = items_config("mirror").syncs["items"]
        (result,) = SqlDestination(engine).sync(warehouse, [spec], {"items": MartRelation(marts, "items")}, log=print)
        assert result.inserted == 1
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT tags, attrs, fee, day, local_at, at, flag FROM items").one()
    finally:
        engine.dispose()
        for dataset in (marts, state):
            bq.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    assert [json.loads(row[0]), json.loads(row[1])] == [[1, 2, 3], {"x": "a", "y": 2}]
    assert Decimal(str(row[2])) == Decimal("12.34")
    assert str(row[3]) == "2024-02-29"
    assert str(row[4]).startswith("2024-01-02 03:04:05.123456")
    assert str(row[5]).startswith("2024-01-02 03:04:05.5")
    assert row[6] in (1, True)
