"""One demo lake and one dbt build per test session, copied into a DuckDB file per test.

dbt runs twice in the whole session (the first day, and after a day of changes); tests
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


@pytest.fixture(scope="session")
def lake(tmp_path_factory) -> Lake:
    base = tmp_path_factory.mktemp("lake")
    day1 = base / "day1" / "warehouse.duckdb"
    day1.parent.mkdir()
    demo.generate_lake(day1, scale=SCALE, seed=SEED)
    day2 = base / "day2" / "warehouse.duckdb"
    day2.parent.mkdir()
    shutil.copy(day1, day2)  # raw day-1 lake, before dbt writes into day1
    dbt_build(day1)
    demo.apply_day_of_changes(day2, seed=SEED)
    dbt_build(day2)
    return Lake(day1=day1, day2=day2)


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
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its workers
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
