"""Keys as the destination compares them: twins distinct in the warehouse but one key in the app's
table (case, trailing spaces, accents) are refused before anything is written, or set aside under
max_rejects; the app's own rows stay; the state does not move; a binary key keeps them apart."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute, recorded_syncs

MODES = ["insert", "update", "upsert", "mirror", "replace", "truncate_insert"]
CASE, SPACE, ACCENT = ("ABC", "abc"), ("pad", "pad "), ("resume", "résumé")

# kind -> (database, key column type the app chose, twins equal under it)
KINDS = {
    "mariadb_general_ci": ("mariadb", "VARCHAR(40) COLLATE utf8mb4_general_ci", [CASE, SPACE, ACCENT]),
    "mariadb_unicode_ci": ("mariadb", "VARCHAR(40) COLLATE utf8mb4_unicode_ci", [CASE, SPACE, ACCENT]),
    "postgres_citext": ("postgres", "citext", [CASE]),
    "postgres_icu": ("postgres", "VARCHAR(40) COLLATE ci", [CASE, ACCENT]),
    "sqlite_nocase": ("sqlite", "VARCHAR(40) COLLATE NOCASE", [CASE]),
    "sqlite_rtrim": ("sqlite", "VARCHAR(40) COLLATE RTRIM", [SPACE]),
}
EVERY_MODE = {"mariadb_general_ci", "postgres_citext", "sqlite_nocase"}  # the others: mirror and a bulk load


@pytest.fixture
def kind(request, tmp_path):
    """(url, key column type, twins) in a fresh database ready for the app's tables."""
    database, key_type, twins = KINDS[request.param]
    with destination_database(database, tmp_path) as url:
        if database == "postgres":
            execute(
                url,
                "CREATE EXTENSION IF NOT EXISTS citext",
                "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level1', deterministic = false)",
            )
        yield url, key_type, twins, request.param


def kinds(*names: str):
    return pytest.mark.parametrize("kind", names, indirect=True)


def specs(*tables: tuple[str, str], key=("id",), **options):
    """One sync per (table, mode), all from mart `items`."""
    body = {"source": "items", "destination": "app", "primary_key": list(key), "guards": {"max_deletes": "100%"}}
    syncs = {f"s_{table}": body | {"table": table, "mode": mode} | options for table, mode in tables}
    config = SyncConfig.model_validate({"destinations": {"app": {"url_env": "X"}}, "syncs": syncs})
    return list(config.syncs.values())


def mart(duck, rows, columns=("id", "label")) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(f"CREATE OR REPLACE TABLE items ({', '.join(f'{c} VARCHAR' for c in columns)})")
        if rows:
            con.executemany(f"INSERT INTO items VALUES ({', '.join('?' for _ in columns)})", rows)


def run(url, duck, sync_specs):
    engine = engine_for(url)
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
            results = SqlDestination(engine).sync(
                planner, sync_specs, {s.name: MartRelation("main", "items") for s in sync_specs}, log=lambda _: None
            )
            return {r.table: r for r in results}
    finally:
        engine.dispose()


def table_rows(url, table: str) -> list[tuple]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")).all())
    finally:
        engine.dispose()


def refused(url, duck, sync_specs, *words: str) -> str:
    with pytest.raises(SyncError) as caught:
        run(url, duck, sync_specs)
    message = str(caught.value)
    for word in (*words, "Nothing was written"):
        assert word in message, message
    return message


APP_ROW = ("zz-app", "the app row")


@kinds(*KINDS)
def test_twins_are_refused_in_every_mode_and_sync_once_the_mart_is_fixed(kind, tmp_path):
    url, key_type, twins, name = kind
    duck = tmp_path / "w.duckdb"
    modes = MODES if name in EVERY_MODE else ["mirror"]
    tables = [(f"t_{mode}", mode) for mode in modes] + [("t_bulk", "upsert")]  # t_bulk is empty: a bulk load
    for table, _mode in tables:
        execute(url, f"CREATE TABLE {table} (id {key_type} PRIMARY KEY, label VARCHAR(40))")
        if table != "t_bulk":
            execute(url, f"INSERT INTO {table} VALUES ('{APP_ROW[0]}', '{APP_ROW[1]}')")
    plain = [("plain-1", "p1"), ("plain-2", "p2")]
    mart(duck, plain + [(a, "first") for a, _ in twins] + [(b, "second") for _, b in twins])

    for table, mode in tables:
        message = refused(url, duck, specs((table, mode)), f"{table}.id:", f"{2 * len(twins)} row(s) to send")
        for a, b in twins:
            assert f"{a!r} = {b!r}" in message, message
        assert table_rows(url, table) == ([] if table == "t_bulk" else [APP_ROW]), "the table is untouched"
    assert recorded_syncs(duck) == [], "a refused sync records nothing"

    mart(duck, plain + [(a, "first") for a, _ in twins])  # one spelling of each key
    results = run(url, duck, specs(*tables))
    synced = sorted(plain + [(a, "first") for a, _ in twins])
    for table, mode in tables:
        want = {
            "insert": sorted([*synced, APP_ROW]),
            "upsert": sorted([*synced, APP_ROW]) if table != "t_bulk" else synced,
            "update": [APP_ROW],
        }.get(mode, synced)
        assert table_rows(url, table) == want, table
        assert results[table].rejected == 0
    assert len(recorded_syncs(duck)) == len(tables)


