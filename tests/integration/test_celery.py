"""The `activate` job under dagster-celery: two real workers on the RabbitMQ of this machine,
PostgreSQL as Dagster's run and event storage, a filesystem IO manager.

Celery ignores Dagster's pools, so two runs may write one destination from two workers at once.
The test makes them: it holds the destination's advisory lock on one table, so the first run's
step into `app` stays inside its write while a second run sends a step into `app` (another table)
to the other worker. That step must wait for the destination's sync state before it writes; the
state's own history (sync_runs) then shows the two writes one after the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation.destinations.sql.destination import lock_name
from activation.settings import PROJECT_ROOT
from tests.databases import mariadb_database, postgres_database
from tests.integration.run_selection import TAG

pytest.importorskip("dagster_celery")

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
SYNCS = """
destinations:
  app: {url_env: CELERY_APP_URL}
  crm: {url_env: CELERY_CRM_URL}
syncs:
  facilities: {source: app_facilities, destination: app, table: facilities, primary_key: facility_id, mode: mirror}
  candidates: {source: app_candidates, destination: app, table: candidates, primary_key: candidate_id, mode: upsert}
  crm_facilities: {source: app_facilities, destination: crm, table: facilities, primary_key: facility_id, mode: mirror}
"""
RUN = """
import sys
import dagster as dg
from activation.celery_definitions import activate_job
from tests.integration.run_selection import TAG
keys = [dg.AssetKey.from_user_string(k) for k in sys.argv[2:]] or None
with dg.execute_job(dg.reconstructable(activate_job), instance=dg.DagsterInstance.get(),
                    asset_selection=keys, tags={TAG: sys.argv[1]}) as result:
    sys.exit(0 if result.success else 1)
