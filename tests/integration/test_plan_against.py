# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""`activation plan --against`: a pull request's dbt build reviewed against the production sync state
(the scenario: tests/integration/review_scenario.py). The report must name exactly the rows, columns
and values a SQL diff of the two builds finds, write nothing anywhere, ask no destination, never
show a masked value unmasked, and exit 3 where the destinations as last described would refuse;
in Dagster, the `review_pull_request` job observes each destination asset with its part of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation.cli import EXIT_OK, EXIT_REFUSED
from activation.definitions import build_definitions
from activation.destinations.sql import normalize_url
from activation.orchestration.review_job import REVIEW_JOB, REVIEW_OP
from activation.settings import Settings
from tests.destinations.salesforce_fixtures import keys  # noqa: F401  (the scenario's org)
from tests.destinations.salesforce_org import Field
from tests.integration.review_scenario import (  # noqa: F401  (scenario: a fixture)
    ACCOUNT_COLUMNS,
    Scenario,
    assert_exact,
    digests,
    review,
    review_scenario,
    scenario,
    sql_diff,
    syncs_yml,
)
from tests.integration.test_cli_plan_and_sync import app_fingerprint


def test_the_review_names_exactly_what_a_sql_diff_of_the_builds_finds_and_writes_nothing(scenario, capsys):
    s = scenario
    code, out = review(s, capsys, s.pr, "--format", "json", "--sample", "100000")
    assert code == EXIT_OK, out
    report = json.loads(out)
    assert report["version"] == 1 and report["refused"] == []
    [model] = report["changed_models"]
    assert model["model"] == "app_facilities" and model["change"] == "modified"
    assert {"app.facilities.address", "app.facilities.city"} <= set(model["feeds"])
    assert "app.facilities.phone" not in model["feeds"]
    syncs = {r["sync"]: r for r in report["syncs"]}

    facilities = syncs["facilities"]
    truth = sql_diff(s.production, s.pr.warehouse, "app_facilities", "facility_id", {}, {"address"})
    assert truth["dropped"] == ["phone"] and truth["columns"]["address"], "the scenario changes what it says"
    assert_exact(facilities, truth)
    assert facilities["drift"] == [
        {"column": "phone", "change": "dropped", "detail": facilities["drift"][0]["detail"], "action": "left as it is"}
    ]
    assert facilities["destination_schema"]["described_at"] and facilities["destination_schema"]["age_seconds"] < 900
    assert facilities["changed_models"] == ["app_facilities"] and facilities["problems"] == []

    jobs = syncs["job_postings"]
    assert_exact(jobs, sql_diff(s.production, s.pr.warehouse, "app_job_postings", "job_posting_id", {}, set()))

    # the API object: its kept values, and the checks run against its describe as last read
    accounts = syncs["account_scores"]
    atruth = sql_diff(s.production, s.pr.warehouse, "crm_customer_scores", "account_id", ACCOUNT_COLUMNS, set())
    assert atruth["update"], "day 2 changes scores"
    assert_exact(accounts, atruth, deletes=False)
    assert accounts["destination_schema"]["described_at"] and accounts["problems"] == []
    assert not any(raw and raw in out for raw in truth["raw"]), "a masked value appears unmasked"

    code, markdown = review(s, capsys, s.pr, "--format", "markdown")
    assert code == EXIT_OK
    summary = markdown.split("\n\n")[1].splitlines()
    facilities_line = next(line for line in summary if line.startswith("- `app.facilities` changes +"))
    assert "address" in facilities_line and "phone dropped" in facilities_line
    assert any(line.startswith("- `salesforce.Account` changes +") for line in summary)
    assert "<details><summary>app.facilities</summary>" in markdown
    key, (before, after) = sorted(truth["columns"]["address"].items())[0]
    assert len(before) == len(after) == 64, "sent hashed"
    assert f"`{key}: '{before[:57]}...' -> '{after[:57]}...'`" in markdown, "long values are cut at 60 characters"
    assert "Checked against the destination schema as described" in markdown
    assert not any(raw and raw in markdown for raw in truth["raw"]), "a masked value appears unmasked"


def _without_kept_values(s: Scenario) -> Path:
    """A copy of production whose state was written before values were kept: no values__ tables."""
    copy = s.tmp / "older" / "warehouse.duckdb"
    shutil.copytree(s.production.parent, copy.parent, dirs_exist_ok=True)
    for state in (copy.parent / "activation_state").glob("*.duckdb"):
        with duckdb.connect(str(state)) as con:
            for (table,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'values__%'"
            ).fetchall():
                con.execute(f'DROP TABLE "{table}"')
    return copy


