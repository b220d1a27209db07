"""The API engine against a real DuckDB warehouse and the strict local HTTP API, through the real
HTTP client and rate limiter: only changes are sent, the API's refusals are kept and sent again,
deletes (hard and soft), guards, value problems found in the warehouse first, faults and crashes."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc

import pytest

from activation.syncs.results import GuardTripped, SyncError
from tests.destinations.conftest import COLUMNS, Harness, account_rows
from tests.destinations.http_server import StrictApi


def posts(api) -> list[tuple[str, int]]:
    return [(path.rsplit("/", 1)[1], n) for method, path, n in api.requests if method == "POST"]


def test_only_changes_are_sent_and_the_api_ends_equal_to_the_mart(harness):
    api = harness.api
    harness.mart(account_rows(range(1, 26)))
    first = harness.run()
    assert (first.inserted, first.updated, first.deleted, first.rows_sent) == (25, 0, 0, 25)
    assert posts(api) == [("batch", 10), ("batch", 10), ("batch", 5)]
    assert sorted(harness.records()) == [f"A{i:04d}" for i in range(1, 26)]

    api.requests.clear()
    api.bodies.clear()
    unchanged = harness.run()
    assert (unchanged.rows_sent, unchanged.unchanged, unchanged.api.calls) == (0, 25, 0)
    assert api.requests == []  # nothing changed: not even the schema is read

    harness.sql("UPDATE accounts SET churn = 0.99 WHERE account_id IN ('A0002', 'A0003')")
    harness.sql("DELETE FROM accounts WHERE account_id = 'A0004'")
    harness.sql(f"INSERT INTO accounts {account_rows([26, 27])}")
    changed = harness.run()
    assert (changed.inserted, changed.updated, changed.deleted, changed.rows_sent) == (2, 2, 1, 4)
    assert posts(api) == [("batch", 4), ("batch-delete", 1)]
    sent = {r["external_id"] for body in api.bodies for r in json.loads(body)["records"]}
    assert sent == {"A0002", "A0003", "A0026", "A0027", "A0004"}
    assert harness.records()["A0002"]["Churn"] == 0.99 and "A0004" not in harness.records()
    assert len(harness.records()) == 26 == changed.rows_in_destination

    [calls] = [row for row in harness.state("sync_api_calls") if row[10] == 4]  # rows_sent
    assert calls[4:5] == ("success",) and calls[6] == 3  # schema, upsert, delete


def test_values_travel_exactly_as_documented(harness):
    harness.mart(
        "SELECT 'A0001' AS account_id, '' AS name, CAST('1234567890123456.7891' AS DECIMAL(20,4)) AS ltv, "
        "CAST(NULL AS DOUBLE) AS churn, true AS active, DATE '2024-02-29' AS signed_on, "
        "TIMESTAMPTZ '2026-03-01 09:00:00.123456+09:00' AS scored_at, '' AS segment"
    )
    harness.sync = {"columns": {k: v for k, v in COLUMNS.items() if k != "Name"}}
    harness.run()
    [record] = json.loads(harness.api.bodies[0])["records"]
    raw = harness.api.bodies[0].decode()
    assert '"LTV":1234567890123456.7891' in raw  # the decimal's digits, never through a float
    assert record["Churn"] is None and record["Active"] is True
    assert record["Segment"] is None  # empty text is sent as a clear, as Salesforce and HubSpot read it
    assert record["SignedOn"] == "2024-02-29"
    assert record["ScoredAt"] == "2026-03-01T00:00:00.123456Z"  # the same instant, in UTC
    assert len(record["idempotency_key"]) == 64


def test_a_record_the_api_refuses_is_kept_with_its_message_and_sent_again(harness):
    api = harness.api
    harness.mart(account_rows(range(1, 8)))
    api.refuse["A0003"] = "DUPLICATE_VALUE: another account has this name"
    result = harness.run()
    assert (result.inserted, result.rejected) == (6, 1)
    assert result.api.errors == ["DUPLICATE_VALUE: another account has this name"]
    assert "A0003" not in harness.state_keys() and len(harness.state_keys()) == 6
    [reject] = harness.state("sync_rejects")
    assert reject[2:5] == ("A0003", "(record)", "DUPLICATE_VALUE: another account has this name")

    api.requests.clear()
    again = harness.run()  # nothing changed in the mart, but the refused record goes again
    assert posts(api) == [("batch", 1)] and again.rejected == 1

    del api.refuse["A0003"]
    fixed = harness.run()
    assert (fixed.inserted, fixed.rejected) == (1, 0)
    assert harness.state("sync_rejects") == [] and "A0003" in harness.records()
    api.requests.clear()
    assert harness.run().rows_sent == 0 and posts(api) == []


def test_a_refused_delete_keeps_its_key_and_is_tried_again(harness):
    api = harness.api
    harness.mart(account_rows(range(1, 11)))
    harness.run()
    harness.sql("DELETE FROM accounts WHERE account_id IN ('A0004', 'A0005')")
    api.refuse_delete["A0005"] = "ENTITY_IS_LOCKED: the record is in an approval process"
    result = harness.run()
    assert result.deleted == 1 and "A0005" in harness.records() and "A0004" not in harness.records()
    assert "A0005" in harness.state_keys() and "A0004" not in harness.state_keys()
    assert [r[2:5] for r in harness.state("sync_rejects")] == [
        ("A0005", "(delete)", "ENTITY_IS_LOCKED: the record is in an approval process")
    ]

    api.requests.clear()
    harness.run()
    assert posts(api) == [("batch-delete", 1)]  # tried again, still refused, still kept
    del api.refuse_delete["A0005"]
    assert harness.run().deleted == 1
    assert "A0005" not in harness.records() and "A0005" not in harness.state_keys()
    api.requests.clear()
    assert harness.run().deleted == 0 and posts(api) == []


def test_soft_delete_sets_the_field_and_clears_it_when_the_row_returns(harness):
    harness.sync = {"delete": {"soft": "Deleted__c"}}
    harness.mart(account_rows(range(1, 6)))
    harness.run()
    harness.sql("DELETE FROM accounts WHERE account_id = 'A0002'")
    result = harness.run()
    assert result.deleted == 1 and result.rows_in_destination == 5
    stamped = harness.records()["A0002"]["Deleted__c"]
    assert stamped.endswith("Z") and harness.records()["A0002"]["Name"] == "Account 2"
    harness.sql(f"INSERT INTO accounts {account_rows([2])}")
    back = harness.run()
    assert back.inserted + back.updated == 1
    assert harness.records()["A0002"]["Deleted__c"] is None


def test_mirror_deletes_what_left_the_mart_even_on_a_full_resync(harness):
    harness.mart(account_rows(range(1, 11)))
    harness.run()
    harness.sql("DELETE FROM accounts WHERE account_id = 'A0007'")
    result = harness.run(full_resync=True)
    assert result.reason == "full resync requested" and result.deleted == 1
    assert "A0007" not in harness.records() and len(harness.records()) == 9


def test_guards_stop_a_mass_delete_before_any_call(harness):
    api = harness.api
    harness.mart(account_rows(range(1, 21)))
    harness.run()
    api.requests.clear()
    harness.sql("DELETE FROM accounts WHERE account_id > 'A0005'")
    with pytest.raises(GuardTripped, match=r"would delete 15 of 20 rows, over max_deletes 50%"):
        harness.run()
    assert api.requests == []  # not even the schema: the guards judge the warehouse's plan
    assert len(harness.state_keys()) == 20 and len(harness.records()) == 20
    assert "refused" in {r[5] for r in harness.state("sync_runs")}

    harness.sql("DELETE FROM accounts")
    harness.sync = {"guards": {"max_deletes": "100%"}}
    with pytest.raises(GuardTripped, match="is empty and would wipe 20 rows"):
        harness.run()
    assert api.requests == []


@pytest.mark.parametrize("rules", ["schema endpoint", "declared fields"])
def test_values_the_api_would_refuse_are_found_in_the_warehouse_first(harness, rules):
    api = harness.api
    if rules == "declared fields":
        declared = {f.pop("name"): f for f in [dict(f) for f in api.schema["accounts"]]}
        harness.settings = {"schema_url": None, "fields": declared}
        api.schema = {}  # the server checks nothing now: only the declared rules can catch these
    harness.mart(account_rows(range(1, 13)))
    harness.sql("UPDATE accounts SET name = repeat('x', 41) WHERE account_id = 'A0002'")
    harness.sql("UPDATE accounts SET segment = 'platinum' WHERE account_id IN ('A0003', 'A0004')")
    harness.sql("UPDATE accounts SET name = NULL WHERE account_id = 'A0005'")
    with pytest.raises(SyncError) as refused:
        harness.run()
    assert posts(api) == []
    problems = {(p.table, p.column, p.rows, p.keys) for p in refused.value.problems}
    assert problems == {
        ("accounts", "Name", 1, ("A0002",)),
        ("accounts", "Segment", 2, ("A0003", "A0004")),
        ("accounts", "Name", 1, ("A0005",)),
    }
    message = str(refused.value)
    assert "longer than accounts.Name's 40 characters" in message
    assert "not among the values of the picklist accounts.Segment (gold, silver, bronze)" in message
    assert "empty but accounts.Name is required" in message and "nothing was sent" in message

    harness.sync = {"max_rejects": 5}
    result = harness.run()
    assert (result.inserted, result.rejected) == (8, 4)
    assert sorted(harness.records()) == [f"A{i:04d}" for i in (1, *range(6, 13))]
    reasons = {r[2]: r[4] for r in harness.state("sync_rejects")}
    assert reasons["A0003"].startswith("are not among the values of the picklist")
    harness.sql("UPDATE accounts SET segment = 'gold' WHERE account_id IN ('A0003', 'A0004')")
    assert harness.run().inserted == 2


def test_numbers_the_field_cannot_hold_are_found_first(harness):
    fields = {f["name"]: {k: v for k, v in f.items() if k != "name"} for f in harness.api.schema["accounts"]}
    fields["LTV"] = {"type": "number", "precision": 6, "scale": 1}
    harness.settings = {"schema_url": None, "fields": fields}
    harness.mart(account_rows([98, 99, 100, 101]))
    harness.sql("UPDATE accounts SET churn = 'nan'::DOUBLE WHERE account_id = 'A0098'")
    harness.sql("UPDATE accounts SET ltv = 99.5 WHERE account_id = 'A0099'")
    with pytest.raises(SyncError) as refused:
        harness.run()
    found = {(p.column, p.reason, p.keys) for p in refused.value.problems}
    assert found == {
        ("Churn", "hold NaN or infinity, which an API cannot take", ("A0098",)),
        ("LTV", "exceed accounts.LTV's 6 digits (1 after the point)", ("A0100", "A0101")),
        ("LTV", "have more than 1 decimal places, which accounts.LTV would round", ("A0098", "A0100", "A0101")),
    }
    assert posts(harness.api) == []


def test_a_mapping_the_object_does_not_have_is_refused_naming_the_field(harness):
    harness.mart(account_rows(range(1, 3)))
    harness.sql("ALTER TABLE accounts ADD COLUMN owner VARCHAR")
    harness.sync = {"columns": {**COLUMNS, "Owner": "owner", "Nmae": "name"}}
    with pytest.raises(SyncError) as refused:
        harness.run()
    message = str(refused.value)
    assert "Nmae: is not a field of accounts" in message
    assert "Owner: is read-only in accounts" in message
    assert posts(harness.api) == []

    harness.sync = {"columns": {**COLUMNS, "LTV": "name"}}
    with pytest.raises(SyncError, match=r"LTV: is a number field but mart column 'name' is string"):
        harness.run()


def test_storms_of_429_and_503_and_dropped_connections_converge(harness):
    api = harness.api
    harness.settings = {"retry": {"attempts": 8, "first_pause_seconds": 0.05, "max_pause_seconds": 1}}
    harness.mart(account_rows(range(1, 31)))
    api.queue("429", times=2, retry_after=0.2)
    api.queue("503", times=2)
    api.queue("drop_before")
    api.queue("drop_after")  # the first batch is applied, its answer lost: the retry must not apply it twice
    result = harness.run()
    assert (result.inserted, result.rejected) == (30, 0)
    assert (result.api.rate_limited, result.api.server_errors) == (2, 4)
    assert result.api.retries == 6 and result.api.calls == 1 + 3 + 6
    assert sorted(harness.records()) == [f"A{i:04d}" for i in range(1, 31)]
    assert set(api.applied.values()) == {1}


@pytest.mark.parametrize("rerun_batch_size", [10, 7])
def test_a_crash_between_batches_converges_with_nothing_lost_or_applied_twice(harness, rerun_batch_size):
    """Re-sent in the same batches, the requests' idempotency keys are replays; in other batches,
    each record's key is: either way the 20 records that arrived before the crash apply once."""
    api = harness.api
    harness.settings = {"retry": {"attempts": 2, "first_pause_seconds": 0.01}}
    harness.mart(account_rows(range(1, 51)))
    api.fail_after(2)  # the API goes down after two batches of ten
    with pytest.raises(SyncError, match=r"The sync state did not advance"):
        harness.run()
    assert len(harness.records()) == 20
    assert "failed" in {r[5] for r in harness.state("sync_runs")}
    assert [r[4] for r in harness.state("sync_api_calls")] == ["failed"]

    api.fail_after(None)
    harness.settings = {"batch_size": rerun_batch_size}
    result = harness.run()  # the same change again, against the same state: the same idempotency keys
    assert result.rows_sent == 50 and result.rejected == 0
    if rerun_batch_size == 10:
        assert (api.replayed_requests, api.replayed) == (2, 0)
    else:
        assert (api.replayed_requests, api.replayed) == (0, 20)
    assert sorted(harness.records()) == [f"A{i:04d}" for i in range(1, 51)]
    assert set(api.applied.values()) == {1} and len(api.applied) == 50


