"""The code location finds dbt however it is started: no `uv run`, no activated virtualenv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from activation.definitions import build_definitions
from activation.orchestration.dbt import DBT_EXECUTABLE_ENV, dbt_executable
from activation.settings import PROJECT_ROOT, Settings

VENV_BIN = Path(sys.executable).parent  # not resolved: a venv's python is a link to the base interpreter
SYSTEM_PATH = "/usr/bin:/bin"


def test_code_location_started_by_absolute_path_loads_and_runs_the_venvs_dbt(tmp_path):
    """As systemd or a container starts it: the venv's own binary and a PATH without the venv.
    The dbt project is a fresh copy (no manifest), so loading runs `dbt parse` through the dbt
    resource, as a run's `dbt build` does; before, loading failed on "'dbt' was not found on PATH"."""
    assert shutil.which("dbt", path=SYSTEM_PATH) is None, "this test needs a PATH without dbt"
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path),
        "ACTIVATION_DBT_PROJECT_DIR": str(project),
        "ACTIVATION_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
        "ACTIVATION_APP_DB_URL": f"sqlite:///{tmp_path / 'app.sqlite'}",
        "ACTIVATION_CRM_DB_URL": f"sqlite:///{tmp_path / 'crm.sqlite'}",
    }
    proc = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-m", "activation.definitions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "Validation successful" in proc.stderr + proc.stdout
    assert (project / "target" / "manifest.json").exists(), "the code location parsed the fresh project"


def test_dbt_is_the_one_beside_the_interpreter_unless_overridden(prepared_project, monkeypatch, tmp_path):
    monkeypatch.delenv(DBT_EXECUTABLE_ENV, raising=False)
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    assert dbt_executable() == str(VENV_BIN / "dbt")
    monkeypatch.setenv("ACTIVATION_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))  # loading never opens it
    assert build_definitions(Settings.from_env()).resources["dbt"].dbt_executable == str(VENV_BIN / "dbt")

    wrapper = tmp_path / "dbt-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {VENV_BIN / "dbt"} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(DBT_EXECUTABLE_ENV, str(wrapper))
    assert dbt_executable() == str(wrapper)
    monkeypatch.setenv(DBT_EXECUTABLE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=DBT_EXECUTABLE_ENV):
        dbt_executable()
