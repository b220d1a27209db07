"""Bad values in a mart: the sync refuses them before writing, naming the table, the column and
the keys, and the destination keeps what it had. Values that are only awkward (emoji, time
zones) arrive exactly."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import sqlalchemy as sa

from activation.syncs.results import SyncError
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute, items_spec, run_specs

GOOD = "SELECT i AS id, 'row ' || i AS label, i * 1.5 AS score FROM range(1, 6) t(i)"


def spec(mode: str = "mirror"):
    return items_spec(mode)


def mart(duck, select: str) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(f"CREATE OR REPLACE TABLE items AS {select}")


def rows(url: str, table: str = "items") -> list[tuple]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()]
    finally:
        engine.dispose()


def only(*kinds: str):
    """Run a test on these destinations only, rather than skipping it on the others."""
    return pytest.mark.parametrize("url", kinds, indirect=True)


@pytest.fixture(params=["mariadb", "postgres", "sqlite"])
def url(request, tmp_path):
    with destination_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def mariadb_url(tmp_path):
    with destination_database("mariadb", tmp_path) as url:
        yield url


def refused(url, duck, select: str, *, column: str, key: str, words: str) -> None:
    """Sync GOOD, then `select`: the second sync is refused with a message naming items.<column>,
    the key and `words`, and the destination still holds GOOD."""
    mart(duck, GOOD)
    run_specs(url, duck, [spec()])
    before = rows(url)
    mart(duck, select)
    with pytest.raises(SyncError) as caught:
        run_specs(url, duck, [spec()])
    message = str(caught.value)
    assert f"items.{column}:" in message and repr(key) in message and words in message, message
    assert "nothing was written" in message
    assert rows(url) == before


# -- numbers ------------------------------------------------------------------------------------


@only("mariadb", "sqlite")  # PostgreSQL stores NaN and infinity in double precision: see the next test
def test_nan_and_infinity_are_refused_where_they_cannot_be_stored(url, tmp_path):
    select = (
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i = 3 THEN 'NaN'::DOUBLE ELSE i * 1.5 END AS score "
        "FROM range(1, 7) t(i)"
    )
    refused(url, tmp_path / "w.duckdb", select, column="score", key="3", words="NaN")


def test_nan_and_infinity_arrive_in_postgresql(tmp_path):
    with destination_database("postgres", tmp_path) as url:
        mart(tmp_path / "w.duckdb", "SELECT 1 AS id, 'NaN'::DOUBLE AS x UNION ALL SELECT 2, 'inf'::DOUBLE")
        run_specs(url, tmp_path / "w.duckdb", [spec()])
        got = rows(url)
        assert got[0][1] != got[0][1] and got[1][1] == float("inf")


def test_infinity_is_refused_in_mysql(mariadb_url, tmp_path):
    select = (
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i = 4 THEN '-inf'::DOUBLE ELSE i * 1.5 END AS score "
        "FROM range(1, 7) t(i)"
    )
    refused(mariadb_url, tmp_path / "w.duckdb", select, column="score", key="4", words="infinity")


@only("mariadb", "postgres")  # SQLite's DECIMAL(p,s) is a declaration only
def test_decimals_beyond_the_columns_precision_are_refused(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    execute(url, "CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(50), amount DECIMAL(5,2))")
    mart(duck, "SELECT i AS id, 'row ' || i AS label, CAST(i AS DECIMAL(10,2)) AS amount FROM range(1, 6) t(i)")
    run_specs(url, duck, [spec()])
    before = rows(url)
    mart(
        duck,
        "SELECT i AS id, 'row ' || i AS label, CAST(CASE WHEN i = 2 THEN 123456.5 ELSE i END AS DECIMAL(10,2)) "
        "AS amount FROM range(1, 6) t(i)",
    )
    with pytest.raises(SyncError, match=r"items\.amount: 1 row\(s\) exceed DECIMAL\(5,2\).*'2'"):
        run_specs(url, duck, [spec()])
    assert rows(url) == before
    # More decimal places than the column keeps would be rounded: refused too.
    mart(duck, "SELECT i AS id, 'row ' || i AS label, CAST(i + 0.125 AS DECIMAL(10,3)) AS amount FROM range(1, 6) t(i)")
    with pytest.raises(SyncError, match=r"items\.amount: 5 row\(s\) have more than 2 decimal places"):
        run_specs(url, duck, [spec()])
    assert rows(url) == before


@only("mariadb", "postgres")  # SQLite integers are 64-bit whatever the declared type
def test_integers_outside_the_columns_range_are_refused(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    execute(url, "CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(50), views INTEGER)")
    mart(duck, "SELECT i AS id, 'row ' || i AS label, i * 1000 AS views FROM range(1, 6) t(i)")
    run_specs(url, duck, [spec()])
    before = rows(url)
    mart(
        duck,
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i = 5 THEN 3000000000 ELSE i * 1000 END AS views "
        "FROM range(1, 6) t(i)",
    )
    with pytest.raises(SyncError, match=r"items\.views: 1 row\(s\) are outside the range .*INTEGER.*'5'"):
        run_specs(url, duck, [spec()])
    assert rows(url) == before


# -- dates and times ----------------------------------------------------------------------------


def test_dates_outside_mysqls_range_are_refused(mariadb_url, tmp_path):
    select = (
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i = 2 THEN DATE '0999-12-31' ELSE DATE '2026-01-01' END "
        "AS day FROM range(1, 6) t(i)"
    )
    duck = tmp_path / "w.duckdb"
    mart(duck, "SELECT i AS id, 'row ' || i AS label, DATE '2026-01-01' AS day FROM range(1, 6) t(i)")
    run_specs(mariadb_url, duck, [spec()])
    before = rows(mariadb_url)
    mart(duck, select)
    with pytest.raises(SyncError, match=r"items\.day: 1 row\(s\) are outside the range of DATE in MySQL \(key '2'\)"):
        run_specs(mariadb_url, duck, [spec()])
    assert rows(mariadb_url) == before
    mart(duck, "SELECT 1 AS id, 'x' AS label, TIMESTAMP '10000-01-01 00:00:00' AS day")
    with pytest.raises(SyncError, match=r"items\.day: .*outside the range"):
        run_specs(mariadb_url, duck, [spec()])
    assert rows(mariadb_url) == before


def test_infinite_timestamps_are_refused(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    select = (
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i = 1 THEN 'infinity'::TIMESTAMP ELSE TIMESTAMP "
        "'2026-01-01' END AS seen FROM range(1, 6) t(i)"
    )
    mart(duck, "SELECT i AS id, 'row ' || i AS label, TIMESTAMP '2026-01-01' AS seen FROM range(1, 6) t(i)")
    run_specs(url, duck, [spec()])
    before = rows(url)
    mart(duck, select)
    with pytest.raises(SyncError, match=r"items\.seen: 1 row\(s\) hold an infinite date.*\(key '1'\)"):
        run_specs(url, duck, [spec()])
    assert rows(url) == before


def test_naive_timestamps_arrive_as_they_are_and_aware_ones_as_the_same_instant(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(
        duck,
        "SELECT 1 AS id, TIMESTAMP '2026-03-01 09:00:00.123456' AS naive, "
        "TIMESTAMPTZ '2026-03-01 09:00:00.5+09:00' AS aware",
    )
    run_specs(url, duck, [spec()])
    [(key, naive, aware)] = rows(url)
    if isinstance(naive, str):  # SQLite keeps ISO text
        naive = dt.datetime.fromisoformat(naive)
    assert naive == dt.datetime(2026, 3, 1, 9, 0, 0, 123456)
    instant = dt.datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)
    if isinstance(aware, str):  # SQLite keeps text
        aware = dt.datetime.fromisoformat(aware)
    if aware.tzinfo is None:  # MySQL DATETIME, SQLite: UTC wall time, documented
        aware = aware.replace(tzinfo=dt.UTC)
    assert aware == instant


# -- text ---------------------------------------------------------------------------------------


def test_four_byte_utf8_arrives_exactly(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(duck, "SELECT 1 AS id, '🏥 施設 𠮷野家 👩‍👩‍👧' AS label UNION ALL SELECT 2, 'plain'")
    run_specs(url, duck, [spec()])
    assert rows(url) == [(1, "🏥 施設 𠮷野家 👩‍👩‍👧"), (2, "plain")]


def test_four_byte_utf8_into_a_utf8mb3_column_is_refused(mariadb_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    execute(
        mariadb_url,
        "CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(50) CHARACTER SET utf8mb3, score DOUBLE)",
    )
    select = (
        "SELECT i AS id, CASE WHEN i = 3 THEN 'ok 🙂' ELSE 'row ' || i END AS label, i * 1.5 AS score "
        "FROM range(1, 6) t(i)"
    )
    refused(mariadb_url, duck, select, column="label", key="3", words="4-byte UTF-8")


def test_null_into_a_not_null_column_is_refused(url, tmp_path):
    duck = tmp_path / "w.duckdb"
    execute(url, "CREATE TABLE items (id BIGINT PRIMARY KEY, label VARCHAR(50) NOT NULL, score FLOAT)")
    select = (
        "SELECT i AS id, CASE WHEN i = 4 THEN NULL ELSE 'row ' || i END AS label, i * 1.5 AS score "
        "FROM range(1, 6) t(i)"
    )
    refused(url, duck, select, column="label", key="4", words="NOT NULL")


def test_only_the_rows_being_sent_are_checked_and_all_problems_are_listed(mariadb_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(duck, GOOD)
    run_specs(mariadb_url, duck, [spec()])
    mart(
        duck,
        "SELECT i AS id, 'row ' || i AS label, CASE WHEN i IN (2, 4) THEN 'NaN'::DOUBLE ELSE i * 1.5 END AS score "
        "FROM range(1, 6) t(i)",
    )
    with pytest.raises(SyncError) as caught:
        run_specs(mariadb_url, duck, [spec()])
    assert "items.score: 2 row(s) hold NaN or infinity, which MySQL cannot store (key '2', '4')" in str(caught.value)
