# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""The Salesforce client against the local org (salesforce_server.py): OAuth, describe, upserts
through sObject Collections and Bulk API 2.0, per-record outcomes, value encoding, deletes, count.
Limits and faults are in test_salesforce_faults.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from activation.destinations.api.limits import RateLimiter
from activation.destinations.salesforce import Settings, open_client
from activation.destinations.salesforce.auth import SalesforceError, SalesforceLoginError

# The fixtures live beside the server (a conftest.py here would be shared with other vendors' tests).
from tests.destinations.salesforce_fixtures import connect, keys, org, start_org  # noqa: F401
from tests.destinations.salesforce_server import public_pem, rsa_key

KEY = "Customer_Id__c"


def accounts(n: int, start: int = 0, **fields) -> list[dict]:
    return [{KEY: f"C{i:05d}", "Name": f"Account {i}", **fields} for i in range(start, start + n)]


def stored(org, key: str) -> dict:
    (record_id,) = org.objects["Account"].matching(KEY, key)
    return org.objects["Account"].records[record_id]


def jobs_created(org) -> int:
    return sum(1 for method, path in org.traffic.requests if method == "POST" and path.endswith("/jobs/ingest"))


def collection_calls(org) -> int:
    return sum(1 for method, path in org.traffic.requests if method == "PATCH" and "/composite/sobjects/" in path)


# --- OAuth 2.0 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["client_credentials", "jwt_bearer"])
def test_both_oauth_flows_log_in_and_the_token_reaches_the_api(org, connect, auth):
    client = connect(org, auth=auth)
    assert client.count("Account") == 0
    assert org.traffic.logins == 1
    assert org.traffic.requests == [("GET", "/services/data/v62.0/query/")]


def test_missing_secrets_are_named_before_any_call(org):
    settings = Settings(
        login_url=org.url, auth="jwt_bearer", client_id_env="NO_ID", username_env="NO_USER", private_key_env="NO_KEY"
    )
    with pytest.raises(SalesforceLoginError, match="NO_ID, NO_USER, NO_KEY"):
        open_client(settings, RateLimiter(10))
    assert org.traffic.logins == 0 and sum(org.traffic.statuses.values()) == 0


def test_a_wrong_client_secret_is_refused_with_the_endpoints_error_and_no_secret(org, connect):
    with pytest.raises(SalesforceLoginError, match="invalid_client: invalid client credentials") as caught:
        connect(org, env={"SF_CLIENT_SECRET": "a-wrong-secret"})
    assert "a-wrong-secret" not in str(caught.value) and "a-wrong-secret" not in repr(caught.value)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("key", "invalid_grant: invalid assertion"),  # signed with a key the connected app does not hold
        ("audience", "invalid_grant: audience is invalid"),
        ("username", "invalid_grant: user hasn't approved this consumer"),
    ],
)
def test_the_jwt_bearer_flow_is_checked_like_salesforce_checks_it(org, connect, change, error):
    overrides: dict = {"auth": "jwt_bearer"}
    if change == "audience":
        overrides["audience"] = "https://test.salesforce.com"
    if change == "username":
        overrides["env"] = {"SF_USERNAME": "someone-else@example.com"}
    if change == "key":
        org.config.jwt_public_key = public_pem(rsa_key())
    with pytest.raises(SalesforceLoginError, match=error):
        connect(org, **overrides)


def test_settings_refuse_what_salesforce_would(org):
    base = {"login_url": org.url, "auth": "client_credentials", "client_id_env": "A", "client_secret_env": "B"}
    Settings(**base)
    for wrong in ({"api_version": "62"}, {"api_version": "v62.0"}, {"secret": "x"}, {"max_daily_api_share": 1.5}):
        with pytest.raises(ValidationError):
            Settings(**{**base, **wrong})
    with pytest.raises(ValidationError, match="jwt_bearer needs"):
        Settings(**{**base, "auth": "jwt_bearer"})
    with pytest.raises(ValidationError, match="bulk_job_records"):
        Settings(**base, bulk_threshold=5_000, bulk_job_records=1_000)


# --- describe and count ------------------------------------------------------------------------------


