# ruff: noqa: F811  (pytest fixtures arrive as arguments named like the imported fixtures)
"""The Salesforce client under limits and faults: expired sessions, the org's daily API allowance,
a per-second rate limit, 429 / 503 storms and dropped connections (before and after the org applied
the request), and the local org's own strictness, so a client mistake cannot pass unnoticed."""

from __future__ import annotations

import pytest
import requests

from activation.destinations.api.limits import RateLimiter, RetriesExhausted
from activation.destinations.salesforce.auth import SalesforceError
from activation.destinations.salesforce.session import ApiShareExceeded
from tests.destinations.salesforce_fixtures import connect, keys, org, start_org  # noqa: F401

KEY = "Customer_Id__c"


def accounts(n: int, start: int = 0, **fields) -> list[dict]:
    return [{KEY: f"C{i:05d}", "Name": f"Account {i}", **fields} for i in range(start, start + n)]


# --- sessions ----------------------------------------------------------------------------------------


def test_an_expired_session_is_renewed_once_and_the_call_repeated(org, connect):
    client = connect(org, bulk_threshold=3, bulk_job_records=3)
    org.expire_sessions()
    assert all(o.ok for o in client.upsert("Account", KEY, accounts(2)))  # Collections
    org.expire_sessions()
    assert all(o.ok for o in client.upsert("Account", KEY, accounts(3, start=2)))  # a Bulk job
    assert org.traffic.logins == 3 and org.traffic.statuses[401] == 2
    assert len(org.objects["Account"].records) == 5


def test_a_session_refused_again_after_the_renewal_fails_the_call(org, connect):
    client = connect(org)
    org.inject("401", times=2, path="/services/data/")
    with pytest.raises(SalesforceError, match="HTTP 401.*INVALID_SESSION_ID"):
        client.count("Account")
    assert org.traffic.logins == 2  # one renewal, not a loop


# --- the org's daily API allowance -------------------------------------------------------------------


def test_calls_stop_before_the_share_of_the_daily_limit_is_passed(start_org, connect):
    org = start_org(daily_api_limit=1_000, api_used=495)
    client = connect(org, max_daily_api_share=0.5)  # 500 of 1,000
    for _ in range(5):
        client.count("Account")
    assert client.api_usage == (500, 1_000)
    answered = len(org.traffic.requests)
    with pytest.raises(ApiShareExceeded, match="usage is 500 of the org's 1,000 daily requests.*allows 500"):
        client.count("Account")
    with pytest.raises(ApiShareExceeded):
        client.upsert("Account", KEY, accounts(1))
    assert (org.api_used, len(org.traffic.requests)) == (500, answered)  # nothing more was sent


def test_a_bulk_job_stops_at_the_share_too(start_org, connect):
    org = start_org(daily_api_limit=1_000, api_used=496)
    client = connect(org, max_daily_api_share=0.5, bulk_threshold=3, bulk_job_records=3)
    client.count("Account")  # 497: three calls left, a job needs more
    with pytest.raises(ApiShareExceeded):
        client.upsert("Account", KEY, accounts(3))
    assert org.api_used == 500


def test_the_orgs_own_daily_limit_answers_403_and_nothing_more_is_tried(start_org, connect):
    org = start_org(daily_api_limit=3, api_used=3)
    client = connect(org, max_daily_api_share=1.0)
    with pytest.raises(SalesforceError, match="HTTP 403.*REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded"):
        client.count("Account")  # the first call cannot know the usage; its answer tells it
    with pytest.raises(ApiShareExceeded):
        client.count("Account")
    assert org.traffic.statuses[403] == 1


# --- rate limits and faults --------------------------------------------------------------------------


def test_the_shared_limiter_keeps_under_the_orgs_rate(start_org, connect):
    # exactly the org's 10 a second: the limiter counts each call from its answer, after the org
    # stamped it, so the time the org takes to read and stamp a call cannot bring a 429
    org = start_org(max_per_second=10)
    client = connect(org, limiter=RateLimiter(10, 1.0))
    for _ in range(25):
        client.count("Account")
    assert org.traffic.rate_violations == 0 and client.stats.rate_limited == 0


def test_a_client_faster_than_the_org_waits_as_told_and_loses_nothing(start_org, connect):
    org = start_org(max_per_second=5)
    client = connect(org, limiter=RateLimiter(100, 1.0, max_concurrent=1))
    for start in range(0, 60, 5):
        assert all(o.ok for o in client.upsert("Account", KEY, accounts(5, start=start)))
    assert org.traffic.rate_violations == client.stats.rate_limited > 0
    assert len(org.objects["Account"].records) == 60


def test_storms_and_dropped_connections_apply_each_record_once(org, connect):
    client = connect(org, bulk_threshold=20, bulk_job_records=20)
    org.inject("429", times=2, path="/composite/sobjects/", retry_after="0.2")
    org.inject("drop_after", times=1, path="/composite/sobjects/", method="PATCH")  # applied, answer lost
    org.inject("503", times=2, path="/jobs/ingest", retry_after=None)
    org.inject("drop_after", times=1, path="/jobs/ingest", method="POST")  # a job created, its id lost
    org.inject("drop_after", times=1, path="/batches", method="PUT")  # data stored twice: the job fails
    org.inject("drop_before", times=1, path="/jobs/ingest/", method="GET")
    small = client.upsert("Account", KEY, accounts(10))
    large = client.upsert("Account", KEY, accounts(20, start=5, Seats__c=3))
    assert all(o.ok for o in small + large)
    records = org.objects["Account"].records.values()
    assert sorted(r[KEY] for r in records) == [f"C{i:05d}" for i in range(25)]  # one record per key
    assert all(r.get("Seats__c") == 3 for r in records if r[KEY] >= "C00005")
    assert client.stats.rate_limited == 2 and client.stats.server_errors >= 6
    assert org.traffic.dropped == 4 and not org.faults
    states = sorted(job.state for job in org.bulk.jobs.values())
    assert states == ["Failed", "JobComplete", "Open"]  # the orphan, the double upload, the one re-run


