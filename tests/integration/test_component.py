"""`activation.components.ActivationSyncs`: `dg` lists it, scaffolds it into a fresh project against
the demo's dbt project and loads it; the demo's code location, loaded through it, is the one
`build_definitions` makes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from activation.definitions import build_definitions, defs
from activation.settings import PROJECT_ROOT, Settings

TYPE = "activation.components.ActivationSyncs"
PYPROJECT = """\
[project]
name = "newproj"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "newproj"
"""
DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""
TRANSLATION = """\
  translation:
    key: "apps/{{ sync.destination }}/{{ sync.table }}"
    group_name: "{{ sync.destination }}_tables"
    description: "{{ sync.table }} from {{ sync.source }}"
"""


# A team's own dbt component, its keys renamed: the syncs must depend on the renamed keys.
DBT_COMPONENT = """\
type: dagster_dbt.DbtProjectComponent
attributes:
  project: "{{ context.project_root }}/dbt_project"
  translation:
    key_prefix: warehouse
  prepare_if_dev: false  # its manifest is parsed already (copied): no dbt parse under dg
"""


def dg_cli(project: Path, *args: str) -> str:
    bin_dir = str(Path(sys.executable).parent)  # this virtualenv's dg, with activation installed
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    for var in ("ACTIVATION_SYNCS_FILE", "ACTIVATION_DBT_PROJECT_DIR", "ACTIVATION_WAREHOUSE_PATH"):
        env.pop(var, None)  # the new project says where everything is
    proc = subprocess.run(["dg", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_dg_scaffolds_the_component_in_a_fresh_project_and_loads_it(prepared_project, warehouse, tmp_path, monkeypatch):
    project = tmp_path / "newproj"
    (project / "newproj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "newproj" / "__init__.py").touch()
    (project / "newproj" / "defs" / "__init__.py").touch()
    (project / "newproj" / "definitions.py").write_text(DEFINITIONS)
    # The demo's dbt project, parsed (target/manifest.json) so the starter can pick a keyed model.
    shutil.copytree(PROJECT_ROOT / "dbt_project", project / "dbt_project", ignore=shutil.ignore_patterns("logs"))

    listed = json.loads(dg_cli(project, "list", "components", "--json"))
    assert TYPE in {c["key"] for c in listed["items"]}

    dg_cli(project, "scaffold", "defs", TYPE, "syncs", "--dbt-project", "dbt_project")
    folder = project / "newproj" / "defs" / "syncs"
    written = (folder / "defs.yaml").read_text()
    assert "dbt_component: ../dbt" in written, "its comments say how to point at a dbt component"
    assert f"type: {TYPE}" in written and "dbt_project: '{{ context.project_root }}/dbt_project'" in written
    starter = (folder / "syncs.yml").read_text()
    assert "source: app_applications" in starter and "primary_key: application_id" in starter, starter
    (folder / "defs.yaml").write_text(written + TRANSLATION)

    found = json.loads(dg_cli(project, "list", "defs", "--json"))
    assets = {a["asset_key"]: a for a in found["assets"]}
    synced = assets["apps/app/app_applications"]  # the starter's sync, renamed by the translation
    assert synced["group_name"] == "app_tables"
    assert synced["description"] == "app_applications from app_applications"
    assert synced["dependency_keys"] == ["app_applications"], "it reads the dbt model of the demo's project"
    type_line = written.splitlines().index(f"type: {TYPE}") + 1  # below the comments on dbt_component
    assert synced["source"] == f"newproj/defs/syncs/defs.yaml:{type_line}"
    assert {"app_applications", "salesforce/application__c"} <= set(assets), "dbt models and raw sources"
    checks = {c["key"] for c in found["asset_checks"]}
    assert "apps/app/app_applications:row_count_matches_mart" in checks, "the checks follow the renamed asset"
    assert "app_applications:unique_app_applications_application_id" in checks, "dbt tests are checks"
    assert {j["name"] for j in found["jobs"]} == {"activate", "dbt_build", "activate_daily", "review_pull_request"}
    # one automation sensor per group of destination tables: the translated group's
    assert {s["name"] for s in found["sensors"]} == {"app_tables_automation", "sync_failure_alerts"}

    # The same syncs over a dagster-dbt component that renames the models' keys (dbt_component).
    (project / "newproj" / "defs" / "dbt").mkdir()
    (project / "newproj" / "defs" / "dbt" / "defs.yaml").write_text(DBT_COMPONENT)
    on_dbt = written.replace("dbt_project: '{{ context.project_root }}/dbt_project'", "dbt_component: ../dbt")
    (folder / "defs.yaml").write_text(on_dbt + TRANSLATION)
    found = json.loads(dg_cli(project, "list", "defs", "--json"))
    keys = [a["asset_key"] for a in found["assets"]]
    assert len(keys) == len(set(keys)), "no key is defined twice"
    assets = {a["asset_key"]: a for a in found["assets"]}
    # dagster-dbt's default key (folder/model) under the component's prefix
    assert assets["apps/app/app_applications"]["dependency_keys"] == ["warehouse/app/app_applications"]
    assert "dbt" in assets["warehouse/app/app_applications"]["kinds"]
    assert "app_applications" not in assets, "the syncs yield no dbt asset of their own"
    assert {j["name"] for j in found["jobs"]} == {"activate", "dbt_build", "review_pull_request"}

    # Loaded in process, the activate job selects the renamed models and syncs one into SQLite.
    for var in ("ACTIVATION_SYNCS_FILE", "ACTIVATION_DBT_PROJECT_DIR", "ACTIVATION_WAREHOUSE_PATH"):
        monkeypatch.delenv(var, raising=False)
    (project / "data").mkdir()
    shutil.copy(warehouse, project / "data" / "warehouse.duckdb")  # the marts, built
    monkeypatch.syspath_prepend(str(project))
    from dagster.components.core.component_tree import ComponentTree

    loaded = ComponentTree.for_project(project).build_defs()
    job = loaded.resolve_job_def("activate")
    assert dg.AssetKey(["warehouse", "app", "app_applications"]) in job.asset_layer.selected_asset_keys
    synced_key = dg.AssetKey(["apps", "app", "app_applications"])
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=[synced_key])
    assert result.success
    with duckdb.connect(str(project / "data" / "warehouse.duckdb"), read_only=True) as con:
        marts = con.execute("select count(*) from main_app.app_applications").fetchone()[0]
    with sqlite3.connect(folder / "app.sqlite") as app:
        assert app.execute("select count(*) from app_applications").fetchone()[0] == marts > 0


def test_the_demo_loads_through_the_component_with_everything_build_definitions_makes(settings):
    through_component = defs()  # activation/defs/syncs/defs.yaml
    direct = build_definitions(Settings.from_env())

    def described(d: dg.Definitions) -> dict:
        graph = d.resolve_asset_graph()
        assets = {
            key.to_user_string(): (
                graph.get(key).group_name,
                sorted(k.to_user_string() for k in graph.get(key).parent_keys),
                sorted(graph.get(key).kinds),
                repr(graph.get(key).freshness_policy),
                graph.get(key).pools,
            )
            for key in graph.get_all_asset_keys()
        }
        return {
            "assets": assets,
            "checks": sorted(str(k) for k in graph.asset_check_keys),
            "jobs": sorted(j.name for j in d.resolve_all_job_defs()),
            "schedules": sorted(s.name for s in d.schedules),
            "sensors": sorted(s.name for s in d.sensors),
        }

    mine, theirs = described(through_component), described(direct)
    assert mine == theirs
    assert mine["assets"]["app/facilities"][4] == {"activation/app"}, "destination tables sit in their pools"
    assert mine["assets"]["app_facilities"][4] == {"duckdb_warehouse"}, "dbt keeps the warehouse's pool"


def test_inline_syncs_and_a_key_prefix_in_process(settings, tmp_path):
    """`syncs:` inline instead of a file; `translation.key_prefix` renames every table and its checks."""
    from dagster.components.testing import create_defs_folder_sandbox

    from activation.components import ActivationSyncs

    attributes = {
        "dbt_project": str(settings.dbt_project_dir),
        "warehouse_path": str(settings.warehouse_path),
        "syncs": {
            "destinations": {"app": {"url_env": "INLINE_APP_URL", "default_url": f"sqlite:///{tmp_path}/app.sqlite"}},
            "syncs": {
                "facilities": {
                    "source": "app_facilities",
                    "destination": "app",
                    "table": "facilities",
                    "primary_key": "facility_id",
                }
            },
        },
        "translation": {"key_prefix": "prod", "group_name": "apps"},
    }
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(ActivationSyncs, defs_yaml_contents={"type": TYPE, "attributes": attributes})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, built):
            assert isinstance(component, ActivationSyncs)
            graph = built.resolve_asset_graph()
            node = graph.get(dg.AssetKey(["prod", "app", "facilities"]))
            assert node.group_name == "apps" and dg.AssetKey("app_facilities") in node.parent_keys
            assert node.pools == {"activation/app"}
            checks = {k.name for k in graph.asset_check_keys if k.asset_key == node.key}
            assert {"row_count_matches_mart", "mart_keys_not_null_and_unique"} <= checks, checks
            assert {s.name for s in built.sensors} == {"apps_automation", "sync_failure_alerts"}


def test_the_cli_syncs_by_the_keys_a_dbt_component_and_a_translation_give(settings, tmp_path, monkeypatch):
    """`activation sync` selects the sync's asset under its translated key, downstream of the
    renamed dbt key, in the code location the command line loads."""
    from dagster.components.testing import create_defs_folder_sandbox

    from activation.cli import EXIT_OK, common, main

    syncs_file = tmp_path / "syncs.yml"  # read by the command line and the component alike
    syncs_file.write_text(
        "destinations: {app: {url_env: ACTIVATION_APP_DB_URL}}\n"
        "syncs: {facilities: {source: app_facilities, destination: app, table: facilities, primary_key: facility_id}}\n"
    )
    monkeypatch.setenv("ACTIVATION_SYNCS_FILE", str(syncs_file))
    monkeypatch.setenv("ACTIVATION_APP_DB_URL", f"sqlite:///{tmp_path / 'app.sqlite'}")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    dbt = {
        "project": str(settings.dbt_project_dir),
        "translation": {"key_prefix": "warehouse"},
        "prepare_if_dev": False,
    }
    syncs = {"dbt_component": "../dbt", "translation": {"key_prefix": "prod"}}
    with create_defs_folder_sandbox() as sandbox:
        for folder, contents in (("dbt", {"type": "dagster_dbt.DbtProjectComponent", "attributes": dbt}),
                                 ("syncs", {"type": TYPE, "attributes": syncs})):  # fmt: skip
            (sandbox.defs_folder_path / folder).mkdir()
            (sandbox.defs_folder_path / folder / "defs.yaml").write_text(json.dumps(contents))
        with sandbox.build_all_defs() as built:
            key = dg.AssetKey(["prod", "app", "facilities"])
            assert built.resolve_asset_graph().get(key).parent_keys == {
                dg.AssetKey(["warehouse", "app", "app_facilities"])
            }
            monkeypatch.setattr(common, "code_location", lambda: built)
            assert main(["sync", "facilities"]) == EXIT_OK
    home = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    assert home.get_latest_materialization_event(key) is not None, "materialized under the translated key"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        marts = con.execute("select count(*) from main_app.app_facilities").fetchone()[0]
    with sqlite3.connect(tmp_path / "app.sqlite") as app:
        assert app.execute("select count(*) from facilities").fetchone()[0] == marts > 0
