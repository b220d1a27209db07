"""Two runs of the same sync at once (two deployments, a manual run beside a scheduled one), each
with its own warehouse copy and state: one writer per destination table, the other fails without
writing or waits for the first."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import sqlalchemy as sa

from activation.destinations.sql import destination, mysql_load
from activation.syncs.results import SyncError
from tests.databases import mariadb_database
from tests.reliability.support import Log, assert_same_rows, make_mart, make_spec, progress, run
from tests.syncs.test_load import engine_for

ROWS = 20_000


@pytest.fixture(params=["mariadb", "postgres"])
def url(request):
    return request.getfixturevalue(f"{request.param}_url")


class HeldRun(threading.Thread):
    """Run A: stops inside its run (in the data transaction, lock held) at its first progress line
    until `release` is set."""

    def __init__(self, url, duck, spec, events: list):
        super().__init__(daemon=True)
        self.url, self.duck, self.spec, self.events = url, duck, spec, events
        self.held, self.release = threading.Event(), threading.Event()
        self.log = Log(on_line=self._on_line)
        self.result = None
        self.error: BaseException | None = None

    def _on_line(self, line: str) -> None:
        self.events.append(("A", line))
        if progress(line) and not self.held.is_set():
            self.held.set()
            assert self.release.wait(60), "never released"

    def run(self) -> None:
        try:
            self.result = run(self.url, self.duck, [self.spec], log=self.log)["items"]
            self.events.append(("A", "finished"))
        except BaseException as exc:
            self.error = exc
        finally:
            self.held.set()


def table_exists(url: str, table: str) -> bool:
    engine = engine_for(url)
    try:
        return sa.inspect(engine).has_table(table)
    finally:
        engine.dispose()


def two_warehouses(tmp_path):
    a, b = tmp_path / "a" / "w.duckdb", tmp_path / "b" / "w.duckdb"
    a.parent.mkdir()
    b.parent.mkdir()
    make_mart(a, ROWS)
    shutil.copy(a, b)
    return a, b


@pytest.fixture(autouse=True)
def several_progress_lines(monkeypatch):
    monkeypatch.setattr(mysql_load, "GROUP_BYTES", 64 * 1024)


def test_second_run_fails_without_writing_while_the_first_holds_the_table(url, tmp_path, monkeypatch):
    duck_a, duck_b = two_warehouses(tmp_path)
    spec = make_spec("mirror", batch_size=1_000)
    events: list = []
    a = HeldRun(url, duck_a, spec, events)
    a.start()
    try:
        assert a.held.wait(60) and a.error is None, a.error
        monkeypatch.setenv(destination.LOCK_WAIT_ENV, "1")
        # A created the table under a hidden name (its rows not in yet): no reader sees it.
        assert not table_exists(url, "items")
        log_b = Log()
        started = time.monotonic()
        with pytest.raises(SyncError, match="another sync is writing items in this destination"):
            run(url, duck_b, [spec], log=log_b)
        assert time.monotonic() - started < 10
        assert log_b.lines == [], "B must stop before doing anything"
        assert not table_exists(url, "items")
        assert a.is_alive(), "A is still held while B gave up"
    finally:
        a.release.set()
        a.join(60)
    assert a.error is None, a.error
    assert (a.result.inserted, a.result.updated, a.result.deleted) == (ROWS, 0, 0)
    assert_same_rows(url, duck_a)


def test_second_run_waits_for_the_first_then_finds_nothing_to_do(url, tmp_path, monkeypatch):
    duck_a, duck_b = two_warehouses(tmp_path)
    spec = make_spec("mirror", batch_size=1_000)
    events: list = []
    a = HeldRun(url, duck_a, spec, events)
    a.start()
    b_result: list = []
    b_error: list = []

    def run_b() -> None:
        try:
            b_result.append(run(url, duck_b, [spec], log=lambda line: events.append(("B", line)))["items"])
            events.append(("B", "finished"))
        except BaseException as exc:
            b_error.append(exc)

    b = threading.Thread(target=run_b, daemon=True)
    try:
        assert a.held.wait(60) and a.error is None, a.error
        monkeypatch.setenv(destination.LOCK_WAIT_ENV, "30")
        b.start()
        time.sleep(1.5)
        assert b.is_alive() and not b_error, b_error
        assert not [e for e in events if e[0] == "B"], "B must wait before doing anything"
        assert not table_exists(url, "items")
    finally:
        a.release.set()
        a.join(60)
        b.join(60)
    assert a.error is None and not b_error, (a.error, b_error)
    # Never both writing: every line B logged comes after A finished.
    a_done = events.index(("A", "finished"))
    first_b = next(i for i, e in enumerate(events) if e[0] == "B")
    assert first_b > a_done, events
    (b_res,) = b_result
    assert b_res.reason == "first sync: no state yet"  # B's own state: it compared every row
    assert (b_res.inserted, b_res.updated, b_res.deleted) == (0, 0, 0)
    assert b_res.unchanged == ROWS and b_res.rows_in_destination == ROWS
    assert_same_rows(url, duck_a)


def test_the_same_table_in_another_database_of_the_server_is_not_locked(tmp_path, monkeypatch):
    """MySQL's GET_LOCK names are server-wide: a sync into app_a.items must not wait for (or be
    refused by) a sync holding app_b.items on the same server."""
    duck_a, duck_b = two_warehouses(tmp_path)
    spec = make_spec("mirror", batch_size=1_000)
    monkeypatch.setenv(destination.LOCK_WAIT_ENV, "1")
    with mariadb_database() as held_url, mariadb_database() as other_url:
        holder = sa.create_engine(held_url).connect()
        try:
            name = destination.lock_name(sa.make_url(held_url).database, "items")
            assert holder.execute(sa.text("SELECT GET_LOCK(:n, 5)"), {"n": name}).scalar() == 1
            assert run(other_url, duck_a, [spec], log=Log())["items"].inserted == ROWS
            with pytest.raises(SyncError, match="another sync is writing items in this destination"):
                run(held_url, duck_b, [spec], log=Log())
        finally:
            holder.close()
