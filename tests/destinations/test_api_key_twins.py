# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""Key twins (api/twins.py): mart keys distinct in the warehouse that the API holds as one record
are refused before any write call, or set aside under max_rejects, through the real engine and the
real Salesforce client against the local org (its external ID compares case-insensitively)."""

from __future__ import annotations

import uuid

import duckdb

from activation.destinations.api.engine import ApiDestination
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from tests.destinations.salesforce_fixtures import keys, org, start_org  # noqa: F401

KEY = "Customer_Id__c"
TWINS = ("0015g00000A0010AAB", "0015g00000a0010aab")


def writes(org) -> list[tuple[str, str]]:
    return [(m, p) for m, p in org.traffic.requests if m in ("POST", "PATCH", "PUT", "DELETE")]


def sync(org, keys, tmp_path, monkeypatch, key: str = KEY, regions: bool = False, **extra):
    monkeypatch.setenv("SF_CLIENT_ID", org.config.client_id)
    monkeypatch.setenv("SF_CLIENT_SECRET", org.config.client_secret)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE OR REPLACE TABLE accounts AS SELECT * FROM (VALUES ('{TWINS[0]}', 'First'), "
            f"('{TWINS[1]}', 'Second'), ('0015g00000B0020AAB', 'Third')) t(account_id, name)"
        )
        if regions:  # no twins: one spelling each, and a multi-select value per row
            con.execute("DELETE FROM accounts WHERE name = 'Second'")
            con.execute("ALTER TABLE accounts ADD COLUMN regions VARCHAR")
            con.execute("UPDATE accounts SET regions = CASE name WHEN 'First' THEN 'EMEA;APAC' ELSE 'EMEA;Mars' END")
    name = f"sf_{uuid.uuid4().hex[:6]}"
    settings = {
        "login_url": org.url,
        "auth": "client_credentials",
        "client_id_env": "SF_CLIENT_ID",
        "client_secret_env": "SF_CLIENT_SECRET",
        "ca_bundle": keys.cert,
        "bulk_poll_seconds": 0.02,
    }
    spec = {
        "source": "accounts",
        "destination": name,
        "table": "Account",
        "primary_key": key,
        "mode": "upsert",
        "columns": ({KEY: "account_id", "Name": "name"} | ({"Regions__c": "regions"} if regions else {}))
        if key == KEY
        else {key: "account_id"},
        **extra,
    }
    config = SyncConfig.model_validate(
        {
            "destinations": {
                name: {"type": "salesforce", "settings": settings, "rate_limit": {"requests": 1000, "per_seconds": 1}}
            },
            "syncs": {"accounts": spec},
        }
    )
    destination = ApiDestination(name, config.destinations[name])
    relations = {"accounts": MartRelation("main", "accounts")}
    with DuckDBWarehouse(path=str(path)).open(name, f"salesforce:{name}", dry_run=True) as wh:
        preview = destination.preview(wh, [config.syncs["accounts"]], relations)
    with DuckDBWarehouse(path=str(path)).open(name, f"salesforce:{name}") as wh:
        try:
            [result] = destination.sync(wh, [config.syncs["accounts"]], relations, full_resync=False, log=print)
        except SyncError as exc:
            return preview, exc
    return preview, result


def test_keys_that_differ_only_in_case_are_refused_with_no_write_call(org, keys, tmp_path, monkeypatch):
    preview, outcome = sync(org, keys, tmp_path, monkeypatch)
    assert isinstance(outcome, SyncError)
    message = str(outcome)
    for part in (*TWINS, "Account", KEY, "case-insensitively (describe caseSensitive: false)"):
        assert part in message
    assert writes(org) == [] and org.objects["Account"].records == {}
    assert any(TWINS[0] in str(p) and TWINS[1] in str(p) for p in preview[0].problems)


def test_under_max_rejects_all_but_the_first_twin_are_set_aside_and_the_rest_sent(org, keys, tmp_path, monkeypatch):
    _, result = sync(org, keys, tmp_path, monkeypatch, max_rejects=5)
    assert not isinstance(result, SyncError), result
    records = org.objects["Account"].records.values()
    assert sorted((r[KEY], r["Name"]) for r in records) == [(TWINS[0], "First"), ("0015g00000B0020AAB", "Third")]
    assert (result.inserted, result.rejected) == (2, 1)


def test_a_key_field_salesforce_cannot_upsert_by_is_refused_before_any_call(org, keys, tmp_path, monkeypatch):
    _, outcome = sync(org, keys, tmp_path, monkeypatch, key="Name")
    assert isinstance(outcome, SyncError)
    assert "Account.Name" in str(outcome) and "not an external ID field" in str(outcome)
    assert writes(org) == []


def test_a_multi_select_item_outside_the_picklist_is_found_before_any_call(org, keys, tmp_path, monkeypatch):
    """Regions__c is a restricted multipicklist: 'EMEA;Mars' holds an item Salesforce refuses."""
    _, outcome = sync(org, keys, tmp_path, monkeypatch, regions=True)
    assert isinstance(outcome, SyncError)
    assert "Account.Regions__c" in str(outcome) and "0015g00000B0020AAB" in str(outcome)
    assert TWINS[0] not in str(outcome) and writes(org) == []
    _, result = sync(org, keys, tmp_path, monkeypatch, regions=True, max_rejects=1)
    assert not isinstance(result, SyncError), result
    assert [r["Regions__c"] for r in org.objects["Account"].records.values()] == ["EMEA;APAC"]
