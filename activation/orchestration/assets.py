"""Destination tables as Dagster assets, built from the translator.

One multi-asset per destination: every table is its own asset (own history, checks,
automation), while a run that selects several tables of one destination applies them in one
transaction in foreign-key order. A daily-partitioned sync is an asset of its own, partitioned
like its mart (activation.orchestration.partitions); one run covers any range of days. Both run
the same flow (activation.orchestration.execute).
"""

# No `from __future__ import annotations`: Dagster reads the run config class from the annotation.
from collections.abc import Mapping

import dagster as dg

from activation.orchestration import execute
from activation.orchestration.translator import WAREHOUSE_RESOURCE, SyncTranslator
from activation.syncs.spec import SyncConfigError, SyncSpec

# Writes into one destination are kept apart across runs by a pool per destination (limit 1 in
# the demo's dagster.yaml); syncs into different destinations run in parallel. The op tag names
# the destination for executors that ignore pools (Kubernetes' tag_concurrency_limits, docs/deploy.md).
DESTINATION_TAG = "activation/destination"


def destination_pool(destination: str) -> str:
    return f"activation/{destination}"


class SyncRunConfig(dg.Config):
    """Per-run options, set in the launchpad."""

    full_resync: bool = False  # compare every row with the destination (repairs edits made there)


def build_sync_assets(translator: SyncTranslator) -> list[dg.AssetsDefinition]:
    """One subsettable multi-asset per destination, for its syncs that are not partitioned."""
    assets = []
    for destination in translator.config.destinations:
        ordered = [s for s in translator.config.load_order() if s.destination == destination and not s.partition]
        if ordered:
            assets.append(_destination_asset(translator, destination, ordered))
    return assets


def build_partitioned_sync_assets(
    translator: SyncTranslator, partitions_defs: Mapping[str, dg.PartitionsDefinition]
) -> list[dg.AssetsDefinition]:
    """One asset per partitioned sync, partitioned like its mart."""
    out = []
    for sync in translator.config.load_order():
        if not sync.partition:
            continue
        if sync.source not in partitions_defs:
            raise SyncConfigError(
                f"syncs.{sync.name}.partition: mart {sync.source} is not a daily-partitioned dbt model "
                "(tag it `daily` with meta.partition_start)"
            )
        out.append(_partitioned_asset(translator, sync, partitions_defs[sync.source]))
    return out


def _destination_asset(translator: SyncTranslator, destination: str, ordered: list[SyncSpec]) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"sync_{destination}",
        specs=[translator.get_asset_spec(s) for s in ordered],
        check_specs=[c for s in ordered for c in translator.get_check_specs(s)],
        can_subset=True,
        pool=destination_pool(destination),
        op_tags={DESTINATION_TAG: destination},
        required_resource_keys={translator.get_resource_key(ordered[0]), WAREHOUSE_RESOURCE},
    )
    def _sync(context: dg.AssetExecutionContext, config: SyncRunConfig):
        selected = [s for s in ordered if translator.get_asset_key(s) in context.selected_asset_keys]
        yield from execute.run(context, translator, selected, full_resync=config.full_resync)

    return _sync


def _partitioned_asset(
    translator: SyncTranslator, sync: SyncSpec, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"sync_{sync.destination}_{sync.table}",
        specs=[translator.get_asset_spec(sync).replace_attributes(partitions_def=partitions_def)],
        check_specs=translator.get_check_specs(sync),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=destination_pool(sync.destination),
        op_tags={DESTINATION_TAG: sync.destination},
        required_resource_keys={translator.get_resource_key(sync), WAREHOUSE_RESOURCE},
    )
    def _sync(context: dg.AssetExecutionContext):
        yield from execute.run(context, translator, [sync], full_resync=False)

    return _sync
