"""HubSpot relationships through the real engine, client and warehouse: companies and contacts
synced into the local portal in one run, the contact's `company` foreign key set as a v4
association (hubspot_associations.py holds the portal's side). A first sync links each contact to
its company in both directions; a day of changes moves one, clears one and deletes a company's
last contact; a link people made to a company no sync keys is left alone; a link HubSpot refuses
refuses that contact alone; a missing company is refused in the warehouse before any call."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from activation.destinations.api.engine import ApiDestination
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from tests.destinations.hubspot_properties import Prop
from tests.destinations.hubspot_server import HubSpotServer

UNLABELED, PRIMARY = 279, 1  # contact -> company, HubSpot-defined
COMPANIES = "SELECT printf('K%03d', i) AS company_key, 'Company ' || i AS name FROM range(1, 4) t(i)"
CONTACTS = """SELECT * FROM (VALUES ('p1@example.com', 'Ann', 'K001'), ('p2@example.com', 'Bob', 'K002'),
    ('p3@example.com', 'Cy', 'K003'), ('p4@example.com', 'Di', 'K003')) t(email, first_name, company_key)"""


class Run:
    """Two marts, one portal, the syncs `company_sync` and `contact_sync` of one destination."""

    def __init__(self, tmp: Path, hubspot: HubSpotServer, monkeypatch):
        self.tmp, self.hubspot, self.name = tmp, hubspot, f"hs_{uuid.uuid4().hex[:6]}"
        self.log: list[str] = []
        monkeypatch.setenv("HUBSPOT_TOKEN", hubspot.token)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        self.sql(f"CREATE TABLE companies AS {COMPANIES}", f"CREATE TABLE contacts AS {CONTACTS}")

    def sql(self, *statements: str) -> None:
        with duckdb.connect(str(self.tmp / "warehouse.duckdb")) as con:
            for statement in statements:
                con.execute(statement)

    def config(self) -> SyncConfig:
        syncs = {
            "company_sync": {
                "source": "companies",
                "destination": self.name,
                "table": "companies",
                "primary_key": "company_key",
                "mode": "mirror",
                "columns": {"company_key": "company_key", "name": "name"},
            },
            "contact_sync": {
                "source": "contacts",
                "destination": self.name,
                "table": "contacts",
                "primary_key": "email",
                "mode": "mirror",
                # `company` is also a text property of HubSpot's contacts: as a foreign key it is
                # the association, and the property is left alone
                "columns": {"email": "email", "firstname": "first_name", "company": "company_key"},
                "foreign_keys": {"company": "companies.company_key"},
            },
        }
        destination = {
            "type": "hubspot",
            "settings": {"base_url": self.hubspot.url},
            "rate_limit": {"requests": 1000, "per_seconds": 1},
        }
        return SyncConfig.model_validate({"destinations": {self.name: destination}, "syncs": syncs})

    def sync(self):
        config = self.config()
        specs = [config.syncs["contact_sync"], config.syncs["company_sync"]]  # child first: the engine reorders
        relations = {
            "company_sync": MartRelation("main", "companies"),
            "contact_sync": MartRelation("main", "contacts"),
        }
        with DuckDBWarehouse(path=str(self.tmp / "warehouse.duckdb")).open(self.name, f"hubspot:{self.name}") as wh:
            destination = ApiDestination(self.name, config.destinations[self.name], syncs=list(config.syncs.values()))
            return destination.sync(wh, specs, relations, log=self.log.append)

    # -- what the portal holds -----------------------------------------------------------------

    def id_of(self, obj: str, prop: str, value: str) -> str:
        record = self.hubspot.portal.record(obj, prop, value)
        assert record is not None, f"no {obj} with {prop}={value!r}"
        return record["hs_object_id"]

    def companies_of(self, email: str) -> dict[str, set[int]]:
        """company_key (or the record id of a company without one) -> the contact->company type ids."""
        portal = self.hubspot.portal
        links = portal.associations.linked("contacts", "companies", self.id_of("contacts", "email", email))
        names = {r["hs_object_id"]: r.get("company_key", r["hs_object_id"]) for r in portal.records("companies")}
        return {names[i]: types for i, types in links.items()}

    def contacts_of(self, company_key: str) -> list[str]:
        portal = self.hubspot.portal
        links = portal.associations.linked("companies", "contacts", self.id_of("companies", "company_key", company_key))
        emails = {r["hs_object_id"]: r["email"] for r in portal.records("contacts")}
        return sorted(emails[i] for i in links)


@pytest.fixture
def run(tmp_path, monkeypatch):
    with HubSpotServer(max_requests=1000, interval_seconds=1.0) as hubspot:
        hubspot.portal.objects["contacts"].properties["company"] = Prop("company", "string", "text")
        yield Run(tmp_path, hubspot, monkeypatch)


def test_contacts_follow_their_company_through_a_day_of_changes(run):
    run.hubspot.portal.associations.page_size = 1  # a contact's links come one page at a time
    companies, contacts = run.sync()
    assert (companies.sync, companies.inserted, contacts.sync, contacts.inserted) == (
        "company_sync",
        3,
        "contact_sync",
        4,
    )
    assert contacts.rejected == 0 and run.hubspot.violations == []
    assert run.companies_of("p1@example.com") == {"K001": {UNLABELED, PRIMARY}}  # the first company is primary
    assert run.contacts_of("K003") == ["p3@example.com", "p4@example.com"]  # the other direction (280)
    assert all("company" not in c for c in run.hubspot.portal.records("contacts"))  # no property written
    assert any("contacts -> companies associations (company): 4 created, 0 removed" in line for line in run.log)

    # a person links p1 to a company no sync keys; then a day of changes in the marts
    portal = run.hubspot.portal
    p1 = run.id_of("contacts", "email", "p1@example.com")
    with portal.lock:
        portal.objects["companies"].records["9001"] = {"hs_object_id": "9001", "name": "Met at a fair"}
        portal.associations.link("contacts", "companies", p1, "9001")
    run.sql(
        "UPDATE contacts SET company_key = 'K002' WHERE email = 'p1@example.com'",  # moves
        "UPDATE contacts SET company_key = NULL WHERE email = 'p3@example.com'",  # leaves its company
        "DELETE FROM contacts WHERE email = 'p4@example.com'",  # K003's last contact
    )
    before = dict(run.hubspot.calls)
    companies, contacts = run.sync()
    assert (contacts.updated, contacts.deleted, contacts.rejected) == (2, 1, 0)
    assert companies.rows_sent == 0 and run.hubspot.calls["upsert"] == before["upsert"] + 1  # contacts only
    assert run.companies_of("p1@example.com") == {"K002": {UNLABELED}, "9001": {UNLABELED}}  # the person's link stays
    assert run.companies_of("p3@example.com") == {}
    assert run.contacts_of("K001") == [] and run.contacts_of("K003") == []
    assert run.contacts_of("K002") == ["p1@example.com", "p2@example.com"]
    assert portal.record("contacts", "email", "p4@example.com") is None  # archived, its links with it
    assert any("1 created, 2 removed, 0 refused; 1 link(s) to companies without company_key" in x for x in run.log)
    assert run.hubspot.violations == []

    before = dict(run.hubspot.calls)
    assert [r.rows_sent for r in run.sync()] == [0, 0]  # nothing changed: not a single call
    assert dict(run.hubspot.calls) == before


def test_a_link_hubspot_refuses_refuses_that_contact_alone(run):
    run.sync()
    portal = run.hubspot.portal
    p2 = run.id_of("contacts", "email", "p2@example.com")
    with portal.lock:  # a person links p2 to a second company; an admin allows one company per contact
        portal.objects["companies"].records["9002"] = {"hs_object_id": "9002", "name": "Side job"}
        portal.associations.link("contacts", "companies", p2, "9002")
        portal.associations.max_to[("0-1", "0-2")] = 1
    run.sql(
        "UPDATE contacts SET company_key = 'K003' WHERE email = 'p2@example.com'",  # one too many with 9002
        "INSERT INTO contacts VALUES ('p5@example.com', 'Eve', 'K001')",
    )
    [_, contacts] = run.sync()
    assert (contacts.inserted, contacts.updated, contacts.rejected) == (1, 0, 1)
    assert run.companies_of("p5@example.com") == {"K001": {UNLABELED, PRIMARY}}
    assert run.companies_of("p2@example.com") == {"9002": {UNLABELED}}  # K002 left, K003 refused
    [error] = contacts.api.errors
    assert f"contacts record {p2} was written, but its association to companies (company_key 'K003')" in error
    assert "ASSOCIATION_LIMIT_EXCEEDED" in error and "at most 1 companies" in error
    assert run.hubspot.portal.record("contacts", "email", "p2@example.com")["hs_object_id"] == p2

    portal.associations.max_to.clear()  # the limit lifted: the refused contact is sent again
    [_, contacts] = run.sync()
    assert (contacts.inserted, contacts.updated, contacts.rejected) == (0, 1, 0)
    assert run.companies_of("p2@example.com") == {"K003": {UNLABELED}, "9002": {UNLABELED}}
    assert run.hubspot.violations == []


def test_a_contact_whose_company_is_missing_is_refused_before_any_call(run):
    run.sql("INSERT INTO contacts VALUES ('p9@example.com', 'Zed', 'K999')")
    with pytest.raises(SyncError) as raised:
        run.sync()
    message = str(raised.value)
    assert "p9@example.com -> companies K999" in message and "company_sync" in message
    assert "Written and committed all the same: company_sync" in message
    assert run.hubspot.upsert_sizes == [3]  # the companies only: no contact was sent
    assert run.hubspot.calls["associations.read"] == run.hubspot.calls["associations.associate"] == 0
    assert portal_contacts(run) == []


def portal_contacts(run: Run) -> list[str]:
    return sorted(r["email"] for r in run.hubspot.portal.records("contacts"))


def test_the_portal_refuses_what_hubspots_associations_api_refuses(run):
    """The local portal is only worth testing against if it is strict about the v4 endpoints."""
    run.sync()
    auth = {"Authorization": f"Bearer {run.hubspot.token}"}
    base = f"{run.hubspot.url}/crm/v4/associations/contacts/companies/batch"
    p1, k1 = run.id_of("contacts", "email", "p1@example.com"), run.id_of("companies", "company_key", "K001")
    too_many = httpx.post(f"{base}/read", json={"inputs": [{"id": p1}] * 1001}, headers=auth)
    assert too_many.status_code == 400 and "limit of 1000" in too_many.json()["message"]
    by_key = httpx.post(
        f"{base}/associate/default",
        json={"inputs": [{"from": {"id": "p1@example.com"}, "to": {"id": k1}}]},
        headers=auth,
    )
    assert by_key.status_code == 400 and "record id" in by_key.json()["message"]  # ids, never unique values
    typed = {"inputs": [{"from": {"id": p1}, "to": {"id": k1}, "types": []}]}
    assert httpx.post(f"{base}/associate/default", json=typed, headers=auth).status_code == 400
    one_to = {"inputs": [{"from": {"id": p1}, "to": {"id": k1}}]}  # archive takes a list of `to`
    assert httpx.post(f"{base}/archive", json=one_to, headers=auth).status_code == 400
    assert httpx.post(f"{base}/read", json={"inputs": [{"id": p1}]}).status_code == 401
    assert len(run.hubspot.violations) == 5

    gone = httpx.post(
        f"{base}/associate/default", json={"inputs": [{"from": {"id": p1}, "to": {"id": "1"}}]}, headers=auth
    )
    assert gone.status_code == 207 and gone.json()["errors"][0]["subCategory"] == "crm.associations.INVALID_OBJECT_IDS"
    none = httpx.post(
        f"{run.hubspot.url}/crm/v4/associations/companies/contacts/batch/read",
        json={"inputs": [{"id": "1"}]},
        headers=auth,
    )
    assert none.status_code == 207 and none.json()["errors"][0]["subCategory"].endswith("NO_ASSOCIATIONS_FOUND")
    read = httpx.post(f"{base}/read", json={"inputs": [{"id": p1}]}, headers=auth).json()
    [link] = read["results"][0]["to"]
    assert link["toObjectId"] == int(k1) and {t["typeId"] for t in link["associationTypes"]} == {UNLABELED, PRIMARY}
    assert (
        httpx.post(
            f"{base}/archive", json={"inputs": [{"from": {"id": p1}, "to": [{"id": k1}]}]}, headers=auth
        ).status_code
        == 204
    )
    assert run.companies_of("p1@example.com") == {} and run.contacts_of("K001") == []  # both directions


def test_association_calls_ride_out_429s_and_a_dropped_answer(run):
    run.hubspot.fail(429, route="associations.read", retry_after=0.05)
    run.hubspot.fail("drop_after", route="associations.associate")  # linked, then the answer lost
    [companies, contacts] = run.sync()
    assert (contacts.inserted, contacts.rejected) == (4, 0) and run.hubspot.injected == 2
    assert contacts.api.rate_limited == 1 and contacts.api.retries >= 2
    assert run.companies_of("p2@example.com") == {"K002": {UNLABELED, PRIMARY}}  # linked once, as wanted
    assert run.contacts_of("K003") == ["p3@example.com", "p4@example.com"] and run.hubspot.violations == []


def test_plan_shows_the_missing_company_and_makes_no_write_call(run):
    run.sql("INSERT INTO contacts VALUES ('p9@example.com', 'Zed', 'K999')")
    config = run.config()
    specs = [config.syncs["company_sync"], config.syncs["contact_sync"]]
    relations = {"company_sync": MartRelation("main", "companies"), "contact_sync": MartRelation("main", "contacts")}
    warehouse = DuckDBWarehouse(path=str(run.tmp / "warehouse.duckdb"))
    with warehouse.open(run.name, f"hubspot:{run.name}", dry_run=True) as wh:
        destination = ApiDestination(run.name, config.destinations[run.name], syncs=list(config.syncs.values()))
        companies, contacts = destination.preview(wh, specs, relations)
    assert companies.counts["insert"] == 3 and not companies.problems
    assert contacts.counts["insert"] == 5 and contacts.blocked
    [problem] = contacts.problems
    assert problem.column == "company" and problem.keys == ("p9@example.com -> companies K999",)
    assert set(run.hubspot.calls) == {"describe"}  # read-only metadata, nothing written
