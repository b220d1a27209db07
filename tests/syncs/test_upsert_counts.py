"""PostgreSQL and SQLite write an incremental change in one INSERT ... ON CONFLICT DO UPDATE
(on_conflict.py): its counts tell inserts from updates, a row sent with the values the table
already holds is neither written nor counted, and a table with a trigger keeps the two statements."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from tests.databases import destination_database
from tests.reliability.test_collations import mart, specs, table_rows
from tests.syncs.test_load import engine_for, execute

TRIGGERS = {
    "postgres": (
        "CREATE FUNCTION touch() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER touched BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION touch()",
    ),
    "sqlite": ("CREATE TRIGGER touched AFTER INSERT ON items BEGIN SELECT 1; END",),
}


def _sync(url, duck):
    """One mirror run of mart `items`: its result and the statements the destination ran."""
    engine, statements = engine_for(url), []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(" ".join(a[2].split())))
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
            [result] = SqlDestination(engine).sync(
                planner, specs(("items", "mirror")), {"s_items": MartRelation("main", "items")}, log=lambda _: None
            )
    finally:
        engine.dispose()
    return result, statements


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_one_upsert_counts_inserts_and_updates_and_skips_rows_already_current(database, tmp_path):
    duck = tmp_path / "w.duckdb"
    with destination_database(database, tmp_path) as url:
        for with_trigger in (False, True):
            execute(
                url, "DROP TABLE IF EXISTS items", "CREATE TABLE items (id VARCHAR(40) PRIMARY KEY, label VARCHAR(40))"
            )
            if with_trigger:
                execute(url, *TRIGGERS[database])
            (duck.parent / "state.duckdb").unlink(missing_ok=True)
            mart(duck, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
            assert _sync(url, duck)[0].inserted == 4
            execute(url, "UPDATE items SET label = 'two' WHERE id = 'b'")  # the app holds b's next value already
            # a: to NULL, b: to what the table holds, c: changed, d: gone, e and f: new
            mart(duck, [("a", None), ("b", "two"), ("c", "three"), ("e", "5"), ("f", "6")])
            result, statements = _sync(url, duck)
            assert (result.rows_sent, result.inserted, result.updated, result.deleted) == (5, 2, 2, 1)
            assert result.unchanged == 1
            assert table_rows(url, "items") == [("a", None), ("b", "two"), ("c", "three"), ("e", "5"), ("f", "6")]
            upserts = [s for s in statements if "INSERT INTO items" in s and "ON CONFLICT" in s]
            updates = [s for s in statements if s.startswith("UPDATE items")]
            if with_trigger:  # an upsert would fire the INSERT trigger for the rows it updates
                assert not upserts and len(updates) == 1, statements
            else:
                assert len(upserts) == 1 and not updates, statements
        if database == "postgres":
            execute(url, "DROP TABLE items", "DROP FUNCTION touch()")
