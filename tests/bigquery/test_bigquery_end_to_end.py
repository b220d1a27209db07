"""BigQuery as the warehouse, end to end on a local emulator:
raw lake -> dbt (target `bigquery`) -> Dagster syncs (activation.warehouses.bigquery) -> MariaDB.

The first sync copies every mart row for row; after a day of changes, `activation plan` (a dry
run in BigQuery) lists what the second sync then applies: only the rows that changed, and the
counts it reports are the true differences. Both runs are in the history in BigQuery.
"""

from __future__ import annotations

import dagster as dg
import pytest

from activation import cli, demo
from activation.definitions import ACTIVATE_JOB, build_definitions
from activation.orchestration.dbt import load_manifest, model_relation
from activation.project import dbt_project
from activation.settings import PROJECT_ROOT, Settings
from activation.syncs.spec import load_sync_config
from tests.bigquery.conftest import dbt_build_bigquery, load_raw_lake
from tests.compare import _norm, destination_rows
from tests.databases import mariadb_database

pytestmark = pytest.mark.bigquery

CONFIG = load_sync_config(PROJECT_ROOT / "syncs.yml")
SYNCS = [s for s in CONFIG.load_order() if not s.partition]  # the daily flow runs per partition
SCALE = 0.003
SEED = 7


def _order(rows: list[tuple], columns: list[str], key: list[str]) -> list[tuple]:
    return sorted(rows, key=lambda r: [str(r[columns.index(k)]) for k in key])


def mart_rows(client, settings: Settings, model: str) -> tuple[list[str], list[tuple]]:
    schema, table = model_relation(load_manifest(dbt_project(settings)), model)
    result = client.query(f"SELECT * FROM `{client.project}.{schema}.{table}`").result()
    columns = [f.name for f in result.schema]
    return columns, [tuple(_norm(v) for v in row.values()) for row in result]


def snapshot(client, settings: Settings, urls: dict[str, str]) -> dict[str, tuple[list, list, list]]:
    """Per sync: (columns, mart rows, destination rows), both in the same order."""
    out = {}
    for sync in SYNCS:
        columns, expected = mart_rows(client, settings, sync.source)
        try:
            actual = destination_rows(urls[sync.destination], sync.table, columns, sync.primary_key)
        except Exception:  # the table does not exist before the first sync
            actual = []
        out[sync.name] = (columns, _order(expected, columns, sync.primary_key), actual)
    return out


def true_differences(sync, columns, mart, destination) -> tuple[int, int, int]:
    """(inserted, updated, deleted) that turn the destination into the mart under the sync's mode."""
    key = [columns.index(k) for k in sync.primary_key]
    want = {tuple(r[i] for i in key): r for r in mart}
    have = {tuple(r[i] for i in key): r for r in destination}
    inserted = len(want.keys() - have.keys())
    updated = sum(1 for k in want.keys() & have.keys() if want[k] != have[k])
    deleted = len(have.keys() - want.keys()) if sync.mode.deletes else 0
    return inserted, updated, deleted


def assert_destinations_equal_marts(state) -> None:
    for sync in SYNCS:
        columns, expected, actual = state[sync.name]
        assert expected, f"{sync.source} is empty: the demo lake is too small to test anything"
        if not sync.mode.deletes:  # upsert keeps rows that left the mart
            keys = {r[columns.index(sync.primary_key[0])] for r in expected}
            actual = [r for r in actual if r[columns.index(sync.primary_key[0])] in keys]
        assert actual == expected, f"{sync.destination}.{sync.table} differs from mart {sync.source}"


def run_syncs(settings: Settings) -> dict[str, dict]:
    defs = build_definitions(settings)
    keys = [dg.AssetKey([s.destination, s.table]) for s in SYNCS]
    result = defs.resolve_job_def(ACTIVATE_JOB).execute_in_process(
        asset_selection=keys, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    out = {}
    for event in result.get_asset_materialization_events():
        md = event.materialization.metadata
        out[event.materialization.asset_key.path[-1]] = {k: v.value for k, v in md.items() if k.startswith("rows_")} | {
            "strategy": md["strategy"].value,
            "change_detection": md["change_detection"].value,
        }
    return out


def counts(metadata: dict) -> tuple[int, int, int]:
    return metadata["rows_inserted"], metadata["rows_updated"], metadata["rows_deleted"]


def test_bigquery_marts_sync_to_mariadb_then_only_changes_follow(bq, tmp_path, monkeypatch, capsys):
    for name, value in bq.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.warehouse == "bigquery"
    # dbt writes the bigquery target's manifest where the definitions read it (no second parse).
    target_path = dbt_project(settings).manifest_path.parent

    lake = tmp_path / "lake" / "warehouse.duckdb"
    lake.parent.mkdir()
    demo.generate_lake(lake, scale=SCALE, seed=SEED)
    load_raw_lake(bq.client, lake)
    dbt_build_bigquery(bq.env, target_path, ["build"])  # models and their tests

    with mariadb_database() as app_url, mariadb_database() as crm_url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", app_url)
        monkeypatch.setenv("ACTIVATION_CRM_DB_URL", crm_url)
        urls = {"app": app_url, "crm": crm_url}

        first = run_syncs(settings)
        assert all(m["rows_inserted"] > 0 for m in first.values())
        assert_destinations_equal_marts(snapshot(bq.client, settings, urls))

        # (A run with nothing changed sends nothing: tests/warehouses, through the same engine.)
        demo.apply_day_of_changes(lake, seed=SEED)
        load_raw_lake(bq.client, lake)
        dbt_build_bigquery(bq.env, target_path, ["run", "--select", "marts"])
        before = snapshot(bq.client, settings, urls)
        expected = {s.table: true_differences(s, *before[s.name]) for s in SYNCS}
        assert expected["job_postings"][0] and expected["job_postings"][1] and expected["job_postings"][2], (
            "the day of changes adds, edits and removes job postings"
        )

        # `activation plan` on BigQuery for the sync with all three kinds of change (every sync
        # is planned on DuckDB in test_cli_plan_and_sync.py; the dry run's rules in tests/warehouses).
        postings = [s for s in SYNCS if s.table == "job_postings"]
        planned = {p.table: p for p in cli.plan_syncs(cli.load_project(), postings)}
        after = run_syncs(settings)
        assert_destinations_equal_marts(snapshot(bq.client, settings, urls))
        assert tuple(planned["job_postings"].counts.values()) == counts(after["job_postings"]), "planned == applied"
        capsys.readouterr()
        assert cli.main(["history", "--sync", "job_postings"]) == cli.EXIT_OK
        listed = [line for line in capsys.readouterr().out.splitlines() if " job_postings " in line]
        assert len(listed) == 2 and all(" success " in line for line in listed), "both runs, from BigQuery"
        for sync in SYNCS:
            got = after[sync.table]
            assert got["change_detection"] == "incremental", (sync.table, got)
            assert counts(got) == expected[sync.table], f"{sync.table}: reported {counts(got)}"
            if got["strategy"] == "diff":  # a swapped shadow table is loaded whole, by design
                inserted, updated, _ = expected[sync.table]
                assert got["rows_sent"] == inserted + updated, f"{sync.table}: only changed rows leave BigQuery"
