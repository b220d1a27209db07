"""The generic HTTP destination: body templates, exact JSON, secrets, the endpoint's answers
mapped to records, and what it cannot do refused before a write."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal

import pytest

from activation.destinations.http.template import dumps, render
from activation.syncs.results import SyncError
from tests.destinations.conftest import COLUMNS, TOKEN_ENV, account_rows
from tests.destinations.test_api_engine import posts


def test_a_template_fills_typed_values_and_text():
    template = {"id": "{{ _key }}", "n": {"ltv": "{{ LTV }}", "label": "LTV {{LTV}} on {{ day }}"}, "l": ["{{ x }}"]}
    values = {"_key": "A1", "LTV": Decimal("10.50"), "day": dt.date(2026, 1, 2), "x": None}
    body = render(template, values)
    assert body == {"id": "A1", "n": {"ltv": Decimal("10.50"), "label": "LTV 10.50 on 2026-01-02"}, "l": [None]}
    assert dumps(body) == b'{"id":"A1","n":{"ltv":10.50,"label":"LTV 10.50 on 2026-01-02"},"l":[null]}'
    stamp = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert dumps([stamp, Decimal("-1E+2"), "é"]) == '["2026-03-01T00:00:00Z",-1E+2,"é"]'.encode()
    with pytest.raises(ValueError):
        dumps([float("nan")])
    with pytest.raises(KeyError):
        render("{{ missing }}", {})


def test_records_travel_in_the_configured_body(harness):
    harness.settings = {
        "body_template": {"external_id": "{{ _key }}", "Name": "{{ Name }} ({{ Segment }})", "LTV": "{{ LTV }}"}
    }
    harness.mart(account_rows(range(1, 4)))
    harness.run()
    assert harness.records()["A0001"] == {"external_id": "A0001", "Name": "Account 1 (silver)", "LTV": 1000.25}
    [body] = harness.api.bodies
    first = json.loads(body)["records"][0]
    assert set(first) == {"external_id", "Name", "LTV", "idempotency_key"}


def test_a_placeholder_the_sync_does_not_map_stops_before_a_write(harness):
    harness.settings = {"body_template": {"external_id": "{{ _key }}", "Name": "{{ Nmae }}"}}
    harness.mart(account_rows(range(1, 4)))
    with pytest.raises(SyncError, match=r"placeholder \{\{ Nmae \}\} is not a field the sync maps into accounts"):
        harness.run()
    assert posts(harness.api) == []


def test_a_missing_secret_is_named_and_a_wrong_one_never_shown(harness, monkeypatch):
    harness.mart(account_rows(range(1, 4)))
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(SyncError, match=f"environment variable {TOKEN_ENV} is not set"):
        harness.run()
    assert harness.api.requests == []

    monkeypatch.setenv(TOKEN_ENV, "wrong-secret-value")
    with pytest.raises(
        SyncError, match=f"HTTP 401; check the credentials in the environment variable.*{TOKEN_ENV}"
    ) as e:
        harness.run()
    assert "wrong-secret-value" not in str(e.value)
    assert not any("wrong-secret-value" in str(row) for row in harness.state("sync_runs"))


def test_a_batch_the_endpoint_refuses_whole_becomes_rejects_with_its_answer(harness):
    api = harness.api
    api.max_payload = 600  # one record fits, a batch of ten does not
    harness.settings = {"batch_size": 10}
    harness.mart(account_rows(range(1, 21)))
    result = harness.run()
    assert (result.inserted, result.rejected) == (0, 20)
    reasons = [row[4] for row in harness.state("sync_rejects")]
    assert len(reasons) == 20 and all(r.startswith('HTTP 413: {"error": "PAYLOAD_TOO_LARGE: ') for r in reasons)
    assert harness.state_keys() == []

    harness.settings = {"batch_size": 1}
    assert harness.run().inserted == 20 and len(harness.records()) == 20


def test_answers_are_read_where_the_settings_say(harness):
    harness.settings = {"response": {"index": None, "ok": None}}  # results in batch order; an error means refused
    harness.api.refuse["A0002"] = "NOPE"
    harness.mart(account_rows(range(1, 4)))
    result = harness.run()
    assert (result.inserted, result.rejected) == (2, 1)

    harness.settings = {"response": {"results": "data.results"}}
    harness.sql(f"INSERT INTO accounts {account_rows([4])}")
    with pytest.raises(SyncError, match=r"the answer has no results array at 'data.results'; set settings.response"):
        harness.run()


def test_mirror_without_a_delete_url_is_refused_before_a_write(harness):
    harness.settings = {"delete_url": None}
    harness.mart(account_rows(range(1, 4)))
    with pytest.raises(SyncError, match="has no way to delete configured"):
        harness.run()
    assert posts(harness.api) == []
    harness.sync = {"mode": "upsert"}
    assert harness.run().inserted == 3


def test_counts_read_back_through_the_endpoint(harness):
    harness.mart(account_rows(range(1, 8)))
    harness.run()
    destination = harness.destination()
    assert destination.capabilities.count and not destination.capabilities.read_back
    assert destination.count("accounts") == 7
    harness.settings = {"count_url": None}
    assert harness.destination().capabilities.count is False


def test_every_mart_column_can_be_sent_under_its_own_name(harness):
    """No `columns:` mapping: the mart's column names are the API's field names."""
    harness.api.schema = {}
    harness.api.key_field = "account_id"
    harness.settings = {"schema_url": None}
    harness.sync = {"columns": {}, "primary_key": "account_id"}
    harness.mart(account_rows(range(1, 3)))
    harness.run()
    assert set(harness.records()["A0001"]) == set(COLUMNS.values())


def test_concurrent_calls_of_one_destination_share_its_window(harness):
    """Four threads count through the destination's one limiter (the registry's), four calls at
    once: a call holds its place in the window while in flight, so calls slowed at the server
    still leave no room for a fifth within the second; twelve calls take three windows."""
    harness.mart(account_rows(range(1, 4)))
    harness.run()
    api = harness.api
    api.rate = (4, 1.0)
    harness.rate = {"requests": 4, "per_seconds": 1, "max_concurrent": 4}
    for _ in range(4):
        api.stall(0.2)
    destination = harness.destination()
    counts: list[int | None] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: counts.extend(destination.count("accounts") for _ in range(3)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [3] * 12
    assert api.rate_violations == 0
    assert time.monotonic() - started >= 2.0
