"""dbt tests on sources are asset checks on the raw tables, run by the dbt build."""

from __future__ import annotations

import logging

import dagster as dg
import duckdb

from activation.definitions import ACTIVATE_JOB, DBT_JOB, build_definitions
from activation.orchestration.dbt import load_manifest
from activation.project import dbt_project

RAW_ACCOUNT = dg.AssetKey(["salesforce", "account"])
OBSERVATION_WARNING = "Logging an `AssetObservation` instead of an `AssetCheckResult`"


def source_tests(settings) -> dict[dg.AssetKey, set[str]]:
    """The dbt tests of each source table, keyed like the raw assets, from the manifest."""
    manifest = load_manifest(dbt_project(settings))
    out: dict[dg.AssetKey, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node["depends_on"]["nodes"][0].startswith("source."):
            source = manifest["sources"][node["depends_on"]["nodes"][0]]
            out.setdefault(dg.AssetKey([source["source_name"], source["name"]]), set()).add(node["name"])
    return out


def test_source_tests_are_blocking_checks_on_the_raw_tables_and_in_the_dbt_jobs(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    expected = source_tests(settings)
    assert RAW_ACCOUNT in expected and len(expected) == 6, "every raw Salesforce table has tests"
    for key, names in expected.items():
        checks = {k.name: graph.get_check_spec(k) for k in graph.get(key).check_keys}
        assert set(checks) == names, key
        assert all(spec.blocking for spec in checks.values()), "severity error: blocking, like the model tests"
    for job_name in (DBT_JOB, ACTIVATE_JOB):
        job_checks = defs.resolve_job_def(job_name).asset_layer.asset_graph.asset_check_keys
        assert {(k.asset_key, k.name) for k in job_checks} >= {(key, n) for key, ns in expected.items() for n in ns}


def test_dbt_build_records_source_tests_on_the_raw_tables_without_observation_warnings(settings, warehouse, caplog):
    """The scheduled dbt build (the same dbt step as `activation run`), with a duplicate raw account id."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("INSERT INTO raw_salesforce.account (SELECT * FROM raw_salesforce.account ORDER BY id LIMIT 1)")
    instance = dg.DagsterInstance.ephemeral()
    with caplog.at_level(logging.WARNING):
        result = (
            build_definitions(settings)
            .resolve_job_def(DBT_JOB)
            .execute_in_process(instance=instance, raise_on_error=False)
        )

    evaluations = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    expected = source_tests(settings)
    assert {(key, n) for key, ns in expected.items() for n in ns} <= set(evaluations), "every source test recorded"
    failed = {(k.to_user_string(), n) for (k, n), e in evaluations.items() if not e.passed}
    assert failed == {("salesforce/account", "source_unique_salesforce_account_id")}
    assert evaluations[(RAW_ACCOUNT, "source_unique_salesforce_account_id")].blocking
    # dbt skips what reads the failing source; the blocking failure fails the step.
    materialized = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "stg_salesforce__candidates" in materialized and "stg_salesforce__accounts" not in materialized
    assert not result.success
    # source tests are no longer logged as observations, nor warned about
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    logs = [r.user_message for r in instance.all_logs(result.run_id)] + [r.getMessage() for r in caplog.records]
    assert not [m for m in logs if OBSERVATION_WARNING in m]
