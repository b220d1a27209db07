"""The code location loads and its asset graph stays what the UI and asset history expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import dagster as dg

from activation.definitions import build_definitions
from activation.settings import PROJECT_ROOT

SNAPSHOT = PROJECT_ROOT / "tests" / "snapshots" / "asset_graph.json"


def asset_graph(defs: dg.Definitions) -> dict[str, list[str]]:
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    }


def test_asset_graph_matches_snapshot(settings):
    """A rename breaks the UI graph and asset history; make it a reviewed change.

    Regenerate with UPDATE_SNAPSHOTS=1 after an intended change.
    """
    graph = asset_graph(build_definitions(settings))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(graph, indent=2, ensure_ascii=False) + "\n")
    assert graph == json.loads(SNAPSHOT.read_text())


def test_raw_to_staging_to_marts_to_destinations_is_connected(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    app_jobs = graph.get(dg.AssetKey(["app", "job_postings"]))
    assert dg.AssetKey("app_job_postings") in app_jobs.parent_keys
    assert dg.AssetKey(["app", "facilities"]) in app_jobs.parent_keys, "parents are upstream of children"
    applications = graph.get(dg.AssetKey(["app", "applications"])).parent_keys
    assert {dg.AssetKey(["app", "candidates"]), dg.AssetKey(["app", "job_postings"])} <= applications
    assert graph.get(dg.AssetKey(["app", "facilities"])).kinds == {"sqlite"}

    # walk upstream from a destination table to a raw Salesforce table
    seen, frontier = set(), {dg.AssetKey(["app", "applications"])}
    while frontier:
        key = frontier.pop()
        seen.add(key)
        frontier |= set(graph.get(key).parent_keys) - seen
    assert dg.AssetKey(["salesforce", "application__c"]) in seen
    groups = {graph.get(k).group_name for k in seen}
    assert {"salesforce_raw", "staging", "app_marts", "app_db"} <= groups


def test_destination_kind_follows_the_url(settings, monkeypatch):
    monkeypatch.setenv("ACTIVATION_APP_DB_URL", "mysql+pymysql://app:s3cret@db.internal/app")
    defs = build_definitions(settings)
    node = defs.resolve_asset_graph().get(dg.AssetKey(["app", "facilities"]))
    assert node.kinds == {"mysql"}
    assert "s3cret" not in json.dumps({k: str(v) for k, v in node.metadata.items()})


def test_dg_check_defs_passes(settings, tmp_path):
    # `dg` parses the dbt project again; on a copy, so the shared manifest other tests read is not
    # rewritten under them.
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    # with dbt's partial-parse state (3 s less parsing); dg's parse still writes the copy's manifest
    (project / "target").mkdir()
    shutil.copy(PROJECT_ROOT / "dbt_project" / "target" / "partial_parse.msgpack", project / "target")
    env = {**os.environ, "ACTIVATION_DBT_PROJECT_DIR": str(project)}
    proc = subprocess.run(["dg", "check", "defs"], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / "target" / "manifest.json").exists(), "dg parsed the copy"