def test_a_row_that_leaves_and_returns_is_applied_again(harness):
    """Idempotency keys carry the state's version: the same content after a commit is a new change."""
    harness.mart(account_rows(range(1, 4)))
    harness.run()
    harness.sql("DELETE FROM accounts WHERE account_id = 'A0002'")
    harness.run()
    harness.sql(f"INSERT INTO accounts {account_rows([2])}")
    assert harness.run().inserted == 1 and "A0002" in harness.records()


def test_the_limiter_keeps_the_servers_rate(harness):
    api = harness.api
    api.rate = (20, 1.0)
    harness.rate = {"requests": 20, "per_seconds": 1}
    harness.settings = {"batch_size": 2}
    harness.mart(account_rows(range(1, 81)))
    api.queue("429", retry_after=0.5)  # the server's first answer: slow down
    result = harness.run()
    assert result.inserted == 80 and api.rate_violations == 0
    assert result.api.rate_limited == 1  # the one the server sent first, no other
    assert len(api.requests) == 1 + 1 + 40


def test_a_call_the_server_counts_late_costs_no_429(harness):
    """A server stamps a call somewhere between its send and its answer, a busy one late. Counted
    from its answer, no call of the next window reaches the server within a second of a late
    stamp, even with the limiter at exactly the server's rate. (Counted from the send, the sixth
    call went out 1.02 s after the first, 0.72 s after the server counted it: a 429.)"""
    api = harness.api
    api.rate = (5, 1.0)
    harness.rate = {"requests": 5, "per_seconds": 1}
    harness.settings = {"batch_size": 5}
    harness.mart(account_rows(range(1, 51)))
    api.stall(0.3)  # the first call, the schema read, is counted 0.3 s after it arrived
    started = time.monotonic()
    result = harness.run()
    assert result.inserted == 50 and api.rate_violations == 0 and result.api.rate_limited == 0
    assert len(api.requests) == 1 + 10
    assert time.monotonic() - started >= 2.3  # 11 calls, 5 a second, the first window 0.3 s late


