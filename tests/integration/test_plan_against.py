"""`activation plan --against`: a pull request's dbt build reviewed against the production sync state.

Production: the session's day-1 build, synced for real into MariaDB. The pull request: a copy of
the dbt project whose `app_facilities` changes one expression (the masked `address` of large
facilities) and drops a column (`phone`), built over the day-2 lake (a day of new, edited and
deleted records since the last sync). The report must name exactly what a SQL diff of the two
builds finds, write nothing anywhere, and never show a masked value unmasked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from activation.cli import EXIT_OK, EXIT_REFUSED, main
from activation.orchestration.dbt import dbt_executable
from activation.settings import PROJECT_ROOT
from tests.databases import destination_database
from tests.integration.test_cli_plan_and_sync import app_fingerprint

SYNCS = """
destinations:
  app: {{url_env: ACTIVATION_APP_DB_URL, default_url: "sqlite:///unused.sqlite"}}
syncs:
  facilities:
    source: app_facilities
    destination: app
    table: facilities
    primary_key: facility_id
    mode: mirror
    mask: {{address: hash}}
  job_postings:
    source: app_job_postings
    destination: app
    table: job_postings
    primary_key: job_posting_id
    mode: mirror
    foreign_keys: {{facility_id: facilities.facility_id}}
    guards: {{max_deletes: {max_deletes}}}
"""
CHANGED = "case when bed_count >= 200 then address || ' (large)' else address end as address"


@dataclass(frozen=True)
class Scenario:
    production: Path  # the production warehouse (its state beside it, in activation_state/)
    base_target: Path  # production's dbt target (manifest)
    pr_warehouse: Path
    pr_target: Path
    app_url: str
    env: dict[str, str]


def _pr_project(tmp: Path) -> Path:
    project = tmp / "pr_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models/marts/app/app_facilities.sql"
    sql = model.read_text()
    assert "    address,\n" in sql and "    phone,\n" in sql
    model.write_text(sql.replace("    address,\n", f"    {CHANGED},\n").replace("    phone,\n", ""))
    yml = project / "models/marts/app/_app__models.yml"
    text = yml.read_text()
    phone = re.search(r"      - name: phone\n(        .*\n)+?(?=      - name: bed_count)", text)
    yml.write_text(text[: phone.start()] + text[phone.end() :])
    return project


@pytest.fixture(scope="module")
def scenario(lake, prepared_project, tmp_path_factory) -> Scenario:
    tmp = tmp_path_factory.mktemp("review")
    production = tmp / "prod" / "warehouse.duckdb"
    production.parent.mkdir()
    shutil.copy(lake.day1, production)
    pr = tmp / "pr" / "warehouse.duckdb"
    pr.parent.mkdir()
    shutil.copy(lake.day2, pr)
    project = _pr_project(tmp)
    proc = subprocess.run(
        [dbt_executable(), "run", "-s", "app_facilities", "--profiles-dir", ".", "--target-path", str(pr.parent / "t")],
        cwd=project,
        env={**os.environ, "ACTIVATION_WAREHOUSE_PATH": str(pr)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    (tmp / "syncs.yml").write_text(SYNCS.format(max_deletes="50%"))
    with destination_database("mariadb", tmp) as url, pytest.MonkeyPatch.context() as mp:
        env = {
            "ACTIVATION_WAREHOUSE_PATH": str(production),
            "ACTIVATION_SYNCS_FILE": str(tmp / "syncs.yml"),
            "ACTIVATION_APP_DB_URL": url,
            "DAGSTER_HOME": str(tmp / "dagster_home"),
        }
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["sync", "facilities", "job_postings"]) == EXIT_OK
        yield Scenario(production, lake.day1.parent / "dbt_target", pr, pr.parent / "t", url, env)


def review(s: Scenario, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(
        ["plan", "-v", "--against", str(s.pr_target), "--against-warehouse", str(s.pr_warehouse)]
        + ["--base-manifest", str(s.base_target), *args]
    )
    captured = capsys.readouterr()
    assert code in (EXIT_OK, EXIT_REFUSED), captured.err
    return code, captured.out


def digests(*paths: Path) -> dict[str, str]:
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def sql_diff(s: Scenario, mart: str, key: str, masked: set[str]) -> dict:
    """The truth, from the two builds directly: keys only in one, and per column the keys whose
    value (as sent: hashed where masked) differs."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{s.production}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{s.pr_warehouse}' AS b (READ_ONLY)")
    old, new = f"a.main_app.{mart}", f"b.main_app.{mart}"
    cols_a = [r[0] for r in con.execute(f"DESCRIBE {old}").fetchall()]
    cols_b = [r[0] for r in con.execute(f"DESCRIBE {new}").fetchall()]

    def keys(q: str) -> set[str]:
        return {r[0] for r in con.execute(q).fetchall()}

    out = {
        "insert": keys(f"SELECT {key} FROM {new} EXCEPT SELECT {key} FROM {old}"),
        "delete": keys(f"SELECT {key} FROM {old} EXCEPT SELECT {key} FROM {new}"),
        "columns": {},
        "dropped": sorted(set(cols_a) - set(cols_b)),
        "raw": set(),
    }
    for c in [c for c in cols_b if c in cols_a and c != key]:
        found = keys(f"SELECT o.{key} FROM {old} o JOIN {new} n USING ({key}) WHERE o.{c} IS DISTINCT FROM n.{c}")
        if found:
            out["columns"][c] = found
        if c in masked:
            out["raw"] |= {r[0] for r in con.execute(f"SELECT {c} FROM {old} UNION SELECT {c} FROM {new}").fetchall()}
    out["update"] = set().union(*out["columns"].values()) if out["columns"] else set()
    con.close()
    return out


