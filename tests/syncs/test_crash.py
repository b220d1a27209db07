"""A sync killed with SIGKILL in the middle of its work leaves the destination as it was, and the
next run converges: the destination equals the mart, row for row, the counts add up, and no
helper table is left.

The killed run is a real process (the venv's python) writing to a real MariaDB database (~200k
rows). Where it is killed:
- mid-load: once it logged part of the rows loaded (initial sync: into the table; incremental:
  into the staging or shadow table), it is frozen (SIGSTOP), the server is asked whether its
  transaction really holds uncommitted rows, then it is SIGKILLed;
- mirror, after applying: a row it must delete is locked by the test, so it writes its updates and
  inserts and then waits in the DELETE; killed there;
- replace, mid-swap: an open transaction that read the table (as an app's would) holds the
  RENAME TABLE back; killed there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from tests.databases import mariadb_database
from tests.syncs.killed_sync import SyncProcess
from tests.syncs.test_load import engine_for, items_spec, run_specs, scalar

ROWS = 200_000
COLS = ["id", "name", "email", "amount", "score", "created_at", "active", "note"]

MART = """
CREATE OR REPLACE TABLE items AS
SELECT i AS id,
       'customer ' || i || CASE WHEN i % 13 = 0 THEN ' 🛒' ELSE '' END AS name,
       printf('user%06d@example.com', i) AS email,
       CAST(i * 1.25 AS DECIMAL(12, 2)) AS amount,
       CAST(i AS DOUBLE) / 7 AS score,
       TIMESTAMP '2025-01-01 00:00:00' + INTERVAL (i) SECOND AS created_at,
       i % 3 = 0 AS active,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'note ' || (i % 97) END AS note
FROM range({start}, {stop}) t(i)
"""

# About 10% of the rows change: 20,000 updated, 2,000 deleted, 2,000 new.
CHANGES = [
    "UPDATE items SET name = name || ' v2', amount = amount + 1, note = NULL WHERE id % 10 = 3",
    "DELETE FROM items WHERE id % 100 = 7",
    "INSERT INTO items " + MART.split(" AS\n", 1)[1].format(start=ROWS, stop=ROWS + 2_000),
]
CHANGED = {"inserted": 2_000, "updated": 20_000, "deleted": 2_000}


def make_spec(mode: str):
    return items_spec(mode, batch_size=2_000)


def leftover_tables(url: str) -> list[str]:
    engine = engine_for(url)
    try:
        return sorted(t for t in sa.inspect(engine).get_table_names() if "__activation" in t)
    finally:
        engine.dispose()


def make_mart(duck: Path) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(MART.format(start=0, stop=ROWS))


def change_mart(duck: Path) -> None:
    with duckdb.connect(str(duck)) as con:
        for statement in CHANGES:
            con.execute(statement)


def dest(url: str) -> list[tuple]:
    """Every row in key order, as the driver returns them (200k rows: no ORM layer)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn, conn.connection.dbapi_connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(COLS)} FROM items ORDER BY id")
            return list(cursor.fetchall())
    finally:
        engine.dispose()


def mart(duck: Path) -> list[tuple]:
    with duckdb.connect(str(duck), read_only=True) as con:
        return con.execute(f"SELECT {', '.join(COLS)} FROM items ORDER BY id").fetchall()


def fingerprint(url: str) -> tuple[int, str]:
    """Row count and an MD5 over every row's values (NULLs included) in key order, computed by the server."""
    engine = engine_for(url)
    values = ", ".join(f"QUOTE({c})" for c in COLS)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET SESSION group_concat_max_len = 1073741824")
            count, digest = conn.exec_driver_sql(
                f"SELECT COUNT(*), MD5(GROUP_CONCAT(MD5(CONCAT_WS(',', {values})) ORDER BY id SEPARATOR '')) FROM items"
            ).one()
    finally:
        engine.dispose()
    return count, digest


def assert_converged(url: str, duck: Path, result, *, rows_before: int, counts: dict[str, int]) -> None:
    want, rows = mart(duck), dest(url)
    assert len(rows) == len({r[0] for r in rows}), "duplicate keys in the destination"
    # Same Python types from both drivers (Decimal, float, datetime; TINYINT 1 == True), so tuples
    # compare directly; the first difference is shown, not 200k rows.
    first = next((i for i, (a, b) in enumerate(zip(rows, want, strict=False)) if a != b), None)
    assert first is None, f"row {first}: destination {rows[first]} != mart {want[first]}"
    assert len(rows) == len(want)
    assert {"inserted": result.inserted, "updated": result.updated, "deleted": result.deleted} == counts
    assert result.rows_in_mart == len(want)
    assert result.rows_in_destination == len(rows) == rows_before + result.inserted - result.deleted
    assert result.unchanged == len(want) - result.inserted - result.updated
    assert result.rows_sent >= result.inserted + result.updated
    assert leftover_tables(url) == [], "helper tables left behind"


