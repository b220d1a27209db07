"""`dg scaffold defs activation.components.ActivationSyncs <path> [--dbt-project DIR]`: a defs.yaml
and a starter syncs.yml beside it.

The starter syncs one model of the dbt project into a local SQLite file, so the new component
loads at once: the first model (by name) whose key dbt tests as `unique` and `not_null`, since a
sync's key must come from the mart. Without a parsed project it has no syncs, and says how to add one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from dagster.components.component.component_scaffolder import Scaffolder
from dagster.components.component_scaffolding import scaffold_component
from dagster.components.scaffold.scaffold import ScaffoldRequest
from pydantic import BaseModel

STARTER_HEADER = """\
# What goes where: each sync copies one dbt model into one destination table (README, "Declaring a sync").
# URLs with passwords stay in the environment (url_env); default_url is for local files only.
"""


DEFS_HEADER = """\
# Reverse ETL syncs of dbt marts (README, "As a Dagster component").
# dbt_project: activation builds the dbt models itself. If a dagster_dbt.DbtProjectComponent of this
# defs/ tree builds them already, replace it with `dbt_component: ../dbt` (that component's folder,
# relative to this file): the syncs then depend on the keys its translation gives the models.
# warehouse_path: the DuckDB file dbt's profile writes and the syncs read.
"""


class ActivationSyncsParams(BaseModel):
    dbt_project: str | None = None  # the dbt project's folder; relative to where dg runs


class ActivationSyncsScaffolder(Scaffolder[ActivationSyncsParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[ActivationSyncsParams]:
        return ActivationSyncsParams

    def scaffold(self, request: ScaffoldRequest[ActivationSyncsParams]) -> None:
        # The DuckDB warehouse in the new project's data/, not in activation's own folder.
        attributes = {"syncs_file": "syncs.yml", "warehouse_path": "{{ context.project_root }}/data/warehouse.duckdb"}
        project_dir = Path(request.params.dbt_project).resolve() if request.params.dbt_project else None
        if project_dir is not None:
            root = (request.project_root or Path.cwd()).resolve()
            attributes["dbt_project"] = "{{ context.project_root }}/" + os.path.relpath(project_dir, root)
        scaffold_component(request, attributes)
        defs_yaml = request.target_path / "defs.yaml"
        defs_yaml.write_text(DEFS_HEADER + defs_yaml.read_text(encoding="utf-8"), encoding="utf-8")
        starter = starter_syncs(project_dir)
        (request.target_path / "syncs.yml").write_text(STARTER_HEADER + yaml.safe_dump(starter, sort_keys=False))


def starter_syncs(project_dir: Path | None) -> dict:
    config: dict = {
        "destinations": {"app": {"url_env": "APP_DB_URL", "default_url": "sqlite:///app.sqlite"}},
        "syncs": {},
    }
    model = keyed_model(project_dir) if project_dir else None
    if model is not None:
        name, key = model
        config["syncs"][name] = {
            "source": name,
            "destination": "app",
            "table": name,
            "primary_key": key,
            "mode": "mirror",
        }
    return config


def keyed_model(project_dir: Path) -> tuple[str, str] | None:
    """(model, column) of the first model whose column dbt tests unique and not null, from target/manifest.json."""
    manifest = project_dir / "target" / "manifest.json"
    if not manifest.exists():
        return None
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values()
    tested: dict[tuple[str, str], set[str]] = {}
    for node in nodes:
        meta = node.get("test_metadata") or {}
        column, parents = node.get("column_name"), node.get("depends_on", {}).get("nodes", [])
        if node["resource_type"] == "test" and column and meta.get("name") in {"unique", "not_null"}:
            for parent in parents:
                if parent.startswith("model."):
                    tested.setdefault((parent.split(".")[-1], column), set()).add(meta["name"])
    keyed = sorted(k for k, tests in tested.items() if tests == {"unique", "not_null"})
    return keyed[0] if keyed else None
