# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""Salesforce lookups declared as foreign keys (Contact.AccountId -> Account.Customer_Id__c),
synced into the local org through the real engine, client and warehouse: the lookup is set by the
parent's external ID in REST and in Bulk API 2.0, moved and cleared by later syncs; a child whose
parent the org will not hold is refused before any call, naming both keys; a parent's delete that
would cascade to a child another sync holds is kept back; a key that only changes case is one
record to the org, updated and not deleted."""

from __future__ import annotations

import duckdb
import pytest

from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from tests.destinations.salesforce_fixtures import keys, start_org  # noqa: F401
from tests.destinations.test_api_objects import Run, _writes, run  # noqa: F401


def _accounts_of(run: Run) -> dict[str, str | None]:
    """Contact key -> the Customer_Id__c of the Account its AccountId points at (None: no link)."""
    org = run.org.objects
    by_id = {i: r["Customer_Id__c"] for i, r in org["Account"].records.items()}
    return {r["Activation_Key__c"]: by_id.get(r.get("AccountId")) for r in org["Contact"].records.values()}


def _sql(run: Run, *statements: str) -> None:
    with duckdb.connect(str(run.warehouse)) as con:
        for statement in statements:
            con.execute(statement)


@pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])
def test_lookups_are_set_moved_and_cleared_by_the_parents_external_id(run, bulk):
    if bulk:
        run.extra_settings = {"bulk_threshold": 1, "bulk_poll_seconds": 0.05}
    [accounts, contacts] = run.sync(related=True)
    assert (accounts.inserted, contacts.inserted) == (5, 3)
    assert _accounts_of(run) == {"P001": "K001", "P002": "K002", "P003": "K003"}

    _sql(
        run,
        "UPDATE contacts SET account_key = 'K005' WHERE contact_key = 'P001'",  # moved to another account
        "UPDATE contacts SET account_key = NULL WHERE contact_key = 'P002'",  # the link cleared
    )
    [accounts, contacts] = run.sync(related=True)
    assert (accounts.updated, contacts.updated, contacts.inserted) == (0, 2, 0)
    assert _accounts_of(run) == {"P001": "K005", "P002": None, "P003": "K003"}


def test_a_child_whose_parent_the_org_will_not_hold_is_refused_before_any_call(run):
    _sql(run, "UPDATE contacts SET account_key = 'K999' WHERE contact_key = 'P002'")
    with pytest.raises(SyncError) as raised:
        run.sync(related=True)
    message = str(raised.value)
    assert "Contact.AccountId: 1 row point at no Account record" in message
    assert "Activation_Key__c=P002 -> Account K999" in message and "'account_sync' neither sends nor holds" in message
    assert [r.sync for r in raised.value.results] == ["account_sync"]  # the parent went through
    assert _writes(run.org) == ["upsert Account"] and run.org.objects["Contact"].records == {}


def test_a_set_aside_orphan_leaves_its_siblings_sent(run):
    _sql(run, "UPDATE contacts SET account_key = 'K999' WHERE contact_key = 'P002'")
    config = run.config
    run.config = lambda related=False: _with(config(related=related), "contact_sync", max_rejects=1)
    [_, contacts] = run.sync(related=True)
    assert (contacts.inserted, contacts.rejected) == (2, 1)
    assert _accounts_of(run) == {"P001": "K001", "P003": "K003"}


def test_keys_compare_as_the_org_compares_the_parents_external_id(run):
    _sql(run, "UPDATE contacts SET account_key = lower(account_key)")  # 'k001' finds 'K001' in Salesforce
    run.sync(related=True)
    assert _accounts_of(run) == {"P001": "K001", "P002": "K002", "P003": "K003"}


def test_a_child_synced_alone_counts_its_parents_by_their_state(run):
    _sql(run, "DELETE FROM accounts WHERE account_key = 'K005'")
    run.sync(related=True)
    _sql(
        run,
        "INSERT INTO accounts VALUES ('K005', 'Account 5')",  # in the parent's mart, not yet sent
        "INSERT INTO contacts VALUES ('P004', 'Person 4', 'K004', NULL), ('P005', 'Person 5', 'K005', NULL)",
    )
    with pytest.raises(SyncError) as raised:
        run.sync(related=True, only="contact_sync")
    assert "Activation_Key__c=P005 -> Account K005" in str(raised.value)
    assert "does not hold (it is not in this run)" in str(raised.value)
    _sql(run, "DELETE FROM contacts WHERE contact_key = 'P005'")
    [contacts] = run.sync(related=True, only="contact_sync")
    assert contacts.inserted == 1 and _accounts_of(run)["P004"] == "K004"


def test_a_parents_delete_that_would_cascade_to_a_held_child_is_kept_back(run):
    run.contact_mode = "upsert"  # the contact sync keeps what leaves its mart
    run.sync(related=True)
    org_made = run.org.objects["Contact"].store(  # made by a person in Salesforce, under Account K004
        {"LastName": "Walk-in", "AccountId": _id_of(run, "K004")}
    )
    _sql(
        run,
        "DELETE FROM contacts WHERE contact_key = 'P003'",  # P003 stays in Salesforce, held by contact_sync
        "DELETE FROM accounts WHERE account_key IN ('K003', 'K004')",
    )
    [accounts, _] = run.sync(related=True)
    assert accounts.deleted == 1 and "K003" in accounts.warnings[-1] and "kept back" in accounts.warnings[-1]
    assert "P003" in accounts.warnings[-1] and "contact_sync" in accounts.warnings[-1]
    assert not any("the API refused" in w for w in accounts.warnings)  # kept back is not refused
    assert sorted(r["Customer_Id__c"] for r in run.org.objects["Account"].records.values()) == [
        "K001",
        "K002",
        "K003",
        "K005",
    ]
    assert _accounts_of(run)["P003"] == "K003"  # the held child is still there, and its parent
    assert org_made not in run.org.objects["Contact"].records  # the org's own child went with K004
    assert any("1 child record(s) no sync holds" in line for line in run.logged)
    assert "K003" in run.state_keys("account_sync")  # the delete is tried again next run


def test_a_key_that_only_changes_case_is_one_record_updated_not_deleted(run):
    run.sync()
    _sql(run, "UPDATE accounts SET account_key = 'k001' WHERE account_key = 'K001'")
    [accounts, _] = run.sync()
    assert (accounts.inserted, accounts.updated, accounts.deleted) == (0, 1, 0)
    held = {r["Customer_Id__c"] for r in run.org.objects["Account"].records.values()}
    assert held == {"k001", "K002", "K003", "K004", "K005"}  # one record, its external ID as sent
    assert "k001" in run.state_keys("account_sync") and "K001" not in run.state_keys("account_sync")


def test_a_foreign_key_on_a_field_that_is_not_a_lookup_is_refused(run):
    config = run.config

    def onto_email(related: bool = False) -> SyncConfig:
        raw = config(related=True).model_dump(mode="json")
        contact = raw["syncs"]["contact_sync"]
        contact["columns"] = {"Activation_Key__c": "contact_key", "LastName": "last_name", "Email": "account_key"}
        contact["foreign_keys"] = {"Email": "Account.Customer_Id__c"}
        return SyncConfig.model_validate(raw)

    run.config = onto_email
    with pytest.raises(SyncError, match=r"Email.*is a string field, not a lookup to Account"):
        run.sync(related=True)
    assert run.org.objects["Contact"].records == {}


def test_a_foreign_key_must_name_the_parents_key(run):
    raw = run.config(related=True).model_dump(mode="json")
    raw["syncs"]["contact_sync"]["foreign_keys"] = {"AccountId": "Account.Name"}
    with pytest.raises(ValueError, match=r"must name the key Account\.Customer_Id__c"):
        SyncConfig.model_validate(raw)


def _with(config: SyncConfig, sync: str, **changes) -> SyncConfig:
    raw = config.model_dump(mode="json")
    raw["syncs"][sync].update(changes)
    return SyncConfig.model_validate(raw)


def _id_of(run: Run, account_key: str) -> str:
    return next(i for i, r in run.org.objects["Account"].records.items() if r["Customer_Id__c"] == account_key)