@pytest.fixture
def mariadb_url():
    with mariadb_database() as url:
        yield url


@pytest.fixture
def sync_process(tmp_path):
    """Starts a SyncProcess; whatever happens in the test, no process outlives it."""
    started: list[SyncProcess] = []

    def start(url: str, duck: Path, spec) -> SyncProcess:
        started.append(SyncProcess(url, duck, spec, tmp_path))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize("mode", ["mirror", "replace"])
def test_killed_initial_sync_leaves_nothing_and_the_next_run_loads_everything(
    mariadb_url, sync_process, tmp_path, mode, monkeypatch
):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec(mode)
    process = sync_process(url, duck, spec)
    make_mart(duck)
    log = process.kill_mid_load()
    assert any("created table" in line for line in log)
    # The table was created, and loaded, under a hidden name: no reader saw it.
    assert not scalar(
        url, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'items'"
    )
    assert set(leftover_tables(url)) <= {"items__activation_new"}

    assert process.csv_files, "the killed load had no CSV file on disk"
    monkeypatch.setattr(tempfile, "tempdir", str(process.tmp))  # the next run shares its temp folder

    result = run_specs(url, duck, [spec])["items"]
    assert result.strategy == "bulk" and result.reason == "first sync into a new table"  # the killed run left none
    assert not [p for p in process.csv_files if os.path.exists(p)], "the killed load's CSV files were left behind"
    assert_converged(url, duck, result, rows_before=0, counts={"inserted": ROWS, "updated": 0, "deleted": 0})
    again = run_specs(url, duck, [spec])["items"]
    assert (again.inserted, again.updated, again.deleted, again.rows_sent) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["mirror", "replace"])
def test_killed_incremental_sync_rolls_back_and_the_next_run_converges(mariadb_url, sync_process, tmp_path, mode):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec(mode)
    mid_load, mid_write = sync_process(url, duck, spec), sync_process(url, duck, spec)
    make_mart(duck)
    first = run_specs(url, duck, [spec])["items"]
    assert first.inserted == ROWS
    before = fingerprint(url)
    change_mart(duck)

    # 1. Killed while loading the changes: mirror stages them, replace loads its shadow table.
    log = mid_load.kill_mid_load()
    loaded_into = {line.split(" loaded into ")[1].split(" ")[0] for line in log if " loaded into " in line}
    assert loaded_into == ({"_activation_items__stage"} if mode == "mirror" else {"items__activation_new"})
    assert fingerprint(url) == before, "the killed transaction must roll back completely"
    assert set(leftover_tables(url)) <= {"items__activation_new"}  # a killed replace leaves its shadow table

    # 2. Killed once it has written to the table itself (mirror), or while it swaps (replace).
    counts = CHANGED
    engine = engine_for(url)
    holder = engine.connect()
    try:
        if mode == "mirror":
            # One row the sync deletes is locked: it applies its updates and inserts, then waits in the DELETE.
            holder.execute(sa.text("SELECT id FROM items WHERE id = 107 FOR UPDATE"))
            _, pending = mid_write.kill_while_waiting(holder, "DELETE FROM items")
            assert pending >= CHANGED["updated"] + CHANGED["inserted"], "its updates and inserts were in"
            assert fingerprint(url) == before, "the killed transaction must roll back completely"
        else:
            # An app's open transaction that read the table holds its metadata lock: the swap waits for it.
            holder.execute(sa.text("SELECT COUNT(*) FROM items"))
            mid_write.kill_while_waiting(holder, "RENAME TABLE")
            # The server finishes the RENAME once the lock is free, client or not: the table is then the
            # new version, whole (compared below), and the swapped-out table is left over.
            if fingerprint(url) != before:
                counts = {"inserted": 0, "updated": 0, "deleted": 0}
            assert set(leftover_tables(url)) <= {"items__activation_new", "items__activation_old"}
    finally:
        holder.close()
        engine.dispose()

    result = run_specs(url, duck, [spec])["items"]
    assert result.strategy == ("diff" if mode == "mirror" else "shadow")
    assert result.reason == "incremental", "the killed runs must not have advanced the state"
    if mode == "mirror":
        assert result.rows_sent == CHANGED["inserted"] + CHANGED["updated"], "only the changes are sent"
    assert_converged(url, duck, result, rows_before=ROWS, counts=counts)
    again = run_specs(url, duck, [spec])["items"]
    assert (again.inserted, again.updated, again.deleted, again.rows_sent) == (0, 0, 0, 0)
    assert leftover_tables(url) == []
