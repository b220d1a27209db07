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

import glob
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from tests.databases import mariadb_database
from tests.syncs.test_load import engine_for, items_spec, run_specs, scalar

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

import activation.destinations.sql.mysql_load as mysql_load
import activation.destinations.sql.parallel_load as parallel_load
from activation.destinations.sql import SqlDestination, normalize_url
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from activation.syncs.spec import SyncSpec

url, duck_path, state_path, spec_json, group_bytes = sys.argv[1:]
mysql_load.GROUP_BYTES = parallel_load.CHUNK_BYTES = int(group_bytes)
spec = SyncSpec.model_validate_json(spec_json)
engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})


def log(message):
    print(message, flush=True)


print("READY", flush=True)
sys.stdin.readline()
with duckdb.connect(duck_path, read_only=True) as con:
    planner = DuckDB(con, state_path, url)
    SqlDestination(engine).sync(planner, [spec], {spec.name: MartRelation("main", spec.source)}, log=log)
print("SYNC FINISHED", flush=True)
"""


def make_spec(mode: str):
    return items_spec(mode, batch_size=2_000)


def database_of(url: str) -> str:
    return sa.engine.make_url(url).database


def other_threads(url: str, exclude: tuple[int, ...] = ()) -> list[tuple[int, str, str]]:
    """(id, state, statement) of the other connections to this database."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST "
                    "WHERE DB = :db AND ID <> CONNECTION_ID()"
                ),
                {"db": database_of(url)},
            ).all()
    finally:
        engine.dispose()
    return [(int(i), state or "", info or "") for i, state, info in rows if i not in exclude]


def uncommitted_changes(url: str, thread_id: int) -> int:
    """Undo log entries of the thread's open transaction: rows it wrote that a rollback must undo.
    (From the InnoDB monitor: information_schema.INNODB_TRX leaves out transactions holding many locks.)"""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            status = conn.execute(sa.text("SHOW ENGINE INNODB STATUS")).one()[2]
    finally:
        engine.dispose()
    found = re.search(rf"undo log entries (\d+)\n(?:[^\n]*\n)?MariaDB thread id {thread_id},", status)
    return int(found.group(1)) if found else 0


def wait_until_gone(url: str, thread_id: int, timeout: float = 30.0) -> None:
    """The server rolls a dead client's transaction back when it notices the closed socket."""
    deadline = time.monotonic() + timeout
    while scalar(url, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id", id=thread_id):
        assert time.monotonic() < deadline, f"server thread {thread_id} still there {timeout}s after the kill"
        time.sleep(0.05)


class SyncProcess:
    """The sync in its own process. It starts at once (importing takes seconds, overlapping the
    test's setup), syncs when told to, and gets SIGKILLed at the chosen moment."""

    def __init__(self, url: str, duck: Path, spec, tmp_path: Path):
        self.url = url
        script = tmp_path / "sync_process.py"
        script.write_text(SCRIPT)
        # A killed load leaves its CSV file (a copy of mart rows) behind: keep it inside tmp_path.
        process_tmp = tmp_path / "process_tmp"
        process_tmp.mkdir(exist_ok=True)
        self.tmp = process_tmp
        state = str(duck.parent / "state.duckdb")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, str(duck), state, spec.model_dump_json(), str(GROUP_BYTES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(process_tmp)},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next_line(self, deadline: float, waiting_for: str) -> str:
        try:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"{waiting_for}: nothing within the time limit; the process said: {self.log}")
        if line is None:
            pytest.fail(f"{waiting_for}: the sync process ended; it said: {self.log}")
        self.log.append(line)
        return line

    def start(self) -> None:
        self.deadline = time.monotonic() + 60
        while self._next_line(self.deadline, "starting") != "READY":
            pass
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def kill_mid_load(self) -> list[str]:
        """Let it sync; SIGKILL it once part of the rows are loaded (uncommitted); return its log."""
        try:
            self.start()
            while True:
                line = self._next_line(self.deadline, "waiting for a partial load")
                # "items: loaded into items 2,184 / 200,000 rows": part of the rows are in.
                if " loaded into " in line:
                    done, total = (int(n.replace(",", "")) for n in line.rsplit(" rows", 1)[0].split(" ")[-3::2])
                    if done < total:
                        break
            os.kill(self.proc.pid, signal.SIGSTOP)  # freeze it mid-load; the server keeps its transaction open
            self.csv_files = glob.glob(str(self.tmp / f"activation_load_{self.proc.pid}_*.csv"))
            # The sync may hold more than one connection (it counts on a second one); find the writer.
            threads = [t for t, _, _ in other_threads(self.url)]
            thread_id, pending = max(((t, uncommitted_changes(self.url, t)) for t in threads), key=lambda x: x[1])
            if " connections " not in line:  # else each chunk commits, into a table no reader sees
                assert pending >= done, f"the transaction holds {pending} uncommitted rows, the log said {done}"
            self.kill()
            for thread in threads:
                wait_until_gone(self.url, thread)
        finally:
            self.close()
        return self.log

    def kill_while_waiting(self, holder: sa.Connection, waiting_in: str) -> tuple[str, int]:
        """Let it sync until its statement starting with `waiting_in` waits for a lock `holder` holds;
        SIGKILL it, then release the lock. Return the statement it was killed in and the rows it had
        written uncommitted."""
        holder_id = holder.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        try:
            self.start()
            while True:
                assert time.monotonic() < self.deadline, f"never waited in {waiting_in}; log: {self.log}"
                assert self.proc.poll() is None, f"the sync ended without waiting; log: {self.log}"
                running = {
                    t: i for t, _, i in other_threads(self.url, exclude=(holder_id,)) if i.startswith(waiting_in)
                }
                if running:
                    [(thread_id, statement)] = running.items()
                    time.sleep(0.5)  # still there: waiting for the lock, not a quick statement caught in passing
                    if any(t == thread_id and i == statement for t, _, i in other_threads(self.url)):
                        break
                time.sleep(0.01)
            pending = uncommitted_changes(self.url, thread_id)
            self.kill()
        finally:
            holder.rollback()  # the server thread finishes its statement, then finds the client gone
            self.close()
        wait_until_gone(self.url, thread_id)
        return statement, pending

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()


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
