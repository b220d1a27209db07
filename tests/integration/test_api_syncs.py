# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""A mart synced into Salesforce and HubSpot as Dagster assets, through the command line and
`materialize`: the dbt-built `crm_customer_scores` of the session's lake, the API examples of the
repository's syncs.yml turned on (uncommented) and pointed at the local servers, the real clients.
Proves: an API object is an asset like a table (key, kind, group, checks, lineage), records land,
the checks after the write pass, and fail when the API refuses more than allowed; `plan` makes no
write call; a missing secret fails only its destination's assets, naming the variable; the run
history keeps the calls; `impact` names the API fields fed from a mart column."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from activation.cli import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_REFUSED, main
from activation.definitions import build_definitions
from activation.orchestration.dbt import load_manifest, model_relation
from activation.project import dbt_project
from activation.settings import PROJECT_ROOT, Settings
from activation.syncs import outcome as checks
from tests.destinations.hubspot_portal import ObjectType, Portal
from tests.destinations.hubspot_properties import Prop
from tests.destinations.hubspot_server import HubSpotServer
from tests.destinations.salesforce_fixtures import keys, start_org  # noqa: F401
from tests.destinations.salesforce_org import Field
from tests.destinations.salesforce_server import SalesforceServer

ACCOUNT, COMPANIES = dg.AssetKey(["salesforce", "Account"]), dg.AssetKey(["hubspot", "companies"])
API_CHECKS = {checks.KEYS, checks.FITS, checks.GUARDS, checks.ROW_COUNT, checks.ACCEPTED, checks.REJECTS}
# A commented-out line of syncs.yml that reads as a YAML key: the API examples, uncommented.
COMMENTED_KEY = re.compile(r"^(\s*)# (\s*[A-Za-z_][A-Za-z0-9_]*:.*)$")


def with_api_examples_on(text: str) -> dict:
    return yaml.safe_load("\n".join(COMMENTED_KEY.sub(r"\1\2", line) for line in text.splitlines()))


def scores_org(org: SalesforceServer) -> None:
    """The Account fields the example maps, as a customer's org would have them (Customer_Key__c an
    External ID without "unique": duplicates can exist, as in real orgs)."""
    for f in (
        Field("Customer_Key__c", "string", length=18, external_id=True),
        Field("Churn_Score__c", "double", precision=5, scale=4),
        Field("Churn_Band__c", "picklist", length=255, picklist=("high", "medium", "low"), restricted=True),
        Field("Last_Activity__c", "datetime"),
    ):
        org.objects["Account"].fields[f.name] = f


def scores_portal() -> Portal:
    props = (
        Prop("name", "string", "text"),
        Prop("activation_account_id", "string", "text", unique=True),
        Prop("lifetime_value", "number", "number"),
        Prop("churn_score", "number", "number"),
        Prop("churn_band", "enumeration", "select", ("high", "medium", "low")),
        Prop("last_activity", "datetime", "date"),
    )
    return Portal([ObjectType("companies", "0-2", "COMPANY", {p.name: p for p in props})])


@dataclass
class ApiProject:
    settings: Settings
    org: SalesforceServer
    hubspot: HubSpotServer
    syncs: Path
    state: Path  # the folder of the sync state and run history

    def mart(self) -> list[dict]:
        schema, table = model_relation(load_manifest(dbt_project()), "crm_customer_scores")
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as con:
            rel = con.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY account_id')
            names = [d[0] for d in rel.description]
            return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]

    def accounts(self) -> dict[str, dict]:
        return {r["Customer_Key__c"]: r for r in self.org.objects["Account"].records.values()}

    def write_calls(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.org.traffic.requests if m in ("POST", "PATCH", "PUT", "DELETE")]

    def history(self, destination: str, table: str) -> list[tuple]:
        with duckdb.connect(str(self.state / f"{destination}.duckdb"), read_only=True) as con:
            return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


