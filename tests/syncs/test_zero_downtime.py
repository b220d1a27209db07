"""Readers never see a half-written table: while syncs run back and forth between two versions of
a mart, a reader on its own connection only ever observes one version or the other, whole.

`replace` loads a shadow table and swaps it in (RENAME TABLE on MariaDB, DROP + RENAME in one
transaction on PostgreSQL); `mirror` applies its diff in one transaction.
"""

from __future__ import annotations

import threading
import time

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import apply
from activation.destinations.sql.apply import SWAP_LOCK_WAIT_SECONDS
from activation.syncs.results import SyncError
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, items_spec, run_specs

# Two versions with different sizes, key ranges and values: (first id, end id, value multiplier).
VERSIONS = {"A": (0, 100_000, 2), "B": (30_000, 120_000, 3)}
SYNCS_PER_TEST = 3  # B, A, B
QUERY = "SELECT COUNT(*), MIN(id), MAX(id), SUM(v) FROM items"


def expected(version: str) -> tuple[int, int, int, int]:
    start, stop, mult = VERSIONS[version]
    return stop - start, start, stop - 1, mult * (start + stop - 1) * (stop - start) // 2


def write_mart(duck, version: str) -> None:
    start, stop, mult = VERSIONS[version]
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE OR REPLACE TABLE items AS "
            f"SELECT i AS id, i * {mult} AS v, 'row ' || i || ' of {version}' AS label FROM range({start}, {stop}) t(i)"
        )


def make_spec(mode: str):
    return items_spec(mode, guards={"max_deletes": "100%"})


class Reader(threading.Thread):
    """Polls the table as fast as it can on its own autocommit connection, recording what it sees."""

    def __init__(self, url: str, syncing: threading.Event):
        super().__init__(daemon=True)
        self.engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
        self.syncing = syncing
        self.stop = threading.Event()
        self.observations: list[tuple] = []
        self.during_sync = 0
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self.stop.is_set():
                    during = self.syncing.is_set()
                    try:
                        row = conn.execute(sa.text(QUERY)).one()
                    except sa.exc.DBAPIError as exc:
                        self.errors.append(f"{type(exc.orig).__name__}: {exc.orig}")
                        if len(self.errors) > 20:
                            return
                        continue
                    self.observations.append(tuple(int(v) if v is not None else None for v in row))
                    self.during_sync += during and self.syncing.is_set()
        finally:
            self.engine.dispose()

    def wait_for_observations(self, n: int, timeout: float = 10.0) -> None:
        target = len(self.observations) + n
        deadline = time.monotonic() + timeout
        while len(self.observations) < target and not self.errors and self.is_alive():
            assert time.monotonic() < deadline, "the reader stalled"
            time.sleep(0.005)


@pytest.fixture(params=["mariadb", "postgres"])
def url(request, tmp_path):
    with destination_database(request.param, tmp_path) as url:
        yield url


@pytest.mark.parametrize("mode", ["replace", "mirror"])
def test_readers_see_one_whole_version_or_the_other(url, tmp_path, mode):
    duck = tmp_path / "w.duckdb"
    spec = make_spec(mode)
    write_mart(duck, "A")
    first = run_specs(url, duck, [spec])["items"]
    assert first.strategy == "bulk" and first.inserted == expected("A")[0]

    syncing = threading.Event()
    reader = Reader(url, syncing)
    reader.start()
    try:
        reader.wait_for_observations(3)
        for version in ["B", "A", "B"][:SYNCS_PER_TEST]:
            write_mart(duck, version)
            syncing.set()
            try:
                result = run_specs(url, duck, [spec])["items"]
            finally:
                syncing.clear()
            assert result.strategy == ("shadow" if mode == "replace" else "diff")
            assert result.rows_in_destination == expected(version)[0]
            reader.wait_for_observations(3)  # the reader sees this version before the next sync starts
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert not reader.errors, f"the reader got errors during the syncs: {reader.errors[:5]}"
    versions = {expected(v): v for v in VERSIONS}
    wrong = [o for o in reader.observations if o not in versions]
    assert not wrong, f"{len(wrong)} of {len(reader.observations)} observations were neither A nor B: {wrong[:5]}"
    seen = [versions[o] for o in reader.observations]
    assert set(seen) == {"A", "B"}
    assert len(seen) > 50, f"only {len(seen)} observations"
    assert reader.during_sync > 20, f"only {reader.during_sync} observations while a sync ran"
    # A, then B, A, B: each switch happened once per sync, never back and forth.
    switches = [v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v]
    assert switches == ["A", "B", "A", "B"][: SYNCS_PER_TEST + 1]