def test_preview_counts_and_samples_without_a_write(harness):
    api = harness.api
    harness.mart(account_rows(range(1, 11)))
    harness.run()
    harness.sql("UPDATE accounts SET churn = 0.5 WHERE account_id = 'A0002'")
    harness.sql("UPDATE accounts SET segment = 'platinum' WHERE account_id = 'A0003'")
    harness.sql("DELETE FROM accounts WHERE account_id = 'A0009'")
    harness.sql(f"INSERT INTO accounts {account_rows([11])}")
    api.requests.clear()
    [preview] = harness.preview()
    assert preview.counts == {"insert": 1, "update": 2, "delete": 1}
    assert preview.samples["insert"] == [{"key": "A0011"}] and preview.samples["delete"] == [{"key": "A0009"}]
    assert [s["key"] for s in preview.samples["update"]] == ["A0002", "A0003"]
    assert preview.blocked and preview.problems[0].column == "Segment"
    assert posts(api) == []  # the schema read is the only call
    with pytest.raises(SyncError, match="Segment"):
        harness.run()
    assert len(harness.state_keys()) == 10


def test_memory_stays_flat_as_the_change_grows(tmp_path, monkeypatch):
    """The change streams from the warehouse in the client's batches: the Python heap's peak while a
    sync sends 1,000 or 10,000 records is about the same (the server keeps nothing: a sink). A
    first small sync warms up what is loaded once (modules, connections)."""
    peaks = {}
    for rows in (10, 1_000, 10_000):
        with StrictApi(schema={}, keep=False, max_batch=500) as sink:
            monkeypatch.setenv("TEST_SCORING_API_TOKEN", sink.token)
            harness = Harness(tmp_path / str(rows), sink, settings={"batch_size": 250, "schema_url": None})
            harness.tmp.mkdir()
            harness.mart(account_rows(range(rows)))
            tracemalloc.start()
            try:
                result = harness.run()
                peaks[rows] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert result.inserted == rows == sink.accepted
    assert peaks[10_000] < 1.2 * peaks[1_000], peaks
    assert threading.active_count() < 20  # the servers' threads ended