@kinds("mariadb_general_ci", "postgres_citext", "sqlite_nocase")
def test_an_incremental_key_colliding_with_a_synced_key_is_refused_and_the_state_stays(kind, tmp_path):
    url, key_type, *_ = kind
    duck = tmp_path / "w.duckdb"
    execute(url, f"CREATE TABLE items (id {key_type} PRIMARY KEY, label VARCHAR(40))")
    mart(duck, [("ABC", "first"), ("x", "x")])
    assert run(url, duck, specs(("items", "mirror")))["items"].inserted == 2
    mart(duck, [("ABC", "first"), ("x", "x"), ("abc", "second")])  # only the new key is staged
    refused(url, duck, specs(("items", "mirror")), "items.id: 1 row(s)", "'abc' is 'ABC'", "already holds")
    assert table_rows(url, "items") == [("ABC", "first"), ("x", "x")]
    # Had the state believed 'abc' arrived, this run would delete it by key, and so 'ABC' with it.
    mart(duck, [("ABC", "first"), ("x", "x"), ("abc-2", "second")])
    result = run(url, duck, specs(("items", "mirror")))["items"]
    assert (result.inserted, result.updated, result.deleted) == (1, 0, 0)
    assert table_rows(url, "items") == [("ABC", "first"), ("abc-2", "second"), ("x", "x")]
    # A key re-spelled in the mart: mirror would upsert 'X' onto 'x' and then delete it as gone.
    mart(duck, [("ABC", "first"), ("abc-2", "second"), ("X", "x")])
    refused(url, duck, specs(("items", "mirror")), "'X' is 'x'")
    # replace rebuilds the table (shadow swap), so the new spelling replaces the old one
    run(url, duck, specs(("items", "replace")))
    assert table_rows(url, "items") == [("ABC", "first"), ("X", "x"), ("abc-2", "second")]


@kinds("mariadb_general_ci", "sqlite_nocase")
def test_composite_keys_collide_among_themselves_and_with_the_apps_rows(kind, tmp_path):
    url, key_type, *_ = kind
    duck = tmp_path / "w.duckdb"
    execute(
        url,
        f"CREATE TABLE items (tenant VARCHAR(10), code {key_type}, label VARCHAR(40), PRIMARY KEY (tenant, code))",
        "INSERT INTO items VALUES ('t1', 'Zed', 'the app''s own row')",
    )
    sync = specs(("items", "upsert"), key=("tenant", "code"))
    columns = ("tenant", "code", "label")
    mart(duck, [("t1", "zed", "a"), ("t2", "zed", "b"), ("t2", "ZED", "c")], columns)
    refused(url, duck, sync, "items.tenant, code: 2 row(s)", "('t2', 'ZED') = ('t2', 'zed')")
    mart(duck, [("t1", "zed", "a"), ("t2", "zed", "b")], columns)
    refused(url, duck, sync, "('t1', 'zed') is ('t1', 'Zed')")
    assert table_rows(url, "items") == [("t1", "Zed", "the app's own row")]
    mart(duck, [("t2", "zed", "b")], columns)
    assert run(url, duck, sync)["items"].inserted == 1
    assert table_rows(url, "items") == [("t1", "Zed", "the app's own row"), ("t2", "zed", "b")]


