"""The code location: dbt models, raw sources and destination syncs, assembled in one place."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from activation.orchestration import automation, partitions
from activation.orchestration.assets import build_partitioned_sync_assets, build_sync_assets
from activation.orchestration.dbt import build_dbt_assets, dbt_resource, load_manifest, model_relation, raw_source_specs
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
    settings: Settings, *, config: SyncConfig | None = None, translation: Translation | None = None
) -> dg.Definitions:
    """Everything from the settings: the dbt project, and the syncs of `settings.syncs_file` (or
    `config`, a component's inline syncs), their assets renamed by `translation` when given."""
    project = dbt_project(settings)
    manifest = load_manifest(project)
    dbt_models = build_dbt_assets(project).map_asset_specs(automation.with_mart_freshness)
    daily = partitions.daily_models(manifest)
    daily_dbt_by_model = {
        model: partitions.build_daily_dbt_assets(project, model, pdef).map_asset_specs(automation.with_mart_freshness)
        for model, pdef in sorted(daily.items())
    }
    daily_dbt = list(daily_dbt_by_model.values())
    config = with_dbt_masks(config or load_sync_config(settings.syncs_file), manifest)  # PII marked in dbt meta

    marts: dict[str, Mart] = {}
    for sync in config.syncs.values():
        relation = model_relation(manifest, sync.source)
        if relation is None:
            raise SyncConfigError(
                f"{settings.syncs_file}: syncs.{sync.name}.source: dbt project {settings.dbt_project_dir} "
                f"has no model {sync.source!r}"
            )
        marts[sync.source] = Mart(
            asset_key=get_asset_key_for_model([daily_dbt_by_model.get(sync.source, dbt_models)], sync.source),
            relation=MartRelation(*relation),
        )

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

    # The dbt models and every dbt test, those on the raw sources included (they target assets
    # outside the selection, so they must be named to run as checks).
    dbt_build = dg.AssetSelection.assets(dbt_models) | dg.AssetSelection.checks(dbt_models)
    dbt_job = dg.define_asset_job(DBT_JOB, selection=dbt_build, description="Build the dbt project.")
    daily_job = dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.assets(*daily_dbt, *daily_syncs),
        description="Build the daily-partitioned dbt models for a day (or a backfill range), then sync those days.",
    )
    all_syncs = [*sync_assets, *daily_syncs]
    sync_keys = [key for assets in all_syncs for key in assets.keys]
    group_of = {key: assets.group_names_by_key[key] for assets in all_syncs for key in assets.keys}
    together = [
        {group_of[translator.get_asset_key(s)] for s in fk_group} for fk_group in automation.foreign_key_groups(config)
    ]
    return dg.Definitions(
        assets=[*raw_source_specs(manifest), dbt_models, *daily_dbt, *sync_assets, *daily_syncs],
        jobs=[
            dg.define_asset_job(
                ACTIVATE_JOB,
                selection=dbt_build | dg.AssetSelection.assets(*sync_assets),
                description="Build the dbt project, then sync every mart into its destination tables.",
            ),
            dbt_job,
            # plan --against in the UI: an observation on each destination asset, under its key
            build_review_job({s.name: translator.get_asset_key(s) for s in config.syncs.values()}),
            *([daily_job] if daily_dbt else []),
        ],
        schedules=[automation.dbt_schedule(dbt_job), *([automation.daily_schedule(daily_job)] if daily_dbt else [])],
        sensors=[
            *automation.automation_sensors(set(group_of.values()), together),
            automation.sync_failure_sensor(sync_keys, [assets.op.name for assets in all_syncs]),
        ],
        resources={
            "dbt": dbt_resource(project),  # the dbt beside this interpreter, whatever PATH says
            WAREHOUSE_RESOURCE: warehouse_resource(settings),  # DuckDB, or BigQuery for the `bigquery` target
            **{destination_resource_key(name, config.destinations[name]): res for name, res in destinations.items()},
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dg` and workspace.yaml load: the components of activation/defs (the demo's
    syncs, activation/defs/syncs/defs.yaml)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
