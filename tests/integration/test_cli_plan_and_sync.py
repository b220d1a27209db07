"""`activation plan` lists exactly what `activation sync` then applies, and writes nothing itself."""

from __future__ import annotations

import hashlib
import json
import shutil

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from activation.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main
from activation.destinations.sql import normalize_url
from activation.orchestration.dbt import load_manifest, model_relation
from activation.project import dbt_project
from activation.settings import PROJECT_ROOT
from tests.databases import destination_database


@pytest.fixture(params=["sqlite", "mariadb"])
def app_env(request, settings, tmp_path, monkeypatch):
    with destination_database(request.param, tmp_path) as app_url:
        urls = {"app": app_url, "crm": f"sqlite:///{tmp_path / 'crm.sqlite'}"}
        monkeypatch.setenv("ACTIVATION_APP_DB_URL", urls["app"])
        monkeypatch.setenv("ACTIVATION_CRM_DB_URL", urls["crm"])
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        yield urls


def app_fingerprint(url: str) -> str:
    """Every row of every table of the app database, hashed: proves a dry run wrote nothing."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            digest = hashlib.sha256()
            for table in sorted(sa.inspect(conn).get_table_names()):
                digest.update(table.encode())
                for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")):
                    digest.update(repr(tuple(row)).encode())
            return digest.hexdigest()
    finally:
        engine.dispose()


def plan_json(capsys, *args) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["plan", "--json", "--sample", "100000", *args])
    out = json.loads(capsys.readouterr().out)
    return code, {f"{p['destination']}/{p['table']}": p for p in out}


def latest_counts(home) -> dict[str, tuple[int, int, int]]:
    instance = dg.DagsterInstance.from_config(str(home))
    out = {}
    for table in ("facilities", "job_postings", "candidates", "applications"):
        md = instance.get_latest_materialization_event(dg.AssetKey(["app", table])).asset_materialization.metadata
        out[f"app/{table}"] = (md["rows_inserted"].value, md["rows_updated"].value, md["rows_deleted"].value)
    return out


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


def test_plan_lists_exactly_what_sync_applies_and_writes_nothing(app_env, lake, warehouse, tmp_path, capsys):
    empty = app_fingerprint(app_env["app"]) if app_env["app"].startswith("mysql") else None
    code, first = plan_json(capsys)
    assert code == EXIT_OK
    assert not (tmp_path / "crm.sqlite").exists(), "plan must not create the destination"
    if empty:
        assert app_fingerprint(app_env["app"]) == empty, "plan must not create tables"
    assert not (warehouse.parent / "activation_state").exists(), "plan must not write sync state"
    assert first["app/facilities"]["creates_table"] and first["app/facilities"]["inserts"] > 0

    assert main(["sync", "facilities", "job_postings", "candidates", "applications"]) == EXIT_OK
    synced = latest_counts(tmp_path / "dagster_home")
    for table, (inserted, _, _) in synced.items():
        assert (first[table]["inserts"], first[table]["updates"], first[table]["deletes"]) == (inserted, 0, 0)

    shutil.copy(lake.day2, warehouse)  # a day of Salesforce changes, dbt built
    state_before = digest(warehouse.parent / "activation_state")
    app_before = app_fingerprint(app_env["app"])
    code, plan = plan_json(capsys, "facilities", "job_postings", "candidates", "applications")
    assert code == EXIT_OK
    assert digest(warehouse.parent / "activation_state") == state_before, "plan must not advance the state"
    assert app_fingerprint(app_env["app"]) == app_before, "plan must not write to the destination"
    assert plan["app/job_postings"]["inserts"] and plan["app/job_postings"]["updates"]
    assert plan["app/job_postings"]["deletes"]
    # the samples (all of them, with --sample 100000) name exactly as many keys as the counts
    for p in plan.values():
        assert all(len(p["samples"][op]) == p[f"{op}s"] for op in ("insert", "update", "delete"))

    assert main(["sync"]) == EXIT_OK
    applied = latest_counts(tmp_path / "dagster_home")
    assert {t: (p["inserts"], p["updates"], p["deletes"]) for t, p in plan.items()} == applied

    code, again = plan_json(capsys)
    assert code == EXIT_OK
    assert all((p["inserts"], p["updates"], p["deletes"]) == (0, 0, 0) for p in again.values())

    # every run is in the history beside the state, and the change log holds exactly the planned keys
    assert main(["history", "--sync", "job_postings"]) == EXIT_OK
    assert capsys.readouterr().out.count("success") == 2
    with duckdb.connect(str(warehouse.parent / "activation_state" / "app.duckdb"), read_only=True) as con:
        last_run = con.execute("SELECT run_id FROM sync_runs ORDER BY started_at DESC LIMIT 1").fetchall()[0][0]
        logged = con.execute(
            "SELECT operation, key FROM sync_changes WHERE run_id = ? AND sync = 'job_postings'", [last_run]
        ).fetchall()
    planned = plan["app/job_postings"]["samples"]
    assert sorted(logged) == sorted((op, row["key"]) for op in ("insert", "update", "delete") for row in planned[op])


@pytest.mark.parametrize("app_env", ["sqlite"], indirect=True)  # exit codes do not depend on the dialect
def test_exit_codes_for_usage_errors_and_tripped_guards(app_env, warehouse, tmp_path, capsys, monkeypatch):
    assert main(["plan", "no_such_sync"]) == EXIT_USAGE
    assert "no sync named" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == EXIT_USAGE

    assert main(["sync", "facilities"]) == EXIT_OK
    schema, table = model_relation(load_manifest(dbt_project()), "app_facilities")
    mart = f'"{schema}"."{table}"'
    with duckdb.connect(str(warehouse)) as con:  # most facilities leave the mart: over max_deletes 50%
        con.execute(f"DELETE FROM {mart} WHERE facility_id > (SELECT min(facility_id) FROM {mart})")
    code = main(["plan", "facilities"])
    assert code == EXIT_REFUSED
    assert "guard tripped" in capsys.readouterr().out
    assert main(["sync", "facilities"]) == EXIT_REFUSED


@pytest.mark.parametrize("app_env", ["sqlite"], indirect=True)  # the output does not depend on the dialect
def test_refusals_name_column_reason_count_and_keys_and_a_failed_check_exits_4(
    app_env, warehouse, tmp_path, capsys, monkeypatch
):
    assert main(["sync", "facilities"]) == EXIT_OK
    schema, table = model_relation(load_manifest(dbt_project()), "app_facilities")
    with duckdb.connect(str(warehouse)) as con:  # a name longer than the VARCHAR(255) the first sync created
        [(key,)] = con.execute(
            f'UPDATE "{schema}"."{table}" SET name = repeat(\'x\', 300) '
            f'WHERE facility_id = (SELECT min(facility_id) FROM "{schema}"."{table}") RETURNING facility_id'
        ).fetchall()
    line = f"app.facilities.name: 1 row longer than VARCHAR(255): facility_id={key} (300 chars)"
    capsys.readouterr()

    assert main(["plan", "facilities"]) == EXIT_REFUSED
    assert line in capsys.readouterr().out

    assert main(["sync", "facilities"]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert line in out and "fix: widen the column" in out and "not written: app/facilities" in out
    assert 'File "' not in out, "no traceback without --verbose"
    assert "REFUSED before writing" in out
    assert main(["sync", "facilities", "--verbose"]) == EXIT_REFUSED
    assert 'File "' in capsys.readouterr().out, "--verbose shows where it failed"

    # With max_rejects the row is set aside and the rest written; the check after the write
    # (checks.max_rejected: 0) fails: exit 4, and the summary names the check.
    syncs = tmp_path / "syncs.yml"
    config = (PROJECT_ROOT / "syncs.yml").read_text()
    syncs.write_text(config.replace("    table: facilities\n", "    table: facilities\n    max_rejects: 5\n"))
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(syncs))
    assert main(["sync", "facilities"]) == EXIT_CHECK_FAILED
    out = capsys.readouterr().out
    assert "app/facilities rejected_rows_below_threshold (after the write): 1 of " in out
    assert "written, but a check after the write failed" in out
    row = next(r for r in out.splitlines() if r.startswith("app/facilities "))
    assert row.split()[1:6] == ["mirror", "0", "0", "0", "1"], row  # mode, inserted, updated, deleted, rejected
