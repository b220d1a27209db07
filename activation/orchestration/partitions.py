"""Time-partitioned flows: a daily dbt model and the destination table it feeds, day by day.

A dbt model tagged `daily` (with `meta: {partition_start: YYYY-MM-DD}`) becomes a daily-
partitioned asset: Dagster passes the partition window to dbt as vars (`min_date` inclusive,
`max_date` exclusive) and the model replaces exactly those days. A sync with
`partition: {column: event_date}` reads such a mart and, for every day of the window, mirrors
that day's rows into the app table within the scope `event_date = <day>`: rows of other days
are never touched, and re-running a day converges to the mart's rows of that day.

A backfill of a date range runs as one run (`BackfillPolicy.single_run()`): dbt builds the
whole window at once, and the sync applies it one day (one transaction) at a time: each day is a
scope of the one sync flow (activation.orchestration.execute).
"""

import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from activation.orchestration.dbt import DAILY_TAG, TRANSLATOR, WAREHOUSE_POOL, ensure_manifest
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.spec import SyncConfigError

PARTITION_START_META = "partition_start"


def daily_models(manifest: Mapping[str, Any]) -> dict[str, dg.DailyPartitionsDefinition]:
    """dbt models tagged `daily`, with their partitions (from `meta.partition_start`)."""
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or DAILY_TAG not in node.get("tags", []):
            continue
        meta = {**node.get("meta", {}), **node.get("config", {}).get("meta", {})}
        start = meta.get(PARTITION_START_META)
        if not start:
            raise SyncConfigError(
                f"dbt model {node['name']} is tagged {DAILY_TAG!r} but has no meta.{PARTITION_START_META}"
            )
        out[node["name"]] = dg.DailyPartitionsDefinition(start_date=str(start), timezone="UTC")
    return out


def dbt_window_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    window = context.partition_time_window
    return {"min_date": window.start.date().isoformat(), "max_date": window.end.date().isoformat()}


def build_daily_dbt_assets(
    project: DbtProject, model: str, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """One asset per daily model (each has its own first day)."""

    @dbt_assets(
        manifest=ensure_manifest(project),
        project=project,
        select=f"tag:{DAILY_TAG},{model}",
        name=f"dbt_{model}",
        dagster_dbt_translator=TRANSLATOR,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: DuckDBWarehouse):
        os.environ["ACTIVATION_WAREHOUSE_PATH"] = warehouse.path
        warehouse.wait_until_free(context.log.info)  # a sync of another run may still read the marts
        args = ["build", "--vars", json.dumps(dbt_window_vars(context))]
        # No fetch_row_counts(): it leaves a DuckDB handle open in this process, which an
        # in-process run's sync step (same process) could not open read-only.
        yield from dbt.cli(args, context=context).stream()

    return _build


def days(context: dg.AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(key) for key in context.partition_keys]
