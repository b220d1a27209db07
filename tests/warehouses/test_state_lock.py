"""A destination's sync state is its lock on this machine: a second writer waits for the file
before it reads the state, instead of failing on DuckDB's lock (two Celery workers, which ignore
Dagster's pools, once collided there)."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from activation.warehouses.duckdb import DuckDB

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute(f"ATTACH '{sys.argv[2]}' AS activation_state (READ_WRITE)")
con.execute("CREATE TABLE activation_state.written_by_first AS SELECT 1 AS x")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_a_second_writer_waits_for_the_state_then_sees_what_the_first_wrote(tmp_path):
    warehouse, state = tmp_path / "warehouse.duckdb", tmp_path / "app.duckdb"
    duckdb.connect(str(warehouse)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse), str(state), "2"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    said: list[str] = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        started = time.monotonic()
        DuckDB(con, str(state), "sqlite:///app", wait_seconds=60, log=said.append)
        waited = time.monotonic() - started
        assert con.execute("SELECT x FROM activation_state.written_by_first").fetchall() == [(1,)]
    assert holder.wait(timeout=30) == 0
    assert waited > 0.5, "the state was held by the first process: the second had to wait"
    assert said[0].endswith("is held by another sync of this destination; waiting"), said


def test_without_a_wait_a_held_state_fails_at_once_naming_the_lock(tmp_path):
    warehouse, state = tmp_path / "warehouse.duckdb", tmp_path / "app.duckdb"
    duckdb.connect(str(warehouse)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse), str(state), "5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with duckdb.connect(str(warehouse), read_only=True) as con:
            with pytest.raises(duckdb.IOException, match="(?i)lock"):
                DuckDB(con, str(state), "sqlite:///app", wait_seconds=0)
    finally:
        holder.kill()
