"""A sync killed with SIGKILL in the middle of its load leaves the destination as it was, and the
next run converges: the destination equals the mart, row for row, and no helper table is left.

The killed run is a real process (the venv's python) writing to a real MariaDB database; the
test waits until it has loaded part of the rows inside its open transaction, freezes it (SIGSTOP),
checks on the server that the transaction really holds uncommitted rows, then SIGKILLs it.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from activation.syncs.spec import SyncConfig
from tests.compare import _norm, mart_rows
from tests.databases import mariadb_database
from tests.syncs.test_load import engine_for, run_specs

REPO = Path(__file__).resolve().parents[2]
ROWS = 200_000
COLS = ["id", "name", "email", "amount", "score", "created_at", "active", "note"]
# The killed run loads in statements of this much Arrow data (the default groups 32 MiB per
# LOAD DATA, which would be one statement here), so "part of the rows" is a well-defined moment.
GROUP_BYTES = 256 * 1024

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

SCRIPT = """
import sys

import duckdb
import sqlalchemy as sa

import activation.syncs.bulk as bulk
from activation.resources import normalize_url
from activation.syncs.load import DestinationSync
from activation.syncs.plan import MartRelation, Planner
from activation.syncs.spec import SyncSpec

url, duck_path, state_path, spec_json, group_bytes = sys.argv[1:]
bulk.MYSQL_GROUP_BYTES = int(group_bytes)
spec = SyncSpec.model_validate_json(spec_json)
engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})


def log(message):
    print(message, flush=True)


with duckdb.connect(duck_path, read_only=True) as con:
    planner = Planner(con, state_path, url)
    DestinationSync(engine, planner, log=log).run([spec], {spec.name: MartRelation("main", spec.source)})
print("SYNC FINISHED", flush=True)
"""


def make_spec(mode: str):
    body = {
        "source": "items",
        "destination": "app",
        "table": "items",
        "primary_key": "id",
        "mode": mode,
        "batch_size": 2_000,
    }
    return SyncConfig.model_validate({"destinations": {"app": {"url_env": "X"}}, "syncs": {"items": body}}).syncs[
        "items"
    ]


def scalar(url: str, sql: str, **params):
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def database_of(url: str) -> str:
    return sa.engine.make_url(url).database


def writer_transaction(url: str) -> tuple[int, int] | None:
    """(thread id, rows modified) of the open InnoDB transaction of another connection to this database."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT p.ID, t.trx_rows_modified FROM information_schema.PROCESSLIST p "
                    "JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
                    "WHERE p.DB = :db AND p.ID <> CONNECTION_ID()"
                ),
                {"db": database_of(url)},
            ).first()
            return (int(row[0]), int(row[1])) if row else None
    finally:
        engine.dispose()


def wait_until_gone(url: str, thread_id: int, timeout: float = 30.0) -> None:
    """The server rolls a dead client's transaction back when it notices the closed socket."""
    deadline = time.monotonic() + timeout
    while scalar(url, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id", id=thread_id):
        assert time.monotonic() < deadline, f"server thread {thread_id} still there {timeout}s after the kill"
        time.sleep(0.05)


def kill_mid_load(url: str, duck: Path, spec, tmp_path: Path) -> list[str]:
    """Start the sync in a process, SIGKILL it once part of the rows are loaded (uncommitted); return its log."""
    script = tmp_path / "sync_process.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            url,
            str(duck),
            str(duck.parent / "state.duckdb"),
            spec.model_dump_json(),
            str(GROUP_BYTES),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"no partial load within 60s; the process said: {seen}")
            if line is None:
                pytest.fail(f"the sync process ended before it could be killed mid-load: {seen}")
            seen.append(line)
            # "items: loaded into items 2,184 / 200,000 rows": part of the rows are in.
            if " loaded into " in line:
                done, total = (int(n.replace(",", "")) for n in line.rsplit(" rows", 1)[0].split(" ")[-3::2])
                if done < total:
                    break
        os.kill(proc.pid, signal.SIGSTOP)  # freeze it mid-load; the server keeps its transaction open
        trx = writer_transaction(url)
        assert trx is not None, f"no open transaction on the server at the moment of the kill; log: {seen}"
        thread_id, modified = trx
        assert modified >= done, f"the transaction holds {modified} uncommitted rows, the log said {done}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        wait_until_gone(url, thread_id)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return seen


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
    """Every row, normalized like tests.compare does (raw driver values: 200k rows, so no ORM layer)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"SELECT {', '.join(COLS)} FROM items ORDER BY id").fetchall()
    finally:
        engine.dispose()
    return [tuple(_norm(v) for v in row) for row in rows]


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


def assert_converged(url: str, duck: Path, result, *, rows_before: int, expected: dict[str, int]) -> None:
    mart = mart_rows(duck, "items", COLS, ["id"])
    rows = dest(url)
    assert len(rows) == len({r[0] for r in rows}), "duplicate keys in the destination"
    assert rows == mart
    assert {"inserted": result.inserted, "updated": result.updated, "deleted": result.deleted} == expected
    assert result.rows_in_mart == len(mart)
    assert result.rows_in_destination == len(rows) == rows_before + result.inserted - result.deleted
    assert result.unchanged == len(mart) - result.inserted - result.updated
    assert result.rows_sent >= result.inserted + result.updated
    assert leftover_tables(url) == [], "helper tables left behind"


@pytest.fixture
def mariadb_url():
    with mariadb_database() as url:
        yield url


@pytest.mark.parametrize("mode", ["mirror", "replace"])
def test_killed_initial_sync_leaves_nothing_and_the_next_run_loads_everything(mariadb_url, tmp_path, mode):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec(mode)
    make_mart(duck)
    log = kill_mid_load(url, duck, spec, tmp_path)
    assert any("created table" in line for line in log)
    # The CREATE TABLE committed on its own (MySQL DDL does); not one row of the load did.
    assert scalar(url, "SELECT COUNT(*) FROM items") == 0

    result = run_specs(url, duck, [spec])["items"]
    assert result.strategy == "bulk" and result.reason == "first sync: no state yet"
    assert_converged(url, duck, result, rows_before=0, expected={"inserted": ROWS, "updated": 0, "deleted": 0})
    again = run_specs(url, duck, [spec])["items"]
    assert (again.inserted, again.updated, again.deleted, again.rows_sent) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["mirror", "replace"])
def test_killed_incremental_sync_rolls_back_and_the_next_run_converges(mariadb_url, tmp_path, mode):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec(mode)
    make_mart(duck)
    first = run_specs(url, duck, [spec])["items"]
    assert first.inserted == ROWS
    before = fingerprint(url)
    change_mart(duck)

    log = kill_mid_load(url, duck, spec, tmp_path)
    loaded_into = {line.split(" loaded into ")[1].split(" ")[0] for line in log if " loaded into " in line}
    assert loaded_into == ({"_activation_items__stage"} if mode == "mirror" else {"items__activation_new"})
    assert fingerprint(url) == before, "the killed transaction must roll back completely"

    result = run_specs(url, duck, [spec])["items"]
    assert result.strategy == ("diff" if mode == "mirror" else "shadow")
    assert result.reason == "incremental", "the killed run must not have advanced the state"
    if mode == "mirror":
        assert result.rows_sent == CHANGED["inserted"] + CHANGED["updated"], "only the changes are sent"
    assert_converged(url, duck, result, rows_before=ROWS, expected=CHANGED)
    again = run_specs(url, duck, [spec])["items"]
    assert (again.inserted, again.updated, again.deleted, again.rows_sent) == (0, 0, 0, 0)
    assert leftover_tables(url) == []
