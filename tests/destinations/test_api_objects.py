# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""Objects of one API destination fail on their own: Account and Contact synced into the local
Salesforce org in one run, through the real engine, client and warehouse. One object's failure
stops only that object (the other is written and its state committed, the run still fails naming
it); a failure of the whole org (its daily API limit) stops both and says so. Related objects
(Contact.AccountId, a lookup set by Account's external ID) go parents first, deletes children
first; test_api_relationships.py has the lookups themselves."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from activation.destinations.api.engine import ApiDestination
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from tests.destinations.salesforce_fixtures import keys, start_org  # noqa: F401
from tests.destinations.salesforce_org import contact
from tests.destinations.salesforce_server import SalesforceServer

MARTS = {
    "accounts": "SELECT printf('K%03d', i) AS account_key, 'Account ' || i AS name FROM range(1, 6) t(i)",
    "contacts": "SELECT printf('P%03d', i) AS contact_key, 'Person ' || i AS last_name, "
    "printf('K%03d', i) AS account_key, printf('p%d@example.com', i) AS email FROM range(1, 4) t(i)",
}


class Run:
    """Two marts, one org, the syncs `account_sync` and `contact_sync` of one destination."""

    def __init__(self, tmp: Path, org: SalesforceServer, cert: str, monkeypatch):
        self.tmp, self.org, self.name = tmp, org, f"sf_{uuid.uuid4().hex[:6]}"
        self.cert = cert
        self.account_columns = {"Customer_Id__c": "account_key", "Name": "name"}
        self.logged: list[str] = []
        self.extra_settings: dict = {}  # e.g. bulk_threshold, to send through Bulk API 2.0
        self.contact_mode = "mirror"
        monkeypatch.setenv("SF_CLIENT_ID", org.config.client_id)
        monkeypatch.setenv("SF_CLIENT_SECRET", org.config.client_secret)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with duckdb.connect(str(self.warehouse)) as con:
            for table, sql in MARTS.items():
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")

    @property
    def warehouse(self) -> Path:
        return self.tmp / "warehouse.duckdb"

    def config(self, *, related: bool = False) -> SyncConfig:
        settings = {
            "login_url": self.org.url,
            "auth": "client_credentials",
            "client_id_env": "SF_CLIENT_ID",
            "client_secret_env": "SF_CLIENT_SECRET",
            "ca_bundle": self.cert,
            "max_daily_api_share": 1.0,
            **self.extra_settings,
        }
        syncs = {
            "account_sync": {
                "source": "accounts",
                "destination": self.name,
                "table": "Account",
                "primary_key": "Customer_Id__c",
                "mode": "mirror",
                "columns": self.account_columns,
            },
            "contact_sync": {
                "source": "contacts",
                "destination": self.name,
                "table": "Contact",
                "primary_key": "Activation_Key__c",
                "mode": self.contact_mode,
                "columns": {"Activation_Key__c": "contact_key", "LastName": "last_name", "Email": "email"},
            },
        }
        if related:  # Contact's account_key is Account's external ID
            contact = syncs["contact_sync"]
            contact["columns"] = {**contact["columns"], "AccountId": "account_key"}
            contact["foreign_keys"] = {"AccountId": "Account.Customer_Id__c"}
        destination = {"type": "salesforce", "settings": settings, "rate_limit": {"requests": 1000, "per_seconds": 1}}
        return SyncConfig.model_validate({"destinations": {self.name: destination}, "syncs": syncs})

    def sync(self, *, related: bool = False, only: str | None = None):
        """Both syncs in one run (or `only` one of them, the other known from the config)."""
        config = self.config(related=related)
        specs = [config.syncs["account_sync"], config.syncs["contact_sync"]]
        if related:  # handed over child first: the engine puts parents first
            specs.reverse()
        if only:
            specs = [config.syncs[only]]
        relations = {"account_sync": MartRelation("main", "accounts"), "contact_sync": MartRelation("main", "contacts")}
        destination = ApiDestination(self.name, config.destinations[self.name], syncs=list(config.syncs.values()))
        with DuckDBWarehouse(path=str(self.warehouse)).open(self.name, f"salesforce:{self.name}") as wh:
            return destination.sync(wh, specs, relations, log=self.logged.append)

    def state_keys(self, sync: str) -> list[str]:
        path = self.tmp / "activation_state" / f"{self.name}.duckdb"
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            if (f"sync__{sync}",) not in found:
                return []
            return [r[0] for r in con.execute(f'SELECT * FROM "sync__{sync}" ORDER BY ALL').fetchall()]

    def keys_in(self, sobject: str, field: str) -> list[str]:
        return sorted(r[field] for r in self.org.objects[sobject].records.values())


@pytest.fixture
def run(tmp_path, start_org, keys, monkeypatch) -> Run:
    org = start_org()
    org.objects["Contact"] = contact()
    return Run(tmp_path, org, keys.cert, monkeypatch)


def test_an_object_that_does_not_fit_fails_alone_and_the_other_is_written(run):
    run.account_columns = {**run.account_columns, "Nope__c": "name"}  # Account has no such field
    with pytest.raises(SyncError) as raised:
        run.sync()
    message = str(raised.value)
    assert "1 of 2 sync(s) failed" in message and "Nope__c" in message and "Account" in message
    assert "Written and committed all the same: contact_sync" in message
    assert [r.sync for r in raised.value.results] == ["contact_sync"]
    assert raised.value.results[0].inserted == 3
    assert run.keys_in("Contact", "Activation_Key__c") == ["P001", "P002", "P003"]
    assert run.state_keys("contact_sync") == ["P001", "P002", "P003"]  # its state advanced
    assert run.org.objects["Account"].records == {} and run.state_keys("account_sync") == []

    run.account_columns = {"Customer_Id__c": "account_key", "Name": "name"}  # fixed: the next run sends it
    [accounts, contacts] = run.sync()
    assert (accounts.inserted, contacts.inserted, contacts.updated) == (5, 0, 0)
    assert run.keys_in("Account", "Customer_Id__c") == [f"K{i:03d}" for i in range(1, 6)]


def test_a_value_the_org_refuses_for_one_object_leaves_the_other_alone(run):
    with duckdb.connect(str(run.warehouse)) as con:  # a Name longer than Account's 255 characters
        con.execute("UPDATE accounts SET name = repeat('x', 300) WHERE account_key = 'K002'")
    with pytest.raises(SyncError) as raised:
        run.sync()
    assert "K002" in str(raised.value) and "Name" in str(raised.value)
    assert run.keys_in("Contact", "Activation_Key__c") == ["P001", "P002", "P003"]
    assert run.state_keys("contact_sync") == ["P001", "P002", "P003"]


def test_the_orgs_daily_limit_stops_every_object_and_says_so(run):
    run.org.api_used = run.org.config.daily_api_limit  # the org's 24-hour allowance is used up
    with pytest.raises(SyncError) as raised:
        run.sync()
    message = str(raised.value)
    assert f"destination {run.name} stopped every sync" in message
    assert "REQUEST_LIMIT_EXCEEDED" in message and "Not sent: account_sync, contact_sync" in message
    assert raised.value.results == []
    assert run.org.objects["Account"].records == {} and run.org.objects["Contact"].records == {}
    assert run.state_keys("account_sync") == run.state_keys("contact_sync") == []


def test_the_daily_limit_met_between_objects_stops_the_rest_and_names_what_was_written(run):
    # three calls left: both describes and Account's upsert; none for Contact's
    run.org.api_used = run.org.config.daily_api_limit - 3
    with pytest.raises(SyncError) as raised:
        run.sync()
    message = str(raised.value)
    assert "stopped every sync" in message and "of the org's 100,000 daily requests" in message
    assert "Not sent: contact_sync; written and committed before it: account_sync" in message
    assert run.state_keys("account_sync") == [f"K{i:03d}" for i in range(1, 6)]
    assert run.org.objects["Contact"].records == {} and run.state_keys("contact_sync") == []


def _writes(org: SalesforceServer) -> list[str]:
    """The org's write calls in order, named by the object they wrote (a delete by its Ids' prefix)."""
    out = []
    for method, path in org.traffic.requests:
        if method == "PATCH" and "/composite/sobjects/" in path:
            out.append(f"upsert {path.split('/composite/sobjects/')[1].split('/')[0]}")
        elif method == "DELETE":
            out.append("delete")
    return out


def test_parents_are_upserted_before_children_and_children_deleted_first(run):
    run.sync(related=True)
    assert _writes(run.org) == ["upsert Account", "upsert Contact"]
    assert run.keys_in("Contact", "Activation_Key__c") == ["P001", "P002", "P003"]
    deleted: list[str] = []  # the order the org deletes records in, whatever call carried them
    for sobject in run.org.objects.values():
        sobject.delete = _noting(sobject, deleted)
    with duckdb.connect(str(run.warehouse)) as con:  # parent K003 and its child P003 leave the marts
        con.execute("DELETE FROM accounts WHERE account_key = 'K003'")
        con.execute("DELETE FROM contacts WHERE contact_key = 'P003'")
    [first, second] = run.sync(related=True)
    assert (first.sync, second.sync) == ("account_sync", "contact_sync")  # reported parents first
    assert deleted == ["Contact P003", "Account K003"]  # the child's delete went first
    assert (first.deleted, second.deleted) == (1, 1)


def _noting(sobject, deleted: list[str]):
    original = sobject.delete

    def delete(record_id: str, **kwargs):
        record = sobject.records.get(record_id) or {}
        deleted.append(f"{sobject.name} {record.get('Activation_Key__c') or record.get('Customer_Id__c')}")
        return original(record_id, **kwargs)

    return delete


def test_a_child_whose_parent_failed_is_not_sent(run):
    run.account_columns = {**run.account_columns, "Nope__c": "name"}
    with pytest.raises(SyncError) as raised:
        run.sync(related=True)
    message = str(raised.value)
    assert "contact_sync -> Contact: not sent: its parent sync(s) account_sync failed" in message
    assert "2 of 2 sync(s) failed" in message and raised.value.results == []
    assert run.org.objects["Contact"].records == {} and _writes(run.org) == []
