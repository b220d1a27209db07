"""The scenario of the pull-request reviews (`activation plan --against`, the `review_pull_request` job).

Production: the session's day-1 build, synced for real into MariaDB (facilities with a masked
address, job_postings) and into the local Salesforce org (account_scores onto Accounts). The pull
request: a copy of the dbt project whose `app_facilities` changes one expression (the masked
`address` of large facilities) and drops a column (`phone`), built over the day-2 lake (a day of
new, edited and deleted records since the last sync). `sql_diff` is the truth a review must match:
the two builds compared directly in SQL. One scenario per test module that imports it (its builds and
syncs take a minute and a half).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from activation.cli import EXIT_OK, EXIT_REFUSED, main
from activation.orchestration.dbt import dbt_executable
from activation.settings import PROJECT_ROOT
from tests.databases import destination_database
from tests.destinations.salesforce_server import OrgConfig, SalesforceServer
from tests.integration.test_api_syncs import scores_org
from tests.integration.test_cli_plan_and_sync import app_fingerprint

CHANGED = "case when bed_count >= 200 then address || ' (large)' else address end as address"
# the refused variant also widens large facilities' names past the VARCHAR(255) the sync created,
# and gives the riskiest accounts a band the org's restricted picklist does not have
WIDER_NAME = "case when bed_count >= 200 then rpad(facility_name, 300, '.') else facility_name end as name"
NEW_BAND = "when churn_score >= 0.8 then 'critical'\n        when churn_score >= 0.6 then 'high'"
ACCOUNT_COLUMNS = {
    "Customer_Key__c": "account_id",
    "Name": "account_name",
    "Lifetime_Value__c": "lifetime_value",
    "Churn_Score__c": "churn_score",
    "Churn_Band__c": "score_band",
    "Last_Activity__c": "last_activity_at",
}


def syncs_yml(path: Path, org: SalesforceServer, ca: str, **overrides) -> Path:
    app = {"url_env": "ACTIVATION_APP_DB_URL", "default_url": "sqlite:///unused.sqlite"}
    salesforce = {
        "type": "salesforce",
        "rate_limit": {"requests": 1000, "per_seconds": 1},
        "settings": {
            "login_url": org.url,
            "auth": "client_credentials",
            "client_id_env": "SALESFORCE_CLIENT_ID",
            "client_secret_env": "SALESFORCE_CLIENT_SECRET",
            "ca_bundle": ca,
            "bulk_poll_seconds": 0.02,
        },
    }
    syncs = {
        "facilities": {"source": "app_facilities", "destination": "app", "table": "facilities"}
        | {"primary_key": "facility_id", "mode": "mirror", "mask": {"address": "hash"}},
        "job_postings": {"source": "app_job_postings", "destination": "app", "table": "job_postings"}
        | {
            "primary_key": "job_posting_id",
            "mode": "mirror",
            "foreign_keys": {"facility_id": "facilities.facility_id"},
        },
        "account_scores": {"source": "crm_customer_scores", "destination": "salesforce", "table": "Account"}
        | {"primary_key": "Customer_Key__c", "mode": "upsert", "columns": ACCOUNT_COLUMNS},
    }
    for name, extra in overrides.items():
        syncs[name] = syncs[name] | extra
    path.write_text(yaml.safe_dump({"destinations": {"app": app, "salesforce": salesforce}, "syncs": syncs}))
    return path


@dataclass(frozen=True)
class Build:
    warehouse: Path
    target: Path


@dataclass(frozen=True)
class Scenario:
    production: Path  # the production warehouse (its state beside it, in activation_state/)
    base_target: Path  # production's dbt target (manifest)
    pr: Build
    wide: Build  # the variant the destinations would refuse
    app_url: str
    org: SalesforceServer
    ca: str
    tmp: Path
    env: dict[str, str]  # what a review in CI has set: no API secret


def _build(tmp: Path, lake_day2: Path, name: str, *, refused: bool) -> Build:
    """A copy of the dbt project with the pull request's change, built over the day-2 lake."""
    project = tmp / f"{name}_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models/marts/app/app_facilities.sql"
    sql = model.read_text()
    assert "    address,\n" in sql and "    phone,\n" in sql and "    facility_name as name,\n" in sql
    sql = sql.replace("    address,\n", f"    {CHANGED},\n").replace("    phone,\n", "")
    models = ["app_facilities"]
    if refused:
        sql = sql.replace("    facility_name as name,\n", f"    {WIDER_NAME},\n")
        scores = project / "models/marts/crm/crm_customer_scores.sql"
        text = scores.read_text()
        assert "when churn_score >= 0.6 then 'high'" in text
        scores.write_text(text.replace("when churn_score >= 0.6 then 'high'", NEW_BAND))
        models.append("crm_customer_scores")
    model.write_text(sql)
    yml = project / "models/marts/app/_app__models.yml"
    text = yml.read_text()
    phone = re.search(r"      - name: phone\n(        .*\n)+?(?=      - name: bed_count)", text)
    yml.write_text(text[: phone.start()] + text[phone.end() :])
    warehouse = tmp / name / "warehouse.duckdb"
    warehouse.parent.mkdir()
    shutil.copy(lake_day2, warehouse)
    target = warehouse.parent / "t"
    proc = subprocess.run(
        [dbt_executable(), "run", "-s", *models, "--profiles-dir", ".", "--target-path", str(target)],
        cwd=project,
        env={**os.environ, "ACTIVATION_WAREHOUSE_PATH": str(warehouse)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return Build(warehouse, target)


@pytest.fixture(scope="module")
def review_scenario(lake, prepared_project, tmp_path_factory, keys) -> Scenario:
    tmp = tmp_path_factory.mktemp("review")
    production = tmp / "prod" / "warehouse.duckdb"
    production.parent.mkdir()
    shutil.copy(lake.day1, production)
    pr = _build(tmp, lake.day2, "pr", refused=False)
    wide = _build(tmp, lake.day2, "wide", refused=True)
    with (
        SalesforceServer(keys.cert, keys.key, OrgConfig(jwt_public_key=keys.jwt_public)) as org,
        destination_database("mariadb", tmp) as url,
    ):
        scores_org(org)
        env = {
            "ACTIVATION_WAREHOUSE_PATH": str(production),
            "ACTIVATION_SYNCS_FILE": str(syncs_yml(tmp / "syncs.yml", org, keys.cert)),
            "ACTIVATION_APP_DB_URL": url,
            "DAGSTER_HOME": str(tmp / "dagster_home"),
            "SALESFORCE_CLIENT_ID": org.config.client_id,
            "SALESFORCE_CLIENT_SECRET": org.config.client_secret,
            "NO_PROXY": "127.0.0.1",
        }
        with pytest.MonkeyPatch.context() as mp:  # only while syncing: other modules share the package
            for k, v in env.items():
                mp.setenv(k, v)
            assert main(["sync", "facilities", "job_postings", "account_scores"]) == EXIT_OK
        assert len(org.objects["Account"].records) > 0
        del env["SALESFORCE_CLIENT_SECRET"]  # CI holds no credentials: the review must not need them
        yield Scenario(production, lake.day1.parent / "dbt_target", pr, wide, url, org, keys.cert, tmp, env)


@pytest.fixture
def scenario(review_scenario, monkeypatch) -> Scenario:
    """The scenario, with the environment a review in CI has (no API secret), for one test."""
    for k, v in review_scenario.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SALESFORCE_CLIENT_SECRET", raising=False)
    return review_scenario


def review(s: Scenario, capsys, build: Build, *args: str) -> tuple[int, str]:
    """The command CI runs; asserts it wrote nothing anywhere and asked no destination."""
    state = s.production.parent / "activation_state"
    before = digests(s.production.parent, s.pr.warehouse.parent, s.wide.warehouse.parent), app_fingerprint(s.app_url)
    calls = len(s.org.traffic.requests), s.org.traffic.logins
    capsys.readouterr()
    code = main(
        ["plan", "-v", "--against", str(build.target), "--against-warehouse", str(build.warehouse)]
        + ["--base-manifest", str(s.base_target), *args]
    )
    captured = capsys.readouterr()
    assert code in (EXIT_OK, EXIT_REFUSED), captured.err
    after = digests(s.production.parent, s.pr.warehouse.parent, s.wide.warehouse.parent), app_fingerprint(s.app_url)
    assert after == before, "the review wrote to a warehouse, the state or the app database"
    assert state.is_dir() and any(p.name.endswith(".duckdb") for p in state.iterdir())
    assert (len(s.org.traffic.requests), s.org.traffic.logins) == calls, "the review called the org"
    return code, captured.out


def digests(*folders: Path) -> dict[str, str]:
    files = sorted(p for folder in folders for p in folder.rglob("*.duckdb") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def sql_diff(old_wh: Path, new_wh: Path, mart: str, key: str, columns: dict[str, str], masked: set[str]) -> dict:
    """The truth, from the two builds directly: keys only in one, and per destination column the
    keys whose value as sent (text; hashed where masked) differs, with (before, after)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{old_wh}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{new_wh}' AS b (READ_ONLY)")
    schema = "main_crm" if mart.startswith("crm_") else "main_app"
    old, new = f"a.{schema}.{mart}", f"b.{schema}.{mart}"
    cols_a = {r[0] for r in con.execute(f"DESCRIBE {old}").fetchall()}
    cols_b = [r[0] for r in con.execute(f"DESCRIBE {new}").fetchall()]
    columns = columns or {c: c for c in cols_b}

    def keys(q: str) -> set[str]:
        return {r[0] for r in con.execute(q).fetchall()}

    def sent(side: str, c: str) -> str:
        text = f"CAST({side}.{c} AS VARCHAR)"
        return f"sha256({text})" if c in masked else text

    out = {
        "insert": keys(f"SELECT {key} FROM {new} EXCEPT SELECT {key} FROM {old}"),
        "delete": keys(f"SELECT {key} FROM {old} EXCEPT SELECT {key} FROM {new}"),
        "columns": {},
        "dropped": sorted(cols_a - set(cols_b)),
        "raw": set(),
    }
    for dest, c in columns.items():
        if c == key or c not in cols_a or c not in cols_b:
            continue
        rows = con.execute(
            f"SELECT o.{key}, {sent('o', c)}, {sent('n', c)} FROM {old} o JOIN {new} n USING ({key}) "
            f"WHERE {sent('o', c)} IS DISTINCT FROM {sent('n', c)}"
        ).fetchall()
        if rows:
            out["columns"][dest] = {k: (b, a) for k, b, a in rows}
        if c in masked:
            out["raw"] |= {r[0] for r in con.execute(f"SELECT {c} FROM {old} UNION SELECT {c} FROM {new}").fetchall()}
    out["update"] = set().union(*out["columns"].values()) if out["columns"] else set()
    con.close()
    return out


def assert_exact(report: dict, truth: dict, *, deletes: bool = True) -> None:
    """Counts, changed columns, every changed key and its `before -> after`, as the SQL diff found."""
    rows = report["rows"]
    assert report["column_detail"] is None, report["column_detail"]
    assert (rows["insert"], rows["update"]) == (len(truth["insert"]), len(truth["update"]))
    assert rows["delete"] == (len(truth["delete"]) if deletes else 0)
    assert set(report["sample_keys"]["insert"]) == truth["insert"]
    assert set(report["sample_keys"]["delete"]) == (truth["delete"] if deletes else set())
    found = {c["column"]: {x["key"]: (x["before"], x["after"]) for x in c["samples"]} for c in report["columns"]}
    assert found == truth["columns"]
    assert {c["column"]: c["rows"] for c in report["columns"]} == {c: len(k) for c, k in truth["columns"].items()}
