"""Run history: errors never carry the destination's password; `recorded_run` runs a sync the way the
Dagster asset records it. What the history records, and its retention, is tested on DuckDB and on
BigQuery alike in tests/warehouses/test_warehouse.py."""

from __future__ import annotations

import duckdb

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from activation.warehouses.history import RunHistory, mask_secrets
from tests.syncs.test_engine import spec
from tests.syncs.test_load import engine_for


def recorded_run(url, duck, run_id: str, retention_days: int = 90, **overrides):
    """A sync run the way the Dagster asset records it."""
    s = spec(**overrides)
    engine = engine_for(url)
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
            history = RunHistory(
                planner, run_id=run_id, destination="app", destination_url=url, retention_days=retention_days
            )
            history.before([s])
            try:
                results = SqlDestination(engine).sync(
                    planner, [s], {"items": MartRelation("main", "items")}, log=lambda _: None
                )
            except Exception as exc:
                history.failed([s], exc)
                raise
            history.succeeded([s], results)
            return results[0]
    finally:
        engine.dispose()


def test_errors_never_carry_the_destination_password():
    url = "mysql://app:s3cret-pw@db:3306/app"
    assert "s3cret-pw" not in mask_secrets(f"cannot connect to {url}: s3cret-pw rejected", url)
    assert mask_secrets("postgresql://u:pw@h/db failed", None) == "postgresql://u:***@h/db failed"