"""


def wait_until(what: str, condition, runs: list[subprocess.Popen], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [p for p in runs if p.poll() is not None]
        assert not ended, f"a run ended while waiting for {what}:\n" + "\n".join(p.stdout.read()[-3000:] for p in ended)
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def run_id(instance: dg.DagsterInstance, tag: str) -> str | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={TAG: tag}))
    return runs[0].run_id if runs else None


def messages(instance: dg.DagsterInstance, tag: str, step: str) -> list[str]:
    rid = run_id(instance, tag)
    return [e.user_message for e in instance.all_logs(rid) if e.step_key == step] if rid else []


def workers_by_step(instance: dg.DagsterInstance, rid: str) -> dict[str, str]:
    """The Celery worker (its -n name @ host) that ran each step, from dagster-celery's engine event."""
    out = {}
    for event in instance.all_logs(rid, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = event.dagster_event.engine_event_data
        if data and "Celery worker" in data.metadata:
            out[event.step_key] = data.metadata["Celery worker"].value
    return out


def test_activate_on_two_celery_workers_keeps_one_writer_per_destination(warehouse, prepared_project, tmp_path):
    home, io_dir, syncs = tmp_path / "dagster_home", tmp_path / "io", tmp_path / "syncs.yml"
    home.mkdir()
    syncs.write_text(SYNCS)
    queue = f"activation-test-{uuid.uuid4().hex[:8]}"  # this test's own queue on the shared broker
    (tmp_path / "celery.yaml").write_text(
        f"execution:\n  config:\n    broker: '{BROKER}'\n    backend: 'rpc://'\n"
        f"    config_source: {{task_default_queue: '{queue}', task_acks_late: true}}\n"
    )
    with postgres_database() as storage_url, mariadb_database() as app_url, postgres_database() as crm_url:
        # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3
        storage = storage_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: '{storage}'\n")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(PROJECT_ROOT),
            "ACTIVATION_WAREHOUSE_PATH": str(warehouse),
            "ACTIVATION_SYNCS_FILE": str(syncs),
            "ACTIVATION_IO_DIR": str(io_dir),
            "ACTIVATION_CELERY_BROKER": BROKER,
            "ACTIVATION_CELERY_QUEUE": queue,
            "ACTIVATION_LOCK_WAIT_SECONDS": "600",  # our hold below outlasts the default minute
            "CELERY_APP_URL": app_url,
            "CELERY_CRM_URL": crm_url,
        }
        os.environ["DAGSTER_HOME"] = str(home)
        instance = dg.DagsterInstance.from_config(str(home))
        bin_dir = Path(sys.executable).parent
        workers = [
            subprocess.Popen(
                [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
                 str(tmp_path / "celery.yaml"), "-q", queue, "-n", name,
                 # one step at a time, each in a fresh process (docs/deploy.md: dbt-duckdb's handle)
                 "--", "--concurrency=1", "--max-tasks-per-child=1"],
                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w"),
                start_new_session=True,  # `worker start` runs celery as its child: stop both, as a group
            )
            for name in ("worker_one", "worker_two")
        ]  # fmt: skip
        lock = sa.create_engine(app_url).connect()
        held = lock_name(sa.make_url(app_url).database, "facilities")
        lock.execute(sa.text("SELECT GET_LOCK(:n, 600)"), {"n": held})  # as a sync of facilities would
        runs: list[subprocess.Popen] = []

        def start(tag: str, *keys: str) -> None:
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-c", RUN, tag, *keys], cwd=PROJECT_ROOT, env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )
            )  # fmt: skip

        try:
            start("activate")  # dbt build, then app and crm
            wait_until(
                "the activate run's write into app", lambda: "sync_app" in started_steps(instance, "activate"), runs
            )
            start("second", "app/candidates")  # the same destination, from the other worker
            wait_until("the second run to wait for app's sync state", lambda: waiting(instance, "second"), runs)
            lock.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": held})
            outputs = [p.communicate(timeout=600)[0] for p in runs]
        finally:
            lock.close()
            for p in runs:
                if p.poll() is None:
                    p.kill()
            for p in workers:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=60)
        assert [p.returncode for p in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)

        first, second = run_id(instance, "activate"), run_id(instance, "second")
        ran_on = workers_by_step(instance, first)
        assert set(ran_on) == {"dbt_models", "sync_app", "sync_crm"}, ran_on
        on_second = workers_by_step(instance, second)
        # Steps ran on both workers: the second run's step went to the worker the first's write did not hold.
        assert {w.split("@")[0] for w in [*ran_on.values(), *on_second.values()]} == {"worker_one", "worker_two"}
        assert on_second["sync_app"] != ran_on["sync_app"], (ran_on, on_second)

        # One writer of app at a time, by app's own history: the second write began after the first ended.
        state = warehouse.parent / "activation_state" / "app.duckdb"
        with duckdb.connect(str(state), read_only=True) as con:
            rows = con.execute(
                "SELECT run_id, sync, started_at, finished_at, rows_inserted FROM sync_runs ORDER BY started_at"
            ).fetchall()
        by_run = {rid: [r for r in rows if r[0] == rid] for rid in (first, second)}
        assert {r[1] for r in by_run[first]} == {"facilities", "candidates"}, rows
        assert max(r[3] for r in by_run[first]) <= min(r[2] for r in by_run[second]), rows
        # and it planned from what the first committed: nothing left to insert.
        assert [(r[1], r[4]) for r in by_run[second]] == [("candidates", 0)], rows

        # The destinations hold the marts dbt built in the run.
        with duckdb.connect(str(warehouse), read_only=True) as con:
            marts = {
                t: con.execute(f"SELECT count(*) FROM {mart(con, t)}").fetchone()[0]
                for t in ("facilities", "candidates")
            }  # noqa: E501
        assert marts["facilities"] > 0 and marts["candidates"] > 0
        for url, tables in ((app_url, ("facilities", "candidates")), (crm_url, ("facilities",))):
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                for t in tables:
                    assert conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() == marts[t], (url, t)
            engine.dispose()


def waiting(instance: dg.DagsterInstance, tag: str) -> bool:
    return any("held by another sync of this destination" in m for m in messages(instance, tag, "sync_app"))


def started_steps(instance: dg.DagsterInstance, tag: str) -> set[str]:
    rid = run_id(instance, tag)
    return {e.step_key for e in instance.all_logs(rid, of_type=dg.DagsterEventType.STEP_START)} if rid else set()


def mart(con: duckdb.DuckDBPyConnection, table: str) -> str:
    sql = "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name = ?"
    [(schema, name)] = con.execute(sql, [f"app_{table}"]).fetchall()
    return f'"{schema}"."{name}"'