@pytest.mark.parametrize("older", ["state written before values were kept", "keep_values: false"])
def test_a_state_without_values_gives_counts_and_says_why_there_is_no_column_detail(
    scenario, capsys, monkeypatch, older
):
    s = scenario
    if older == "keep_values: false":
        off = {"keep_values": False}
        path = syncs_yml(s.tmp / "off.yml", s.org, s.ca, facilities=off, job_postings=off, account_scores=off)
        monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(path))
    else:
        monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(_without_kept_values(s)))
    code, out = review(s, capsys, s.pr, "--format", "json", "--sample", "100000")
    assert code == EXIT_OK
    syncs = {r["sync"]: r for r in json.loads(out)["syncs"]}
    truth = sql_diff(s.production, s.pr.warehouse, "app_facilities", "facility_id", {}, {"address"})
    facilities = syncs["facilities"]
    assert "keeps no values" in facilities["column_detail"] and facilities["columns"] == []
    assert (facilities["rows"]["insert"], facilities["rows"]["delete"]) == (len(truth["insert"]), len(truth["delete"]))
    assert facilities["rows"]["update"] is None, "phone left the mart: the hashes cannot count updates"
    assert "cannot say which rows update" in facilities["column_detail"]
    # the others kept their columns: the row hashes count their updates exactly
    jtruth = sql_diff(s.production, s.pr.warehouse, "app_job_postings", "job_posting_id", {}, set())
    atruth = sql_diff(s.production, s.pr.warehouse, "crm_customer_scores", "account_id", ACCOUNT_COLUMNS, set())
    for name, t in (("job_postings", jtruth), ("account_scores", atruth)):
        assert "keeps no values" in syncs[name]["column_detail"] and syncs[name]["columns"] == []
        assert syncs[name]["rows"]["update"] == len(t["update"]) and syncs[name]["rows"]["insert"] == len(t["insert"])
    code, markdown = review(s, capsys, s.pr, "--format", "markdown")
    assert "No column detail: the production state keeps no values for this sync" in markdown
    assert not any(raw and raw in out + markdown for raw in truth["raw"])


def test_rows_the_destinations_would_refuse_as_last_described_exit_3(scenario, capsys):
    """The live table now takes longer names and the org the new band: the review still judges by the
    description each real sync kept (VARCHAR(255), the picklist as read), and says how old it is."""
    s = scenario
    engine = sa.create_engine(normalize_url(s.app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE facilities MODIFY name VARCHAR(1000)"))
    engine.dispose()
    band = s.org.objects["Account"].fields["Churn_Band__c"]
    s.org.objects["Account"].fields["Churn_Band__c"] = Field(
        band.name, band.type, length=band.length, picklist=(*band.picklist, "critical"), restricted=True
    )
    code, out = review(s, capsys, s.wide, "--format", "json")
    assert code == EXIT_REFUSED
    report = json.loads(out)
    assert sorted(report["refused"]) == ["account_scores", "facilities"]
    syncs = {r["sync"]: r for r in report["syncs"]}
    con = duckdb.connect()
    con.execute(f"ATTACH '{s.wide.warehouse}' AS b (READ_ONLY)")
    [[long_names]] = con.execute("SELECT count(*) FROM b.main_app.app_facilities WHERE length(name) > 255").fetchall()
    [[critical]] = con.execute(
        "SELECT count(*) FROM b.main_crm.crm_customer_scores WHERE score_band = 'critical'"
    ).fetchall()
    con.close()
    assert long_names and critical, "the refused variant makes what it says"
    [name] = syncs["facilities"]["problems"]
    assert (name["column"], name["reason"], name["rows"]) == ("name", "longer than VARCHAR(255)", long_names)
    [picklist] = syncs["account_scores"]["problems"]
    assert (picklist["column"], picklist["rows"]) == ("Churn_Band__c", critical)
    assert "picklist Account.Churn_Band__c (high, medium, low)" in picklist["reason"], "the picklist as described"
    for sync in ("facilities", "account_scores"):
        described = syncs[sync]["destination_schema"]
        assert described["described_at"] and 0 <= described["age_seconds"] < 900
    code, markdown = review(s, capsys, s.wide, "--format", "markdown")
    assert code == EXIT_REFUSED
    assert "`app.facilities` **refused**" in markdown and "`salesforce.Account` **refused**" in markdown
    assert "longer than VARCHAR(255)" in markdown and "as described" in markdown and "minutes ago" in markdown


def test_a_guard_that_would_trip_exits_3(scenario, capsys, monkeypatch):
    s = scenario
    jtruth = sql_diff(s.production, s.pr.warehouse, "app_job_postings", "job_posting_id", {}, set())
    assert jtruth["delete"], "day 2 deletes job postings"
    strict = syncs_yml(s.tmp / "strict.yml", s.org, s.ca, job_postings={"guards": {"max_deletes": 0}})
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(strict))
    code, out = review(s, capsys, s.pr, "--format", "json")
    assert code == EXIT_REFUSED
    report = json.loads(out)
    assert report["refused"] == ["job_postings"]
    [guard] = {r["sync"]: r for r in report["syncs"]}["job_postings"]["guards"]
    assert f"would delete {len(jtruth['delete'])}" in guard and "max_deletes" in guard


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
