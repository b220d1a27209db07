"""Column lineage: from a raw Salesforce field through dbt to the app columns it feeds, and back."""

from __future__ import annotations

import json

import pytest

from activation.cli import EXIT_OK, EXIT_USAGE, main


@pytest.fixture
def dbt_target(settings, lake) -> str:
    return str(lake.day1.parent / "dbt_target")  # compiled by the session's dbt build


def run_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["impact", "--json", *args]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_an_app_column_traces_back_to_its_raw_salesforce_field(dbt_target, capsys):
    found = run_json(capsys, "--upstream", "app.facilities.city", "--dbt-target", dbt_target)
    assert list(found) == ["salesforce.account.billing_city"]
    assert found["salesforce.account.billing_city"] == [
        "app.facilities.city",
        "app_facilities.city",
        "dim_facilities.city",
        "stg_salesforce__accounts.city",
        "salesforce.account.billing_city",
    ]


def test_impact_of_a_salesforce_field_lists_every_destination_column(dbt_target, capsys):
    # Salesforce's API spelling, and the raw schema's name for the table, both resolve
    by_api_name = run_json(capsys, "salesforce.account.billingcity", "--dbt-target", dbt_target)
    assert list(by_api_name) == ["app.facilities.city"]
    name = run_json(capsys, "raw_salesforce.account.name", "--dbt-target", dbt_target)
    assert {"app.facilities.name", "crm.customer_scores.account_name"} <= set(name)
    mart = run_json(capsys, "app_facilities.name", "--dbt-target", dbt_target)
    assert list(mart) == ["app.facilities.name"]


def test_a_foreign_key_carries_the_impact_of_its_parents_key_to_the_child(dbt_target, capsys):
    # job_postings.facility_id points at facilities.facility_id (an API lookup is declared the same way)
    found = run_json(capsys, "app.facilities.facility_id", "--dbt-target", dbt_target)
    assert found["app.job_postings.facility_id"] == ["app.facilities.facility_id", "app.job_postings.facility_id"]
    raw = run_json(capsys, "salesforce.account.id", "--dbt-target", dbt_target)
    assert {"app.facilities.facility_id", "app.job_postings.facility_id"} <= set(raw)


def test_impact_of_an_unknown_column_is_a_usage_error(dbt_target, capsys):
    assert main(["impact", "salesforce.account.no_such_field", "--dbt-target", dbt_target]) == EXIT_USAGE
    assert "billing_city" in capsys.readouterr().err, "the error lists the table's columns"
