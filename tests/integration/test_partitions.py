"""A daily-partitioned flow end to end: dbt builds a window of days, the sync mirrors exactly those days."""

from __future__ import annotations

import dagster as dg
import duckdb
import sqlalchemy as sa

from activation.definitions import DAILY_JOB, build_definitions
from activation.destinations.sql import normalize_url
from activation.syncs.problems import METADATA_KEY
from tests.compare import destination_rows, sorted_mart_rows
from tests.databases import mariadb_database, sqlite_database
from tests.integration.test_end_to_end import mart_columns, mart_relation

MODEL = "app_candidate_activities"
SYNC = dg.AssetKey(["app", "candidate_activities"])
DAYS = ["2025-06-26", "2025-06-27", "2025-06-28"]


def run_days(settings, first: str, last: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_job_def(DAILY_JOB)
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def mart_days(warehouse, days: list[str]) -> list[tuple]:
    columns = mart_columns(warehouse, MODEL)
    listed = ", ".join(f"DATE '{d}'" for d in days)
    relation = f"(SELECT * FROM {mart_relation(MODEL)} WHERE event_date IN ({listed})) AS m"
    return sorted_mart_rows(warehouse, relation, columns, ["event_id"])


def app_rows(url: str, warehouse) -> list[tuple]:
    return destination_rows(url, "candidate_activities", mart_columns(warehouse, MODEL), ["event_id"])


def sync_days(settings, first: str, last: str) -> dg.ExecuteInProcessResult:
    """Only the sync of the window's days, from the marts as they are (no dbt build)."""
    job = build_definitions(settings).resolve_job_def(DAILY_JOB)
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[SYNC],
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def check(result, name: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == SYNC and e.check_name == name]
    return evaluation


def step_failure(result):
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.user_failure_data


def counts(result) -> tuple[int, int, int]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == SYNC][:1]
    md = event.materialization.metadata
    return md["rows_inserted"].value, md["rows_updated"].value, md["rows_deleted"].value


def test_a_three_day_backfill_is_one_run_and_writes_exactly_those_days(settings, warehouse, monkeypatch):
    expected = mart_days(warehouse, DAYS)
    assert len({r[-1] for r in expected}) == 3, "the demo lake has activities on each of these days"
    # Take the days out of the mart: what reaches MariaDB can only come from dbt building the window.
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"DELETE FROM {mart_relation(MODEL)} WHERE event_date BETWEEN DATE '{DAYS[0]}' AND DATE '{DAYS[-1]}'"
        )

    with mariadb_database() as url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", url)
        result = run_days(settings, DAYS[0], DAYS[-1])
        assert result.success
        synced = {e.partition for e in result.get_asset_materialization_events() if e.asset_key == SYNC}
        assert synced == set(DAYS), "one run materialized the three partitions"
        built = {e.partition for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(MODEL)}
        assert built == set(DAYS)
        assert mart_days(warehouse, DAYS) == expected, "dbt rebuilt exactly the window"
        assert app_rows(url, warehouse) == expected, "MariaDB holds exactly those days"
        evaluations = result.get_asset_check_evaluations()
        assert {e.check_name for e in evaluations if e.asset_key == SYNC} >= {
            "content_matches_mart",
            "row_count_matches_mart",
        }
        assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]

        # Damage one day and keep a row of another day that no partition run has written.
        engine = sa.create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"DELETE FROM candidate_activities WHERE event_date = '{DAYS[1]}' ORDER BY event_id LIMIT 1")
            )
            conn.execute(sa.text(f"UPDATE candidate_activities SET subject = 'edited' WHERE event_date = '{DAYS[1]}'"))
            conn.execute(
                sa.text(
                    "INSERT INTO candidate_activities (event_id, candidate_id, activity_type, subject, activity_at, "
                    "duration_minutes, event_date) VALUES ('app-own', NULL, 'Call', 'kept', '2025-06-30 10:00:00', "
                    "5, '2025-06-30')"
                )
            )
        engine.dispose()
        rerun = run_days(settings, DAYS[1], DAYS[1])
        assert rerun.success
        inserted, updated, deleted = counts(rerun)
        assert inserted == 1 and updated > 0 and deleted == 0
        rows = app_rows(url, warehouse)
        assert [r for r in rows if r[0] != "app-own"] == expected, "the re-run repaired its day"
        assert any(r[0] == "app-own" for r in rows), "rows of other days are never touched"
        again = run_days(settings, DAYS[1], DAYS[1])
        assert counts(again) == (0, 0, 0), "re-running a partition is idempotent"


def test_a_guard_tripped_on_a_day_stops_the_run_there_and_names_the_days_already_written(
    settings, warehouse, tmp_path, monkeypatch
):
    """Each day is one write of the one flow: a day over the guards fails the step, the days before
    it stay written, and the guard check covers every day the run judged."""
    with sqlite_database(tmp_path) as url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", url)
        assert sync_days(settings, DAYS[0], DAYS[-1]).success
        before = app_rows(url, warehouse)
        with duckdb.connect(str(warehouse)) as con:  # the day's mart is empty: a broken model?
            con.execute(f"DELETE FROM {mart_relation(MODEL)} WHERE event_date = DATE '{DAYS[1]}'")

        result = sync_days(settings, DAYS[0], DAYS[-1])
        assert not result.success
        failure = step_failure(result)
        assert failure.description.startswith(f"{DAYS[1]}: guard tripped, nothing was written")
        assert failure.description.endswith(f"Days already written: {DAYS[0]}.")
        assert "planned_candidate_activities" in failure.metadata
        guard = check(result, "guards_within_limits")
        assert not guard.passed
        assert guard.metadata["days_checked"].value == 2, "the first day passed, the second tripped"
        assert guard.metadata["days_failed"].value == [DAYS[1]]
        assert app_rows(url, warehouse) == before, "nothing of the tripped day was deleted"


def test_a_blocking_check_failing_on_one_day_writes_no_day_of_the_run(settings, warehouse, tmp_path, monkeypatch):
    with duckdb.connect(str(warehouse)) as con:  # one event of the last day twice
        con.execute(
            f"INSERT INTO {mart_relation(MODEL)} SELECT * FROM {mart_relation(MODEL)} "
            f"WHERE event_date = DATE '{DAYS[-1]}' ORDER BY event_id LIMIT 1"
        )
    with sqlite_database(tmp_path) as url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", url)
        result = sync_days(settings, DAYS[0], DAYS[-1])
        assert not result.success
        keys = check(result, "mart_keys_not_null_and_unique")
        assert not keys.passed and keys.metadata["days_failed"].value == [DAYS[-1]]
        assert keys.metadata["days_checked"].value == 3
        failure = step_failure(result)
        assert failure.description.startswith("blocking checks failed before the write; nothing was written")
        assert METADATA_KEY in failure.metadata, "the problems to fix, as for whole tables"
        assert not result.get_asset_materialization_events()
        assert not sa.inspect(sa.create_engine(url)).has_table("candidate_activities"), "no day was written"