@pytest.fixture
def api_project(settings, tmp_path, monkeypatch, start_org, keys) -> ApiProject:
    org = start_org()
    scores_org(org)
    config = with_api_examples_on((PROJECT_ROOT / "syncs.yml").read_text())
    salesforce, hubspot_settings = config["destinations"]["salesforce"], config["destinations"]["hubspot"]
    salesforce["settings"].update(login_url=org.url, ca_bundle=keys.cert, bulk_poll_seconds=0.02)
    with HubSpotServer(scores_portal(), max_requests=1000, interval_seconds=1.0) as hubspot:
        hubspot_settings["settings"]["base_url"] = hubspot.url
        syncs = tmp_path / "syncs.yml"
        syncs.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {
            "ACTIVATION_SYNCS_FILE": str(syncs),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "SALESFORCE_CLIENT_ID": org.config.client_id,
            "SALESFORCE_CLIENT_SECRET": org.config.client_secret,
            "HUBSPOT_TOKEN": hubspot.token,
            "NO_PROXY": "127.0.0.1",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield ApiProject(Settings.from_env(), org, hubspot, syncs, settings.warehouse_path.parent / "activation_state")


def materialize(project: ApiProject, *keys: dg.AssetKey) -> dg.ExecuteInProcessResult:
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=list(keys), raise_on_error=False
    )


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_an_api_object_is_an_asset_like_a_table(api_project):
    defs = build_definitions(Settings.from_env())
    graph = defs.resolve_asset_graph()
    for key, kind in ((ACCOUNT, "salesforce"), (COMPANIES, "hubspot")):
        node = graph.get(key)
        assert node.kinds == {kind}
        assert node.group_name == f"{kind}_api"
        assert {p.to_user_string() for p in node.parent_keys} == {"crm_customer_scores"}
        assert node.automation_condition is not None and node.freshness_policy is not None
        assert "database" not in node.description
        assert {c.name for c in graph.get_check_keys_for_assets({key})} == API_CHECKS
        metadata = node.metadata
        assert "content_matches_mart" in metadata["checks_not_possible"].value
        assert "cannot read its rows back" in metadata["checks_not_possible"].value
        text = json.dumps({k: str(v) for k, v in metadata.items()})
        assert api_project.org.config.client_secret not in text and api_project.hubspot.token not in text
    lineage = graph.get(ACCOUNT).metadata["dagster/column_lineage"].deps_by_column
    assert [d.column_name for d in lineage["Lifetime_Value__c"]] == ["lifetime_value"]
    assert graph.get(ACCOUNT).metadata["secrets_from_environment"] == "SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET"


def test_materialized_scores_land_in_salesforce_and_hubspot_and_their_checks_pass(api_project):
    result = materialize(api_project, ACCOUNT, COMPANIES)
    assert result.success
    mart = api_project.mart()
    accounts = api_project.accounts()
    assert sorted(accounts) == [row["account_id"] for row in mart]
    for row in mart:
        account = accounts[row["account_id"]]
        assert account["Name"] == row["account_name"] and account["Churn_Band__c"] == row["score_band"]
        assert account["Lifetime_Value__c"] == row["lifetime_value"]
        assert account["Churn_Score__c"] == Decimal(str(row["churn_score"])).quantize(Decimal("0.0001"))
    companies = {r["activation_account_id"]: r for r in api_project.hubspot.portal.records("companies")}
    assert sorted(companies) == [row["account_id"] for row in mart]
    assert all(companies[r["account_id"]]["churn_band"] == r["score_band"] for r in mart)

    found = evaluations(result)
    for key in (ACCOUNT, COMPANIES):
        asset = key.to_user_string()
        assert {name for a, name in found if a == asset} == API_CHECKS
        assert all(e.passed for (a, _), e in found.items() if a == asset), found
    assert (
        f"{len(mart)} record(s) sent to Account, every one answered"
        in found[("salesforce/Account", checks.ACCEPTED)].description
    )
    materialized = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    account = materialized[ACCOUNT]
    assert account["rows_inserted"].value == len(mart) == account["rows_sent"].value
    assert account["api_calls"].value >= 2 and account["api_rate_limited_429"].value == 0
    assert account["destination"].value == api_project.org.url
    assert api_project.org.config.client_secret not in json.dumps({k: str(v) for k, v in account.items()})

    # the run history keeps the run and its calls, beside the sync state
    [run] = api_project.history("salesforce", "sync_runs")
    assert run[1] == "account_scores" and run[5] == "success"
    [calls] = api_project.history("salesforce", "sync_api_calls")
    assert calls[1] == "account_scores" and calls[6] == account["api_calls"].value and calls[10] == len(mart)

    # nothing changed: no write call, and the checks still pass (the count reads the API)
    writes = len(api_project.write_calls())
    again = materialize(api_project, ACCOUNT, COMPANIES)
    assert again.success and len(api_project.write_calls()) == writes
    second = {e.asset_key: e.materialization.metadata for e in again.get_asset_materialization_events()}
    assert second[ACCOUNT]["api_calls"].value == 0 and second[ACCOUNT]["rows_sent"].value == 0
    assert all(e.passed for e in again.get_asset_check_evaluations())