def test_describe_maps_salesforce_types_to_field_info(org, connect):
    fields = connect(org).describe("Account")
    summary = {n: (f.type, f.length, f.precision, f.scale, f.required, f.writable) for n, f in fields.items()}
    assert summary == {
        "Id": ("id", 18, None, None, False, False),
        "Name": ("string", 255, None, None, True, True),
        KEY: ("string", 40, None, None, False, True),
        "Legacy_Key__c": ("string", 40, None, None, False, True),
        "Segment__c": ("picklist", 255, None, None, False, True),
        "Source__c": ("picklist", 40, None, None, False, True),
        "Regions__c": ("string", 4099, None, None, False, True),
        "Lifetime_Value__c": ("number", None, 16, 2, False, True),
        "Churn_Risk__c": ("number", None, 5, 2, False, True),
        "Score__c": ("number", None, 18, 6, False, True),
        "Seats__c": ("integer", None, 9, 0, False, True),
        "Is_Active__c": ("boolean", None, None, None, False, True),
        "First_Order__c": ("date", None, None, None, False, True),
        "Last_Seen__c": ("datetime", None, None, None, False, True),
        "Notes__c": ("string", 1000, None, None, False, True),
        "Website": ("string", 255, None, None, False, True),
        "Health__c": ("string", 20, None, None, False, False),
    }
    assert fields["Segment__c"].picklist == ("Enterprise", "Mid-Market", "SMB")
    assert fields["Source__c"].picklist is None  # unrestricted: any value up to its length


def test_describe_of_an_unknown_object_names_it(org, connect):
    with pytest.raises(SalesforceError, match="describing Acount failed .*NOT_FOUND"):
        connect(org).describe("Acount")


# --- upsert: which channel --------------------------------------------------------------------------


def test_collections_below_the_threshold_and_bulk_from_it(org, connect):
    client = connect(org, bulk_threshold=450, bulk_job_records=1_000)
    assert (client.batch_size(449), client.batch_size(450)) == (200, 1_000)
    outcomes = client.upsert("Account", KEY, accounts(449))
    assert all(o.ok and o.created for o in outcomes) and [o.index for o in outcomes] == list(range(449))
    assert (collection_calls(org), jobs_created(org)) == (3, 0)  # 200 + 200 + 49
    outcomes = client.upsert("Account", KEY, accounts(450))
    assert all(o.ok for o in outcomes) and [o.created for o in outcomes] == [False] * 449 + [True]
    assert (collection_calls(org), jobs_created(org)) == (3, 1)
    assert len(org.objects["Account"].records) == 450
    assert outcomes[5].record_id == stored(org, "C00005")["Id"]


CASES = [
    ({"Name": "x" * 256}, "STRING_TOO_LONG", "Name: data value too large"),
    ({"Segment__c": "Giant"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "restricted picklist field: Giant"),
    ({"Name": None}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]"),
    ({"Health__c": "good"}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Health__c"),
    ({"Churn_Risk__c": Decimal("1000")}, "NUMBER_OUTSIDE_VALID_RANGE", "value outside of valid range"),
]


@pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])
def test_records_the_org_refuses_fail_alone_with_its_message(org, connect, bulk):
    client = connect(org, bulk_threshold=10 if bulk else 2_000, bulk_job_records=10 if bulk else 10_000)
    records = accounts(10)
    for (change, _, _), record in zip(CASES, records[1::2], strict=True):
        record.update(change)
    records[-2][KEY] = records[0][KEY].lower()  # the same external ID twice in one call
    outcomes = client.upsert("Account", KEY, records)
    assert (jobs_created(org), collection_calls(org)) == ((1, 0) if bulk else (0, 1))
    failed = {o.index: o.error for o in outcomes if not o.ok}
    assert sorted(failed) == [0, 1, 3, 5, 7, 8, 9]
    for (_, code, message), index in zip(CASES, [1, 3, 5, 7, 9], strict=True):
        assert code in failed[index] and message in failed[index]
    assert "DUPLICATE_VALUE" in failed[0] and "Duplicate external id specified" in failed[8]
    assert sorted(r[KEY] for r in org.objects["Account"].records.values()) == ["C00002", "C00004", "C00006"]
    assert client.stats.api_errors and all(e in failed.values() for e in client.stats.api_errors)


def test_an_external_id_matching_two_records_fails_that_record(org, connect):
    for i in (1, 2):
        org.objects["Account"].store({"Name": f"twin {i}", "Legacy_Key__c": "L-1"})
    outcomes = connect(org).upsert("Account", "Legacy_Key__c", [{"Legacy_Key__c": "L-1", "Name": "x"}])
    assert not outcomes[0].ok and "DUPLICATE_EXTERNAL_ID" in outcomes[0].error


