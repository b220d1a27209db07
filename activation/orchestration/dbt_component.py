"""dbt models built by a dagster-dbt `DbtProjectComponent` elsewhere in the defs/ tree, instead of
by activation's own dbt assets.

A team that already has a dbt component (its keys renamed by its `translation`, its own select,
its own schedule) points the syncs at it: the syncs depend on the keys that component's
translator gives the marts, read the manifest of its project, and yield no dbt asset of their
own, so no key is defined twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtProject, DbtProjectComponent


@dataclass(frozen=True)
class UpstreamDbt:
    """What the definitions need of a dbt project they do not build."""

    project: DbtProject
    asset_key_for_model: Callable[[str], dg.AssetKey]  # the key the owner gives a model
    selection: dg.AssetSelection  # every asset the owner builds: the `activate` and `dbt_build` jobs run them
    where: str  # the owner's defs.yaml, for error messages


def load_dbt_component(context: dg.ComponentLoadContext, path: Path) -> UpstreamDbt:
    """The DbtProjectComponent declared at `path` (a folder of the same defs/ tree)."""
    where = path / "defs.yaml"
    if not path.is_dir():
        raise dg.DagsterInvalidDefinitionError(
            f"{context.path / 'defs.yaml'}: dbt_component: {path} is not a folder of the defs/ tree "
            f"({context.defs_module_path}); give the folder of the dbt component's defs.yaml"
        )
    component = context.load_component(path)
    if not isinstance(component, DbtProjectComponent):
        raise dg.DagsterInvalidDefinitionError(
            f"{context.path / 'defs.yaml'}: dbt_component: {where} declares a {type(component).__name__}, "
            "not a dagster_dbt.DbtProjectComponent"
        )
    # What it builds, from its own Definitions (the tree builds them once): dagster-dbt's
    # get_asset_selection cannot resolve when the component's translator enables code references.
    built = [a for a in context.build_defs(path).assets or [] if isinstance(a, dg.AssetsDefinition)]
    return UpstreamDbt(
        project=component.dbt_project,
        asset_key_for_model=component.asset_key_for_model,
        selection=dg.AssetSelection.assets(*built) | dg.AssetSelection.checks(*built),
        where=str(where),
    )
