"""A sync in its own process, to be SIGKILLed at a chosen moment, and the server-side views the
crash tests use to choose it (the writer's thread, its uncommitted rows)."""

from __future__ import annotations

import glob
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.syncs.test_load import engine_for, scalar

REPO = Path(__file__).resolve().parents[2]
# The killed run loads in statements of this much Arrow data (the default groups 32 MiB per
# LOAD DATA, which would be one statement here), so "part of the rows" is a well-defined moment.
GROUP_BYTES = 256 * 1024

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
