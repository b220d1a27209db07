"""Replace counts its changes from the warehouse's diff only where the destination provably holds
what the state says (sql/shadow_counts.py); a row edited behind the sync's back makes it compare.
Real MariaDB and PostgreSQL, loads on 2 connections (the helpers of test_parallel_load)."""

from __future__ import annotations

import time

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import parallel_load
from activation.destinations.sql.dialect import sql_dialect
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute, scalar
from tests.syncs.test_parallel_load import items, parallel, sync, write_items

# From version A (ids 0..19999, v = 2 * id): ids 0..49 gone, 20000..20099 new, every 100th id changed.
INSERTED, UPDATED, DELETED = 100, 199, 50


@pytest.fixture(params=["mariadb", "postgres"])
def url(request, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel_load, "CHUNK_BYTES", 32 * 1024)  # many chunks on both connections
    with destination_database(request.param, tmp_path) as found:
        yield found


def change_items(duck) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE OR REPLACE TABLE items AS SELECT i AS id, "
            "CASE WHEN i % 100 = 0 THEN i * 2 + 1 ELSE i * 2 END AS v, 'row ' || i || ' of A' AS label "
            "FROM range(50, 20100) t(i)"
        )


def marks(url: str) -> str | None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            return sql_dialect(conn).write_mark(conn, "items")
    finally:
        engine.dispose()


def said(lines: list[str], text: str) -> bool:
    return any(line.startswith("items: ") and text in line for line in lines)


def test_replace_counts_from_the_diff_when_the_table_is_as_the_last_sync_left_it(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    write_items(duck, "A")
    sync(url, duck, items("replace"))
    assert marks(url) is not None  # both servers give one
    change_items(duck)
    lines: list[str] = []
    replaced = sync(url, duck, items("replace"), lines)["items"]
    assert replaced.strategy == "shadow" and parallel(lines, "items")
    assert said(lines, "counts from the warehouse's diff") and not said(lines, "comparing the new table")
    assert (replaced.inserted, replaced.updated, replaced.deleted) == (INSERTED, UPDATED, DELETED)
    assert scalar(url, "SELECT COUNT(*) FROM items") == 20_050
    assert scalar(url, "SELECT COUNT(*) FROM items WHERE v = id * 2 + 1") == UPDATED + 1  # id 20000 is new


def test_a_row_edited_behind_the_syncs_back_makes_replace_compare(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    write_items(duck, "A")
    sync(url, duck, items("replace"))
    before = marks(url)
    time.sleep(1.1)  # MariaDB's mark has whole seconds: a write in the sync's own second looks the same
    execute(url, "UPDATE items SET label = 'edited by the app' WHERE id = 7777")
    deadline = time.monotonic() + 10
    while marks(url) == before and time.monotonic() < deadline:  # PostgreSQL's statistics: within a second or so
        time.sleep(0.2)
    assert marks(url) != before, "the server never reported the edit"
    change_items(duck)
    lines: list[str] = []
    replaced = sync(url, duck, items("replace"), lines)["items"]
    assert said(lines, "comparing the new table with the old one: the table was written")
    assert not said(lines, "counts from the warehouse's diff")
    # The compare counts the edited row, which the diff (mart against state) cannot see.
    assert (replaced.inserted, replaced.updated, replaced.deleted) == (INSERTED, UPDATED + 1, DELETED)
    assert scalar(url, "SELECT label FROM items WHERE id = 7777") == "row 7777 of A"
    # The next replace, with the table again as this one left it, counts from the diff.
    change_items(duck)
    with duckdb.connect(str(duck)) as con:
        con.execute("UPDATE items SET v = v + 10 WHERE id IN (60, 61, 62)")
    lines = []
    again = sync(url, duck, items("replace"), lines)["items"]
    assert said(lines, "counts from the warehouse's diff")
    assert (again.inserted, again.updated, again.deleted) == (0, 3, 0)
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM items WHERE id = 61")).scalar_one() == 132
    finally:
        engine.dispose()
