"""The checks after a sync into an API object (activation.orchestration.checks.api), judged on what
the strict local API really holds and answered: the read-back count through the API, and
`accepted_equals_sent` from the measured result against the plan."""

from __future__ import annotations

import dataclasses

import pytest

from activation.destinations.api.engine import ApiDestination
from activation.orchestration.checks import api as api_checks
from activation.orchestration.checks.api import ApiChecks
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.outcome import ACCEPTED, FITS, REJECTS, ROW_COUNT
from activation.syncs.results import SyncError, SyncResult
from tests.destinations.conftest import Harness, account_rows


def synced(harness: Harness) -> tuple[ApiDestination, SyncResult]:
    """One run, as a step runs it, keeping the destination the checks read (its plan, its verdicts)."""
    spec = harness.config().syncs["scores"]
    destination = harness.destination()
    with DuckDBWarehouse(path=str(harness.warehouse_path)).open(harness.name, f"http:{harness.name}") as wh:
        [result] = destination.sync(wh, [spec], {"scores": MartRelation("main", "accounts")}, log=harness.log.append)
    return destination, result


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
    monkeypatch.setattr(api_checks, "COUNT_SETTLE_SECONDS", 0)  # the local API counts at once


def test_the_count_through_the_api_proves_a_mirror_and_catches_a_record_gone_missing(harness):
    harness.mart(account_rows(range(1, 21)))
    destination, result = synced(harness)
    spec = harness.config().syncs["scores"]
    checks = ApiChecks(None, destination)
    counted = checks.row_count(spec, result)
    assert counted.passed and counted.metadata["records_in_destination"] == 20, counted.summary
    assert "promised: exactly 20" in counted.summary

    del harness.api.records["accounts"]["A0007"]  # someone deleted a record in the tool
    missing = checks.row_count(spec, result)
    assert not missing.passed and missing.metadata["records_in_destination"] == 19
    harness.api.records["accounts"]["Z9999"] = {"external_id": "Z9999", "Name": "made in the tool"}
    harness.api.records["accounts"]["Z9998"] = {"external_id": "Z9998", "Name": "made in the tool"}
    assert not checks.row_count(spec, result).passed, "a mirror promises no more records than the mart"


def test_refusals_are_answers_and_the_rejects_check_counts_them(harness):
    harness.mart(account_rows(range(1, 21)))
    harness.api.refuse = {"A0003": "INVALID_EMAIL: not an address", "A0011": "LOCKED: record is locked"}
    destination, result = synced(harness)
    spec = harness.config().syncs["scores"]
    suite = ApiChecks(None, destination)
    checks = {ACCEPTED: suite.accepted(spec, result), REJECTS: suite.rejects(spec, result)}
    checks[ROW_COUNT] = suite.row_count(spec, result)
    assert checks[ACCEPTED].passed and checks[ACCEPTED].metadata["records_refused"] == 2
    assert "20 record(s) sent to accounts, every one answered: 18 accepted, 2 refused" == checks[ACCEPTED].summary
    assert not checks[REJECTS].passed and checks[REJECTS].metadata["refused_by_the_api"] == 2
    assert "LOCKED: record is locked" in checks[REJECTS].metadata["first_api_errors"].text
    assert checks[ROW_COUNT].passed, "18 records, 2 rejected of 20: the mirror holds what was accepted"


def test_accepted_equals_sent_fails_when_answers_or_sent_records_do_not_add_up(harness):
    harness.mart(account_rows(range(1, 11)))
    destination, result = synced(harness)
    spec = harness.config().syncs["scores"]
    checks = ApiChecks(None, destination)
    assert checks.accepted(spec, result).passed
    unanswered = dataclasses.replace(result, inserted=result.inserted - 1)
    outcome = checks.accepted(spec, unanswered)
    assert not outcome.passed and "1 record(s) got no answer" in outcome.summary
    short = dataclasses.replace(result, inserted=result.inserted - 1, rows_sent=result.rows_sent - 1)
    outcome = checks.accepted(spec, short)
    assert not outcome.passed and "the plan found 10 to send (10 new, 0 changed, 0 set aside)" in outcome.summary


def test_the_fit_verdict_comes_from_the_describe_before_any_write(harness):
    harness.mart(account_rows(range(1, 6), segment="'platinum'"))  # not in the object's picklist
    spec = harness.config().syncs["scores"]
    destination = harness.destination()
    with DuckDBWarehouse(path=str(harness.warehouse_path)).open(harness.name, f"http:{harness.name}") as wh:
        with pytest.raises(SyncError):
            destination.sync(wh, [spec], {"scores": MartRelation("main", "accounts")})
    [fits] = ApiChecks(None, destination).decided_by_write(spec, None)
    assert fits.name == FITS and not fits.passed
    assert "Segment" in str(fits.problems[0]) and "nothing was sent" in fits.summary
    assert harness.api.writes() == 0
