"""Asset checks on destination tables: each passes on good data and fails on crafted bad data."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation import checks
from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.resources import normalize_url
from activation.settings import PROJECT_ROOT
from activation.syncs.spec import load_sync_config
from tests.databases import destination_database, sqlite_database
from tests.integration.test_end_to_end import SYNCS, mart_relation

CONFIG = load_sync_config(PROJECT_ROOT / "syncs.yml")
KEYS = [dg.AssetKey([s.destination, s.table]) for s in SYNCS]


@pytest.fixture
def urls(request, tmp_path, monkeypatch):
    kind = getattr(request, "param", "mariadb")
    with destination_database(kind, tmp_path) as app_url, sqlite_database(tmp_path) as crm_url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", app_url)
        monkeypatch.setenv("ACTIVATION_CRM_DB_URL", crm_url)
        yield {"app": app_url, "crm": crm_url}


def sync(settings, keys=KEYS, raise_on_error=True) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_job_def(ACTIVATE_JOB)
    return job.execute_in_process(
        asset_selection=keys, instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def edit_mart(warehouse, sql: str) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            sql.format(
                facilities=mart_relation("app_facilities"),
                applications=mart_relation("app_applications"),
                postings=mart_relation("app_job_postings"),
            )
        )


def table_rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}")).all()), key=str)
    finally:
        engine.dispose()


@pytest.mark.parametrize("urls", ["sqlite", "mariadb", "postgres"], indirect=True)
def test_every_check_passes_on_good_data(settings, urls):
    result = sync(settings)
    assert result.success
    evals = evaluations(result)
    for s in SYNCS:
        key = f"{s.destination}/{s.table}"
        names = {n for k, n in evals if k == key}
        expected = {c.name for c in checks.check_specs(s, dg.AssetKey([s.destination, s.table]))}
        assert names == expected, key
        for name in names:
            e = evals[(key, name)]
            assert e.passed, f"{key} {name}: {e.metadata['summary'].value}"
    again = evaluations(sync(settings))  # incremental: nothing sent, the destination still matches
    assert all(e.passed for e in again.values())
