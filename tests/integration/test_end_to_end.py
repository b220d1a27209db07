"""The whole path on real components: demo lake -> dbt (DuckDB) -> Dagster syncs -> app databases."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.destinations.sql import normalize_url
from activation.orchestration.dbt import dbt_executable, load_manifest, model_relation
from activation.project import dbt_project
from activation.settings import PROJECT_ROOT
from activation.syncs.spec import load_sync_config
from tests.compare import destination_rows, sorted_mart_rows
from tests.databases import sqlite_database

CONFIG = load_sync_config(PROJECT_ROOT / "syncs.yml")
SYNCS = [s for s in CONFIG.load_order() if not s.partition]  # partitioned syncs: test_partitions.py


def mart_relation(model: str) -> str:
    schema, table = model_relation(load_manifest(dbt_project()), model)
    return f'"{schema}"."{table}"'


def mart_columns(warehouse, model: str) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return [r[0] for r in con.execute(f"DESCRIBE {mart_relation(model)}").fetchall()]


def assert_destinations_equal_marts(warehouse, urls: dict[str, str]) -> None:
    for sync in SYNCS:
        columns = mart_columns(warehouse, sync.source)
        expected = sorted_mart_rows(warehouse, mart_relation(sync.source), columns, sync.primary_key)
        actual = destination_rows(urls[sync.destination], sync.table, columns, sync.primary_key)
        if sync.mode.value == "upsert":
            # upsert keeps rows that left the mart; every mart row must be there, identical
            actual_keys = {r[columns.index(sync.primary_key[0])] for r in expected}
            actual = [r for r in actual if r[columns.index(sync.primary_key[0])] in actual_keys]
        assert len(expected) > 0, f"{sync.source} is empty: the demo lake is too small to test anything"
        assert actual == expected, f"{sync.destination}.{sync.table} differs from mart {sync.source}"


def assert_foreign_keys_intact(url: str) -> None:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            declared = 0
            for sync in SYNCS:
                if sync.destination != "app":
                    continue
                fks = inspector.get_foreign_keys(sync.table)
                assert {fk["constrained_columns"][0] for fk in fks} == set(sync.foreign_keys)
                for fk in fks:
                    declared += 1
                    child, parent = sync.table, fk["referred_table"]
                    (col,), (ref,) = fk["constrained_columns"], fk["referred_columns"]
                    orphans = conn.execute(
                        sa.text(
                            f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON c.{col} = p.{ref} "
                            f"WHERE c.{col} IS NOT NULL AND p.{ref} IS NULL"
                        )
                    ).scalar_one()
                    assert orphans == 0, f"{child}.{col} has {orphans} orphans"
            assert declared == 3
    finally:
        engine.dispose()


def sync_counts(result: dg.ExecuteInProcessResult) -> dict[str, tuple[int, int, int]]:
    out = {}
    for event in result.get_asset_materialization_events():
        md = event.materialization.metadata
        if "rows_inserted" in md:
            key = event.materialization.asset_key.to_user_string()
            out[key] = (md["rows_inserted"].value, md["rows_updated"].value, md["rows_deleted"].value)
    return out


def run_syncs(settings) -> dg.ExecuteInProcessResult:
    """Only the destination assets: the marts were built by the session's dbt run."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(ACTIVATE_JOB)
    keys = [dg.AssetKey([s.destination, s.table]) for s in SYNCS]
    result = job.execute_in_process(asset_selection=keys, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def app_urls(request, tmp_path, monkeypatch):
    from tests.databases import destination_database

    with destination_database(request.param, tmp_path) as app_url, sqlite_database(tmp_path) as crm_url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", app_url)
        monkeypatch.setenv("ACTIVATION_CRM_DB_URL", crm_url)
        yield {"app": app_url, "crm": crm_url}


def test_sync_copies_marts_row_for_row_and_converges_after_a_day_of_changes(settings, app_urls, lake, warehouse):
    first = sync_counts(run_syncs(settings))
    assert first["app/facilities"][0] > 0 and first["app/applications"][0] > 0
    assert_destinations_equal_marts(warehouse, app_urls)
    assert_foreign_keys_intact(app_urls["app"])

    again = sync_counts(run_syncs(settings))
    assert set(again.values()) == {(0, 0, 0)}, "a second sync with no changes must write nothing"

    shutil.copy(lake.day2, warehouse)  # the same warehouse after a day of Salesforce edits and a dbt build
    after = sync_counts(run_syncs(settings))
    assert_destinations_equal_marts(warehouse, app_urls)
    assert_foreign_keys_intact(app_urls["app"])
    assert after["app/job_postings"][0] > 0, "the day of changes adds job postings"
    assert after["app/job_postings"][1] > 0, "the day of changes edits job postings"
    assert after["app/job_postings"][2] > 0, "replace deletes postings that left the mart"
    assert after["app/applications"][2] > 0
    assert after["app/candidates"][2] == 0, "upsert never deletes"


def test_activate_command_runs_dbt_and_every_sync_on_the_embedded_defaults(settings, tmp_path, warehouse):
    """The README's main command: `activation run` (dbt inside Dagster, then the syncs, one process each)."""
    app, crm = tmp_path / "app.sqlite", tmp_path / "crm.sqlite"
    env = {
        **os.environ,
        "ACTIVATION_APP_DB_URL": f"sqlite:///{app}",
        "ACTIVATION_CRM_DB_URL": f"sqlite:///{crm}",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    proc = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "activation"), "run"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "success" in proc.stdout
    # What a person reads: dbt's result and a table per sync, not Dagster's event log or dbt's own log
    # (both stay in the instance for the UI; `--verbose` prints them).
    assert "DEBUG" not in proc.stdout + proc.stderr and "START sql" not in proc.stdout
    assert len(proc.stdout.splitlines()) < 15, proc.stdout
    assert re.search(r"^dbt build: \d+ models built, \d+ tests passed, 0 failed$", proc.stdout, re.M), proc.stdout
    header = "destination mode inserted updated deleted rejected checks passed checks failed seconds"
    assert header in [" ".join(line.split()) for line in proc.stdout.splitlines()]
    for asset, mode in [
        ("app/facilities", "mirror"),
        ("app/applications", "replace"),
        ("crm/customer_scores", "replace"),
    ]:
        assert re.search(rf"^{asset} +{mode} +[1-9][\d,]* +0 +0 +0 +[1-9]\d* +0 +\d+\.\d$", proc.stdout, re.M), asset
    assert_destinations_equal_marts(warehouse, {"app": f"sqlite:///{app}", "crm": f"sqlite:///{crm}"})

    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    facilities = instance.get_latest_materialization_event(dg.AssetKey("app_facilities")).asset_materialization
    assert facilities.metadata["dagster/row_count"].value > 0, "dbt row counts are attached"
    assert "dagster/column_schema" in facilities.metadata
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("app_facilities"), "unique_app_facilities_facility_id"), limit=1
    )
    assert checks and checks[0].status.value == "SUCCEEDED", "dbt tests run as asset checks"
    source = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["salesforce", "account"]), "source_unique_salesforce_account_id"), limit=1
    )
    assert source and source[0].status.value == "SUCCEEDED", "dbt source tests run as checks on the raw assets"
    synced = instance.get_latest_materialization_event(dg.AssetKey(["app", "facilities"])).asset_materialization
    assert synced.metadata["rows_inserted"].value == facilities.metadata["dagster/row_count"].value
    # numbers, so the asset page plots them over time
    for key in ("rows_inserted", "rows_updated", "rows_deleted", "rows_rejected", "rows_unchanged"):
        assert isinstance(synced.metadata[key].value, int), key
    assert isinstance(synced.metadata["duration_seconds"].value, float)
    assert isinstance(synced.metadata["rows_per_second"].value, float)
    assert synced.metadata["mode"].value == "mirror" and synced.metadata["destination"].value.startswith("sqlite")
    assert [c.name for c in synced.metadata["dagster/column_schema"].value.columns][0] == "facility_id"

    # The UI traces an app column back through dbt to the raw Salesforce field, hop by hop.
    def column_deps(key: dg.AssetKey, column: str) -> set[tuple[str, str]]:
        md = instance.get_latest_materialization_event(key).asset_materialization.metadata
        deps = md["dagster/column_lineage"].value.deps_by_column[column]
        return {(d.asset_key.to_user_string(), d.column_name) for d in deps}

    assert column_deps(dg.AssetKey(["app", "facilities"]), "city") == {("app_facilities", "city")}
    assert column_deps(dg.AssetKey("app_facilities"), "city") == {("dim_facilities", "city")}
    assert column_deps(dg.AssetKey("dim_facilities"), "city") == {("stg_salesforce__accounts", "city")}
    assert column_deps(dg.AssetKey("stg_salesforce__accounts"), "city") == {("salesforce/account", "billing_city")}


