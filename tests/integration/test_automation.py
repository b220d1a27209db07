"""Automation, freshness and alerts, evaluated against a real (ephemeral) Dagster instance."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from activation.definitions import build_definitions
from activation.orchestration import automation
from activation.settings import Settings

MART = dg.AssetKey("crm_customer_scores")
SYNC = dg.AssetKey(["crm", "customer_scores"])
DBT_TEST = "unique_crm_customer_scores_account_id"


@pytest.fixture
def defs(prepared_project, tmp_path, monkeypatch) -> dg.Definitions:
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(tmp_path / "missing" / "warehouse.duckdb"))
    monkeypatch.setenv("ACTIVATION_APP_DB_URL", f"sqlite:///{tmp_path / 'app.sqlite'}")
    monkeypatch.setenv("ACTIVATION_CRM_DB_URL", f"sqlite:///{tmp_path / 'crm.sqlite'}")
    return build_definitions(Settings.from_env())


def requested(result, key: dg.AssetKey) -> int:
    return result.get_num_requested(key)


def dbt_build(defs, instance, failing: str | None = None) -> None:
    """What a dbt build reports for the mart: a materialization, then its tests as checks."""
    instance.report_runless_asset_event(dg.AssetMaterialization(MART))
    graph = defs.resolve_asset_graph()
    for key in graph.get(MART).check_keys:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=MART, check_name=key.name, passed=key.name != failing, severity=dg.AssetCheckSeverity.ERROR
            )
        )


def test_sync_is_requested_after_its_mart_materializes_and_only_when_blocking_checks_passed(defs):
    instance = dg.DagsterInstance.ephemeral()
    tick = dg.evaluate_automation_conditions(defs, instance)
    assert requested(tick, SYNC) == 0, "the mart was never built: nothing to sync"

    dbt_build(defs, instance)
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert requested(tick, SYNC) == 1, "the mart materialized: its sync is requested"
    assert requested(tick, dg.AssetKey(["app", "facilities"])) == 0, "other marts did not change"

    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert requested(tick, SYNC) == 0, "requested once per mart update"

    # A new build whose blocking dbt test failed: the sync must not run on that mart.
    dbt_build(defs, instance, failing=DBT_TEST)
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert requested(tick, SYNC) == 0, "a failed blocking dbt test holds the sync back"

    dbt_build(defs, instance)
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert requested(tick, SYNC) == 1, "the next build passes its tests: it syncs"


def test_dbt_tests_at_severity_error_are_blocking_checks(defs):
    graph = defs.resolve_asset_graph()
    specs = {k.name: graph.get_check_spec(k) for k in graph.get(MART).check_keys}
    assert specs[DBT_TEST].blocking


def test_automation_sensors_freshness_and_schedule_are_declared(defs):
    sensors = {s.name: s for s in defs.sensors}
    for group in ("app_db", "crm_db"):
        sensor = sensors[f"{group}_automation"]
        assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["sync_failure_alerts"].default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    assert isinstance(graph.get(SYNC).freshness_policy, dg.FreshnessPolicy)
    assert isinstance(graph.get(MART).freshness_policy, dg.FreshnessPolicy), "marts have one too"
    assert graph.get(dg.AssetKey("stg_salesforce__events")).freshness_policy is None
    assert defs.resolve_schedule_def("dbt_build_schedule").cron_schedule == automation.DEFAULT_DBT_CRON
    daily = defs.resolve_schedule_def("daily_partitions_schedule")
    assert daily.cron_schedule == "30 5 * * *" and daily.default_status == dg.DefaultScheduleStatus.RUNNING


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_sync_is_reported_to_the_webhook(defs, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    secret_url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/s3cr3t?token=abc"
    monkeypatch.setenv(automation.WEBHOOK_ENV, secret_url)
    _Hook.received.clear()
    try:
        instance = dg.DagsterInstance.ephemeral()
        # A real failed sync: the warehouse file does not exist.
        result = defs.resolve_job_def("activate").execute_in_process(
            asset_selection=[SYNC], instance=instance, raise_on_error=False
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        sensor = next(s for s in defs.sensors if s.name == "sync_failure_alerts")
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=failure, dagster_instance=instance, dagster_run=result.dagster_run
        ).for_run_failure()
        sensor(context)
    finally:
        server.shutdown()
    (alert,) = _Hook.received
    assert alert["path"] == "/services/T000/B000/s3cr3t?token=abc"
    report = alert["json"]
    assert report["run_id"] == result.run_id
    assert report["assets"] == ["crm/customer_scores"]
    assert report["failures"][0]["step"] == "sync_crm"
    assert report["failures"][0]["error"]
    assert automation.redacted(secret_url) == "http://127.0.0.1/…"


APP = {name: dg.AssetKey(["app", name]) for name in ("facilities", "job_postings", "candidates", "applications")}
APP_MARTS = {name: dg.AssetKey(f"app_{name}") for name in APP}
RELATIONSHIPS_TEST = "relationships_app_job_postings_facility_id__facility_id__ref_app_facilities_"


def build(defs, instance, mart: dg.AssetKey, failing: str | None = None) -> None:
    """A dbt build of one mart as Dagster records it: the materialization, then its tests."""
    instance.report_runless_asset_event(dg.AssetMaterialization(mart))
    for key in defs.resolve_asset_graph().get(mart).check_keys:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=mart, check_name=key.name, passed=key.name != failing, severity=dg.AssetCheckSeverity.ERROR
            )
        )


def requested_app_tables(tick) -> set[str]:
    return {name for name, key in APP.items() if tick.get_num_requested(key)}


def test_tables_connected_by_foreign_keys_are_requested_together(defs):
    instance = dg.DagsterInstance.ephemeral()
    app = dg.AssetSelection.groups("app_db")
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app)
    for mart in APP_MARTS.values():
        build(defs, instance, mart)
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set(APP), "the first build syncs every table"
    for key in APP.values():  # that run synced them
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set()

    # One parent's mart alone: its children, and their other parents, come along in the same tick.
    build(defs, instance, APP_MARTS["facilities"])
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set(APP)
    assert tick.get_num_requested(dg.AssetKey(["app", "candidate_activities"])) == 0, "not connected"

    # That run tripped a guard on the parent: its failed check does not hold the children back
    # when the marts change again (below).
    guard = dg.AssetCheckEvaluation(
        asset_key=APP["facilities"],
        check_name="guards_within_limits",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
    )
    instance.report_runless_asset_event(guard)
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set(), "requested once per mart update"

    # A failed blocking dbt test on one member's mart holds the whole group, not just that table.
    build(defs, instance, APP_MARTS["facilities"])
    build(defs, instance, APP_MARTS["job_postings"], failing=RELATIONSHIPS_TEST)
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set()

    build(defs, instance, APP_MARTS["job_postings"])
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=app, cursor=tick.cursor)
    assert requested_app_tables(tick) == set(APP), "the marts are consistent again: the whole group, at once"


def test_asset_groups_joined_by_foreign_keys_share_one_sensor():
    """Tables of one foreign-key group placed in different asset groups: one sensor, one tick."""
    sensors = {s.name: s for s in automation.automation_sensors(["app_db", "crm_db", "hr"], [{"app_db", "hr"}])}
    assert set(sensors) == {"app_db_automation", "crm_db_automation"}
    assert sensors["app_db_automation"].asset_selection == dg.AssetSelection.groups("app_db", "hr")
