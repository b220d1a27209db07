"""DuckDB's memory is bounded on every warehouse connection the code opens (its buffer manager
otherwise grows with the data up to 80% of RAM), and a sync still succeeds when the bound makes
DuckDB spill to disk."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination, normalize_url
from activation.orchestration.checks.post_write import PostWriteChecks
from activation.orchestration.resources import DuckDBWarehouse, warehouse_resource
from activation.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, Settings
from activation.syncs.model import MartRelation
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from activation.warehouses.duckdb_memory import scratch_duckdb
from tests.databases import mariadb_database

ENV = ("ACTIVATION_DUCKDB_MEMORY_LIMIT", "ACTIVATION_DUCKDB_TEMP_DIRECTORY", "ACTIVATION_DUCKDB_THREADS")


def setting(con: duckdb.DuckDBPyConnection, name: str):
    return con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]


def as_duckdb_shows(limit: str) -> str:
    """A size as DuckDB renders the setting (e.g. 128MB -> '122.0 MiB')."""
    with duckdb.connect() as con:
        con.execute(f"SET memory_limit = '{limit}'")
        return setting(con, "memory_limit")


@pytest.fixture
def warehouse_file(tmp_path, monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(path))
    return path


def test_every_warehouse_connection_is_bounded_by_default_and_by_the_environment(warehouse_file, tmp_path, monkeypatch):
    with duckdb.connect(str(warehouse_file), read_only=True) as raw:
        unbounded = setting(raw, "memory_limit")
    # The CLI (plan, impact) builds DuckDBWarehouse(path=...); Dagster gets warehouse_resource(settings).
    with DuckDBWarehouse(path=str(warehouse_file)).connect() as con:
        assert setting(con, "memory_limit") == as_duckdb_shows(DEFAULT_DUCKDB_MEMORY_LIMIT) != unbounded
    with scratch_duckdb() as con:  # the checksum of a BigQuery mart is computed in one of these
        assert setting(con, "memory_limit") == as_duckdb_shows(DEFAULT_DUCKDB_MEMORY_LIMIT)
        assert setting(con, "temp_directory") != ".tmp"  # not the working directory

    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("ACTIVATION_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    monkeypatch.setenv("ACTIVATION_DUCKDB_THREADS", "1")
    for warehouse in (warehouse_resource(Settings.from_env()), DuckDBWarehouse(path=str(warehouse_file))):
        with warehouse.connect() as con:
            assert setting(con, "memory_limit") == as_duckdb_shows("300MB")
            assert setting(con, "temp_directory") == str(tmp_path / "spill")
            assert setting(con, "threads") == 1
    with scratch_duckdb() as con:
        assert setting(con, "memory_limit") == as_duckdb_shows("300MB")

    # Threads follow the limit (DuckDB's sort fails below ~48 MB a thread instead of spilling).
    monkeypatch.delenv("ACTIVATION_DUCKDB_THREADS")
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "60MB")
    with DuckDBWarehouse(path=str(warehouse_file)).connect() as con:
        assert setting(con, "threads") == 1

    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="ACTIVATION_DUCKDB_MEMORY_LIMIT"):
        with DuckDBWarehouse(path=str(warehouse_file)).connect():
            pass


def test_a_sync_spills_to_disk_under_a_small_limit_and_still_succeeds(warehouse_file, tmp_path, monkeypatch):
    """32MB and one thread for a mart of ~30 MB: the plan, the key-ordered stream and the
    checksum read-back all go through DuckDB's spill folder, and the destination equals the mart."""
    spill = tmp_path / "spill"
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "32MB")
    monkeypatch.setenv("ACTIVATION_DUCKDB_TEMP_DIRECTORY", str(spill))
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute(
            "CREATE TABLE items AS SELECT printf('K%07d', i) AS id, repeat('text ', 20) || i AS body, "
            "i * 1.5 AS amount, DATE '2026-01-01' + CAST(i % 365 AS INTEGER) AS day "
            "FROM range(200000) t(i) ORDER BY hash(i)"  # not in key order: the stream must sort
        )
    spec = SyncConfig.model_validate(
        {
            "destinations": {"app": {"url_env": "UNUSED_URL"}},
            "syncs": {"items": {"source": "items", "destination": "app", "table": "items", "primary_key": "id"}},
        }
    ).syncs["items"]
    spilled: list[int] = []
    with mariadb_database() as url:
        engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
        with DuckDBWarehouse(path=str(warehouse_file)).connect() as con:
            assert setting(con, "threads") == 1
            planner = DuckDB(con, str(tmp_path / "state.duckdb"), url)

            def log(_message: str) -> None:  # called between loads, while the sorted stream is read
                spilled.append(len(list(spill.glob("*.tmp"))) if spill.is_dir() else 0)

            [result] = SqlDestination(engine).sync(planner, [spec], {"items": MartRelation("main", "items")}, log=log)
            outcome = PostWriteChecks(planner, engine, SqlDestination(engine).capabilities).checksum(
                planner.describe(spec, MartRelation("main", "items"))
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), sum(amount) FROM items")).one()
        engine.dispose()
    assert max(spilled) > 0, "DuckDB never wrote to its spill folder: the test does not test spilling"
    assert result.inserted == 200_000 and rows[0] == 200_000
    assert float(rows[1]) == pytest.approx(1.5 * sum(range(200_000)))
    assert outcome.passed, outcome.summary
    assert outcome.metadata["rows_compared_destination"] == 200_000


def test_long_texts_beyond_what_duckdb_can_sort_in_its_cap_still_sync(warehouse_file, tmp_path, monkeypatch, caplog):
    """DuckDB cannot spill a sort of long text values: a bare query fails with a message naming the
    setting, and a sync sends such rows in the mart's order instead (every row, exactly)."""
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "32MB")
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute(
            "CREATE TABLE notes AS SELECT printf('N%06d', i) AS id, repeat('x', 1000) || i AS body "
            "FROM range(60000) t(i) ORDER BY hash(i)"
        )
    with pytest.raises(duckdb.OutOfMemoryException, match="raise ACTIVATION_DUCKDB_MEMORY_LIMIT") as raised:
        with DuckDBWarehouse(path=str(warehouse_file)).connect() as con:
            con.sql("SELECT * FROM notes ORDER BY id DESC").to_arrow_reader(10_000)
    assert "32MB" in str(raised.value)

    spec = SyncConfig.model_validate(
        {
            "destinations": {"app": {"url_env": "UNUSED_URL"}},
            "syncs": {"notes": {"source": "notes", "destination": "app", "table": "notes", "primary_key": "id"}},
        }
    ).syncs["notes"]
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = sa.create_engine(url)
    with DuckDBWarehouse(path=str(warehouse_file)).connect() as con:
        planner = DuckDB(con, str(tmp_path / "state.duckdb"), url)
        [result] = SqlDestination(engine).sync(
            planner, [spec], {"notes": MartRelation("main", "notes")}, log=lambda _m: None
        )
    with engine.connect() as conn:
        count, total = conn.execute(sa.text("SELECT count(*), sum(length(body)) FROM notes")).one()
    engine.dispose()
    assert result.inserted == count == 60_000
    assert total == sum(1000 + len(str(i)) for i in range(60_000))
    assert "sending them in the mart's order" in caplog.text