@kinds("mariadb_general_ci", "postgres_icu", "sqlite_nocase")
def test_max_rejects_sets_every_colliding_row_aside_and_keeps_the_apps_row(kind, tmp_path):
    url, key_type, *_ = kind
    duck = tmp_path / "w.duckdb"
    execute(
        url,
        f"CREATE TABLE items (id {key_type} PRIMARY KEY, label VARCHAR(40))",
        "INSERT INTO items VALUES ('Zed', 'the app''s own row')",
    )
    mart(duck, [("ABC", "first"), ("abc", "second"), ("zed", "mart"), ("x", "x")])
    for inserted in (1, 0):  # set aside again on the next run: rejected keys stay out of the state
        result = run(url, duck, specs(("items", "mirror"), max_rejects=3))["items"]
        assert (result.inserted, result.deleted, result.rejected) == (inserted, 0, 3)
        # mirror keeps the older version of a row set aside: the app's 'Zed' stays as it was
        assert table_rows(url, "items") == [("Zed", "the app's own row"), ("x", "x")]
    refused(url, duck, specs(("items", "mirror"), max_rejects=2), "over max_rejects 2")


@pytest.mark.parametrize("database", ["mariadb", "postgres", "sqlite"])
def test_a_binary_key_keeps_twins_apart_but_mysql_pads_trailing_spaces(database, tmp_path):
    """Tables the tool creates compare keys byte for byte (utf8mb4_bin on MySQL), except that
    MySQL's binary collations are PAD SPACE: 'pad' and 'pad ' are one key there."""
    duck = tmp_path / "w.duckdb"
    with destination_database(database, tmp_path) as url:
        execute(url, "CREATE TABLE items (id VARCHAR(40) PRIMARY KEY, label VARCHAR(40))")
        rows = [(k, "v") for k in (*CASE, *ACCENT, *SPACE)]
        mart(duck, rows)
        if database == "mariadb":
            refused(url, duck, specs(("items", "upsert")), "'pad' = 'pad '", "PAD SPACE")
            mart(duck, rows[:-1])
            rows = rows[:-1]
        assert run(url, duck, specs(("items", "upsert")))["items"].inserted == len(rows)
        assert table_rows(url, "items") == sorted(rows)
        if database == "mariadb":  # an app key with a trailing space, met after the write: rolled back
            execute(url, "INSERT INTO items VALUES ('solo ', 'app')")
            mart(duck, [*rows, ("solo", "v")])
            refused(url, duck, specs(("items", "upsert")), "'solo' met 'solo '", "rolled back")
            assert ("solo ", "app") in table_rows(url, "items") and len(table_rows(url, "items")) == len(rows) + 1


@kinds("mariadb_general_ci", "sqlite_nocase")
def test_a_foreign_key_matching_its_parent_only_under_the_collation_is_refused(kind, tmp_path):
    url, key_type, *_ = kind
    duck = tmp_path / "w.duckdb"
    execute(
        url,
        f"CREATE TABLE parents (id {key_type} PRIMARY KEY)",
        "INSERT INTO parents VALUES ('ABC')",
        f"CREATE TABLE items (id VARCHAR(40) PRIMARY KEY, parent_id {key_type} REFERENCES parents (id))",
    )
    sync = specs(("items", "upsert"))  # the foreign key is the app's own, in the destination
    for existing in ([], [("c0", "ABC")]):  # a bulk load into the empty table, then a staged diff
        if existing:
            mart(duck, existing, ("id", "parent_id"))
            run(url, duck, sync)
        mart(duck, [*existing, ("c1", "ABC"), ("c2", "abc")], ("id", "parent_id"))
        refused(url, duck, sync, "items.parent_id -> parents.id: 1 row(s)", "'abc' matches 'ABC'")
        assert table_rows(url, "items") == existing


@pytest.mark.parametrize("database", ["mariadb", "sqlite"])
def test_counts_that_disagree_with_the_table_roll_the_write_back(database, tmp_path):
    """A trigger that rewrites keys: the server reports rows written, but the keys sent are not
    in the table under their own bytes."""
    duck = tmp_path / "w.duckdb"
    trigger = {
        "mariadb": "CREATE TRIGGER shout BEFORE INSERT ON items FOR EACH ROW SET NEW.id = UPPER(NEW.id)",
        "sqlite": "CREATE TRIGGER shout AFTER INSERT ON items BEGIN "
        "UPDATE items SET id = upper(id) WHERE rowid = NEW.rowid; END",
    }[database]
    with destination_database(database, tmp_path) as url:
        execute(
            url,
            "CREATE TABLE items (id VARCHAR(40) PRIMARY KEY, label VARCHAR(40))",
            "INSERT INTO items VALUES ('APP', 'the app''s own row')",
            trigger,
        )
        mart(duck, [("abc", "x")])
        message = refused(url, duck, specs(("items", "upsert")), "counts do not agree", "0 of the 1 rows sent")
        assert "rolled back" in message
        assert table_rows(url, "items") == [("APP", "the app's own row")]
        assert recorded_syncs(duck) == []


