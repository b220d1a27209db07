"""Faults in the destination while a sync writes: connections killed, lock wait timeouts, a server
restart. The run retries the whole sync and converges (the destination equals the mart, counts exact);
errors that a retry cannot fix raise at once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination, destination, mysql_load
from activation.syncs.results import SyncError
from tests.databases import MYSQL_SERVER_URL, mariadb_server
from tests.reliability.support import (
    Log,
    assert_same_rows,
    change_mart,
    make_mart,
    make_spec,
    progress,
    run,
)
from tests.syncs.test_load import engine_for, scalar

ROWS = 100_000
GROUP_BYTES = 128 * 1024  # several LOAD DATA statements per load, one progress line each


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(mysql_load, "GROUP_BYTES", GROUP_BYTES)
    monkeypatch.setattr(destination, "RETRY_FIRST_PAUSE_SECONDS", 0.2)
    monkeypatch.setattr(destination, "RETRY_ATTEMPTS", 4)


class Killer(threading.Thread):
    """Once the sync has logged a partial load into `into`, finds the connection running a LOAD DATA
    in the test database and KILLs it from another connection (once)."""

    def __init__(self, url: str, into: str):
        super().__init__(daemon=True)
        self.url, self.into = url, into
        self.partial = threading.Event()
        self.stop = threading.Event()
        self.killed: tuple[int, str] | None = None
        self.database = sa.engine.make_url(url).database

    def on_line(self, line: str) -> None:
        p = progress(line)
        if p and p[0] < p[1] and f" loaded into {self.into} " in line:
            self.partial.set()

    def run(self) -> None:
        engine = engine_for(self.url)
        try:
            with engine.connect() as conn:
                while not self.stop.is_set() and not self.partial.wait(0.01):
                    pass
                while not self.stop.is_set():
                    row = conn.execute(
                        sa.text(
                            "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE DB = :db "
                            "AND ID <> CONNECTION_ID() AND INFO LIKE 'LOAD DATA LOCAL INFILE%'"
                        ),
                        {"db": self.database},
                    ).first()
                    if row is not None:
                        conn.execute(sa.text(f"KILL CONNECTION {int(row[0])}"))
                        self.killed = (int(row[0]), row[1])
                        return
        finally:
            engine.dispose()


def run_with_kill(url, duck, spec, into: str):
    killer = Killer(url, into)
    log = Log(on_line=killer.on_line)
    killer.start()
    try:
        result = run(url, duck, [spec], log=log)["items"]
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, f"the load was never caught mid-statement; log: {log.lines}"
    assert f" INTO TABLE {into} " in killer.killed[1].replace("`", "")
    return result, log


def test_connection_killed_mid_initial_load_retries_and_converges(mariadb_url, tmp_path):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec("mirror", batch_size=5_000)
    make_mart(duck, ROWS)
    result, log = run_with_kill(url, duck, spec, into="items__activation_new")  # created under a hidden name

    [retry] = log.retries()
    assert "(1/3)" in retry and ("2013" in retry or "1927" in retry or "2006" in retry or "InterfaceError" in retry)
    # The killed attempt loaded part of the rows; the retry starts over from an empty table.
    before_retry = log.lines[: log.lines.index(retry)]
    assert any((p := progress(line)) and p[0] < p[1] for line in before_retry)
    assert_same_rows(url, duck)
    assert (result.inserted, result.updated, result.deleted) == (ROWS, 0, 0)
    assert result.rows_in_destination == ROWS
    again = run(url, duck, [spec])["items"]
    assert (again.inserted, again.updated, again.deleted, again.rows_sent) == (0, 0, 0, 0)


def test_connection_killed_mid_incremental_mirror_retries_and_converges(mariadb_url, tmp_path, monkeypatch):
    # Batches of 1,000 rows, grouped 32 KiB per LOAD: the 30k changed rows take many statements.
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec("mirror", batch_size=1_000)
    make_mart(duck, ROWS)
    assert run(url, duck, [spec])["items"].inserted == ROWS
    counts = change_mart(duck, ROWS, update_every=4, delete_every=100, new=3_000)
    monkeypatch.setattr(mysql_load, "GROUP_BYTES", 32 * 1024)
    result, log = run_with_kill(url, duck, spec, into="_activation_items__stage")

    assert len(log.retries()) == 1, log.lines
    assert result.reason == "incremental", "the killed attempt must not have advanced the state"
    assert {"inserted": result.inserted, "updated": result.updated, "deleted": result.deleted} == counts
    assert result.rows_sent == counts["inserted"] + counts["updated"]
    assert result.rows_in_destination == ROWS + counts["inserted"] - counts["deleted"]
    assert_same_rows(url, duck)


def test_lock_wait_timeout_on_rows_the_app_holds_retries_until_they_are_free(mariadb_url, tmp_path, monkeypatch):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec("mirror")
    make_mart(duck, 2_000)
    run(url, duck, [spec])
    with duckdb.connect(str(duck)) as con:
        con.execute("UPDATE items SET name = 'changed ' || id WHERE id BETWEEN 100 AND 109")
    monkeypatch.setattr(destination, "RETRY_ATTEMPTS", 8)
    monkeypatch.setattr(destination, "RETRY_FIRST_PAUSE_SECONDS", 0.25)

    app_engine = engine_for(url)
    holding, released, waited = threading.Event(), threading.Event(), threading.Event()
    log = Log(on_line=lambda line: "1205" in line and waited.set())

    def app() -> None:
        # Hold the rows until the sync has waited on them at least once (a loaded host may take
        # longer than any fixed hold to reach the write), then a little longer, then commit.
        with app_engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT * FROM items WHERE id BETWEEN 100 AND 109 FOR UPDATE")).all()
            holding.set()
            waited.wait(60)
            time.sleep(1)
        released.set()

    thread = threading.Thread(target=app, daemon=True)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        result = run(
            url,
            duck,
            [spec],
            log=log,
            connect_args={"init_command": "SET SESSION innodb_lock_wait_timeout=1", "local_infile": True},
        )["items"]
        elapsed = time.monotonic() - started
    finally:
        thread.join()
        app_engine.dispose()
    retries = log.retries()
    assert retries and all("1205" in r for r in retries), log.lines
    assert waited.is_set() and released.is_set(), "the sync cannot have written before the app committed"
    assert elapsed >= 2.0, "at least one 1 s lock wait, then the 1 s the app kept its lock after it"
    assert (result.inserted, result.updated, result.deleted) == (0, 10, 0)
    assert_same_rows(url, duck)


def server_pids() -> list[int]:
    found = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def start_server_after(pids: list[int], timeout: float = 60.0) -> None:
    """Start mariadbd once the old process has exited (start-stop-daemon --oknodo does nothing while
    it is still there), and wait until it accepts connections."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    while True:
        if not server_pids():
            subprocess.run(
                ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
                capture_output=True,
            )
        engine = sa.create_engine(MYSQL_SERVER_URL)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            engine.dispose()


