"""The HubSpot client driven against the local HubSpot (hubspot_server.py): upserts by a unique
property, per-input errors, archives, describe, the spelling of values, and the rate limit and
faults converging without a duplicate record."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from pydantic import ValidationError

from activation.destinations.api.limits import RateLimiter
from activation.destinations.hubspot import HubSpotError, Settings, open_client
from tests.destinations.hubspot_portal import demo_portal
from tests.destinations.hubspot_properties import STRING_LIMIT
from tests.destinations.hubspot_server import HubSpotServer

SCORES = "2-12345"  # the custom object, by objectTypeId
KEY = "customer_key"


@pytest.fixture
def hubspot():
    with HubSpotServer(max_requests=1000, interval_seconds=1.0) as server:
        yield server


@pytest.fixture
def log():
    return []


def connect(server: HubSpotServer, monkeypatch, log=None, limiter=None, **settings):
    monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
    limiter = limiter or RateLimiter(1000, 1.0)
    return open_client(Settings(base_url=server.url, **settings), limiter, (log if log is not None else []).append)


@pytest.fixture
def client(hubspot, monkeypatch, log):
    client = connect(hubspot, monkeypatch, log)
    yield client
    client.close()


def scores(n: int, start: int = 0, **values) -> list[dict]:
    return [{KEY: f"c-{i:05d}", "name": f"Customer {i}", **values} for i in range(start, start + n)]


def test_upsert_creates_then_updates_by_the_unique_property(client, hubspot):
    first = client.upsert(SCORES, KEY, scores(3, score=Decimal("1.5")))
    assert [(o.index, o.ok, o.created) for o in first] == [(0, True, True), (1, True, True), (2, True, True)]
    stored = hubspot.portal.record("customer_scores", KEY, "c-00001")
    assert stored["score"] == "1.5" and stored["hs_object_id"] == first[1].record_id

    second = client.upsert(SCORES, KEY, [*scores(2, score=Decimal("7")), *scores(1, start=3)])
    assert [(o.ok, o.created) for o in second] == [(True, False), (True, False), (True, True)]
    assert second[0].record_id == first[0].record_id
    assert hubspot.portal.record("customer_scores", KEY, "c-00000")["score"] == "7"
    assert hubspot.portal.record("customer_scores", KEY, "c-00002")["score"] == "1.5"
    assert client.count(SCORES) == 4 == len(hubspot.portal.records("customer_scores"))
    assert hubspot.violations == []


def test_batches_hold_at_most_100_inputs(client, hubspot):
    outcomes = client.upsert(SCORES, KEY, scores(250))
    assert all(o.ok for o in outcomes) and [o.index for o in outcomes] == list(range(250))
    assert hubspot.upsert_sizes == [100, 100, 50]
    assert len(hubspot.portal.records("customer_scores")) == 250
    assert client.batch_size(10_000) == 100
    assert hubspot.violations == []


def test_the_server_refuses_what_hubspot_refuses(hubspot):
    """The local server is only worth testing against if it is strict: these are requests the
    real API refuses as a whole."""
    auth = {"Authorization": f"Bearer {hubspot.token}"}
    url = f"{hubspot.url}/crm/v3/objects/{SCORES}/batch/upsert"
    inputs = [{"idProperty": KEY, "id": f"k{i}", "properties": {}} for i in range(101)]
    too_many = httpx.post(url, json={"inputs": inputs}, headers=auth)
    assert too_many.status_code == 400 and too_many.json()["category"] == "VALIDATION_ERROR"
    assert "limit of 100" in too_many.json()["message"]
    not_unique = httpx.post(url, json={"inputs": [{"idProperty": "name", "id": "x", "properties": {}}]}, headers=auth)
    assert not_unique.status_code == 400 and "cannot be an idProperty" in not_unique.json()["message"]
    twice = [{"idProperty": KEY, "id": "same", "properties": {}}] * 2
    assert httpx.post(url, json={"inputs": twice}, headers=auth).status_code == 400
    no_token = httpx.post(url, json={"inputs": inputs[:1]})
    assert no_token.status_code == 401 and no_token.json()["category"] == "INVALID_AUTHENTICATION"
    # without objectWriteTraceId one invalid value fails the whole batch and nothing is written
    bad = [
        {"idProperty": KEY, "id": "a", "properties": {}},
        {"idProperty": KEY, "id": "b", "properties": {"score": "1,5"}},
    ]
    whole = httpx.post(url, json={"inputs": bad}, headers=auth)
    assert whole.status_code == 400 and "INVALID_DECIMAL" in whole.json()["message"]
    # a date property takes midnight UTC only
    traced = [{"idProperty": KEY, "id": "d", "properties": {"signup_date": "1572480000001"}, "objectWriteTraceId": "0"}]
    multi = httpx.post(url, json={"inputs": traced}, headers=auth)
    assert multi.status_code == 207 and "not midnight" in multi.json()["errors"][0]["message"]
    assert hubspot.portal.records("customer_scores") == []
    assert len(hubspot.violations) == 5


def test_refused_inputs_become_failed_outcomes_with_hubspots_message(client, hubspot):
    records = scores(100, tier="gold")
    records[10]["tier"] = "platinum"  # not an option
    records[20]["score"] = "12abc"  # not a number
    records[30]["no_such_property"] = "x"
    records[40]["score_band"] = "high"  # calculated, read-only
    outcomes = client.upsert(SCORES, KEY, records)
    failed = {o.index: o.error for o in outcomes if not o.ok}
    assert sorted(failed) == [10, 20, 30, 40]
    assert "INVALID_OPTION" in failed[10] and "platinum" in failed[10] and failed[10].startswith("VALIDATION_ERROR")
    assert "12abc was not a valid number" in failed[20]
    assert 'Property \\"no_such_property\\" does not exist' in failed[30]
    assert "read only" in failed[40]
    assert len(hubspot.portal.records("customer_scores")) == 96
    assert hubspot.portal.record("customer_scores", KEY, "c-00010") is None
    assert len(client.stats.api_errors) == 4
    assert hubspot.violations == []  # a 207 is an answer, not a refused request


def test_results_are_placed_by_key_when_hubspot_does_not_echo_trace_ids(monkeypatch):
    with HubSpotServer(demo_portal(echo_trace_ids=False)) as hubspot:
        client = connect(hubspot, monkeypatch)
        records = scores(30)
        records[5]["tier"] = "wood"
        outcomes = client.upsert(SCORES, KEY, records)
        for outcome, record in zip(outcomes, records, strict=True):
            if outcome.index == 5:
                assert not outcome.ok and "wood" in outcome.error
            else:
                assert outcome.record_id == hubspot.portal.record("customer_scores", KEY, record[KEY])["hs_object_id"]
        client.close()


def test_a_batch_refused_as_a_whole_is_halved_down_to_the_records_hubspot_refuses(monkeypatch):
    """Should HubSpot answer a batch upsert all or nothing (one bad input: 400, nothing written),
    the client halves the batch until the good records are written and the bad ones isolated."""
    with HubSpotServer(demo_portal(multi_status=False)) as hubspot:
        client = connect(hubspot, monkeypatch)
        records = scores(100)
        records[17]["tier"] = "platinum"
        records[80]["active"] = "yes"
        outcomes = client.upsert(SCORES, KEY, records)
        assert {o.index for o in outcomes if not o.ok} == {17, 80}
        assert "platinum" in outcomes[17].error and "INVALID_BOOLEAN" in outcomes[80].error
        assert len(hubspot.portal.records("customer_scores")) == 98
        assert hubspot.calls["upsert"] <= 30  # about 2 x 2 x log2(100) + 1, not one call per record
        client.close()


def test_delete_archives_by_the_unique_property_and_gone_counts_as_deleted(client, hubspot):
    created = client.upsert(SCORES, KEY, scores(5))
    outcomes = client.delete(SCORES, KEY, ["c-00000", "c-00002", "c-00004", "never-synced"])
    assert [o.ok for o in outcomes] == [True] * 4
    assert outcomes[1].record_id == created[2].record_id and outcomes[3].record_id is None
    assert sorted(r[KEY] for r in hubspot.portal.records("customer_scores")) == ["c-00001", "c-00003"]
    assert client.count(SCORES) == 2
    again = client.delete(SCORES, KEY, ["c-00000"])
    assert again[0].ok
    assert hubspot.calls["archive"] == 1  # nothing left to archive the second time
    assert hubspot.violations == []


def test_describe_maps_hubspot_properties(client):
    fields = client.describe("customer_scores")
    assert fields == client.describe(SCORES)
    assert (fields[KEY].type, fields[KEY].length, fields[KEY].writable) == ("string", STRING_LIMIT, True)
    assert fields["notes"].type == "textarea" and fields["notes"].length == STRING_LIMIT
    assert [fields[n].type for n in ("score", "active", "signup_date", "last_seen")] == [
        "number",
        "boolean",
        "date",
        "datetime",
    ]
    assert fields["tier"].type == "picklist" and fields["tier"].picklist == ("bronze", "silver", "gold")
    assert fields["channels"].type == "picklist" and fields["channels"].multi  # multiple checkboxes: 'a;b'
    assert fields["channels"].picklist == ("email", "phone", "sms") and not fields["tier"].multi
    assert not fields["score_band"].writable and not fields["createdate"].writable
    assert fields["hs_object_id"].type == "id" and not fields["hs_object_id"].writable


def test_values_are_spelled_as_hubspot_documents(client, hubspot):
    unit = "Zoë 🚀 日本 "
    long_text = (unit * (STRING_LIMIT // len(unit) + 1))[:STRING_LIMIT]
    assert len(long_text) == STRING_LIMIT
    record = {
        KEY: "spelled",
        "name": "Zoë 🚀 日本語",
        "notes": long_text,
        "score": Decimal("12345678901234567890.123456789"),
        "active": True,
        "signup_date": date(2024, 2, 29),
        "last_seen": datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        "channels": "email;sms",
    }
    assert client.upsert(SCORES, KEY, [record])[0].ok
    stored = hubspot.portal.record("customer_scores", KEY, "spelled")
    assert stored["name"] == "Zoë 🚀 日本語" and stored["notes"] == long_text
    assert stored["score"] == "12345678901234567890.123456789"  # not through a float
    assert stored["active"] == "true" and stored["signup_date"] == "2024-02-29"
    assert stored["last_seen"] == "2024-05-01T12:30:15.123Z"  # UTC, milliseconds
    assert stored["channels"] == "email;sms"

    changes = {KEY: "spelled", "name": None, "notes": "", "score": 1e20, "active": False}
    changes["signup_date"] = datetime(2024, 3, 1, tzinfo=UTC)  # midnight UTC: a day
    assert client.upsert(SCORES, KEY, [changes])[0].ok
    stored = hubspot.portal.record("customer_scores", KEY, "spelled")
    assert "name" not in stored and "notes" not in stored  # None and "" both clear
    assert stored["score"] == "100000000000000000000" and stored["active"] == "false"
    assert stored["signup_date"] == "2024-03-01"
    assert client.upsert(SCORES, KEY, [{KEY: "spelled", "score": 0.1}])[0].ok
    assert hubspot.portal.record("customer_scores", KEY, "spelled")["score"] == "0.1"
    assert hubspot.violations == []


def test_values_hubspot_cannot_take_fail_before_any_call(client, hubspot):
    records = [
        {KEY: "naive", "last_seen": datetime(2024, 5, 1, 12, 0)},
        {KEY: "nan", "score": float("nan")},
        {KEY: "noon", "signup_date": datetime(2024, 5, 1, 12, 0, tzinfo=UTC)},
        {KEY: None, "name": "no key"},
        {KEY: "bytes", "name": b"raw"},
    ]
    outcomes = client.upsert(SCORES, KEY, records)
    assert [o.ok for o in outcomes] == [False] * 5
    assert outcomes[0].error.startswith("last_seen:") and "no time zone" in outcomes[0].error
    assert outcomes[1].error.startswith("score:")
    assert "not midnight UTC" in outcomes[2].error
    assert "customer_key is empty" in outcomes[3].error
    assert hubspot.calls["upsert"] == 0


def test_a_string_over_hubspots_limit_is_refused_for_that_record_only(client, hubspot):
    records = [{KEY: "long", "notes": "x" * (STRING_LIMIT + 1)}, {KEY: "short", "notes": "x"}]
    outcomes = client.upsert(SCORES, KEY, records)
    assert not outcomes[0].ok and "65537" in outcomes[0].error and outcomes[1].ok


def test_contacts_upsert_by_email_and_keys_must_be_unique(client, hubspot):
    outcomes = client.upsert("contacts", "email", [{"email": "ada@example.com", "lifecyclestage": "lead"}])
    assert outcomes[0].ok and hubspot.portal.record("contacts", "email", "ada@example.com")
    with pytest.raises(HubSpotError, match="'name'.*does not require unique values"):
        client.upsert(SCORES, "name", scores(1))
    with pytest.raises(HubSpotError, match="no property 'nope'"):
        client.delete(SCORES, "nope", ["x"])
    with pytest.raises(HubSpotError, match="Unable to infer object type from: deals"):
        client.describe("deals")
    assert hubspot.calls["upsert"] == 1


def test_a_batch_too_large_for_the_server_is_split(monkeypatch):
    with HubSpotServer(max_body_bytes=60_000) as hubspot:
        client = connect(hubspot, monkeypatch)
        outcomes = client.upsert(SCORES, KEY, scores(100, notes="n" * 2_000))
        assert all(o.ok for o in outcomes)
        assert len(hubspot.portal.records("customer_scores")) == 100
        assert sum(hubspot.upsert_sizes) == 100 and max(hubspot.upsert_sizes) <= 25
        assert hubspot.violations and all(v.startswith("413") for v in hubspot.violations)
        client.close()


def test_token_comes_from_the_environment_and_a_bad_one_is_a_clear_error(hubspot, monkeypatch):
    monkeypatch.delenv("HUBSPOT_TOKEN_MISSING", raising=False)
    with pytest.raises(HubSpotError, match="HUBSPOT_TOKEN_MISSING is not set"):
        open_client(Settings(base_url=hubspot.url, token_env="HUBSPOT_TOKEN_MISSING"), RateLimiter(10), print)
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-na1-revoked")
    client = open_client(Settings(base_url=hubspot.url), RateLimiter(10), print)
    with pytest.raises(HubSpotError, match=r"\$HUBSPOT_TOKEN \(HTTP 401") as refused:
        client.upsert(SCORES, KEY, scores(1))
    assert "pat-na1-revoked" not in str(refused.value)
    assert client.stats.calls == 1  # a 401 is not retried: private app tokens are not refreshed
    client.close()


def test_settings_are_strict():
    with pytest.raises(ValidationError, match="not the token itself"):
        Settings(token_env="pat-na1-1234-abcd")
    with pytest.raises(ValidationError):
        Settings(token="pat-na1-1234")
    with pytest.raises(ValidationError):
        Settings(batch_size=101)
    assert Settings().base_url == "https://api.hubapi.com"


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "interval-header"])
def test_a_spent_window_is_waited_out_once(monkeypatch, retry_after):
    """Another app used the portal's window: the first call gets a 429 and the whole limiter waits
    (Retry-After, or HubSpot's interval header when it is missing); no second 429 follows."""
    with HubSpotServer(max_requests=5, interval_seconds=1.0, retry_after=retry_after) as hubspot:
        client = connect(hubspot, monkeypatch, limiter=RateLimiter(5, 1.0))
        hubspot.use_window()
        started = time.monotonic()
        assert client.count(SCORES) == 0
        assert time.monotonic() - started >= 0.9
        for _ in range(12):  # more than two windows' worth, at the limiter's pace
            client.count(SCORES)
        assert hubspot.rate_limited == 1 and client.stats.rate_limited == 1
        assert time.monotonic() - started >= 2.9
        assert hubspot.violations == []
        client.close()


def test_a_window_another_app_spent_over_time_costs_one_429(monkeypatch):
    """Another app's calls fill the portal's two-second window, spread over its last 1.8 s, so
    HubSpot's Retry-After (1 s: when the oldest leaves) frees only two places. The limiter counts
    its own window full from the 429: the calls after it wait for the portal's window to turn
    over, and meet no second 429 (waiting Retry-After alone, the third call after it met one)."""
    with HubSpotServer(max_requests=4, interval_seconds=2.0) as hubspot:
        client = connect(hubspot, monkeypatch, limiter=RateLimiter(4, 2.0))
        hubspot.use_window(over_seconds=1.8)
        started = time.monotonic()
        for _ in range(4):
            assert client.count(SCORES) == 0
        assert hubspot.rate_limited == 1 and client.stats.rate_limited == 1
        assert time.monotonic() - started >= 2.0
        assert hubspot.violations == []
        client.close()


def test_injected_429s_pause_the_destination_then_it_converges(client, hubspot):
    hubspot.fail(429, 429, route="upsert", retry_after=1)
    started = time.monotonic()
    assert all(o.ok for o in client.upsert(SCORES, KEY, scores(10)))
    assert time.monotonic() - started >= 2
    assert client.stats.rate_limited == 2 and hubspot.calls["upsert"] == 1


@pytest.mark.parametrize("faults", [(502, 503, 503), ("drop",), ("drop_after",), ("drop_after", 500, "drop")])
def test_server_errors_and_dropped_connections_converge_without_duplicates(client, hubspot, faults):
    client.upsert(SCORES, KEY, scores(5))  # existing records, so retries meet updates too
    hubspot.fail(*faults, route="upsert")
    outcomes = client.upsert(SCORES, KEY, scores(10, tier="silver"))
    assert all(o.ok for o in outcomes)
    keys = [r[KEY] for r in hubspot.portal.records("customer_scores")]
    assert sorted(keys) == [f"c-{i:05d}" for i in range(10)]  # each once
    assert all(r["tier"] == "silver" for r in hubspot.portal.records("customer_scores"))
    assert client.stats.server_errors == len(faults) and hubspot.injected == len(faults)
    assert hubspot.violations == []


def test_the_daily_limit_stops_the_run_instead_of_retrying(client, hubspot):
    hubspot.fail("daily", route="upsert")
    with pytest.raises(HubSpotError, match="daily API limit is used up"):
        client.upsert(SCORES, KEY, scores(3))
    assert client.stats.calls == 2 and client.stats.retries == 0  # describe, then one upsert
    assert hubspot.portal.records("customer_scores") == []
