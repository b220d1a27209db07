"""Every bad value of docs/reliability.md ("Bad data in marts") through `activation plan`: the dry
run exits 3 and names the table, the column, the reason and the keys, with no traceback and
nothing written. One plan per dialect covers every case that applies to it (one table each); the
values are those of tests/reliability/test_bad_data.py, which proves the real sync refuses them."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pytest
import sqlalchemy as sa

from activation.cli import EXIT_REFUSED
from activation.cli.plan import report_plan
from activation.settings import Settings
from activation.sync_project import Project
from activation.syncs.model import MartRelation
from activation.syncs.spec import SyncConfig
from tests.databases import destination_database
from tests.syncs.test_load import engine_for, execute

ALL = ("mariadb", "postgres", "sqlite")
ROWS = "FROM range(1, 6) t(i)"


@dataclass(frozen=True)
class Bad:
    name: str  # the table and the mart
    dialects: tuple[str, ...]
    select: str  # the mart
    line: str  # what the plan prints for it, after "app.<name>."
    table: str | None = None  # the application's own table (columns after the key), else the sync creates it
    options: tuple[tuple[str, object], ...] = ()  # more sync config


CASES = [
    Bad(
        "null_key",
        ALL,
        f"SELECT CASE WHEN i = 2 THEN NULL ELSE i END AS id, 'x' AS label {ROWS}",
        "id: 1 row has a NULL key",
    ),
    Bad(
        "dup_key",
        ALL,
        f"SELECT least(i, 4) AS id, 'x' AS label {ROWS}",
        "id: 2 rows share a key with another row: id=4 (x2)",
    ),
    Bad(
        "too_long",
        ALL,
        f"SELECT i AS id, repeat('x', 10 + i) AS label {ROWS}",
        "label: 5 rows longer than VARCHAR(10): id=1 (11 chars), 2 (12 chars)",
        "label VARCHAR(10)",
    ),
    Bad(
        "nan",
        ("mariadb", "sqlite"),
        f"SELECT i AS id, CASE WHEN i = 3 THEN 'NaN'::DOUBLE ELSE i END AS score {ROWS}",
        "score: 1 row holds NaN",
    ),
    Bad(
        "nan_existing",  # the case that crashed: LOAD DATA refused the NaN while the dry run staged it
        ("mariadb",),
        f"SELECT i AS id, CASE WHEN i = 3 THEN 'NaN'::DOUBLE ELSE i END AS score {ROWS}",
        "score: 1 row holds NaN or infinity, which MySQL cannot store: id=3",
        "score DOUBLE",
    ),
    Bad(
        "inf",
        ("mariadb",),
        f"SELECT i AS id, CASE WHEN i = 4 THEN '-inf'::DOUBLE ELSE i END AS score {ROWS}",
        "score: 1 row holds NaN or infinity, which MySQL cannot store: id=4",
    ),
    Bad(
        "wide_decimal",
        ("mariadb", "postgres"),
        f"SELECT i AS id, CAST(CASE WHEN i = 2 THEN 123456.5 ELSE i END AS DECIMAL(10,2)) AS amount {ROWS}",
        "amount: 1 row exceeds DECIMAL(5,2) (at least 1e3 in absolute value): id=2",
        "amount DECIMAL(5,2)",
    ),
    Bad(
        "scale",
        ("mariadb", "postgres"),
        f"SELECT i AS id, CAST(i + 0.125 AS DECIMAL(10,3)) AS amount {ROWS}",
        "amount: 5 rows have more than 2 decimal places",
        "amount DECIMAL(5,2)",
    ),
    Bad(
        "int_range",
        ("mariadb", "postgres"),
        f"SELECT i AS id, CASE WHEN i = 5 THEN 3000000000 ELSE i END AS views {ROWS}",
        "views: 1 row is outside the range of the destination's INTEGER",
        "views INTEGER",
    ),
    Bad(
        "mysql_dates",
        ("mariadb",),
        f"SELECT i AS id, CASE WHEN i = 2 THEN DATE '0999-12-31' ELSE DATE '2026-01-01' END AS day {ROWS}",
        "day: 1 row is outside the range of DATE in MySQL: id=2",
    ),
    Bad(
        "infinite_dates",
        ALL,
        f"SELECT i AS id, CASE WHEN i = 1 THEN 'infinity'::TIMESTAMP ELSE TIMESTAMP '2026-01-01' END AS seen {ROWS}",
        "seen: 1 row holds an infinite date",
    ),
    Bad(
        "utf8mb3",
        ("mariadb",),
        f"SELECT i AS id, CASE WHEN i = 3 THEN 'ok 🙂' ELSE 'row' END AS label {ROWS}",
        "label: 1 row holds 4-byte UTF-8 characters (emoji)",
        "label VARCHAR(50) CHARACTER SET utf8mb3",
    ),
    Bad(
        "not_null",
        ALL,
        f"SELECT i AS id, CASE WHEN i = 4 THEN NULL ELSE 'x' END AS label {ROWS}",
        "label: 1 row is NULL but the destination column is NOT NULL: id=4",
        "label VARCHAR(50) NOT NULL",
    ),
    Bad(
        "drift",
        ALL,
        f"SELECT i AS id, 'x' AS label, 'gold' AS tier {ROWS}",
        "tier: no such column in the destination (on_schema_change: fail)",
        "label VARCHAR(50)",
    ),
    Bad(
        "scoped",
        ALL,
        f"SELECT i AS id, CASE WHEN i = 5 THEN 'app' ELSE 'salesforce' END AS origin {ROWS}",
        "origin: 1 row falls outside the sync's scope (origin=salesforce)",
        options=(("scope", {"origin": "salesforce"}),),
    ),
]


@pytest.mark.parametrize("dialect", ALL)
def test_plan_names_every_bad_value_and_exits_3(dialect, tmp_path, monkeypatch, capsys):
    cases = [c for c in CASES if dialect in c.dialects]
    duck = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(duck)) as con:
        for case in cases:
            con.execute(f"CREATE TABLE m_{case.name} AS {case.select}")
    syncs = {
        c.name: {
            "source": f"m_{c.name}",
            "destination": "app",
            "table": c.name,
            "primary_key": "id",
            "mode": "mirror",
            **dict(c.options),
        }
        for c in cases
    }
    config = SyncConfig.model_validate(
        {"destinations": {"app": {"url_env": "ACTIVATION_TEST_APP_URL"}}, "syncs": syncs}
    )
    with destination_database(dialect, tmp_path) as url:
        execute(url, *[f"CREATE TABLE {c.name} (id BIGINT PRIMARY KEY, {c.table})" for c in cases if c.table])
        monkeypatch.setenv("ACTIVATION_TEST_APP_URL", url)
        monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(duck))
        relations = {c.name: MartRelation("main", f"m_{c.name}") for c in cases}
        project = Project(Settings.from_env(), config, relations, manifest={})
        capsys.readouterr()
        code = report_plan(project, project.select([]))
        out = capsys.readouterr()
        assert code == EXIT_REFUSED
        assert "Traceback" not in out.out + out.err
        for case in cases:
            assert f"app.{case.name}.{case.line}" in out.out, f"{case.name}:\n{out.out}"
        assert f"{len(cases)} sync(s) would be refused" in out.out
        engine = engine_for(url)
        try:  # the dry run created nothing and wrote nothing
            tables = set(sa.inspect(engine).get_table_names())
            assert tables == {c.name for c in cases if c.table}
            with engine.connect() as conn:
                assert all(not conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables)
        finally:
            engine.dispose()
