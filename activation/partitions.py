"""Time-partitioned flows: a daily dbt model and the destination table it feeds, day by day.

A dbt model tagged `daily` (with `meta: {partition_start: YYYY-MM-DD}`) becomes a daily-
partitioned asset: Dagster passes the partition window to dbt as vars (`min_date` inclusive,
`max_date` exclusive) and the model replaces exactly those days. A sync with
`partition: {column: event_date}` reads such a mart and, for every day of the window, mirrors
that day's rows into the app table within the scope `event_date = <day>`: rows of other days
are never touched, and re-running a day converges to the mart's rows of that day.

A backfill of a date range runs as one run (`BackfillPolicy.single_run()`): dbt builds the
whole window at once, and the sync applies it one day (one transaction) at a time.
"""

import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from activation import checks
from activation.dbt import DAILY_TAG, TRANSLATOR, WAREHOUSE_POOL, ensure_manifest
from activation.destinations.sql import SqlDestination
from activation.resources import DuckDBWarehouse, destination_identity
from activation.syncs.model import MartRelation
from activation.syncs.results import GuardTripped, SyncResult
from activation.syncs.spec import SyncConfigError, SyncSpec

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
        args = ["build", "--vars", json.dumps(dbt_window_vars(context))]
        # No fetch_row_counts(): it leaves a DuckDB handle open in this process, which an
        # in-process run's sync step (same process) could not open read-only.
        yield from dbt.cli(args, context=context).stream()

    return _build


def days(context: dg.AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def build_partitioned_sync_asset(
    sync: SyncSpec,
    spec: dg.AssetSpec,
    relation: MartRelation,
    partitions_def: dg.PartitionsDefinition,
    resource_key: str,
    warehouse_key: str,
) -> dg.AssetsDefinition:
    """The destination table of a partitioned sync; one run covers any range of days."""
    key = spec.key
    column = sync.partition.column

    @dg.multi_asset(
        name=f"sync_{sync.destination}_{sync.table}",
        specs=[spec.replace_attributes(partitions_def=partitions_def)],
        check_specs=checks.check_specs(sync, key),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        required_resource_keys={resource_key, warehouse_key},
    )
    def _sync(context: dg.AssetExecutionContext):
        target = getattr(context.resources, resource_key)
        warehouse = getattr(context.resources, warehouse_key)
        wanted = {k.name for k in context.selected_asset_check_keys}
        engine = target.engine()
        window = days(context)
        context.log.info(
            f"syncing {sync.table} for {window[0]}..{window[-1]} ({len(window)} days) into {target.masked_url}"
        )
        with warehouse.open(sync.destination, destination_identity(target.url), log=context.log.info) as planner:
            daily = []
            for day in window:
                view = planner.filtered(relation, column, day, f"_activation_{sync.name}_{day:%Y%m%d}")
                day_spec = sync.model_copy(update={"scope": {column: day}})
                daily.append((day, day_spec, view))
            plans = {day: planner.describe(s, r) for day, s, r in daily}

            pre = checks.PreWriteChecks(planner, engine)
            outcomes: dict[str, list[tuple[dt.date, checks.CheckOutcome]]] = {}
            for day, _, _ in daily:
                for outcome in pre.run(plans[day]):
                    outcomes.setdefault(outcome.name, []).append((day, outcome))
            failed = [o.summary for results in outcomes.values() for _, o in results if not o.passed]
            for name, results in outcomes.items():
                if name in wanted:
                    yield _combined(name, results).result(key)
            if failed:
                raise dg.Failure(
                    description="blocking checks failed before the write; nothing was written: " + " | ".join(failed)
                )

            results: list[tuple[dt.date, SyncResult]] = []
            for day, day_spec, day_relation in daily:
                try:
                    # Every row of the day is compared: per-day state would be overwritten by the next day.
                    (result,) = SqlDestination(engine).sync(
                        planner, [day_spec], {sync.name: day_relation}, full_resync=True, log=context.log.info
                    )
                except GuardTripped as exc:
                    outcome = checks.guard_outcomes([day_spec], None, exc)[sync.table]
                    if checks.GUARDS in wanted:
                        yield outcome.result(key)
                    written = ", ".join(str(d) for d, _ in results) or "none"
                    raise dg.Failure(description=f"{day}: {exc} Days already written: {written}.") from exc
                results.append((day, result))

            yield _materialization(key, sync, results)
            post = checks.PostWriteChecks(planner, engine)
            post_outcomes: dict[str, list[tuple[dt.date, checks.CheckOutcome]]] = {}
            for (day, result), (_, day_spec, _) in zip(results, daily, strict=True):
                guard = checks.guard_outcomes([day_spec], [result], None)[sync.table]
                post_outcomes.setdefault(guard.name, []).append((day, guard))
                for outcome in post.run(plans[day], result, wanted, scope=day_spec.scope):
                    post_outcomes.setdefault(outcome.name, []).append((day, outcome))
            for name, day_results in post_outcomes.items():
                if name in wanted:
                    yield _combined(name, day_results).result(key)

    return _sync


def _combined(name: str, results: list[tuple[dt.date, checks.CheckOutcome]]) -> checks.CheckOutcome:
    """One check result for a run over several days: it fails when any day failed."""
    failed = [(d, o) for d, o in results if not o.passed]
    shown = failed or results
    day, first = shown[0]
    metadata = dict(first.metadata)
    metadata["days_checked"] = len(results)
    metadata["days_failed"] = dg.MetadataValue.json([str(d) for d, _ in failed])
    metadata["by_day"] = checks.markdown_table(
        ["day", "passed", "summary"], [(str(d), "yes" if o.passed else "**no**", o.summary) for d, o in results]
    )
    summary = f"{day}: {first.summary}" if len(results) > 1 else first.summary
    if len(failed) > 1:
        summary += f" (and {len(failed) - 1} more day(s))"
    return checks.CheckOutcome(name, not failed, summary, metadata)


def _materialization(
    key: dg.AssetKey, sync: SyncSpec, results: list[tuple[dt.date, SyncResult]]
) -> dg.MaterializeResult:
    total = lambda attr: sum(getattr(r, attr) for _, r in results)  # noqa: E731
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "rows_inserted": total("inserted"),
            "rows_updated": total("updated"),
            "rows_deleted": total("deleted"),
            "rows_rejected": total("rejected"),
            "rows_in_mart": total("rows_in_mart"),
            "days": len(results),
            "mode": f"{sync.mode.value} within {sync.partition.column} = <day>",
            "by_day": checks.markdown_table(
                ["day", "mart rows", "inserted", "updated", "deleted"],
                [(str(d), r.rows_in_mart, r.inserted, r.updated, r.deleted) for d, r in results],
            ),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(n, t) for n, t in (results[0][1].columns if results else [])]
            ),
        },
    )