def test_a_sync_reports_its_progress_in_the_lines_the_command_line_draws_bars_from(harness):
    from activation.cli.live import _LOADED

    harness.mart(account_rows(range(1, 26)))
    harness.run()
    harness.sql("DELETE FROM accounts WHERE account_id IN ('A0001', 'A0002')")
    harness.sql("UPDATE accounts SET churn = 0.5 WHERE account_id = 'A0003'")
    harness.log.clear()
    harness.run()
    bars = [_LOADED.match(line) for line in harness.log]
    progress = [(m["table"], m["done"], m["total"]) for m in bars if m]
    # one line per answered batch: the upsert, then the deletes, counted against the whole change
    assert progress == [("accounts", "1", "3"), ("accounts", "3", "3")]


def test_counts_come_from_the_answers_created_flag_and_from_the_plan_where_it_has_none(harness):
    """Records removed from the API behind the tool's back and sent again on a full resync: with
    the answer's `created` they count as inserted; configured without it, the plan's operation
    counts (a full resync plans every row as an insert), as docs/api_destinations.md says."""
    harness.mart(account_rows(range(1, 11)))
    harness.run()
    for key in ("A0001", "A0002", "A0003"):
        del harness.api.records["accounts"][key]
    answered = harness.run(full_resync=True)
    assert (answered.inserted, answered.updated, answered.rows_sent) == (3, 7, 10)

    harness.settings["response"] = {"created": None}
    del harness.api.records["accounts"]["A0004"]
    planned = harness.run(full_resync=True)
    assert (planned.inserted, planned.updated, planned.rows_sent) == (10, 0, 10)
    assert len(harness.records()) == 10


