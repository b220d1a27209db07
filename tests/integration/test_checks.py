"""Asset checks on destination tables: each passes on good data and fails on crafted bad data."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.destinations.sql import normalize_url, sql_dialect
from activation.orchestration.checks.post_write import PostWriteChecks
from activation.orchestration.resources import DuckDBWarehouse
from activation.settings import PROJECT_ROOT
from activation.syncs import outcome as checks
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncResult
from activation.syncs.spec import load_sync_config
from activation.warehouses.duckdb import DuckDB
from tests.databases import destination_database, sqlite_database
from tests.integration.test_end_to_end import SYNCS, mart_relation

# what each SQL dialect declares it can do (destinations/sql/<dialect>.py)
SQL_CAPABILITIES = {d.kind: d.capabilities for d in map(sql_dialect, ("mysql://", "postgresql://", "sqlite://"))}

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
    declared = build_definitions(settings).resolve_asset_graph()
    for s in SYNCS:
        key = f"{s.destination}/{s.table}"
        names = {n for k, n in evals if k == key}
        expected = {c.name for c in declared.get(dg.AssetKey([s.destination, s.table])).check_keys}
        assert names == expected, key
        for name in names:
            e = evals[(key, name)]
            assert e.passed, f"{key} {name}: {e.metadata['summary'].value}"
    again = evaluations(sync(settings))  # incremental: nothing sent, the destination still matches
    assert all(e.passed for e in again.values())


def evaluation(result, table: str, name: str) -> dg.AssetCheckEvaluation:
    return evaluations(result)[(f"app/{table}", name)]


def app_snapshot(url: str) -> dict[str, list[tuple]]:
    return {s.table: table_rows(url, s.table) for s in SYNCS if s.destination == "app"}


def materialized(result) -> set[str]:
    return {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_null_and_duplicate_keys_block_the_sync_and_write_nothing(settings, urls, warehouse):
    assert sync(settings).success
    before = app_snapshot(urls["app"])
    edit_mart(
        warehouse,
        "CREATE OR REPLACE TABLE {facilities} AS SELECT * FROM {facilities} "
        "UNION ALL (SELECT * FROM {facilities} ORDER BY facility_id LIMIT 1) "
        "UNION ALL (SELECT * REPLACE (NULL AS facility_id) FROM {facilities} ORDER BY facility_id LIMIT 1);"
        "UPDATE {applications} SET status = 'Edited'",  # a change that must not be written
    )
    result = sync(settings, raise_on_error=False)
    assert not result.success
    keys = evaluation(result, "facilities", checks.KEYS)
    assert not keys.passed and keys.blocking
    assert keys.metadata["null_key_rows"].value == 1
    assert keys.metadata["duplicated_keys"].value == 1
    first = min(r[0] for r in before["facilities"])
    assert keys.metadata["sample_duplicate_keys"].value == [first]
    assert "duplicate key" in keys.metadata["problems"].value
    assert evaluation(result, "applications", checks.KEYS).passed
    assert materialized(result) == {"crm/customer_scores"}, "no app table materialized (crm is another database)"
    assert app_snapshot(urls["app"]) == before, "the destination is untouched"


def test_values_that_do_not_fit_the_destination_block_the_sync(settings, urls, warehouse):
    assert sync(settings).success
    engine = sa.create_engine(normalize_url(urls["app"]))
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE facilities MODIFY city VARCHAR(64) NOT NULL"))
    engine.dispose()
    before = app_snapshot(urls["app"])
    ids = sorted(r[0] for r in before["facilities"])
    edit_mart(
        warehouse,
        f"UPDATE {{facilities}} SET name = repeat('長', 300) WHERE facility_id = '{ids[1]}';"
        f"UPDATE {{facilities}} SET city = NULL WHERE facility_id IN ('{ids[2]}', '{ids[3]}');",
    )
    result = sync(settings, raise_on_error=False)
    assert not result.success
    fits = evaluation(result, "facilities", checks.FITS)
    assert not fits.passed
    table = fits.metadata["problems"].value
    assert "longer than VARCHAR" in table and "NULL but the destination column is NOT NULL" in table
    assert fits.metadata["sample_keys"].value == {"city": [ids[2], ids[3]], "name": [f"{ids[1]} (300 chars)"]}
    assert evaluation(result, "job_postings", checks.FITS).passed
    assert app_snapshot(urls["app"]) == before


def test_a_tripped_guard_fails_its_check_and_writes_nothing(settings, urls, warehouse):
    assert sync(settings).success
    before = app_snapshot(urls["app"])
    edit_mart(warehouse, "DELETE FROM {applications} WHERE hash(application_id) % 10 < 7")
    result = sync(settings, raise_on_error=False)
    assert not result.success
    guard = evaluation(result, "applications", checks.GUARDS)
    assert not guard.passed and guard.blocking
    assert guard.metadata["planned_deletes"].value > len(before["applications"]) / 2
    assert "max_deletes" in guard.metadata["summary"].value
    assert app_snapshot(urls["app"]) == before


def test_a_row_edited_in_the_destination_fails_the_checksum(settings, urls):
    assert sync(settings).success
    ids = sorted(r[0] for r in table_rows(urls["app"], "facilities"))
    engine = sa.create_engine(normalize_url(urls["app"]))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE facilities SET name = 'edited by hand' WHERE facility_id = :id"), {"id": ids[4]})
    engine.dispose()
    # The mart did not change: the sync sends nothing, and only the checksum notices.
    result = sync(settings, keys=[dg.AssetKey(["app", "facilities"])])
    assert result.success, "post-write checks do not block"
    checksum = evaluation(result, "facilities", checks.CHECKSUM)
    assert not checksum.passed
    assert checksum.metadata["sample_differing_keys"].value == [ids[4]]
    assert checksum.metadata["mart_checksum"].value != checksum.metadata["destination_checksum"].value
    assert evaluation(result, "facilities", checks.ROW_COUNT).passed


def test_row_count_orphans_and_rejects_fail_on_crafted_destinations(settings, urls, warehouse):
    from activation.orchestration.dbt import load_manifest, model_relation
    from activation.project import dbt_project

    assert sync(settings).success
    engine = sa.create_engine(normalize_url(urls["app"]))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM applications ORDER BY application_id LIMIT 2"))
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        conn.execute(sa.text("UPDATE job_postings SET facility_id = 'gone' ORDER BY job_posting_id LIMIT 1"))
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
        orphan = conn.execute(sa.text("SELECT job_posting_id FROM job_postings WHERE facility_id = 'gone'")).scalar()
    manifest = load_manifest(dbt_project(settings))
    with DuckDBWarehouse(path=str(warehouse)).connect() as con:
        planner = DuckDB(con, str(warehouse.parent / "state.duckdb"), "test")
        post = PostWriteChecks(planner, engine, SQL_CAPABILITIES["mysql"])

        def plan(name):
            spec = CONFIG.syncs[name]
            return planner.describe(spec, MartRelation(*model_relation(manifest, spec.source)))

        applications = plan("applications")
        rows = planner.mart_rows(applications)
        result = SyncResult("applications", "applications", "replace", rows_in_mart=rows, rejected=3)
        count = post.row_count(applications, result)
        assert not count.passed and count.metadata["difference"] == -2
        assert not post.checksum(applications).passed
        orphans = post.orphans(plan("job_postings"))
        assert not orphans.passed and orphans.metadata["orphaned_rows"] == 1
        assert orphans.metadata["sample_orphaned_keys"] == {"facility_id": [orphan]}
        rejects = post.rejects(applications, result)
        assert not rejects.passed and rejects.metadata["rows_rejected"] == 3
        assert post.rejects(applications, SyncResult("a", "a", "replace", rows_in_mart=rows)).passed
        assert post.orphans(plan("applications")).passed
    engine.dispose()


def test_a_failing_blocking_dbt_test_stops_the_syncs_in_the_same_run(settings, warehouse, tmp_path, monkeypatch):
    """dbt tests at severity error are blocking checks: the marts' syncs never start."""
    dim = mart_relation("dim_facilities")  # upstream of app_facilities; not rebuilt by this run
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"INSERT INTO {dim} (SELECT * FROM {dim} ORDER BY facility_id LIMIT 1)")
    with sqlite_database(tmp_path) as app_url, sqlite_database(tmp_path) as crm_url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", app_url)
        monkeypatch.setenv("ACTIVATION_CRM_DB_URL", crm_url)
        job = build_definitions(settings).resolve_job_def(ACTIVATE_JOB)
        result = job.execute_in_process(
            asset_selection=[dg.AssetKey("app_facilities"), dg.AssetKey(["app", "facilities"])],
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert not result.success
        unique = evaluations(result)[("app_facilities", "unique_app_facilities_facility_id")]
        assert not unique.passed and unique.blocking
        assert not any(k.startswith(("app/", "crm/")) for k in materialized(result)), "no sync ran"
        assert not sa.inspect(sa.create_engine(app_url)).get_table_names(), "the app database is untouched"
