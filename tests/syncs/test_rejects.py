"""Rows the destination cannot take are set aside as rejects, kept out of the state and retried."""

from __future__ import annotations

import duckdb
import pytest

from activation.syncs.results import SyncError
from tests.databases import destination_database
from tests.syncs.test_engine import dest, edit, mart
from tests.test_history import recorded_run


@pytest.fixture(params=["sqlite", "mariadb"])
def url(request, tmp_path):
    with destination_database(request.param, tmp_path) as url:
        yield url


def counts(r):
    return (r.inserted, r.updated, r.deleted, r.rejected)


def rejects_table(duck):
    with duckdb.connect(str(duck.parent / "state.duckdb"), read_only=True) as con:
        return con.execute("SELECT key, column_name, reason FROM sync_rejects ORDER BY key").fetchall()


def test_too_long_values_are_set_aside_retried_and_go_through_once_fixed(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(duck)
    assert counts(recorded_run(url, duck, "run-1", max_rejects=5)) == (100, 0, 0, 0)
    edit(
        duck,
        "UPDATE items SET name = repeat('x', 300) WHERE id = 'K001'",  # synced before, now too long
        "INSERT INTO items VALUES ('K900', repeat('y', 300), 1.0)",  # new and too long
        "UPDATE items SET name = 'renamed' WHERE id = 'K002'",
        "DELETE FROM items WHERE id = 'K003'",
    )
    second = recorded_run(url, duck, "run-2", max_rejects=5)
    assert counts(second) == (0, 1, 1, 2), "the good changes go through, the two bad rows are set aside"
    rows = {r[0]: r for r in dest(url)}
    assert rows["K001"][1] == "name 1", "the older version of a rejected row stays"
    assert "K900" not in rows and "K003" not in rows and rows["K002"][1] == "renamed"
    assert rejects_table(duck) == [
        ("K001", "name", "value longer than the destination's 255 characters"),
        ("K900", "name", "value longer than the destination's 255 characters"),
    ]

    third = recorded_run(url, duck, "run-3", max_rejects=5)
    assert counts(third) == (0, 0, 0, 2), "retried, still rejected, nothing else to do"
    assert "K001" in {r[0] for r in dest(url)}, "a retried reject is never deleted"

    edit(duck, "UPDATE items SET name = 'fixed' WHERE id IN ('K001', 'K900')")
    assert counts(recorded_run(url, duck, "run-4", max_rejects=5)) == (1, 1, 0, 0)
    assert rejects_table(duck) == []
    with duckdb.connect(str(duck.parent / "state.duckdb"), read_only=True) as con:
        changes = con.execute("SELECT run_id, key, operation FROM sync_changes WHERE run_id <> 'run-1' ORDER BY ALL")
        assert changes.fetchall() == [
            ("run-2", "K002", "update"),
            ("run-2", "K003", "delete"),
            ("run-4", "K001", "insert"),  # the state forgot it while rejected: it comes back as new
            ("run-4", "K900", "insert"),
        ]


def test_more_rejects_than_allowed_refuse_the_sync(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(duck)
    recorded_run(url, duck, "run-1", max_rejects="1%")
    edit(duck, "UPDATE items SET name = repeat('x', 300) WHERE id IN ('K001', 'K002')")
    with pytest.raises(SyncError, match="over max_rejects 1%"):
        recorded_run(url, duck, "run-2", max_rejects="1%")
    with pytest.raises(SyncError, match="longer than the destination's 255"):
        recorded_run(url, duck, "run-3")  # without max_rejects: refused, as before


def test_any_value_the_destination_would_refuse_is_set_aside(url, tmp_path):
    """Not only lengths: NaN (MySQL and SQLite cannot store it) goes to the rejects with its reason."""
    duck = tmp_path / "w.duckdb"
    mart(duck, "SELECT printf('K%03d', i) AS id, 'name ' || i AS name, i * 1.5::DOUBLE AS score FROM range(100) t(i)")
    recorded_run(url, duck, "run-1", max_rejects=5)
    edit(
        duck,
        "UPDATE items SET score = 'NaN'::DOUBLE WHERE id = 'K004'",
        "UPDATE items SET name = 'ok' WHERE id = 'K005'",
    )
    result = recorded_run(url, duck, "run-2", max_rejects=5)
    assert counts(result) == (0, 1, 0, 1)
    [(key, column, reason)] = rejects_table(duck)
    assert (key, column) == ("K004", "score") and "NaN" in reason
    assert {r[0]: r[1] for r in dest(url)}["K005"] == "ok"