@pytest.mark.parametrize("app_urls", ["sqlite"], indirect=True)  # the wait is on the warehouse side
def test_sync_launched_while_dbt_builds_waits_for_the_warehouse(settings, app_urls, warehouse):
    """DuckDB admits one writer: a sync started mid-build waits, then syncs what dbt built."""
    from activation import demo
    from tests.integration.conftest import SEED

    demo.apply_day_of_changes(warehouse, seed=SEED)
    dbt = subprocess.Popen(
        [
            dbt_executable(),
            "build",
            "--profiles-dir",
            ".",
            "--target-path",
            str(warehouse.parent / "dbt_target"),
        ],
        cwd=PROJECT_ROOT / "dbt_project",
        env={**os.environ, "ACTIVATION_WAREHOUSE_PATH": str(warehouse)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        # Wait until dbt runs its first model, i.e. holds the file; probing the lock ourselves
        # would take it from dbt, which does not wait for locks.
        for line in dbt.stdout:
            lines.append(line)
            if " START " in line:
                break
        assert dbt.poll() is None, "".join(lines)
        result = run_syncs(settings)
    finally:
        output = "".join(lines) + dbt.communicate(timeout=300)[0]
    assert dbt.returncode == 0, output[-3000:]
    # The sync started while dbt held the file and could only read it after the build: it
    # succeeded, and what it wrote is what the build produced.
    assert result.success
    assert_destinations_equal_marts(warehouse, app_urls)
