"""Automation with foreign keys, the way the daemon drives it (issue 12, item 7).

A real Dagster instance (temporary DAGSTER_HOME). Each tick is the app sensor's evaluation of
the automation conditions, its requests grouped into runs by the daemon's own
`build_run_requests`, and every run executed on that instance with the project's `activate`
job. The story: day 1 synced; a day of changes; one parent's mart materialized with its upstream
models only (a real dbt run through Dagster, one process per step as under the webserver);
ticks; a person syncing that parent alone; the full build of the day; ticks. The app database
must end equal to the marts without anyone stepping in. The full builds are the session's own
dbt builds of the same days (the `lake` fixture), recorded as a build records them, to keep
the test within its time.
"""

from __future__ import annotations

import functools
import operator
import shutil
from collections.abc import Sequence

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests

from activation import demo
from activation.definitions import ACTIVATE_JOB, DBT_JOB, build_definitions
from activation.settings import Settings
from tests.compare import destination_rows, sorted_mart_rows
from tests.integration.conftest import SEED
from tests.integration.test_end_to_end import CONFIG, mart_columns, mart_relation

APP_SYNCS = [s for s in CONFIG.load_order() if s.destination == "app" and not s.partition]
APP_KEYS = {dg.AssetKey(["app", s.table]) for s in APP_SYNCS}
APP_SENSOR = "app_db_automation"
PARTIAL = ["stg_salesforce__accounts", "dim_facilities", "app_facilities"]  # "materialize with upstream"


def definitions() -> dg.Definitions:
    return build_definitions(Settings.from_env())


def dbt_job() -> dg.JobDefinition:
    """Importable by name: the multiprocess executor rebuilds it in each step's process."""
    return definitions().resolve_job_def(DBT_JOB)


class Daemon:
    """The automation sensor's ticks on one instance, and the runs they request."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, sensors: Sequence[str] = (APP_SENSOR,)):
        self.defs, self.instance = defs, instance
        selections = [s.asset_selection for s in defs.sensors if s.name in sensors]
        assert len(selections) == len(sensors), f"sensors {sensors} are not all in the definitions"
        self.selection = functools.reduce(operator.or_, selections)
        self.cursor = dg.evaluate_automation_conditions(defs, instance, asset_selection=self.selection).cursor
        self.runs: list[dg.ExecuteInProcessResult] = []

    def tick(self) -> list[set[dg.AssetKey]]:
        """One evaluation; executes its run requests; returns what each run selected."""
        result = dg.evaluate_automation_conditions(
            self.defs, self.instance, asset_selection=self.selection, cursor=self.cursor
        )
        self.cursor = result.cursor
        # What the daemon does with a tick's requests (AutomationTickEvaluationContext).
        requests = build_run_requests(
            result._requested_subsets, self.defs.resolve_asset_graph(), run_tags=None, emit_backfills=False
        )
        job = self.defs.resolve_job_def(ACTIVATE_JOB)
        selected = []
        for request in requests:
            selected.append(set(request.asset_selection))
            self.runs.append(
                job.execute_in_process(
                    asset_selection=list(request.asset_selection),
                    instance=self.instance,
                    tags={"dagster/from_automation_condition": "true"},
                    raise_on_error=False,
                )
            )
        return selected


def build(instance: dg.DagsterInstance, selection: list[str] | None = None) -> dg.ExecutionResult:
    keys = [dg.AssetKey(name) for name in selection] if selection else None
    with dg.execute_job(dg.reconstructable(dbt_job), instance=instance, asset_selection=keys) as result:
        return result


def app_equals_marts(warehouse, url: str) -> dict[str, str]:
    """Per table, how the app differs from its mart (empty: equal, row for row)."""
    differences = {}
    for sync in APP_SYNCS:
        columns = mart_columns(warehouse, sync.source)
        expected = sorted_mart_rows(warehouse, mart_relation(sync.source), columns, sync.primary_key)
        actual = destination_rows(url, sync.table, columns, sync.primary_key)
        if sync.mode.value == "upsert":  # keeps rows that left the mart; every mart row is there, identical
            keys = {r[: len(sync.primary_key)] for r in expected}
            actual = [r for r in actual if r[: len(sync.primary_key)] in keys]
        if actual != expected:
            differences[sync.table] = f"{len(actual)} rows in the app, {len(expected)} in {sync.source}"
    return differences


@pytest.fixture
def story(lake, prepared_project, tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(lake.day1, warehouse)
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("ACTIVATION_APP_DB_URL", url)
    monkeypatch.setenv("ACTIVATION_CRM_DB_URL", f"sqlite:///{tmp_path / 'crm.sqlite'}")
    with dg.instance_for_test() as instance:
        yield warehouse, url, instance


def report_full_build(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """What a full dbt build records: every model materialized, every test (asset check) passed."""
    graph = defs.resolve_asset_graph()
    for key in sorted(graph.get(dg.AssetKey("app_facilities")).assets_def.keys):  # the dbt models
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for check in graph.get(key).check_keys:
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(asset_key=key, check_name=check.name, passed=True)
            )


def test_tables_referencing_each_other_converge_through_the_daemons_ticks(story, lake):
    warehouse, url, instance = story
    defs = definitions()
    daemon = Daemon(defs, instance)

    # Day 1: the session's dbt build made these marts; Dagster records that build.
    report_full_build(defs, instance)
    assert daemon.tick() == [APP_KEYS], "day 1: every table of the group, in one run"
    assert daemon.runs[-1].success
    assert app_equals_marts(warehouse, url) == {}

    # A day of changes; then one parent's mart is materialized with its upstream models only, as
    # "materialize with upstream" does in the UI: a real dbt run, failing (as in the issue) on the
    # relationships test of app_job_postings, which it did not rebuild.
    demo.apply_day_of_changes(warehouse, seed=SEED)
    partial = build(instance, PARTIAL)
    assert not partial.success
    assert {e.asset_key.to_user_string() for e in partial.get_asset_materialization_events()} == set(PARTIAL)
    (dbt_failure,) = partial.get_step_failure_events()
    assert "relationships_app_job_postings_facility_id" in dbt_failure.event_specific_data.error.message

    # That test failed on a mart of the group: the ticks hold the whole group (no sync of
    # `facilities` alone, whose rows that left are still referenced by job_postings).
    assert daemon.tick() == []

    # A person materializes `app/facilities` alone (the UI, or `activation sync facilities`): the
    # selection is respected, and the sync is refused for what it is, a foreign key, naming rows.
    alone = defs.resolve_job_def(ACTIVATE_JOB).execute_in_process(
        asset_selection=[dg.AssetKey(["app", "facilities"])], instance=instance, raise_on_error=False
    )
    assert not alone.success
    (failure,) = alone.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "facilities: deleting rows of mart app_facilities violates a foreign key" in message
    assert "job_postings(facility_id) -> facilities(facility_id)" in message and "job_posting_id='" in message
    (guards,) = [c for c in alone.get_asset_check_evaluations() if c.check_name == "guards_within_limits"]
    assert guards.passed, "a refusal is not a guard violation"
    assert daemon.tick() == [], "nothing changed for automation"

    # The full build of that day (the session built exactly this day: same lake, same seed) makes
    # the marts consistent; the parent's refused run holds nothing back: the next tick converges.
    shutil.copy(lake.day2, warehouse)
    report_full_build(defs, instance)
    assert daemon.tick() == [APP_KEYS]
    assert daemon.runs[-1].success
    assert app_equals_marts(warehouse, url) == {}
    assert daemon.tick() == [], "converged: nothing more to do"
