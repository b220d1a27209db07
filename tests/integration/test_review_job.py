# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""The Dagster idiom of the pull-request review: the `review_pull_request` job's run observes each
destination asset with its part of the review (scenario: tests/integration/review_scenario.py)."""

from __future__ import annotations

import dagster as dg

from activation.definitions import build_definitions
from activation.orchestration.review_job import REVIEW_JOB, REVIEW_OP
from activation.settings import Settings
from tests.integration.review_scenario import digests, scenario, sql_diff, syncs_yml  # noqa: F401
from tests.integration.test_cli_plan_and_sync import app_fingerprint


def test_the_review_pull_request_job_records_the_effect_on_each_destination_asset(scenario, monkeypatch):
    """The Dagster idiom: a job whose run observes each destination asset with its part of the review."""
    s = scenario
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(syncs_yml(s.tmp / "dagster.yml", s.org, s.ca)))
    before = digests(s.production.parent, s.pr.warehouse.parent), app_fingerprint(s.app_url)
    calls = len(s.org.traffic.requests)
    job = build_definitions(Settings.from_env()).get_job_def(REVIEW_JOB)
    instance = dg.DagsterInstance.ephemeral()
    config = {"against": str(s.pr.target), "against_warehouse": str(s.pr.warehouse)}
    config["base_manifest"] = str(s.base_target)
    result = job.execute_in_process(run_config={"ops": {REVIEW_OP: {"config": config}}}, instance=instance)
    assert result.success
    assert (digests(s.production.parent, s.pr.warehouse.parent), app_fingerprint(s.app_url)) == before
    assert len(s.org.traffic.requests) == calls
    assert not result.get_asset_materialization_events(), "a review materializes nothing"
    truth = sql_diff(s.production, s.pr.warehouse, "app_facilities", "facility_id", {}, {"address"})
    for key, sync in ((("app", "facilities"), "facilities"), (("salesforce", "Account"), "account_scores")):
        [record] = instance.fetch_observations(dg.AssetKey(list(key)), limit=5).records
        observation = record.asset_observation
        assert observation.description == "effect of the pending change"
        metadata = observation.metadata
        assert metadata["pending_refused"].value is False and metadata["pending_against"].value == str(s.pr.target)
        markdown = metadata["pending_change"].value
        assert markdown.startswith(f"`{key[0]}.{key[1]}` changes +")
        if sync == "facilities":
            assert metadata["pending_rows_inserted"].value == len(truth["insert"])
            assert metadata["pending_rows_updated"].value == len(truth["update"])
            assert metadata["pending_rows_deleted"].value == len(truth["delete"])
            assert metadata["pending_changed_models"].value == "app_facilities" and "phone" in markdown
            assert not any(raw and raw in markdown for raw in truth["raw"])
