"""Schema drift between a mart and its destination table, under each `on_schema_change` policy:
`fail` (the default) stops before writing and says what differs and what to do; `evolve` adds the
mart's new columns; `ignore` syncs the columns that still match. Never a silent half-sync."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa

from activation.syncs.results import SyncError
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute, items_spec, run_specs

BASE = "SELECT i AS id, 'row ' || i AS label, i * 10 AS views FROM range(1, 6) t(i)"


def spec(policy: str | None = None, mode: str = "mirror"):
    return items_spec(mode, **({"on_schema_change": policy} if policy else {}))


def mart(duck, select: str) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(f"CREATE OR REPLACE TABLE items AS {select}")


def table(url: str) -> tuple[list[str], list[tuple]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text("SELECT * FROM items ORDER BY id"))
            return list(result.keys()), [tuple(r) for r in result.all()]
    finally:
        engine.dispose()


@pytest.fixture(params=["mariadb", "postgres", "sqlite"])
def synced(request, tmp_path):
    """A destination holding BASE, synced once; yields (url, duck)."""
    with destination_database(request.param, tmp_path) as url:
        duck = tmp_path / "w.duckdb"
        mart(duck, BASE)
        run_specs(url, duck, [spec()])
        yield url, duck


ADDED = "SELECT i AS id, 'row ' || i AS label, i * 10 AS views, 'tier ' || (i % 2) AS tier FROM range(1, 6) t(i)"


def test_a_column_added_to_the_mart_fails_by_default_and_names_it(synced):
    url, duck = synced
    before = table(url)
    mart(duck, ADDED)
    with pytest.raises(
        SyncError, match=r"items: schema drift: the table has no column\(s\) \['tier'\].*on_schema_change"
    ):
        run_specs(url, duck, [spec()])
    assert table(url) == before


def test_evolve_adds_the_new_column_and_fills_it(synced):
    url, duck = synced
    mart(duck, ADDED)
    result = run_specs(url, duck, [spec("evolve")])["items"]
    columns, rows = table(url)
    assert columns == ["id", "label", "views", "tier"]
    assert rows == [(i, f"row {i}", i * 10, f"tier {i % 2}") for i in range(1, 6)]
    assert result.updated == 5 and any("added column(s) ['tier']" in w for w in result.warnings)


def test_ignore_syncs_the_columns_both_have(synced):
    url, duck = synced
    mart(duck, ADDED.replace("'row ' || i", "'row v2 ' || i"))
    result = run_specs(url, duck, [spec("ignore")])["items"]
    columns, rows = table(url)
    assert columns == ["id", "label", "views"]
    assert rows == [(i, f"row v2 {i}", i * 10) for i in range(1, 6)]
    assert any("not synced" in w and "tier" in w for w in result.warnings)


def test_a_column_dropped_by_the_application_is_drift_too(synced):
    url, duck = synced
    execute(url, "ALTER TABLE items DROP COLUMN views")
    with pytest.raises(SyncError, match=r"no column\(s\) \['views'\].*dropped by the app"):
        run_specs(url, duck, [spec()])
    run_specs(url, duck, [spec("evolve")], full_resync=True)
    assert table(url) == (["id", "label", "views"], [(i, f"row {i}", i * 10) for i in range(1, 6)])


def test_a_column_removed_from_the_mart_is_left_alone(synced):
    url, duck = synced
    mart(duck, "SELECT i AS id, 'row ' || i AS label FROM range(1, 7) t(i)")
    result = run_specs(url, duck, [spec()])["items"]
    columns, rows = table(url)
    assert columns == ["id", "label", "views"]
    assert rows == [(i, f"row {i}", i * 10 if i < 6 else None) for i in range(1, 7)]
    assert any("['views'] are not in mart items: left as they are" in w for w in result.warnings)


def test_a_required_column_the_mart_no_longer_feeds_fails_before_writing(tmp_path):
    with destination_database("mariadb", tmp_path) as url:
        duck = tmp_path / "w.duckdb"
        execute(url, "CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(50), views BIGINT NOT NULL)")
        mart(duck, BASE)
        run_specs(url, duck, [spec()])
        before = table(url)
        mart(duck, "SELECT i AS id, 'row ' || i AS label FROM range(1, 7) t(i)")
        with pytest.raises(SyncError, match=r"\['views'\] are NOT NULL without a default.*Nothing was written"):
            run_specs(url, duck, [spec()])
        assert table(url) == before


def test_a_retyped_column_fails_unless_ignored(synced):
    url, duck = synced
    before = table(url)
    mart(duck, "SELECT i AS id, 'row ' || i AS label, 'many' AS views FROM range(1, 6) t(i)")
    with pytest.raises(SyncError, match=r"changed kind: views \(.*<- string\)"):
        run_specs(url, duck, [spec()])
    with pytest.raises(SyncError, match=r"evolve only adds columns"):
        run_specs(url, duck, [spec("evolve")])
    assert table(url) == before
    result = run_specs(url, duck, [spec("ignore")])["items"]
    assert table(url) == before and any("['views'] not synced" in w for w in result.warnings)


def test_a_widened_column_is_not_drift(synced):
    url, duck = synced
    mart(duck, "SELECT i AS id, 'row ' || i AS label, CAST(i * 10 AS DECIMAL(12,2)) AS views FROM range(1, 6) t(i)")
    result = run_specs(url, duck, [spec()])["items"]
    assert result.warnings == [] and table(url)[1] == [(i, f"row {i}", i * 10) for i in range(1, 6)]