def test_an_unknown_field_fails_the_call_in_collections_and_the_job_in_bulk(org, connect):
    records = [{**r, "Nope__c": 1} for r in accounts(3)]
    with pytest.raises(SalesforceError, match="INVALID_FIELD: No such column 'Nope__c' on sobject of type Account"):
        connect(org).upsert("Account", KEY, records)
    outcomes = connect(org, bulk_threshold=3, bulk_job_records=3).upsert("Account", KEY, records)
    assert all("Field name not found : Nope__c" in o.error for o in outcomes)
    assert jobs_created(org) == 2  # failed before any record: run once more, then given up
    assert org.objects["Account"].records == {}


# --- Bulk API 2.0 results ---------------------------------------------------------------------------


def test_bulk_results_are_matched_by_external_id_including_unprocessed_records(org, connect):
    client = connect(org, bulk_threshold=8, bulk_job_records=8)
    records = accounts(8)
    records[1]["Name"] = "y" * 300
    org.bulk.fail_next.append((3, "InvalidBatch : the org stopped the job"))  # 3 rows processed, then Failed
    outcomes = client.upsert("Account", KEY, records)
    assert [o.ok for o in outcomes] == [True, False, True] + [False] * 5
    assert outcomes[0].record_id == stored(org, "C00000")["Id"] and outcomes[0].created is True
    assert outcomes[1].error.startswith("STRING_TOO_LONG:Name: data value too large")
    for outcome in outcomes[3:]:
        assert "not processed" in outcome.error and "Failed: InvalidBatch : the org stopped the job" in outcome.error
    assert sorted(r[KEY] for r in org.objects["Account"].records.values()) == ["C00000", "C00002"]
    assert jobs_created(org) == 1  # some records were processed: no second job


def test_a_job_failing_before_any_record_runs_once_more_in_a_new_job(org, connect):
    org.bulk.fail_next.append((0, "InternalServerError : try later"))
    outcomes = connect(org, bulk_threshold=5, bulk_job_records=5).upsert("Account", KEY, accounts(5))
    assert all(o.ok for o in outcomes) and jobs_created(org) == 2


def test_uploads_are_split_under_the_size_limit_into_several_jobs(start_org, connect):
    org = start_org(max_upload_bytes=2_000)
    client = connect(org, bulk_threshold=100, bulk_job_records=100, bulk_max_upload_bytes=2_000)
    records = accounts(100, Notes__c="n" * 40)
    records[7]["Notes__c"] = "n" * 1_000 + "é" * 500  # 2,000+ bytes in UTF-8 (1,500 characters): fits no upload
    outcomes = client.upsert("Account", KEY, records)
    assert not outcomes[7].ok and "larger than one Bulk API 2.0 upload" in outcomes[7].error
    assert all(o.ok for i, o in enumerate(outcomes) if i != 7)
    sizes = [len(upload) for job in org.bulk.jobs.values() for upload in job.uploads]
    assert len(sizes) == jobs_created(org) >= 3 and max(sizes) <= 2_000
    assert len(org.objects["Account"].records) == 99


# --- values on the wire ------------------------------------------------------------------------------

