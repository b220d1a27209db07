"""Loads on several connections (sql/parallel_load.py) keep every promise of a single-stream load,
against real MariaDB and PostgreSQL:
- a loader's connection killed mid-load (KILL / pg_terminate_backend from another connection)
  leaves the destination and the sync state as they were;
- parents load before children, the children's foreign keys are checked as they load, an orphan
  in a late chunk rolls back both tables, and the children's keys point at the parents' real name;
- a reader during the load sees no table (first sync) or the old table, whole (replace);
- collation twins under a case-insensitive key are still refused, or set aside, before the load;
- an empty app table is swapped for a parallel load only under replace (its trigger stays otherwise).
Chunks are made small so that each load spans many of them on both connections.
"""

from __future__ import annotations

import threading
import time

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination, destination, parallel_load
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute, recorded_syncs, scalar

ROWS = 20_000
# version -> (first id, end id, multiplier of v)
VERSIONS = {"A": (0, ROWS, 2), "B": (ROWS // 4, ROWS + ROWS // 8, 3)}


@pytest.fixture(params=["mariadb", "postgres"])
def url(request, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel_load, "CHUNK_BYTES", 32 * 1024)  # dozens of chunks per load
    with destination_database(request.param, tmp_path) as url:
        yield url


def config(syncs: dict) -> list:
    body = {"destination": "app", "guards": {"max_deletes": "100%", "max_updates": "100%"}}
    parsed = SyncConfig.model_validate(
        {"destinations": {"app": {"url_env": "X"}}, "syncs": {n: body | s for n, s in syncs.items()}}
    )
    return parsed.load_order()


def items(mode: str = "mirror", **options) -> list:
    # Batches of 500 rows: a chunk file closes at the first batch past CHUNK_BYTES
    body = {"source": "items", "table": "items", "primary_key": "id", "mode": mode, "batch_size": 500}
    return config({"items": body | options})


def sync(url, duck, specs, lines=None):
    """Sync on 2 loader connections; log lines go to `lines` (a list, or a function)."""
    engine = engine_for(url)
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
            results = SqlDestination(engine, load_streams=2).sync(
                planner,
                specs,
                {s.name: MartRelation("main", s.source) for s in specs},
                log=lines.append if isinstance(lines, list) else lines or (lambda _: None),
            )
            return {r.table: r for r in results}
    finally:
        engine.dispose()


def write_items(duck, version: str) -> None:
    start, stop, mult = VERSIONS[version]
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE OR REPLACE TABLE items AS SELECT i AS id, i * ? AS v, 'row ' || i || ' of ' || ? AS label "
            "FROM range(?, ?) t(i)",
            [mult, version, start, stop],
        )


def expected(version: str) -> tuple[int, int]:
    start, stop, mult = VERSIONS[version]
    return stop - start, mult * (start + stop - 1) * (stop - start) // 2


def seen(url, table: str = "items") -> tuple[int, int] | None:
    """(rows, sum of v), or None when the table does not exist."""
    engine = engine_for(url)
    try:
        if not sa.inspect(engine).has_table(table):
            return None
        with engine.connect() as conn:
            n, total = conn.execute(sa.text(f"SELECT COUNT(*), SUM(v) FROM {table}")).one()
            return int(n), int(total or 0)
    finally:
        engine.dispose()


def tables(url) -> list[str]:
    engine = engine_for(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def parallel(lines: list[str], table: str) -> bool:
    """Loaded on 2 connections, in several chunks (a progress line before the last)."""
    loads = [line for line in lines if line.startswith(f"{table}: loaded into ") and " on 2 connections " in line]
    return len(loads) > 1


class Killer(threading.Thread):
    """Kills, from its own connection, the first connection of this database it finds in the middle
    of a load into `table` (never one that is done: the kill would change nothing)."""

    def __init__(self, url: str, table: str):
        super().__init__(daemon=True)
        self.engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
        self.table, self.stop, self.killed, self.done = table, threading.Event(), [], threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            mysql = conn.dialect.name in ("mysql", "mariadb")
            find = (
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE :q AND DB = DATABASE()"
                if mysql
                else "SELECT pid FROM pg_stat_activity WHERE query LIKE :q AND state = 'active' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            pattern = f"{'LOAD DATA' if mysql else 'COPY'}%{self.table}%"
            while not self.stop.is_set() and not self.killed:
                kill = "KILL CONNECTION {}" if mysql else "SELECT pg_terminate_backend({})"
                for (thread,) in conn.execute(sa.text(find), {"q": pattern}).all()[:1]:
                    conn.execute(sa.text(kill.format(int(thread))))
                    self.killed.append(thread)
                    self.done.set()
                time.sleep(0.002)
        self.engine.dispose()

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(10)

    def log(self, line: str) -> None:
        """The first chunk's loader waits (in its progress line) until the other is killed mid-load."""
        if " on 2 connections " in line:
            self.done.wait(10)


def test_a_killed_loader_leaves_the_destination_and_the_state_as_they_were(url, tmp_path, monkeypatch):
    monkeypatch.setattr(destination, "RETRY_ATTEMPTS", 1)  # a lost connection is retried otherwise
    duck = tmp_path / "w.duckdb"
    write_items(duck, "A")
    # A first sync: the table is loaded under a hidden name.
    with Killer(url, "items__activation_new") as killer, pytest.raises(SyncError):
        sync(url, duck, items("replace"), killer.log)
    assert killer.killed, "no loader was killed"
    assert tables(url) == [] and recorded_syncs(duck) == []  # no table was ever visible
    lines: list[str] = []
    first = sync(url, duck, items("replace"), lines)["items"]
    assert first.reason == "first sync into a new table" and parallel(lines, "items")
    assert seen(url) == expected("A")

    # Replace's shadow load.
    write_items(duck, "B")
    with Killer(url, "items__activation_new") as killer, pytest.raises(SyncError):
        sync(url, duck, items("replace"), killer.log)
    assert killer.killed, "no loader was killed"
    assert tables(url) == ["items"] and seen(url) == expected("A")  # the old table, whole
    lines = []
    replaced = sync(url, duck, items("replace"), lines)["items"]
    assert replaced.reason == "incremental" and parallel(lines, "items")  # the state had not moved
    assert (replaced.inserted, replaced.updated, replaced.deleted) == (ROWS // 8, ROWS - ROWS // 4, ROWS // 4)
    assert seen(url) == expected("B") and tables(url) == ["items"]


def family(duck, orphan: bool) -> list:
    with duckdb.connect(str(duck)) as con:
        con.execute("CREATE OR REPLACE TABLE parents AS SELECT i AS id, i AS v FROM range(10000) t(i)")
        con.execute(
            "CREATE OR REPLACE TABLE children AS SELECT i AS id, i % 10000 AS parent_id, i AS v FROM range(?) t(i)",
            [ROWS],
        )
        if orphan:  # in the last chunk of the children
            con.execute(f"UPDATE children SET parent_id = 999999 WHERE id = {ROWS - 7}")
    return config(
        {
            "parents": {"source": "parents", "table": "parents", "primary_key": "id", "batch_size": 500},
            "children": {
                "source": "children",
                "table": "children",
                "primary_key": "id",
                "batch_size": 500,
                "foreign_keys": {"parent_id": "parents.id"},
            },
        }
    )


def test_parents_load_first_and_an_orphan_in_a_late_chunk_leaves_neither_table(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    with pytest.raises(SyncError, match="foreign key") as refused:
        sync(url, duck, family(duck, orphan=True))
    message = str(refused.value)
    assert f"id={ROWS - 7}" in message and "parent_id=999999" in message, message
    assert "__activation" not in message, message  # the tables by their own names
    assert tables(url) == [] and recorded_syncs(duck) == []  # both tables become visible together, or neither

    lines: list[str] = []
    results = sync(url, duck, family(duck, orphan=False), lines)
    assert parallel(lines, "parents") and parallel(lines, "children")
    first_child = next(i for i, line in enumerate(lines) if line.startswith("children: loaded into"))
    assert all(not line.startswith("parents: loaded into") for line in lines[first_child:])  # parents first
    assert results["children"].inserted == ROWS and seen(url, "children")[0] == ROWS
    engine = engine_for(url)
    try:
        [fk] = sa.inspect(engine).get_foreign_keys("children")
    finally:
        engine.dispose()
    assert fk["referred_table"] == "parents"  # the key followed the rename
    with pytest.raises(sa.exc.IntegrityError):  # and is enforced
        execute(url, "INSERT INTO children (id, parent_id, v) VALUES (-1, 999999, 0)")


class Reader(threading.Thread):
    """Polls the table on its own autocommit connection; records (loading, what it saw)."""

    def __init__(self, url: str, loading: threading.Event):
        super().__init__(daemon=True)
        self.engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
        self.loading, self.stop, self.seen = loading, threading.Event(), []

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                during = self.loading.is_set()
                try:
                    n, total = conn.execute(sa.text("SELECT COUNT(*), SUM(v) FROM items")).one()
                    self.seen.append((during, (int(n), int(total or 0))))
                except sa.exc.ProgrammingError:  # no such table
                    self.seen.append((during, None))
        self.engine.dispose()


def test_a_reader_sees_no_table_or_the_old_one_whole_while_it_loads(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    write_items(duck, "A")
    for version, before in (("A", None), ("B", expected("A"))):
        write_items(duck, version)
        loading = threading.Event()
        lines: list[str] = []

        def log(line: str, lines=lines, loading=loading) -> None:
            lines.append(line)
            if " loaded into " in line and " on 2 connections " in line:
                loading.set()

        reader = Reader(url, loading)
        reader.start()
        try:
            sync(url, duck, items("replace"), log)
        finally:
            reader.stop.set()
            reader.join(10)
        assert parallel(lines, "items")
        assert {s for _, s in reader.seen} <= {before, expected(version)}, "a reader saw a half-loaded table"
        assert before in {s for during, s in reader.seen if during}, "no reading happened during the load"
        assert seen(url) == expected(version)


def test_collation_twins_are_found_before_a_parallel_load(url, tmp_path):
    """The app's key compares without case: `TWIN` (first chunk) and `twin` (last chunk) are one key."""
    key = "VARCHAR(40) COLLATE utf8mb4_general_ci" if url.startswith("mysql") else "citext"
    if key == "citext":
        execute(url, "CREATE EXTENSION IF NOT EXISTS citext")
    execute(url, f"CREATE TABLE items (id {key} PRIMARY KEY, v BIGINT, label VARCHAR(100))")
    duck = tmp_path / "w.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE TABLE items AS SELECT 'k' || lpad(CAST(i AS VARCHAR), 6, '0') AS id, i AS v, 'row' AS label "
            f"FROM range({ROWS}) t(i) UNION ALL SELECT 'TWIN', -1, 'upper' UNION ALL SELECT 'twin', -2, 'lower'"
        )
    with pytest.raises(SyncError, match=r"(?s)'TWIN' = 'twin'.*Nothing was written"):
        sync(url, duck, items("replace"))
    assert tables(url) == ["items"] and seen(url) == (0, 0) and recorded_syncs(duck) == []

    lines: list[str] = []
    result = sync(url, duck, items("replace", max_rejects=2), lines)["items"]
    assert parallel(lines, "items")  # into a shadow table of the empty app table, swapped in
    assert (result.inserted, result.rejected) == (ROWS, 2)
    assert seen(url) == (ROWS, ROWS * (ROWS - 1) // 2)
    engine = engine_for(url)
    try:
        with engine.connect() as conn:  # still the app's comparison
            assert conn.execute(sa.text("SELECT COUNT(*) FROM items WHERE id = 'K000001'")).scalar_one() == 1
    finally:
        engine.dispose()


def test_an_empty_app_table_outside_replace_loads_in_place_keeping_its_trigger(url, tmp_path):
    """A swap would take the app's triggers (and any row it writes meanwhile): only replace swaps."""
    execute(url, "CREATE TABLE items (id BIGINT PRIMARY KEY, v BIGINT, label VARCHAR(100))")
    if url.startswith("mysql"):
        execute(url, "CREATE TRIGGER app_audit BEFORE INSERT ON items FOR EACH ROW SET NEW.label = NEW.label")
        triggers = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE()"
    else:
        execute(
            url,
            "CREATE FUNCTION app_audit() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER app_audit BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION app_audit()",
        )
        triggers = "SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'app_audit'"
    duck = tmp_path / "w.duckdb"
    write_items(duck, "A")
    lines: list[str] = []
    result = sync(url, duck, items("mirror"), lines)["items"]
    assert result.strategy == "bulk" and not parallel(lines, "items")
    assert seen(url) == expected("A") and scalar(url, triggers) == 1
