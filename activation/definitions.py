"""The code location: dbt models, raw sources and destination syncs, assembled in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject, get_asset_key_for_model

from activation.orchestration import automation, partitions
from activation.orchestration.assets import build_partitioned_sync_assets, build_sync_assets
from activation.orchestration.dbt import build_dbt_assets, dbt_resource, load_manifest, model_relation, raw_source_specs
from activation.orchestration.dbt_component import UpstreamDbt
from activation.orchestration.resources import destination_resource, warehouse_resource
from activation.orchestration.review_job import build_review_job
from activation.orchestration.translation import TranslatedSyncTranslator, Translation
from activation.orchestration.translator import WAREHOUSE_RESOURCE, Mart, SyncTranslator, destination_resource_key
from activation.project import dbt_project
from activation.settings import Settings
from activation.syncs.masking import with_dbt_masks
from activation.syncs.model import MartRelation
from activation.syncs.spec import SyncConfig, SyncConfigError, load_sync_config

ACTIVATE_JOB = "activate"
DBT_JOB = "dbt_build"
DAILY_JOB = "activate_daily"


def build_definitions(
    settings: Settings,
    *,
    config: SyncConfig | None = None,
    translation: Translation | None = None,
    upstream_dbt: UpstreamDbt | None = None,
) -> dg.Definitions:
    """Everything from the settings: the dbt project, and the syncs of `settings.syncs_file` (or
    `config`, a component's inline syncs), their assets renamed by `translation` when given.
    With `upstream_dbt` (a dagster-dbt component that builds the models) no dbt asset is made here:
    the syncs depend on that component's keys and the jobs run its assets."""
    project = upstream_dbt.project if upstream_dbt else dbt_project(settings)
    manifest = load_manifest(project)
    config = with_dbt_masks(config or load_sync_config(settings.syncs_file), manifest)  # PII marked in dbt meta
    dbt = dbt_models_of(upstream_dbt, config, settings) if upstream_dbt else own_dbt_models(project, manifest)
    daily = dbt.daily

    marts: dict[str, Mart] = {}
    for sync in config.syncs.values():
        relation = model_relation(manifest, sync.source)
        if relation is None:
            raise SyncConfigError(
                f"{settings.syncs_file}: syncs.{sync.name}.source: dbt project {project.project_dir} "
                f"has no model {sync.source!r}"
            )
        marts[sync.source] = Mart(asset_key=dbt.key_of(sync.source), relation=MartRelation(*relation))

    # A database's URL, or an API's settings (its secrets are read only when its assets run).
    destinations = {
        name: destination_resource(name, spec, base_dir=settings.syncs_file.parent)
        for name, spec in config.destinations.items()
    }
    # every sync's asset, checks and metadata
    translator = (
        TranslatedSyncTranslator(config, marts, destinations, translation)
        if translation
        else SyncTranslator(config, marts, destinations)
    )
    sync_assets = build_sync_assets(translator)
    daily_syncs = build_partitioned_sync_assets(translator, daily)

    dbt_build = dbt.build
    dbt_job = dg.define_asset_job(DBT_JOB, selection=dbt_build, description="Build the dbt project.")
    daily_job = dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.assets(*dbt.daily_assets, *daily_syncs),
        description="Build the daily-partitioned dbt models for a day (or a backfill range), then sync those days.",
    )
    all_syncs = [*sync_assets, *daily_syncs]
    sync_keys = [key for assets in all_syncs for key in assets.keys]
    group_of = {key: assets.group_names_by_key[key] for assets in all_syncs for key in assets.keys}
    together = [
        {group_of[translator.get_asset_key(s)] for s in fk_group} for fk_group in automation.foreign_key_groups(config)
    ]
    return dg.Definitions(
        assets=[*dbt.assets, *sync_assets, *daily_syncs],
        jobs=[
            dg.define_asset_job(
                ACTIVATE_JOB,
                selection=dbt_build | dg.AssetSelection.assets(*sync_assets),
                description="Build the dbt project, then sync every mart into its destination tables.",
            ),
            dbt_job,
            # plan --against in the UI: an observation on each destination asset, under its key
            build_review_job({s.name: translator.get_asset_key(s) for s in config.syncs.values()}),
            *([daily_job] if dbt.daily_assets else []),
        ],
        schedules=[
            automation.dbt_schedule(dbt_job),
            *([automation.daily_schedule(daily_job)] if dbt.daily_assets else []),
        ],
        sensors=[
            *automation.automation_sensors(set(group_of.values()), together),
            automation.sync_failure_sensor(sync_keys, [assets.op.name for assets in all_syncs]),
        ],
        resources={
            # the dbt beside this interpreter, whatever PATH says (a dbt component brings its own)
            **({} if upstream_dbt else {"dbt": dbt_resource(project)}),
            WAREHOUSE_RESOURCE: warehouse_resource(settings),  # DuckDB, or BigQuery for the `bigquery` target
            **{destination_resource_key(name, config.destinations[name]): res for name, res in destinations.items()},
        },
    )


@dataclass(frozen=True)
class DbtModels:
    """The dbt side of the definitions: what it yields, what the dbt jobs build, the key of a mart."""

    assets: list[dg.AssetsDefinition | dg.AssetSpec]  # yielded here (none when a dbt component owns them)
    daily_assets: list[dg.AssetsDefinition]
    daily: dict[str, dg.DailyPartitionsDefinition]  # model -> its days
    build: dg.AssetSelection
    key_of: Callable[[str], dg.AssetKey]


def own_dbt_models(project: DbtProject, manifest: Mapping[str, Any]) -> DbtModels:
    """activation's own dbt assets: the models (the daily ones partitioned), their tests, the raw sources."""
    models = build_dbt_assets(project).map_asset_specs(automation.with_mart_freshness)
    daily = partitions.daily_models(manifest)
    daily_by_model = {
        model: partitions.build_daily_dbt_assets(project, model, pdef).map_asset_specs(automation.with_mart_freshness)
        for model, pdef in sorted(daily.items())
    }
    return DbtModels(
        assets=[*raw_source_specs(manifest), models, *daily_by_model.values()],
        daily_assets=list(daily_by_model.values()),
        daily=daily,
        # The dbt models and every dbt test, those on the raw sources included (they target assets
        # outside the selection, so they must be named to run as checks).
        build=dg.AssetSelection.assets(models) | dg.AssetSelection.checks(models),
        key_of=lambda model: get_asset_key_for_model([daily_by_model.get(model, models)], model),
    )


def dbt_models_of(upstream: UpstreamDbt, config: SyncConfig, settings: Settings) -> DbtModels:
    """The models of a dagster-dbt component: none yielded here, keys from its translator."""
    partitioned = sorted(s.name for s in config.syncs.values() if s.partition)
    if partitioned:
        raise SyncConfigError(
            f"{settings.syncs_file}: syncs {partitioned} are partitioned by day, which needs the daily dbt "
            f"assets activation builds itself; the dbt component {upstream.where} builds unpartitioned "
            "models. Set dbt_project instead of dbt_component, or drop `partition:`"
        )
    return DbtModels(
        assets=[], daily_assets=[], daily={}, build=upstream.selection, key_of=upstream.asset_key_for_model
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dg` and workspace.yaml load: the components of activation/defs (the demo's
    syncs, activation/defs/syncs/defs.yaml)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
