"""Change detection, every mode, guards, key identity and foreign keys, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa
from pymysql.constants import CLIENT

from activation.destinations.sql import SqlDestination, normalize_url
from activation.syncs.model import MartRelation
from activation.syncs.results import GuardTripped, SyncError
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from tests.compare import destination_rows, sorted_mart_rows
from tests.databases import mariadb_database
from tests.syncs.test_load import engine_for, execute, items_spec, run_specs

COLS = ["id", "name", "score"]


def mart(
    path, sql: str = "SELECT printf('K%03d', i) AS id, 'name ' || i AS name, i * 1.5 AS score FROM range(100) t(i)"
):
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE OR REPLACE TABLE items AS {sql}")


def edit(path, *statements: str):
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)


def spec(**overrides):
    return items_spec(**overrides)


def sync(url, duck, **overrides):
    full = overrides.pop("full_resync", False)
    return run_specs(url, duck, [spec(**overrides)], full_resync=full)["items"]


def counts(r):
    return (r.inserted, r.updated, r.deleted)


def dest(url, cols=COLS):
    return destination_rows(url, "items", cols, ["id"])


def expected(duck, cols=COLS):
    return sorted_mart_rows(duck, "items", cols, ["id"])


@pytest.fixture
def duck(tmp_path):
    path = tmp_path / "w.duckdb"
    mart(path)
    return path


def test_only_changed_rows_leave_the_warehouse(destination_url, duck):
    first = sync(destination_url, duck)
    assert counts(first) == (100, 0, 0) and first.rows_sent == 100
    edit(
        duck,
        "UPDATE items SET name = 'renamed' WHERE id IN ('K001', 'K002')",
        "DELETE FROM items WHERE id = 'K003'",
        "INSERT INTO items VALUES ('K900', 'new', 0.5)",
    )
    second = sync(destination_url, duck)
    assert second.reason == "incremental"
    assert second.rows_sent == 3, "two changed rows and one new row, nothing else"
    assert counts(second) == (1, 2, 1)
    assert dest(destination_url) == expected(duck)
    third = sync(destination_url, duck)
    assert (third.rows_sent, counts(third)) == (0, (0, 0, 0))


@pytest.mark.parametrize(
    "statement, key",
    [
        ("INSERT INTO items SELECT * FROM items WHERE id = 'K005'", "K005"),  # an exact copy: same hash as the state
        ("INSERT INTO items VALUES ('K900', 'a', 1), ('K900', 'b', 2)", "K900"),  # a new key, twice
    ],
    ids=["copy-of-an-unchanged-row", "new-key-twice"],
)
def test_incremental_run_refuses_a_duplicated_key_the_diff_alone_would_not_see(destination_url, duck, statement, key):
    sync(destination_url, duck)
    edit(duck, statement, "UPDATE items SET name = 'changed' WHERE id = 'K001'")
    before = dest(destination_url)
    with pytest.raises(SyncError, match=rf"duplicate key \('id',\) in the mart \('{key}' x2\)"):
        sync(destination_url, duck)
    assert dest(destination_url) == before


def test_a_change_the_destination_already_holds_is_counted_as_unchanged(destination_url, duck):
    """A run that crashed after the destination committed re-sends its changes: the server, not the
    plan, says what changed."""
    sync(destination_url, duck)
    execute(destination_url, "UPDATE items SET name = 'renamed' WHERE id = 'K007'")
    edit(duck, "UPDATE items SET name = 'renamed' WHERE id IN ('K007', 'K008')")
    result = sync(destination_url, duck)
    assert result.rows_sent == 2
    assert counts(result) == (0, 1, 0) and result.unchanged == 99
    assert dest(destination_url) == expected(duck)


def test_full_resync_repairs_rows_edited_in_the_destination(destination_url, duck):
    sync(destination_url, duck)
    execute(destination_url, "UPDATE items SET name = 'edited by hand' WHERE id = 'K010'")
    assert counts(sync(destination_url, duck)) == (0, 0, 0), "incremental trusts the state"
    repaired = sync(destination_url, duck, full_resync=True)
    assert counts(repaired) == (0, 1, 0)
    assert dest(destination_url) == expected(duck)


def test_rows_deleted_by_hand_are_noticed_and_restored(destination_url, duck):
    sync(destination_url, duck)
    execute(destination_url, "DELETE FROM items WHERE id < 'K010'")
    result = sync(destination_url, duck)
    assert "comparing all" in result.reason
    assert counts(result) == (10, 0, 0)
    assert dest(destination_url) == expected(duck)


def test_insert_and_update_modes(destination_url, duck):
    sync(destination_url, duck, mode="insert")
    edit(duck, "UPDATE items SET name = 'changed' WHERE id = 'K001'", "INSERT INTO items VALUES ('K900', 'new', 1)")
    result = sync(destination_url, duck, mode="insert")
    assert counts(result) == (1, 0, 0)
    assert ("K001", "name 1", 1.5) in dest(destination_url), "insert never touches existing rows"

    edit(duck, "INSERT INTO items VALUES ('K901', 'newer', 2)")
    result = sync(destination_url, duck, mode="update")
    assert counts(result) == (0, 1, 0)
    assert "K901" not in {r[0] for r in dest(destination_url)}, "update never inserts"
    assert ("K001", "changed", 1.5) in dest(destination_url)


@pytest.mark.parametrize("mode", ["replace", "truncate_insert"])
def test_replace_and_truncate_insert_end_equal_to_the_mart(destination_url, duck, mode):
    sync(destination_url, duck, mode=mode)
    edit(duck, "DELETE FROM items WHERE id > 'K089'", "UPDATE items SET score = -1 WHERE id = 'K005'")
    result = sync(destination_url, duck, mode=mode)
    assert result.strategy == ("shadow" if mode == "replace" else "truncate")
    assert dest(destination_url) == expected(duck)
    if mode == "replace":
        assert counts(result) == (0, 1, 10)
        assert counts(sync(destination_url, duck, mode=mode)) == (0, 0, 0)
        assert sync(destination_url, duck, mode=mode).strategy == "unchanged"
    else:
        assert counts(result) == (90, 0, 100)


def test_max_deletes_guard_stops_before_writing_and_reports_the_plan(destination_url, duck):
    sync(destination_url, duck)
    edit(duck, "DELETE FROM items WHERE id >= 'K040'", "UPDATE items SET name = 'x' WHERE id = 'K001'")
    before = dest(destination_url)
    with pytest.raises(GuardTripped, match=r"would delete 60 of 100 rows, over max_deletes 50%") as err:
        sync(destination_url, duck)
    assert err.value.plans["items"] == {"insert": 0, "update": 1, "delete": 60}
    assert dest(destination_url) == before
    result = sync(destination_url, duck, guards={"max_deletes": 60})
    assert counts(result) == (0, 1, 60), "the state did not advance while the guard held the sync"


def test_empty_mart_never_wipes_a_table(destination_url, duck):
    sync(destination_url, duck, mode="replace")
    edit(duck, "DELETE FROM items")
    with pytest.raises(GuardTripped, match="mart items is empty and would wipe 100 rows"):
        sync(destination_url, duck, mode="replace", guards={"max_deletes": "100%"})
    assert len(dest(destination_url)) == 100


def test_max_updates_guard(destination_url, duck):
    sync(destination_url, duck)
    edit(duck, "UPDATE items SET score = score + 1")
    with pytest.raises(GuardTripped, match=r"would update 100 of 100 rows, over max_updates 20%"):
        sync(destination_url, duck, guards={"max_updates": "20%"})


def test_auto_increment_key_is_refused(destination_url, duck):
    ddl = {
        "mysql": "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), score DOUBLE)",
        "postgresql": "CREATE TABLE items (id SERIAL PRIMARY KEY, name VARCHAR(50), score DOUBLE PRECISION)",
        "sqlite": "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(50), score REAL)",
    }
    engine = engine_for(destination_url)
    dialect = "mysql" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name
    engine.dispose()
    execute(destination_url, ddl[dialect])
    with pytest.raises(SyncError, match=r"items\.id is AUTO_INCREMENT in the destination"):
        sync(destination_url, duck)


def test_soft_delete_stamps_and_revives(destination_url, duck):
    sync(destination_url, duck, delete={"soft": "deleted_at"})
    edit(duck, "DELETE FROM items WHERE id IN ('K001', 'K002')")
    result = sync(destination_url, duck, delete={"soft": "deleted_at"})
    assert counts(result) == (0, 0, 2) and result.rows_in_destination == 100
    rows = {r[0]: r[1] for r in dest(destination_url, ["id", "deleted_at"])}
    assert rows["K001"] is not None and rows["K003"] is None
    edit(duck, "INSERT INTO items VALUES ('K001', 'back', 9)")
    assert counts(sync(destination_url, duck, delete={"soft": "deleted_at"})) == (0, 1, 0)
    assert {r[0]: r[1] for r in dest(destination_url, ["id", "deleted_at"])}["K001"] is None


def test_scope_never_touches_the_apps_own_rows(destination_url, duck):
    mart(duck, "SELECT printf('K%03d', i) AS id, 'sf' AS origin, i AS score FROM range(10) t(i)")
    execute(
        destination_url,
        "CREATE TABLE items (id VARCHAR(20) PRIMARY KEY, origin VARCHAR(10), score BIGINT)",
        "INSERT INTO items VALUES ('APP1', 'app', 1), ('APP2', 'app', 2)",
    )
    sync(destination_url, duck, scope={"origin": "sf"})
    edit(duck, "DELETE FROM items WHERE id < 'K005'")
    result = sync(destination_url, duck, scope={"origin": "sf"})
    assert result.deleted == 5
    assert [r[0] for r in dest(destination_url, ["id", "origin"])] == [
        "APP1",
        "APP2",
        "K005",
        "K006",
        "K007",
        "K008",
        "K009",
    ]
    edit(duck, "UPDATE items SET origin = 'other' WHERE id = 'K005'")
    with pytest.raises(SyncError, match=r"1 mart row\(s\) fall outside the sync's scope"):
        sync(destination_url, duck, scope={"origin": "sf"})


def test_foreign_keys_read_from_the_destination_order_deletes_children_first(destination_url, tmp_path):
    """The app's own FK (not declared in the sync config) still orders the work."""
    duck = tmp_path / "w.duckdb"
    edit(
        duck,
        "CREATE TABLE parents AS SELECT printf('P%02d', i) AS id, 'p' || i AS name FROM range(5) t(i)",
        "CREATE TABLE kids AS SELECT printf('C%02d', i) AS id, printf('P%02d', i % 5) AS parent_id FROM range(20) t(i)",
    )
    execute(
        destination_url,
        "CREATE TABLE parents (id VARCHAR(10) PRIMARY KEY, name VARCHAR(20))",
        "CREATE TABLE kids (id VARCHAR(10) PRIMARY KEY, parent_id VARCHAR(10) REFERENCES parents (id))",
    )
    config = SyncConfig.model_validate(
        {
            "destinations": {"app": {"url_env": "X"}},
            "syncs": {
                "a_kids": {
                    "source": "kids",
                    "destination": "app",
                    "table": "kids",
                    "primary_key": "id",
                    "mode": "mirror",
                },
                "b_parents": {
                    "source": "parents",
                    "destination": "app",
                    "table": "parents",
                    "primary_key": "id",
                    "mode": "replace",
                    "guards": {"max_deletes": "100%"},
                },
            },
        }
    )
    specs = config.load_order()
    assert [s.table for s in specs] == ["kids", "parents"], "config alone does not know the order"
    results = run_specs(destination_url, duck, specs)
    assert results["parents"].inserted == 5 and results["kids"].inserted == 20
    assert results["parents"].strategy == "bulk", "empty tables are loaded in place"
    edit(duck, "DELETE FROM parents WHERE id = 'P00'", "DELETE FROM kids WHERE parent_id = 'P00'")
    results = run_specs(destination_url, duck, specs)
    assert (results["parents"].deleted, results["kids"].deleted) == (1, 4)
    assert results["parents"].strategy == "diff", "a referenced table is never swapped"
    assert any("foreign keys in ['kids']" in w for w in results["parents"].warnings)


