"""`activation plan --against` with BigQuery as the warehouse (the emulator): production built into
one dataset and synced for real into MariaDB (state, kept values and the table's description in the
state dataset), a pull request's build (one expression of `app_facilities` changed, `phone` dropped)
in another dataset. The review names exactly the rows and values that differ, hashed where masked,
and writes nothing: the state dataset and the app database are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from activation import cli, demo
from activation.orchestration.dbt import dbt_executable
from activation.project import dbt_project
from activation.settings import PROJECT_ROOT, Settings
from tests.bigquery.conftest import load_raw_lake
from tests.databases import mariadb_database
from tests.integration.test_cli_plan_and_sync import app_fingerprint

pytestmark = pytest.mark.bigquery

CHANGED = "case when bed_count >= 200 then address || ' (large)' else address end as address"
SYNCS = {
    "destinations": {"app": {"url_env": "ACTIVATION_APP_DB_URL", "default_url": "sqlite:///unused.sqlite"}},
    "syncs": {
        "facilities": {"source": "app_facilities", "destination": "app", "table": "facilities"}
        | {"primary_key": "facility_id", "mode": "mirror", "mask": {"address": "hash"}}
    },
}


def dbt_run(project: Path, env: dict[str, str], target: Path) -> None:
    proc = subprocess.run(
        [dbt_executable(), "run", "-s", "+app_facilities", "--profiles-dir", ".", "--target", "bigquery"]
        + ["--target-path", str(target)],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def pr_project(tmp: Path) -> Path:
    project = tmp / "pr_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models/marts/app/app_facilities.sql"
    sql = model.read_text()
    assert "    address,\n" in sql and "    phone,\n" in sql
    model.write_text(sql.replace("    address,\n", f"    {CHANGED},\n").replace("    phone,\n", ""))
    return project


def dataset_fingerprint(client, dataset: str) -> dict[str, str]:
    """Every table of the dataset and a digest of its rows (in a stable order)."""
    out = {}
    for table in client.list_tables(dataset):
        rows = sorted(repr(tuple(r.values())) for r in client.list_rows(f"{client.project}.{dataset}.{table.table_id}"))
        out[table.table_id] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


def test_plan_against_a_pull_request_build_on_bigquery(bq, tmp_path, monkeypatch, capsys):
    env = {**bq.env, "ACTIVATION_BQ_DATASET": "review_prod", "ACTIVATION_BQ_STATE_DATASET": "review_state"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lake = tmp_path / "lake" / "warehouse.duckdb"
    lake.parent.mkdir()
    demo.generate_lake(lake, scale=0.003, seed=7)
    load_raw_lake(bq.client, lake)
    # production's own copy of the project: the manifest the definitions read stays out of the
    # repository's target/ (the end-to-end test, perhaps on another worker, writes there)
    production_project = tmp_path / "prod_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", production_project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("ACTIVATION_DBT_PROJECT_DIR", str(production_project))
    settings = Settings.from_env()
    production_target = dbt_project(settings).manifest_path.parent  # where the definitions read it
    dbt_run(production_project, env, production_target)
    pr_target = tmp_path / "pr_target"
    dbt_run(pr_project(tmp_path), {**env, "ACTIVATION_BQ_DATASET": "review_pr"}, pr_target)
    (tmp_path / "syncs.yml").write_text(yaml.safe_dump(SYNCS))
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(tmp_path / "syncs.yml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))

    with mariadb_database() as app_url:
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", app_url)
        code = cli.main(["sync", "-v", "facilities"])
        assert code == cli.EXIT_OK, capsys.readouterr()
        before = dataset_fingerprint(bq.client, "review_state"), app_fingerprint(app_url)
        assert any(t.startswith("facilities__values_") for t in before[0]), "values kept in the state dataset"
        capsys.readouterr()
        code = cli.main(
            ["plan", "-v", "--against", str(pr_target), "--base-manifest", str(production_target)]
            + ["--format", "json", "--sample", "1000"]
        )
        captured = capsys.readouterr()
        out = captured.out
        assert code == cli.EXIT_OK, captured.err[-4000:]
        assert (dataset_fingerprint(bq.client, "review_state"), app_fingerprint(app_url)) == before, "wrote nothing"

    rows = bq.client.query(
        "SELECT p.facility_id, p.address, n.address FROM review_prod_app.app_facilities p "
        "JOIN review_pr_app.app_facilities n USING (facility_id) WHERE p.address IS DISTINCT FROM n.address"
    ).result()
    truth = {k: (hashlib.sha256(b.encode()).hexdigest(), hashlib.sha256(a.encode()).hexdigest()) for k, b, a in rows}
    assert truth, "the pull request changes large facilities' addresses"
    report = json.loads(out)
    [facilities] = report["syncs"]
    assert (facilities["rows"]["insert"], facilities["rows"]["update"], facilities["rows"]["delete"]) == (
        0,
        len(truth),
        0,
    )
    assert facilities["column_detail"] is None
    [address] = facilities["columns"]
    assert address["column"] == "address" and address["rows"] == len(truth)
    assert {x["key"]: (x["before"], x["after"]) for x in address["samples"]} == truth
    assert [(d["column"], d["change"], d["action"]) for d in facilities["drift"]] == [
        ("phone", "dropped", "left as it is")
    ]
    assert facilities["destination_schema"]["described_at"] and facilities["problems"] == []
    plain = {r[0] for r in bq.client.query("SELECT address FROM review_pr_app.app_facilities").result()}
    assert not any(p and p in out for p in plain), "a masked value appears unmasked"
