"""Run history beside the sync state: one row per run, and per key what changed, with retention."""

from __future__ import annotations

import duckdb
import pytest

from activation.syncs.load import DestinationSync, GuardTripped
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from activation.warehouses.history import RunHistory, mask_secrets
from tests.databases import sqlite_database
from tests.syncs.test_engine import edit, mart, spec
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
                results = DestinationSync(engine, planner, log=lambda _: None).run(
                    [s], {"items": MartRelation("main", "items")}
                )
            except Exception as exc:
                history.failed([s], exc)
                raise
            history.succeeded([s], results)
            return results[0]
    finally:
        engine.dispose()


def query(duck, sql: str):
    with duckdb.connect(str(duck.parent / "state.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def duck(tmp_path):
    path = tmp_path / "w.duckdb"
    mart(path)
    return path


def test_runs_and_changed_keys_are_queryable(tmp_path, duck):
    with sqlite_database(tmp_path) as url:
        recorded_run(url, duck, "run-1")
        edit(
            duck,
            "UPDATE items SET name = 'renamed' WHERE id IN ('K001', 'K002')",
            "DELETE FROM items WHERE id = 'K003'",
            "INSERT INTO items VALUES ('K900', 'new', 0.5)",
        )
        second = recorded_run(url, duck, "run-2")
        assert (second.inserted, second.updated, second.deleted) == (1, 2, 1)

    runs = query(
        duck,
        "SELECT run_id, sync, status, rows_inserted, rows_updated, rows_deleted, error FROM sync_runs ORDER BY run_id",
    )
    assert runs == [("run-1", "items", "success", 100, 0, 0, None), ("run-2", "items", "success", 1, 2, 1, None)]
    changes = query(duck, "SELECT key, operation FROM sync_changes WHERE run_id = 'run-2' ORDER BY key")
    assert changes == [("K001", "update"), ("K002", "update"), ("K003", "delete"), ("K900", "insert")]
    assert query(duck, "SELECT count(*) FROM sync_changes WHERE run_id = 'run-1' AND operation = 'insert'") == [(100,)]


def test_a_refused_run_is_recorded_with_its_error_and_old_rows_expire(tmp_path, duck):
    with sqlite_database(tmp_path) as url:
        recorded_run(url, duck, "run-1")
        with duckdb.connect(str(duck.parent / "state.duckdb")) as con:  # pretend run-1 was long ago
            con.execute("UPDATE sync_runs SET started_at = started_at - INTERVAL 40 DAY")
            con.execute("UPDATE sync_changes SET recorded_at = recorded_at - INTERVAL 40 DAY")
        edit(duck, "DELETE FROM items WHERE id > 'K010'")
        with pytest.raises(GuardTripped):
            recorded_run(url, duck, "run-2", retention_days=30)
    rows = query(duck, "SELECT run_id, status, rows_deleted, error FROM sync_runs")
    assert len(rows) == 1 and rows[0][:3] == ("run-2", "refused", 0)
    assert "max_deletes" in rows[0][3]
    assert query(duck, "SELECT count(*) FROM sync_changes") == [(0,)]


def test_errors_never_carry_the_destination_password():
    url = "mysql://app:s3cret-pw@db:3306/app"
    assert "s3cret-pw" not in mask_secrets(f"cannot connect to {url}: s3cret-pw rejected", url)
    assert mask_secrets("postgresql://u:pw@h/db failed", None) == "postgresql://u:***@h/db failed"