@pytest.mark.parametrize("found_rows", [True, False], ids=["CLIENT_FOUND_ROWS", "without"])
def test_mysql_upsert_counts_are_the_servers_with_or_without_found_rows(duck, found_rows):
    """The one-pass upsert reads its counts from the affected rows, whose meaning depends on the
    client flag CLIENT_FOUND_ROWS (SQLAlchemy sets it; a connect_args client_flag can clear it)."""
    with mariadb_database() as url:
        sync(url, duck)
        execute(url, "UPDATE items SET name = 'renamed' WHERE id = 'K007'")  # already what the mart will say
        edit(
            duck,
            "UPDATE items SET name = 'renamed' WHERE id IN ('K007', 'K008', 'K009')",
            "INSERT INTO items VALUES ('K900', 'new', 0.5)",
        )
        args = {"local_infile": True} | ({} if found_rows else {"client_flag": CLIENT.LOCAL_FILES})
        engine = sa.create_engine(normalize_url(url), connect_args=args)
        try:
            with engine.connect() as conn:
                flags = conn.connection.dbapi_connection.client_flag
                assert bool(flags & CLIENT.FOUND_ROWS) is found_rows
            with duckdb.connect(str(duck), read_only=True) as con:
                planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
                [result] = SqlDestination(engine).sync(
                    planner, [spec()], {"items": MartRelation("main", "items")}, log=lambda _: None
                )
        finally:
            engine.dispose()
        assert result.rows_sent == 4
        assert counts(result) == (1, 2, 0) and result.unchanged == 98
        assert dest(url) == expected(duck)