def test_the_review_names_what_a_sql_diff_of_the_builds_finds_and_writes_nothing(scenario, capsys):
    s = scenario
    state = s.production.parent / "activation_state"
    before = digests(state, s.production, s.pr_warehouse), app_fingerprint(s.app_url)
    code, out = review(s, capsys, "--format", "json", "--sample", "3")
    assert code == EXIT_OK, out
    assert (digests(state, s.production, s.pr_warehouse), app_fingerprint(s.app_url)) == before, "nothing written"
    report = json.loads(out)
    assert report["version"] == 1 and report["refused"] == []
    assert report["changed_models"] == [
        {"model": "app_facilities", "change": "modified", "feeds": report["changed_models"][0]["feeds"]}
    ]
    assert {"app.facilities.address", "app.facilities.city"} <= set(report["changed_models"][0]["feeds"])
    assert "app.facilities.phone" not in report["changed_models"][0]["feeds"]
    syncs = {r["sync"]: r for r in report["syncs"]}
    facilities = syncs["facilities"]
    truth = sql_diff(s, "app_facilities", "facility_id", {"address"})
    assert truth["dropped"] == ["phone"] and truth["columns"]["address"], "the scenario changes what it says"
    rows = facilities["rows"]
    assert (rows["insert"], rows["delete"]) == (len(truth["insert"]), len(truth["delete"]))
    assert set(facilities["sample_keys"]["insert"]) <= truth["insert"]
    assert facilities["drift"] == [
        {"column": "phone", "change": "dropped", "detail": facilities["drift"][0]["detail"], "action": "left as it is"}
    ]
    assert facilities["destination_schema"]["described_at"] and facilities["destination_schema"]["age_seconds"] < 600
    assert facilities["changed_models"] == ["app_facilities"]
    if facilities["column_detail"] is None:  # values as last sent are kept: the diff is exact per column
        assert rows["update"] == len(truth["update"])
        assert {c["column"]: c["rows"] for c in facilities["columns"]} == {
            c: len(k) for c, k in truth["columns"].items()
        }
        for c in facilities["columns"]:
            assert {x["key"] for x in c["samples"]} <= truth["columns"][c["column"]]
    else:  # an older state: counts, and why there is no column detail
        assert "keeps no values" in facilities["column_detail"] and facilities["columns"] == []
        assert rows["update"] is None, "phone left the mart: the hashes cannot count updates"
    # job_postings: same columns as last synced, so the row hashes count its updates exactly
    jobs, jtruth = syncs["job_postings"], sql_diff(s, "app_job_postings", "job_posting_id", set())
    assert (jobs["rows"]["insert"], jobs["rows"]["update"], jobs["rows"]["delete"]) == (
        len(jtruth["insert"]),
        len(jtruth["update"]),
        len(jtruth["delete"]),
    )
    assert not any(raw and raw in out for raw in truth["raw"]), "a masked value appears unmasked"

    code, markdown = review(s, capsys, "--format", "markdown")
    assert code == EXIT_OK
    assert (digests(state, s.production, s.pr_warehouse), app_fingerprint(s.app_url)) == before
    first = markdown.split("\n\n")[1].splitlines()
    assert first[0].startswith("- `app.facilities` changes +") and "phone dropped" in first[0]
    assert "<details><summary>app.facilities</summary>" in markdown
    assert not any(raw and raw in markdown for raw in truth["raw"])


def test_a_guard_that_would_trip_exits_3(scenario, capsys, monkeypatch, tmp_path):
    jtruth = sql_diff(scenario, "app_job_postings", "job_posting_id", set())
    assert jtruth["delete"], "day 2 deletes job postings"
    strict = tmp_path / "syncs.yml"
    strict.write_text(SYNCS.format(max_deletes=0))
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(strict))
    code, out = review(scenario, capsys, "--format", "json")
    assert code == EXIT_REFUSED
    report = json.loads(out)
    assert report["refused"] == ["job_postings"]
    [guard] = {r["sync"]: r for r in report["syncs"]}["job_postings"]["guards"]
    assert f"would delete {len(jtruth['delete'])}" in guard and "max_deletes" in guard