@kinds("mariadb_general_ci", "postgres_citext")
def test_the_dry_run_reports_the_same_collisions(kind, tmp_path):
    url, key_type, *_ = kind
    duck = tmp_path / "w.duckdb"
    execute(
        url,
        f"CREATE TABLE items (id {key_type} PRIMARY KEY, label VARCHAR(40))",
        "INSERT INTO items VALUES ('Zed', 'the app''s own row')",
    )
    engine = engine_for(url)
    try:
        for rows, words in (
            ([("ABC", "1"), ("abc", "2")], "'ABC' = 'abc'"),
            ([("zed", "1")], "'zed' is 'Zed'"),
        ):
            mart(duck, rows)
            with duckdb.connect(str(duck), read_only=True) as con:
                planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
                [preview] = SqlDestination(engine).preview(
                    planner, specs(("items", "upsert")), {"s_items": MartRelation("main", "items")}
                )
            assert preview.blocked and words in preview.blocked, preview.blocked
    finally:
        engine.dispose()
    assert table_rows(url, "items") == [("Zed", "the app's own row")]


def _statements_and_log(url, duck, sync_specs) -> tuple[list[str], list[str]]:
    """Run the syncs; the statements the destination ran and the log lines it wrote."""
    engine, statements, lines = engine_for(url), [], []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            planner = DuckDB(con, str(duck.parent / "state.duckdb"), url)
            SqlDestination(engine).sync(
                planner, sync_specs, {s.name: MartRelation("main", "items") for s in sync_specs}, log=lines.append
            )
    finally:
        engine.dispose()
    return statements, lines


def test_the_post_write_key_check_joins_only_where_the_write_may_have_merged_keys(tmp_path):
    """An integer key cannot merge two keys: no join of the change with the whole table after the
    write. A general_ci key can: with a trigger on the table the join runs, and a merge it finds (an
    app key that is the sent key's twin only under the collation, written by the trigger) rolls the
    write back. Without one, MySQL's merge counts the rows it met under other bytes: none, no join.
    A utf8mb4_bin key whose app row has a trailing space (PAD SPACE, which the checks before the
    write leave to this one): the merge counts the twin, the join names it, the write rolls back."""
    duck = tmp_path / "w.duckdb"
    joins = lambda statements: [s for s in statements if "LEFT JOIN" in s and "COUNT(t." in s]  # noqa: E731
    with destination_database("mariadb", tmp_path) as url:
        execute(url, "CREATE TABLE nums (id BIGINT PRIMARY KEY, label VARCHAR(40))", "INSERT INTO nums VALUES (1, 'a')")
        with duckdb.connect(str(duck)) as con:
            con.execute(
                "CREATE OR REPLACE TABLE items AS SELECT * FROM (VALUES (1::BIGINT, 'b'), (2, 'c')) t(id, label)"
            )
        statements, lines = _statements_and_log(url, duck, specs(("nums", "upsert")))
        assert not joins(statements)
        assert any("post-write key check skipped (keys compared byte for byte)" in line for line in lines), lines
        assert table_rows(url, "nums") == [(1, "b"), (2, "c")]

        execute(
            url,
            "CREATE TABLE items (id VARCHAR(40) COLLATE utf8mb4_general_ci PRIMARY KEY, label VARCHAR(40))",
            "INSERT INTO items VALUES ('APP', 'the app''s own row')",
            "CREATE TRIGGER shout BEFORE INSERT ON items FOR EACH ROW SET NEW.id = UPPER(NEW.id)",
        )
        mart(duck, [("abc", "x")])
        refused(url, duck, specs(("items", "upsert")), "counts do not agree", "rolled back")
        assert table_rows(url, "items") == [("APP", "the app's own row")]
        execute(url, "DROP TRIGGER shout")
        statements, lines = _statements_and_log(url, duck, specs(("items", "upsert")))
        assert not joins(statements)
        assert any("skipped (the merge met no key of other bytes)" in line for line in lines), lines
        assert table_rows(url, "items") == [("APP", "the app's own row"), ("abc", "x")]

        execute(
            url,
            "CREATE TABLE pads (id VARCHAR(40) COLLATE utf8mb4_bin PRIMARY KEY, label VARCHAR(40))",
            "INSERT INTO pads VALUES ('solo ', 'app'), ('x', 'app')",
        )
        mart(duck, [("solo", "v"), ("x", "v"), ("y", "v")])
        with pytest.raises(SyncError) as caught:
            _statements_and_log(url, duck, specs(("pads", "upsert")))
        assert "'solo' met 'solo '" in str(caught.value) and "rolled back" in str(caught.value)
        assert table_rows(url, "pads") == [("solo ", "app"), ("x", "app")]