def test_key_comparison_case_insensitive_makes_keys_differing_in_case_twins(harness):
    """`key_comparison: case_insensitive` (api/twins.py): 'A0001' and 'a0001' are one record to the
    endpoint, so they are refused before any call; under max_rejects the second is set aside."""
    harness.mart(
        f"{account_rows([1, 2])} UNION ALL SELECT * REPLACE ('a0001' AS account_id) FROM ({account_rows([1])})"
    )
    harness.settings = {"key_comparison": "case_insensitive"}
    [preview] = harness.preview()
    assert any("external_id=A0001, a0001" in str(p) for p in preview.problems), preview.problems
    with pytest.raises(SyncError, match=r"key_comparison: case_insensitive.*external_id=A0001, a0001"):
        harness.run()
    assert posts(harness.api) == [] and harness.records() == {}
    harness.sync = {"max_rejects": 1}
    result = harness.run()
    assert sorted(harness.records()) == ["A0001", "A0002"] and (result.inserted, result.rejected) == (2, 1)
    rejects = harness.state("sync_rejects")
    assert any("a0001" in row for row in rejects) and not any("A0001" in row for row in rejects)


def test_key_comparison_exact_by_default_sends_both_spellings(harness):
    harness.mart(f"{account_rows([1])} UNION ALL SELECT * REPLACE ('a0001' AS account_id) FROM ({account_rows([1])})")
    harness.run()
    assert sorted(harness.records()) == ["A0001", "a0001"]