def test_records_the_api_refuses_beyond_the_threshold_fail_the_rejects_check(api_project, capsys):
    config = yaml.safe_load(api_project.syncs.read_text())
    config["syncs"]["account_scores"]["checks"] = {"max_rejected": 1}
    api_project.syncs.write_text(yaml.safe_dump(config, sort_keys=False))
    mart = api_project.mart()
    account = api_project.org.objects["Account"]
    twins = [mart[0]["account_id"], mart[1]["account_id"]]
    for key in twins:  # two Accounts already carry each of these keys: Salesforce refuses to choose
        for n in (1, 2):
            account.store({"Name": f"twin {n}", "Customer_Key__c": key})

    assert main(["sync", "account_scores"]) == EXIT_CHECK_FAILED
    out = capsys.readouterr().out
    assert f"salesforce/Account rejected_rows_below_threshold (after the write): 2 of {len(mart)} rows rejected" in out
    row = next(r for r in out.splitlines() if r.startswith("salesforce/Account "))
    assert row.split()[1:6] == ["upsert", f"{len(mart) - 2}", "0", "0", "2"], row
    assert "written, but a check after the write failed" in out

    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs(limit=1)
    found = {e.check_name: e for e in _checks(instance, run.run_id)}
    assert found[checks.ACCEPTED].passed, "every record sent was answered: 17 accepted + 2 refused"
    assert found[checks.ROW_COUNT].passed and not found[checks.REJECTS].passed
    rejects = api_project.history("salesforce", "sync_rejects")
    assert sorted(r[2] for r in rejects) == sorted(twins)
    assert all("DUPLICATE_EXTERNAL_ID" in r[4] for r in rejects)

    assert main(["history", "--api-calls", "--sync", "account_scores"]) == EXIT_OK
    assert "DUPLICATE_EXTERNAL_ID" in capsys.readouterr().out


def _checks(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.event_specific_data for r in records]


