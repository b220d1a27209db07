"""One demo lake and one dbt build per test run (shared by the xdist workers), copied into a
DuckDB file per test.

dbt runs twice in the whole run (the first day, and after a day of changes); tests
that need dbt to run inside Dagster do so on their own copy.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from activation import demo
from activation.orchestration.dbt import InterpreterDbtPreparer, dbt_executable
from activation.settings import PROJECT_ROOT, Settings

SCALE = 0.003
SEED = 7


def dbt_build(warehouse: Path) -> None:
    env = {**os.environ, "ACTIVATION_WAREHOUSE_PATH": str(warehouse)}
    proc = subprocess.run(
        [dbt_executable(), "build", "--profiles-dir", ".", "--target-path", str(warehouse.parent / "dbt_target")],
        cwd=PROJECT_ROOT / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@dataclass(frozen=True)
class Lake:
    day1: Path  # lake as generated, dbt built
    day2: Path  # after one day of changes, dbt built


def shared_folder(tmp_path_factory, worker_id) -> Path:
    """This run's folder: under pytest-xdist, the one its workers share."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def lake(tmp_path_factory, worker_id) -> Lake:
    """Built once per run: under pytest-xdist the first worker to need it builds it while the
    others wait (the tests only copy its files), instead of one generation and two dbt builds per worker."""
    shared = shared_folder(tmp_path_factory, worker_id)
    base = shared / "lake"
    lake = Lake(day1=base / "day1" / "warehouse.duckdb", day2=base / "day2" / "warehouse.duckdb")
    with open(shared / "lake.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / "built").exists():
            shutil.rmtree(base, ignore_errors=True)  # a build that failed in another worker
            build_lake(lake)
            (base / "built").touch()
    return lake


def build_lake(lake: Lake) -> None:
    lake.day1.parent.mkdir(parents=True)
    lake.day2.parent.mkdir()
    demo.generate_lake(lake.day1, scale=SCALE, seed=SEED)
    shutil.copy(lake.day1, lake.day2)  # raw day-1 lake, before dbt writes into day1
    dbt_build(lake.day1)
    demo.apply_day_of_changes(lake.day2, seed=SEED)
    dbt_build(lake.day2)


@pytest.fixture(scope="session")
def prepared_project(tmp_path_factory, worker_id):
    """Parse the dbt project once per test run so the definitions load from a fresh manifest. dbt
    rewrites target/manifest.json in place: under pytest-xdist one worker parses while the others
    wait, so none reads half a file."""
    from activation.project import dbt_project

    project = dbt_project(Settings.from_env())
    if worker_id == "master":
        InterpreterDbtPreparer().prepare(project)
        return project
    shared = shared_folder(tmp_path_factory, worker_id)
    with open(shared / "dbt-parse.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "dbt-parsed").exists():
            InterpreterDbtPreparer().prepare(project)
            (shared / "dbt-parsed").touch()
    return project


@pytest.fixture
def warehouse(lake, tmp_path) -> Path:
    """This test's own copy of the day-1 warehouse (dbt-duckdb keeps file locks per process)."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(lake.day1, path)
    return path


@pytest.fixture
def settings(warehouse, prepared_project, monkeypatch) -> Settings:
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(warehouse))
    return Settings.from_env()