AWARE = dt.datetime(2024, 3, 1, 23, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
VALUES = {
    "Name": 'Ünïcødé, "quoted"\nsecond line\r\nthird',
    "Notes__c": "  leading and trailing spaces  ",
    "Website": "",  # an empty text is null in Salesforce
    "Source__c": None,
    "Lifetime_Value__c": Decimal("12345678901234.56"),
    "Churn_Risk__c": 12.5,
    "Score__c": Decimal("0.000001"),
    "Seats__c": 123_456_789,
    "Is_Active__c": True,
    "First_Order__c": dt.date(1999, 12, 31),
    "Last_Seen__c": AWARE,
}
EXPECTED = {
    **VALUES,
    "Website": None,
    "Churn_Risk__c": Decimal("12.50"),
    "Score__c": Decimal("0.000001"),
    "Last_Seen__c": dt.datetime(2024, 3, 2, 4, 30, 15, 123000, tzinfo=dt.UTC),
}


@pytest.mark.parametrize("bulk", [False, True], ids=["collections-json", "bulk-csv"])
def test_values_arrive_exactly_in_either_wire_format(org, connect, bulk):
    client = connect(org, bulk_threshold=3 if bulk else 2_000, bulk_job_records=3 if bulk else 10_000)
    org.objects["Account"].store({KEY: "C00002", "Name": "before", "Source__c": "Web", "Seats__c": 7})
    records = [
        {KEY: "C00000", **VALUES},
        {KEY: "C00001", **VALUES, "Is_Active__c": False, "Notes__c": "#N/A"},  # the text, not a null
        {KEY: "C00002", "Source__c": None},  # a null clears; a field not sent stays as it was
    ]
    assert all(o.ok for o in client.upsert("Account", KEY, records))
    first, second, third = (stored(org, f"C0000{i}") for i in range(3))
    assert {name: first.get(name) for name in EXPECTED} == EXPECTED
    assert second["Is_Active__c"] is False and second["Notes__c"] == "#N/A"
    assert (third["Name"], third["Source__c"], third["Seats__c"]) == ("before", None, 7)
    assert jobs_created(org) == (1 if bulk else 0)
    assert collection_calls(org) == 1  # bulk: the record holding the text '#N/A' went as JSON


def test_values_salesforce_cannot_take_fail_their_record_before_any_call(org, connect):
    records = accounts(4)
    records[1]["Score__c"] = float("nan")
    records[2]["Last_Seen__c"] = dt.datetime(2024, 1, 1, 12, 0)  # no time zone
    records[3][KEY] = None
    outcomes = connect(org).upsert("Account", KEY, records)
    assert [o.ok for o in outcomes] == [True, False, False, False]
    assert "Score__c: nan is not a number" in outcomes[1].error and "C00001" in outcomes[1].error
    assert "Last_Seen__c: 2024-01-01T12:00:00 has no time zone" in outcomes[2].error
    assert "Customer_Id__c is empty" in outcomes[3].error


# --- deletes and count -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["collections", "bulk", "hard"])
def test_deletes_by_external_id_count_gone_records_as_deleted(org, connect, mode):
    client = connect(
        org,
        bulk_threshold=3 if mode == "bulk" else 2_000,
        bulk_job_records=3 if mode == "bulk" else 10_000,
        hard_delete=mode == "hard",
    )
    account = org.objects["Account"]
    ids = {r[KEY]: account.store(r) for r in accounts(6)}
    for twin in ("a", "b"):
        account.store({"Name": f"twin {twin}", "Legacy_Key__c": "L-1"})
    account.delete(ids["C00005"])  # already in the Recycle Bin
    outcomes = client.delete("Account", KEY, ["C00000", "c00001", "C00002", "C00005", "never-existed"])
    assert [o.ok for o in outcomes] == [True] * 5, outcomes
    assert client.count("Account") == 4  # C00003, C00004 and the twins
    assert client.delete("Account", "Legacy_Key__c", ["L-1"])[0].ok and client.count("Account") == 2
    in_bin = sorted(r.get(KEY) or r["Legacy_Key__c"] for r in account.recycle_bin.values())
    assert in_bin == (["C00005"] if mode == "hard" else ["C00000", "C00001", "C00002", "C00005", "L-1", "L-1"])
    operations = {job.operation for job in org.bulk.jobs.values()}
    assert operations == {"collections": set(), "bulk": {"delete"}, "hard": {"hardDelete"}}[mode]


def test_a_delete_the_org_refuses_fails_that_key_only(org, connect):
    account = org.objects["Account"]
    for r in accounts(2):
        account.store(r)
    account.protected.add(account.store({KEY: "C00009", "Name": "Acme"}))  # open Cases block its deletion
    outcomes = connect(org).delete("Account", KEY, ["C00000", "C00009", "C00001"])
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "DELETE_FAILED: Your attempt to delete Acme could not be completed" in outcomes[1].error
    assert sorted(r[KEY] for r in account.records.values()) == ["C00009"]


def test_lookups_are_split_so_no_query_url_passes_the_limit(org, connect):
    account = org.objects["Account"]
    names = [f"K-{i:05d}-{'x' * 60}" for i in range(600)]
    for name in names:
        account.store({KEY: name[:40], "Name": name})
    client = connect(org)
    outcomes = client.delete("Account", KEY, [n[:40] for n in names])
    assert all(o.ok for o in outcomes) and client.count("Account") == 0
    queries = [p for m, p in org.traffic.requests if p.endswith("/query/")]
    assert len(queries) >= 3  # several IN lists; the org answers 414 past 16,384 bytes of URL


def test_the_org_refuses_a_multi_select_item_outside_its_restricted_values(org, connect):
    client = connect(org)
    outcomes = client.upsert(
        "Account", KEY, accounts(2, Regions__c="EMEA;AMER") + accounts(1, 2, Regions__c="EMEA;Mars")
    )
    assert [o.ok for o in outcomes] == [True, True, False]
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in outcomes[2].error and "Mars" in outcomes[2].error
    fields = client.describe("Account")
    assert fields["Regions__c"].multi and fields["Regions__c"].picklist == ("EMEA", "APAC", "AMER")