def test_retries_give_up_with_the_last_answer_named(org, connect, monkeypatch):
    monkeypatch.setattr("activation.destinations.api.limits.time.sleep", lambda _s: None)
    client = connect(org)
    org.inject("503", times=10, retry_after=None)
    with pytest.raises(RetriesExhausted, match="GET .*/query/.*gave up after 6 attempts: HTTP 503"):
        client.count("Account")


# --- the org's strictness ----------------------------------------------------------------------------


@pytest.fixture
def raw(org, connect):
    """requests to the org with a valid token, for what the client never sends."""
    client = connect(org)
    session = requests.Session()
    session.trust_env = False
    session.verify = client.settings.ca_bundle
    session.headers["Authorization"] = f"Bearer {client.session.token.access_token}"
    base = f"{org.url}/services/data/v62.0"
    yield session, base
    session.close()


def errors(response) -> list[str]:
    return [e["errorCode"] for e in response.json()]


def test_the_org_refuses_what_salesforce_refuses(org, raw):
    session, base = raw
    upsert = f"{base}/composite/sobjects/Account/{KEY}"
    many = {"records": [{"attributes": {"type": "Account"}, KEY: f"K{i}"} for i in range(201)]}
    wrong_type = {"records": [{"attributes": {"type": "Account"}, KEY: "K", "Seats__c": "many"}]}
    query = f"{base}/query/"
    checks = {
        "no token": (lambda: session.get(f"{base}/sobjects/Account/describe", headers={"Authorization": None}),
                     401, "INVALID_SESSION_ID"),
        "version not vNN.0": (lambda: session.get(f"{org.url}/services/data/v62/sobjects/Account/describe"), 404,
                              "NOT_FOUND"),
        "version unknown": (lambda: session.get(f"{org.url}/services/data/v99.0/limits"), 404, "NOT_FOUND"),
        "not JSON": (lambda: session.patch(upsert, data="{}", headers={"Content-Type": "text/plain"}), 415,
                     "UNSUPPORTED_MEDIA_TYPE"),
        "201 records": (lambda: session.patch(upsert, json=many), 400, "EXCEEDED_ID_LIMIT"),
        "not an external ID": (lambda: session.patch(f"{base}/composite/sobjects/Account/Name", json={"records": []}),
                               400, "INVALID_FIELD"),
        "no attributes": (lambda: session.patch(upsert, json={"records": [{KEY: "K"}]}), 400, "INVALID_TYPE"),
        "text for a number": (lambda: session.patch(upsert, json=wrong_type), 400, "JSON_PARSER_ERROR"),
        "SOQL it does not parse": (lambda: session.get(query, params={"q": "SELECT Id FROM Account LIMIT 1"}), 400,
                                   "MALFORMED_QUERY"),
        "URL too long": (lambda: session.get(query, params={"q": "SELECT Id FROM Account WHERE Name IN ('"
                                                            + "x" * 17_000 + "')"}), 414, "URI_TOO_LONG"),
        "upsert job without external ID": (
            lambda: session.post(f"{base}/jobs/ingest", json={"object": "Account", "operation": "upsert"}), 400,
            "INVALIDJOB"),
    }  # fmt: skip
    for what, (send, status, code) in checks.items():
        response = send()
        assert (response.status_code, errors(response)) == (status, [code]), what
    assert org.objects["Account"].records == {}


def test_the_bulk_job_state_machine_is_enforced(org, raw):
    session, base = raw
    job = session.post(f"{base}/jobs/ingest", json={"object": "Account", "operation": "upsert",
                                                     "externalIdFieldName": KEY}).json()  # fmt: skip
    assert job["state"] == "Open" and job["contentUrl"].endswith("/batches")
    batches, job_url = f"{org.url}/{job['contentUrl']}", f"{base}/jobs/ingest/{job['id']}"
    as_json = {"Content-Type": "application/json"}
    assert session.put(batches, data=b"Customer_Id__c\nK1\n", headers=as_json).status_code == 415
    assert session.get(f"{job_url}/successfulResults/").status_code == 400  # not finished
    org.bulk.max_upload_bytes = 1_000  # the org's limit, lowered so the test sends kilobytes, not 150 MB
    too_big = b"Customer_Id__c,Name\n" + b"K,x\n" * 250
    assert "CLIENTINPUTERROR" in errors(session.put(batches, data=too_big, headers={"Content-Type": "text/csv"}))
    body = b'Customer_Id__c,Name\nK1,One\nK2,"Two, ""quoted"""\n'
    assert session.put(batches, data=body, headers={"Content-Type": "text/csv"}).status_code == 201
    assert session.patch(job_url, json={"state": "UploadComplete"}).json()["state"] == "UploadComplete"
    assert "INVALIDJOBSTATE" in errors(session.patch(job_url, json={"state": "UploadComplete"}))
    assert session.put(batches, data=body, headers={"Content-Type": "text/csv"}).status_code == 409
    info = session.get(job_url).json()
    while info["state"] not in ("JobComplete", "Failed"):
        info = session.get(job_url).json()
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 2, 0)
    results = session.get(f"{job_url}/successfulResults/").text.splitlines()
    assert results[0] == '"sf__Id","sf__Created","Customer_Id__c","Name"'
    assert results[1].endswith('"true","K2","Two, ""quoted"""')  # the upload's order is not kept
    failed = session.get(f"{job_url}/failedResults/").text.splitlines()
    assert failed == ['"sf__Id","sf__Error","Customer_Id__c","Name"']