class LatencyReader(threading.Thread):
    """Polls the table and records the slowest query: how long any reader was held up."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
        self.stop = threading.Event()
        self.slowest = 0.0
        self.queries = 0

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self.stop.is_set():
                    started = time.monotonic()
                    conn.execute(sa.text(QUERY)).one()
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    self.queries += 1
                    time.sleep(0.01)
        finally:
            self.engine.dispose()


def test_a_long_transaction_on_the_table_delays_the_swap_not_other_readers(url, tmp_path):
    """An app transaction that read the table blocks RENAME/DROP; a waiting rename would queue every
    new reader behind it. The swap waits SWAP_LOCK_WAIT_SECONDS, steps back, and retries."""
    duck = tmp_path / "w.duckdb"
    spec = make_spec("replace")
    write_mart(duck, "A")
    run_specs(url, duck, [spec])
    write_mart(duck, "B")

    holder_engine = engine_for(url)
    holder = holder_engine.connect()
    holder.begin()
    holder.execute(sa.text("SELECT COUNT(*) FROM items")).one()  # holds the table's shared lock until commit
    swap_waited = threading.Event()
    log: list[str] = []

    def note(message: str) -> None:
        log.append(message)
        if "swap waited" in message:
            swap_waited.set()

    reader = LatencyReader(url)
    reader.start()
    result: dict = {}
    sync = threading.Thread(target=lambda: result.update(run_specs(url, duck, [spec], log=note)), daemon=True)
    sync.start()
    try:
        assert swap_waited.wait(60), f"the swap never waited for the open transaction: {log}"
        time.sleep(1.5)  # a second try fails too; readers keep going meanwhile
        assert sync.is_alive()
        holder.commit()
        sync.join(60)
    finally:
        holder.close()
        holder_engine.dispose()
        reader.stop.set()
        reader.join(30)
    assert result["items"].strategy == "shadow"
    assert result["items"].rows_in_destination == expected("B")[0]
    assert scalar_query(url) == expected("B")
    # Readers waited at most one lock wait, never the whole time the transaction stayed open.
    assert reader.queries > 20
    assert reader.slowest < SWAP_LOCK_WAIT_SECONDS + 0.9, f"a reader waited {reader.slowest:.2f}s"


def test_a_swap_that_never_gets_the_lock_changes_nothing(url, tmp_path, monkeypatch):
    monkeypatch.setattr(apply, "SWAP_ATTEMPTS", 2)
    duck = tmp_path / "w.duckdb"
    spec = make_spec("replace")
    write_mart(duck, "A")
    run_specs(url, duck, [spec])
    write_mart(duck, "B")
    holder_engine = engine_for(url)
    try:
        with holder_engine.connect() as holder, holder.begin():
            holder.execute(sa.text("SELECT COUNT(*) FROM items")).one()
            with pytest.raises(SyncError, match=r"items: replace could not swap in the new table.*Nothing changed"):
                run_specs(url, duck, [spec])
    finally:
        holder_engine.dispose()
    assert scalar_query(url) == expected("A")
    engine = engine_for(url)
    try:
        assert [t for t in sa.inspect(engine).get_table_names() if "__activation" in t] == []
    finally:
        engine.dispose()
    again = run_specs(url, duck, [spec])["items"]  # the next run converges
    assert again.rows_in_destination == expected("B")[0] and scalar_query(url) == expected("B")


def scalar_query(url: str) -> tuple:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return tuple(int(v) for v in conn.execute(sa.text(QUERY)).one())
    finally:
        engine.dispose()
