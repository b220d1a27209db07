"""Writes into one destination are kept apart across runs by its Dagster pool; syncs into
different destinations run in parallel under the multiprocess executor. Proven from the step
timings a real instance records for two real runs into MariaDB and PostgreSQL.

The test holds the destinations' own advisory locks for a while, so the steps it watches stay
inside their write for as long as it takes the other run to start: then the timings show what the
pools did, not how fast each sync happened to be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import dagster as dg
import duckdb
import sqlalchemy as sa

from activation.destinations.sql.destination import lock_name
from activation.orchestration.assets import destination_pool
from activation.settings import PROJECT_ROOT
from tests.databases import mariadb_database, postgres_database
from tests.integration.run_selection import TAG

SYNCS = """
destinations:
  a: {url_env: POOLS_A_URL}
  b: {url_env: POOLS_B_URL}
syncs:
  a_facilities: {source: app_facilities, destination: a, table: facilities, primary_key: facility_id, mode: mirror}
  a_candidates: {source: app_candidates, destination: a, table: candidates, primary_key: candidate_id, mode: upsert}
  b_facilities: {source: app_facilities, destination: b, table: facilities, primary_key: facility_id, mode: mirror}
"""


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def run_of(instance: dg.DagsterInstance, tag: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={TAG: tag}))
    return runs[0] if runs else None


def step_events(instance: dg.DagsterInstance, run_id: str, event: dg.DagsterEventType) -> dict[str, float]:
    return {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=event)}


def test_one_destination_one_writer_across_runs_and_destinations_in_parallel(warehouse, prepared_project, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")  # as the demo's
    syncs = tmp_path / "syncs.yml"
    syncs.write_text(SYNCS)
    with mariadb_database() as a_url, postgres_database() as b_url:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "ACTIVATION_WAREHOUSE_PATH": str(warehouse),
            "ACTIVATION_SYNCS_FILE": str(syncs),
            "POOLS_A_URL": a_url,
            "POOLS_B_URL": b_url,
        }
        os.environ["DAGSTER_HOME"] = str(home)
        instance = dg.DagsterInstance.from_config(str(home))
        a_lock, b_lock = sa.create_engine(a_url).connect(), sa.create_engine(b_url).connect()
        a_name = lock_name(sa.make_url(a_url).database, "facilities")
        b_name = lock_name(sa.make_url(b_url).database, "facilities")
        a_lock.execute(sa.text("SELECT GET_LOCK(:n, 300)"), {"n": a_name})
        b_lock.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:n, 0))"), {"n": b_name})
        b_lock.commit()

        def start(tag: str, *keys: str) -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.integration.run_selection", tag, *keys],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

        first = start("first", "a/facilities", "b/facilities")
        runs = [first]
        try:
            # The first run's step into `a` holds the pool's one slot (and waits in the write for our lock).
            wait_until("the first run to claim a's slot", lambda: bool(claimed(instance, "a")))
            second = start("second", "a/candidates")
            runs.append(second)
            wait_until("the second run to wait for a's slot", lambda: pending(instance, "a"))
            a_lock.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": a_name})
            one = run_of(instance, "first")
            wait_until("the first run's write into a", lambda: "sync_a" in step_events(instance, one.run_id, SUCCESS))
            # b's step, still inside its write, outlives a's: they ran at the same time.
            b_lock.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:n, 0))"), {"n": b_name})
            b_lock.commit()
            outputs = [p.communicate(timeout=300)[0] for p in runs]
        finally:
            for p in runs:
                if p.poll() is None:
                    p.kill()
            a_lock.close()
            b_lock.close()
        assert [p.returncode for p in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)

        one, two = run_of(instance, "first").run_id, run_of(instance, "second").run_id
        started = {r: step_events(instance, r, dg.DagsterEventType.STEP_START) for r in (one, two)}
        ended = {r: step_events(instance, r, SUCCESS) for r in (one, two)}
        a_first = (started[one]["sync_a"], ended[one]["sync_a"])
        a_second = (started[two]["sync_a"], ended[two]["sync_a"])
        b_first = (started[one]["sync_b"], ended[one]["sync_b"])
        # One writer per destination: the second run's step into `a` started after the first's ended.
        assert a_first[1] <= a_second[0], (a_first, a_second)
        # Different destinations in parallel: the step into `b` was running before `a`'s ended, and after.
        assert b_first[0] < a_first[1] < b_first[1], (a_first, b_first)

        with duckdb.connect(str(warehouse), read_only=True) as con:
            marts = {
                t: con.execute(f"SELECT count(*) FROM {mart(con, t)}").fetchone()[0]
                for t in ("facilities", "candidates")
            }
        for url, tables in ((a_url, ("facilities", "candidates")), (b_url, ("facilities",))):
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                for t in tables:
                    assert conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() == marts[t], (url, t)
            engine.dispose()


SUCCESS = dg.DagsterEventType.STEP_SUCCESS


def claimed(instance: dg.DagsterInstance, destination: str) -> list:
    return instance.event_log_storage.get_concurrency_info(destination_pool(destination)).claimed_slots


def pending(instance: dg.DagsterInstance, destination: str) -> bool:
    return instance.event_log_storage.get_concurrency_info(destination_pool(destination)).pending_step_count > 0


def mart(con: duckdb.DuckDBPyConnection, table: str) -> str:
    sql = "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name = ?"
    [(schema, name)] = con.execute(sql, [f"app_{table}"]).fetchall()
    return f'"{schema}"."{name}"'
