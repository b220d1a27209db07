"""dbt models as Dagster assets: clear keys, one group per layer, dbt tests as asset checks."""

import importlib.metadata
import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer

from activation.orchestration.resources import DuckDBWarehouse

RAW_GROUP_SUFFIX = "_raw"
# DuckDB admits one writer per file: dbt builds share a Dagster pool (limit 1 in the shipped
# dagster.yaml). Syncs sit in their destinations' pools; a sync waits on the file lock while dbt
# builds, and a build waits for syncs still reading (DuckDBWarehouse.wait_until_free).
WAREHOUSE_POOL = "duckdb_warehouse"
# Models tagged `daily` are partitioned by day and built by their own asset (activation.orchestration.partitions).
DAILY_TAG = "daily"
DBT_EXECUTABLE_ENV = "ACTIVATION_DBT_EXECUTABLE"


def dbt_executable() -> str:
    """The dbt every part of the project runs: $ACTIVATION_DBT_EXECUTABLE, else the one installed
    beside this interpreter, else dbt on PATH. A webserver or daemon started by its absolute path
    (systemd, containers) has no virtualenv on PATH, and dagster-dbt looks only there."""
    override = os.environ.get(DBT_EXECUTABLE_ENV)
    if override:
        found = shutil.which(override)
        if not found:
            raise ValueError(f"{DBT_EXECUTABLE_ENV}={override!r}: no such executable (a path, or a name on PATH)")
        return found
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        found = shutil.which("dbt", path=str(folder))
        if found:
            return found
    return shutil.which("dbt") or "dbt"  # not found: DbtCliResource says what to install


class DbtCli(DbtCliResource):
    """dagster-dbt's resource (built by `dbt_resource`), without the `dbt --version` subprocess
    it starts in every run to learn dbt's version (5 s on this machine: dbt imports every
    installed adapter to print it). When the executable is the `dbt` installed beside this
    interpreter, its version is the installed dbt-core's."""

    @cached_property
    def _cli_version(self):
        found = shutil.which(self.dbt_executable)
        if found and Path(found).parent == Path(sys.executable).parent:
            from packaging.version import Version

            return Version(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)


def dbt_resource(project: DbtProject) -> DbtCli:
    return DbtCli(project_dir=project, dbt_executable=dbt_executable())


class InterpreterDbtPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (`dbt deps`, `dbt parse`, under its lock against concurrent
    loads), running `dbt_executable()`: its own builds a resource that looks on PATH only."""

    def _prepare_packages(self, project: DbtProject) -> None:
        dbt_resource(project).cli(["deps", "--quiet"], target_path=project.target_path).wait()

    def _prepare_manifest(self, project: DbtProject) -> None:
        dbt_resource(project).cli(self._prepare_project_cli_args, target_path=project.target_path).wait()
        self._invalidate_seeds_in_partial_parse(project)


class ActivationTranslator(DagsterDbtTranslator):
    """Models are keyed by name (unique, and prefixed by layer: stg_, dim_, app_ ...), not by schema;
    groups follow the project's folders: `staging`, and `<folder>_marts` under models/marts."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props.get("resource_type") == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props.get("resource_type") == "source":
            return f"{dbt_resource_props['source_name']}{RAW_GROUP_SUFFIX}"
        if len(fqn) > 2 and fqn[1] == "marts":
            return f"{fqn[2]}_marts"
        return fqn[1] if len(fqn) > 2 else "dbt"


# Source tests become asset checks on the raw tables (severity `error` => blocking, like model
# tests); the dbt build that reads a source runs them.
TRANSLATOR = ActivationTranslator(
    settings=DagsterDbtTranslatorSettings(enable_code_references=True, enable_source_tests_as_checks=True)
)


def ensure_manifest(project: DbtProject) -> Path:
    """Parse the dbt project when no manifest exists yet, so a fresh clone loads without a manual step."""
    if not project.manifest_path.exists():
        InterpreterDbtPreparer().prepare(project)
    return project.manifest_path


@cache
def _load_manifest(path: Path, mtime: float) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_manifest(project: DbtProject) -> dict[str, Any]:
    path = ensure_manifest(project)
    return _load_manifest(path, path.stat().st_mtime)


def build_dbt_assets(project: DbtProject) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=ensure_manifest(project),
        project=project,
        exclude=f"tag:{DAILY_TAG}",
        dagster_dbt_translator=TRANSLATOR,
        pool=WAREHOUSE_POOL,
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ConfigurableResource):
        if isinstance(warehouse, DuckDBWarehouse):
            # dbt's profiles.yml reads this variable: dbt builds exactly the warehouse the syncs read.
            os.environ["ACTIVATION_WAREHOUSE_PATH"] = warehouse.path
            warehouse.wait_until_free(context.log.info)  # a sync of another run may still read the marts
        yield from dbt.cli(["build"], context=context).stream().fetch_row_counts().fetch_column_metadata()

    return dbt_models


def raw_source_specs(manifest: Mapping[str, Any]) -> list[dg.AssetSpec]:
    """The lake's raw tables, shown upstream of staging; loaded by the EL tool, not by us."""
    specs = []
    for source in manifest["sources"].values():
        specs.append(
            dg.AssetSpec(
                key=TRANSLATOR.get_asset_key(source),
                description=source.get("description") or f"Raw {source['source_name']}.{source['name']}",
                group_name=TRANSLATOR.get_group_name(source),
                kinds={source["source_name"]},
                metadata={"dagster/table_name": f"{source['schema']}.{source['identifier']}"},
            )
        )
    return specs


def model_relation(manifest: Mapping[str, Any], model_name: str) -> tuple[str, str] | None:
    """(schema, table) of a dbt model in the warehouse, or None when the project has no such model."""
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "seed", "snapshot") and node["name"] == model_name:
            return node["schema"], node.get("alias") or node["name"]
    return None
