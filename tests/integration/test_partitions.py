"""A daily-partitioned flow end to end: dbt builds a window of days, the sync mirrors exactly those days."""

from __future__ import annotations

import dagster as dg
import duckdb
import sqlalchemy as sa

from activation.definitions import DAILY_JOB, build_definitions
from activation.destinations.urls import normalize_url
from tests.compare import destination_rows, sorted_mart_rows
from tests.databases import mariadb_database
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