@contextlib.contextmanager
def restart_safe_mariadb_database():
    """Like tests.databases.mariadb_database, but the database is dropped on a connection opened
    after the restart (a pooled one from before it is dead)."""
    start_server_after([])
    name = f"activation_test_{uuid.uuid4().hex[:10]}"

    def admin(sql: str) -> None:
        engine = sa.create_engine(MYSQL_SERVER_URL)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield f"{MYSQL_SERVER_URL}/{name}"
    finally:
        start_server_after([])  # whatever happened, the server is up for the tests after this one
        admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.server_restart
def test_server_restart_mid_load_retries_until_it_is_back(tmp_path, monkeypatch):
    with mariadb_server(exclusive=True), restart_safe_mariadb_database() as url:
        server_restart_mid_load(url, tmp_path, monkeypatch)


def server_restart_mid_load(url, tmp_path, monkeypatch):
    duck, spec = tmp_path / "w.duckdb", make_spec("mirror", batch_size=5_000)
    rows = 50_000
    make_mart(duck, rows)
    # Pauses 0.25, 0.5, 1 ... 16 s (32 s in all): the server is back well within them.
    monkeypatch.setattr(destination, "RETRY_ATTEMPTS", 8)
    monkeypatch.setattr(destination, "RETRY_FIRST_PAUSE_SECONDS", 0.25)
    t0 = time.monotonic()
    partial = threading.Event()
    restarted: list[str] = []
    timings: list[tuple[str, float]] = []

    def on_line(line: str) -> None:
        p = progress(line)
        if p and p[0] < p[1]:
            partial.set()

    def restart() -> None:
        if not partial.wait(60):
            return
        pids = server_pids()
        down = subprocess.run(
            ["mariadb-admin", "-uroot", "-h127.0.0.1", "--shutdown-timeout=30", "shutdown"],
            capture_output=True,
            text=True,
        )
        restarted.append(f"shutdown rc={down.returncode} {down.stderr.strip()}")
        timings.append(("down", time.monotonic() - t0))
        start_server_after(pids)
        restarted.append("up")
        timings.append(("up", time.monotonic() - t0))

    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    log = Log(on_line=on_line)
    try:
        result = run(url, duck, [spec], log=log)["items"]
        restarter.join(60)
    finally:
        partial.set()
        restarter.join(90)
    timings.append(("synced", time.monotonic() - t0))
    assert restarted == ["shutdown rc=0 ", "up"], (restarted, timings)
    assert log.retries(), log.lines
    assert (result.inserted, result.updated, result.deleted) == (rows, 0, 0)
    assert_same_rows(url, duck)


@pytest.mark.parametrize("problem", ["nan", "duplicate_key"])
def test_errors_a_retry_cannot_fix_raise_at_once(mariadb_url, tmp_path, monkeypatch, problem):
    url, duck, spec = mariadb_url, tmp_path / "w.duckdb", make_spec("mirror")
    make_mart(duck, 5_000)
    run(url, duck, [spec])
    with duckdb.connect(str(duck)) as con:
        con.execute("UPDATE items SET name = 'changed'")
        if problem == "nan":
            con.execute("UPDATE items SET score = 'NaN'::DOUBLE WHERE id = 4321")
        else:
            con.execute("UPDATE items SET id = 4321 WHERE id = 4322")
    monkeypatch.setattr(destination, "RETRY_FIRST_PAUSE_SECONDS", 5.0)  # a retry would show in the time taken
    log = Log()
    started = time.monotonic()
    expected = (ValueError, SyncError) if problem == "nan" else SyncError
    with pytest.raises(expected, match="NaN" if problem == "nan" else "duplicate key") as info:
        run(url, duck, [spec], log=log)
    assert time.monotonic() - started < 5.0
    assert log.retries() == [], log.lines
    engine = engine_for(url)
    try:
        assert SqlDestination(engine).transient_cause(info.value) is None
    finally:
        engine.dispose()
    assert scalar(url, "SELECT COUNT(*) FROM items WHERE name = 'changed'") == 0, "nothing was written"
