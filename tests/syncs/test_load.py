"""The destination writer against real SQLite, MariaDB and PostgreSQL databases."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination, normalize_url
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from tests.compare import destination_rows, sorted_mart_rows

PARENT_COLUMNS = ["id", "name", "amount", "score", "active", "born", "seen_at", "published_at", "note"]

CONFIG = {
    "destinations": {"app": {"url_env": "UNUSED_URL"}},
    "syncs": {
        "parents": {
            "source": "parents",
            "destination": "app",
            "table": "parents",
            "primary_key": "id",
            "mode": "replace",
        },
        "children": {
            "source": "children",
            "destination": "app",
            "table": "children",
            "primary_key": "id",
            "mode": "replace",
            "foreign_keys": {"parent_id": "parents.id"},
        },
    },
}


def make_marts(path, n_parents: int = 50, n_children: int = 120, offset: int = 0) -> None:
    """Marts with the awkward types: DECIMAL, zone-aware timestamps, emoji, long text, NULLs."""
    with duckdb.connect(str(path)) as con:
        con.execute(f"""
            CREATE OR REPLACE TABLE parents AS
            SELECT printf('P%05d', i) AS id,
                   '施設 ' || i || CASE WHEN i % 7 = 0 THEN ' 🏥' ELSE '' END AS name,
                   CAST(i * 1234.56 + {offset} AS DECIMAL(18,2)) AS amount,
                   i / 3.0 AS score,
                   i % 2 = 0 AS active,
                   CASE WHEN i % 5 = 0 THEN NULL ELSE DATE '1980-01-01' + CAST(i AS INTEGER) END AS born,
                   TIMESTAMP '2026-01-01 00:00:00.123456' + INTERVAL (i) HOUR AS seen_at,
                   TIMESTAMPTZ '2026-03-01 09:00:00+09:00' + INTERVAL (i) MINUTE AS published_at,
                   repeat('長い説明。', 60 + i) AS note
            FROM range({offset}, {offset} + {n_parents}) t(i)
        """)
        con.execute(f"""
            CREATE OR REPLACE TABLE children AS
            SELECT printf('C%05d', j) AS id,
                   printf('P%05d', {offset} + j % {n_parents}) AS parent_id,
                   'label ''' || j || '''' AS label
            FROM range({n_children}) t(j)
        """)


def recorded_syncs(duck) -> list[str]:
    """The syncs whose state a run committed (state.duckdb beside the warehouse file)."""
    path = duck.parent / "state.duckdb"
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT sync FROM syncs ORDER BY 1").fetchall()]


def engine_for(url: str) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True} if "mysql" in url else {})
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    return engine


def items_config(mode: str = "mirror", url_env: str = "X", **options) -> SyncConfig:
    """The one-table sync config most tests use: mart `items` -> table `items`, key `id`."""
    body = {"source": "items", "destination": "app", "table": "items", "primary_key": "id", "mode": mode, **options}
    return SyncConfig.model_validate({"destinations": {"app": {"url_env": url_env}}, "syncs": {"items": body}})


def items_spec(mode: str = "mirror", **options):
    """The sync of `items_config`."""
    return items_config(mode, **options).syncs["items"]


def execute(url: str, *statements: str) -> None:
    """Run statements in the destination, in one transaction."""
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def scalar(url: str, sql: str, **params):
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def run_specs(url: str, duck_path, specs, *, full_resync: bool = False, log=lambda _: None):
    """Run sync specs the way the Dagster asset does: read-only warehouse, state beside it."""
    relations = {s.name: MartRelation("main", s.source) for s in specs}
    engine = engine_for(url)
    try:
        with duckdb.connect(str(duck_path), read_only=True) as con:
            planner = DuckDB(con, str(duck_path.parent / "state.duckdb"), url)
            results = SqlDestination(engine).sync(planner, specs, relations, full_resync=full_resync, log=log)
            return {r.table: r for r in results}
    finally:
        engine.dispose()


def run_sync(url: str, duck_path, names=("parents", "children"), config=CONFIG, **kwargs):
    specs = [s for s in SyncConfig.model_validate(config).load_order() if s.name in names]
    return run_specs(url, duck_path, specs, **kwargs)


def assert_equal(url, duck_path):
    assert destination_rows(url, "parents", PARENT_COLUMNS, ["id"]) == sorted_mart_rows(
        duck_path, "parents", PARENT_COLUMNS, ["id"]
    )
    cols = ["id", "parent_id", "label"]
    assert destination_rows(url, "children", cols, ["id"]) == sorted_mart_rows(duck_path, "children", cols, ["id"])


def test_replace_creates_tables_and_copies_every_value(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    results = run_sync(destination_url, duck)
    assert results["parents"].inserted == 50 and results["children"].inserted == 120
    assert results["parents"].created_table
    assert_equal(destination_url, duck)

    again = run_sync(destination_url, duck)
    assert [(r.inserted, r.updated, r.deleted, r.unchanged) for r in again.values()] == [
        (0, 0, 0, 50),
        (0, 0, 0, 120),
    ]


def test_replace_propagates_changes_and_deletes_children_before_parents(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck)
    # Parents 0-9 leave the mart, 50-59 arrive; every child moves to the surviving parents.
    make_marts(duck, n_parents=50, n_children=100, offset=10)
    results = run_sync(destination_url, duck)
    assert results["parents"].inserted == 10
    assert results["parents"].deleted == 10
    assert results["parents"].updated == 40  # amount shifted by the offset
    assert results["children"].deleted == 20
    assert results["children"].updated == 100  # every child's parent changed
    assert_equal(destination_url, duck)


def test_parent_delete_still_referenced_is_refused_and_rolls_back(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck)
    before = destination_rows(destination_url, "parents", PARENT_COLUMNS, ["id"])
    make_marts(duck, offset=10)  # children still point at P00000-P00009 in the destination
    with duckdb.connect(str(duck)) as con:
        con.execute("DELETE FROM children")  # stale child mart is not part of this run anyway
    with pytest.raises(SyncError, match="still referenced"):
        run_sync(destination_url, duck, names=("parents",))
    assert destination_rows(destination_url, "parents", PARENT_COLUMNS, ["id"]) == before


@pytest.mark.parametrize("problem", ["null", "duplicate"])
def test_bad_keys_are_refused_before_writing(destination_url, tmp_path, problem):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck)
    with duckdb.connect(str(duck)) as con:
        if problem == "null":
            con.execute("UPDATE parents SET id = NULL WHERE id = 'P00003'")
        else:
            con.execute("UPDATE parents SET id = 'P00004' WHERE id = 'P00003'")
        con.execute("UPDATE parents SET name = 'changed'")
    message = "NULL key in column 'id'" if problem == "null" else r"duplicate key \('id',\) in the mart \('P00004' x2\)"
    with pytest.raises(SyncError, match=message):
        run_sync(destination_url, duck)
    assert "changed" not in {r[1] for r in destination_rows(destination_url, "parents", ["id", "name"], ["id"])}


def test_value_longer_than_existing_column_names_table_column_and_key(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck)
    with duckdb.connect(str(duck)) as con:
        con.execute("UPDATE children SET label = repeat('x', 300) WHERE id = 'C00007'")
    with pytest.raises(
        SyncError,
        match=r"children\.label: value longer than the destination's 255 characters "
        r"in key 'C00007' \(300 chars\)",
    ):
        run_sync(destination_url, duck)


def test_upsert_never_deletes(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    config = dict(CONFIG, syncs={"parents": dict(CONFIG["syncs"]["parents"], mode="upsert")})
    run_sync(destination_url, duck, names=("parents",), config=config)
    with duckdb.connect(str(duck)) as con:
        con.execute("DELETE FROM parents WHERE id < 'P00010'")
        con.execute("UPDATE parents SET name = name || '!' WHERE id = 'P00020'")
    result = run_sync(destination_url, duck, names=("parents",), config=config)["parents"]
    assert (result.inserted, result.updated, result.deleted, result.rows_in_destination) == (0, 1, 0, 50)