def test_plan_previews_an_api_sync_without_a_write_call(api_project, capsys):
    capsys.readouterr()
    assert main(["plan", "--json", "account_scores", "company_scores"]) == EXIT_OK
    plans = {p["sync"]: p for p in json.loads(capsys.readouterr().out)}
    rows = len(api_project.mart())
    assert [(p["inserts"], p["updates"], p["deletes"], p["blocked"]) for p in plans.values()] == [
        (rows, 0, 0, None)
    ] * 2
    assert len(plans["account_scores"]["samples"]["insert"]) == 5
    assert api_project.write_calls() == [], "plan reads the describe only"
    assert set(api_project.hubspot.calls) == {"describe"}
    assert api_project.accounts() == {} and api_project.hubspot.portal.records("companies") == []
    assert not (api_project.state / "salesforce.duckdb").exists(), "plan records no state"

    assert main(["plan", "account_scores"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "salesforce.Account (upsert, api; first sync: no state yet)" in out
    assert f"+ {rows:,} insert" in out

    assert main(["sync", "account_scores", "company_scores"]) == EXIT_OK
    capsys.readouterr()
    schema, table = model_relation(load_manifest(dbt_project()), "crm_customer_scores")
    gone = api_project.mart()[-1]["account_id"]
    with duckdb.connect(str(api_project.settings.warehouse_path)) as con:
        con.execute(f'DELETE FROM "{schema}"."{table}" WHERE account_id = ?', [gone])
    writes = len(api_project.write_calls())
    assert main(["plan", "--json", "account_scores", "company_scores"]) == EXIT_OK
    plans = {p["sync"]: p for p in json.loads(capsys.readouterr().out)}
    assert plans["company_scores"]["deletes"] == 1 and plans["company_scores"]["samples"]["delete"] == [{"key": gone}]
    assert plans["account_scores"]["deletes"] == 0, "upsert never deletes"
    assert len(api_project.write_calls()) == writes and api_project.hubspot.calls["archive"] == 0

    assert main(["sync", "account_scores", "company_scores"]) == EXIT_OK
    assert api_project.hubspot.portal.record("companies", "activation_account_id", gone) is None, "mirror archived it"
    assert gone in api_project.accounts(), "upsert keeps the Account"


def test_a_missing_secret_fails_only_its_destination_naming_the_variable(api_project, monkeypatch, capsys):
    monkeypatch.delenv("SALESFORCE_CLIENT_SECRET")
    build_definitions(Settings.from_env())  # the definitions load without it

    result = materialize(api_project, ACCOUNT, COMPANIES)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "SALESFORCE_CLIENT_SECRET (settings.client_secret_env)" in message
    assert api_project.org.traffic.logins == 0 and api_project.org.traffic.requests == []
    assert len(api_project.hubspot.portal.records("companies")) == len(api_project.mart()), "HubSpot still synced"

    capsys.readouterr()
    assert main(["sync", "account_scores"]) == EXIT_FAILED
    assert "set the environment variable(s) SALESFORCE_CLIENT_SECRET" in capsys.readouterr().out
    assert main(["plan", "account_scores"]) == EXIT_REFUSED
    assert "SALESFORCE_CLIENT_SECRET" in capsys.readouterr().out


def test_impact_lists_the_api_fields_fed_from_a_mart_column(api_project, lake, capsys):
    target = str(lake.day1.parent / "dbt_target")
    capsys.readouterr()
    assert main(["impact", "--json", "crm_customer_scores.lifetime_value", "--dbt-target", target]) == EXIT_OK
    found = json.loads(capsys.readouterr().out)
    assert {"salesforce/Account.Lifetime_Value__c", "hubspot/companies.lifetime_value"} <= set(found)
    assert found["salesforce/Account.Lifetime_Value__c"] == [
        "crm_customer_scores.lifetime_value",
        "salesforce/Account.Lifetime_Value__c",
    ]
    assert main(["impact", "--upstream", "salesforce/Account.Lifetime_Value__c", "--dbt-target", target]) == EXIT_OK
    out = capsys.readouterr().out
    assert "raw source columns it comes from" in out and "salesforce/Account.Lifetime_Value__c <- " in out


def test_a_value_the_object_would_refuse_is_found_before_any_write_call(api_project, capsys):
    config = yaml.safe_load(api_project.syncs.read_text())
    del config["syncs"]["account_scores"]["max_rejects"]  # no row may be set aside: the sync is refused
    api_project.syncs.write_text(yaml.safe_dump(config, sort_keys=False))
    band = Field("Churn_Band__c", "picklist", length=255, picklist=("high", "low"), restricted=True)
    api_project.org.objects["Account"].fields["Churn_Band__c"] = band  # the org has no "medium"
    medium = sorted(r["account_id"] for r in api_project.mart() if r["score_band"] == "medium")
    assert medium, "the demo lake scores some accounts medium"

    capsys.readouterr()
    assert main(["sync", "account_scores"]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert f"salesforce.Account.Churn_Band__c: {len(medium)} row" in out and medium[0] in out
    assert "not written: salesforce/Account" in out and "REFUSED before writing" in out
    assert api_project.write_calls() == [] and api_project.accounts() == {}
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs(limit=1)
    found = {e.check_name: e for e in _checks(instance, run.run_id)}
    assert not found[checks.FITS].passed and found[checks.KEYS].passed and found[checks.GUARDS].passed


@pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])
def test_counts_come_from_the_apis_answers_after_the_org_was_emptied(api_project, capsys, bulk):
    """The state says every record exists; the org was emptied behind the tool's back. A full resync
    sends every row: the API answers created for each (Collections `created`, Bulk 2.0 `sf__Created`),
    and the counts say inserted, not what the state expected."""
    if bulk:
        config = yaml.safe_load(api_project.syncs.read_text())
        config["destinations"]["salesforce"]["settings"].update(bulk_threshold=1, bulk_job_records=10_000)
        api_project.syncs.write_text(yaml.safe_dump(config, sort_keys=False))
    rows = len(api_project.mart())
    assert main(["sync", "account_scores"]) == EXIT_OK
    account = api_project.org.objects["Account"]
    half = sorted(account.records)[: rows // 2]
    for record_id in half:  # half of them deleted in the org; the rest stay and are updated
        account.unstore(record_id)
    capsys.readouterr()

    assert main(["sync", "account_scores", "--full-resync"]) == EXIT_OK
    out = capsys.readouterr().out
    row = next(r for r in out.splitlines() if r.startswith("salesforce/Account "))
    assert row.split()[1:6] == ["upsert", f"{len(half)}", f"{rows - len(half)}", "0", "0"], row
    assert sorted(api_project.accounts()) == [r["account_id"] for r in api_project.mart()]
    bulk_jobs = [p for m, p in api_project.write_calls() if m == "POST" and p.endswith("/jobs/ingest")]
    assert bool(bulk_jobs) is bulk


def test_hubspot_counts_come_from_its_new_flag_after_the_portal_was_emptied(api_project, capsys):
    """HubSpot's batch upsert answers `new` per record: records archived behind the tool's back and
    sent again on a full resync count as inserted, the others as updated."""
    rows = len(api_project.mart())
    assert main(["sync", "company_scores"]) == EXIT_OK
    companies = api_project.hubspot.portal.object("companies")
    half = sorted(companies.records)[: rows // 2]
    for record_id in half:
        companies.archive(record_id)
    capsys.readouterr()

    assert main(["sync", "company_scores", "--full-resync"]) == EXIT_OK
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("hubspot/companies "))
    assert row.split()[1:6] == ["mirror", f"{len(half)}", f"{rows - len(half)}", "0", "0"], row
    assert len(api_project.hubspot.portal.records("companies")) == rows
