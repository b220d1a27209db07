"""Destination tables as Dagster assets, derived from the sync config.

One multi-asset per destination database: every table is its own asset (own history, checks,
automation), while a run that selects several tables of one database applies them in one
transaction in foreign-key order.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from activation import automation, checks, partitions
from activation.destinations.sql import SqlDestination
from activation.resources import destination_identity
from activation.syncs import problems as problem_values
from activation.syncs.model import MartRelation
from activation.syncs.results import GuardTripped, SyncError, SyncResult
from activation.syncs.spec import SyncConfig, SyncConfigError, SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.history import RunHistory

WAREHOUSE_RESOURCE = "warehouse"
WAREHOUSE_POOL = "duckdb_warehouse"  # the same pool as the dbt assets


def destination_resource_key(destination: str) -> str:
    return f"{destination}_db"


def sync_asset_key(spec: SyncSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.destination, spec.table])


@dataclass(frozen=True)
class Mart:
    """A dbt model a sync reads: its asset key and where it lives in the warehouse."""

    asset_key: dg.AssetKey
    relation: MartRelation


def _spec(config: SyncConfig, sync: SyncSpec, marts: Mapping[str, Mart], kind: str) -> dg.AssetSpec:
    mart = marts[sync.source]
    parents = [sync_asset_key(p) for p in config.parents(sync)]
    destinations = dg.AssetSelection.assets(*[sync_asset_key(s) for s in config.syncs.values()])
    group = next(g for g in automation.foreign_key_groups(config) if sync in g)
    others = [s for s in group if s.name != sync.name]
    group_marts = list(dict.fromkeys(marts[s.source].asset_key for s in others if s.source != sync.source))
    return dg.AssetSpec(
        key=sync_asset_key(sync),
        deps=[mart.asset_key, *parents],
        description=sync.description
        or f"`{sync.source}` synced into `{sync.table}` of the {sync.destination} database ({sync.mode.value}).",
        group_name=sync.group or f"{sync.destination}_db",
        owners=sync.owners or config.owners or None,
        kinds={kind},
        tags={"activation/mode": sync.mode.value},
        automation_condition=automation.sync_condition(
            destinations, group_marts=group_marts, group_syncs=[sync_asset_key(s) for s in others]
        ),
        freshness_policy=automation.freshness_policy(sync.freshness),
        metadata={
            "dagster/table_name": f"{sync.destination}.{sync.table}",
            "source_model": sync.source,
            "primary_key": ", ".join(sync.primary_key),
            "mode": sync.mode.value,
        },
    )


def _materialization(spec: SyncSpec, mart: Mart, result: SyncResult, destination_url: str) -> dg.MaterializeResult:
    rows_written = result.inserted + result.updated + result.deleted
    column_sources = spec.columns or {name: name for name, _ in result.columns}
    return dg.MaterializeResult(
        asset_key=sync_asset_key(spec),
        metadata={
            "rows_inserted": result.inserted,
            "rows_updated": result.updated,
            "rows_deleted": result.deleted,
            "rows_rejected": result.rejected,
            "rows_unchanged": result.unchanged,
            "rows_in_mart": result.rows_in_mart,
            "dagster/row_count": result.rows_in_destination,
            "mode": spec.mode.value,
            "strategy": result.strategy,
            "change_detection": result.reason,
            "rows_sent": result.rows_sent,
            "created_table": result.created_table,
            "duration_seconds": round(result.seconds, 3),
            "rows_per_second": round(rows_written / result.seconds, 1) if result.seconds else 0.0,
            "destination": destination_url,
            **({"masked_columns": dg.MetadataValue.json(dict(spec.mask))} if spec.mask else {}),
            **(
                {"warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))}
                if result.warnings
                else {}
            ),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type_) for name, type_ in result.columns]
            ),
            "dagster/column_lineage": dg.TableColumnLineage(
                deps_by_column={
                    dest: [dg.TableColumnDep(asset_key=mart.asset_key, column_name=src)]
                    for dest, src in column_sources.items()
                }
            ),
        },
    )


def build_sync_assets(
    config: SyncConfig, marts: Mapping[str, Mart], kinds: Mapping[str, str]
) -> list[dg.AssetsDefinition]:
    """One subsettable multi-asset per destination; `kinds` maps destination -> database kind."""
    assets = []
    for destination in config.destinations:
        ordered = [s for s in config.load_order() if s.destination == destination and not s.partition]
        if ordered:
            assets.append(_destination_asset(config, destination, ordered, marts, kinds[destination]))
    return assets


def build_partitioned_sync_assets(
    config: SyncConfig,
    marts: Mapping[str, Mart],
    kinds: Mapping[str, str],
    partitions_defs: Mapping[str, dg.PartitionsDefinition],
) -> list[dg.AssetsDefinition]:
    """One asset per partitioned sync, partitioned like its mart (see activation.partitions)."""
    out = []
    for sync in config.load_order():
        if not sync.partition:
            continue
        if sync.source not in partitions_defs:
            raise SyncConfigError(
                f"syncs.{sync.name}.partition: mart {sync.source} is not a daily-partitioned dbt model "
                "(tag it `daily` with meta.partition_start)"
            )
        mart = marts[sync.source]
        out.append(
            partitions.build_partitioned_sync_asset(
                sync,
                _spec(config, sync, marts, kinds[sync.destination]),
                mart.relation,
                partitions_defs[sync.source],
                destination_resource_key(sync.destination),
                WAREHOUSE_RESOURCE,
            )
        )
    return out


class SyncRunConfig(dg.Config):
    """Per-run options, set in the launchpad."""

    full_resync: bool = False  # compare every row with the destination (repairs edits made there)


def _selected_checks(context: dg.AssetExecutionContext, spec: SyncSpec) -> set[str]:
    return {k.name for k in context.selected_asset_check_keys if k.asset_key == sync_asset_key(spec)}


def _checked_sync(
    context: dg.AssetExecutionContext,
    planner: Warehouse,
    target,
    selected: list[SyncSpec],
    relations: Mapping[str, MartRelation],
    marts: Mapping[str, Mart],
    full_resync: bool,
    history: RunHistory | None = None,
):
    """Blocking checks first (a failure writes nothing), then the write, then the checks that
    read the destination back. Yields check results and materializations; records the run in
    the history (when there is one), whatever its outcome."""

    def record(error: BaseException | None, results: Sequence[SyncResult] = ()) -> None:
        if history is None:
            return
        try:
            if error is not None:
                history.failed(selected, error)
            else:
                history.succeeded(selected, results)
        except Exception as unrecorded:  # the sync's own outcome is the one to report
            context.log.warning(f"could not record the run in the history: {unrecorded}")

    engine = target.engine()
    plans = {s.name: planner.describe(s, relations[s.name]) for s in selected}
    failed, found = [], []
    pre = checks.PreWriteChecks(planner, engine)
    for spec in selected:
        wanted = _selected_checks(context, spec)
        for outcome in pre.run(plans[spec.name]):
            if outcome.name in wanted:
                yield outcome.result(sync_asset_key(spec))
            if not outcome.passed:
                failed.append(outcome.summary)
                found += outcome.problems or [problem_values.Problem(spec.table, outcome.summary)]
    if failed:
        description = "blocking checks failed before the write; nothing was written: " + " | ".join(failed)
        record(GuardTripped(description, {}))
        raise dg.Failure(description=description, metadata=_problems_metadata(found))
    sync = SqlDestination(engine)
    try:
        results = sync.sync(planner, selected, dict(relations), full_resync=full_resync, log=context.log.info)
    except Exception as exc:
        record(exc)
        # Only a plan over the limits fails the guards. A run refused or failed for another reason
        # fails its step with that reason; the guards that judged a plan before it held, and those
        # never reached show as not executed.
        tripped = exc if isinstance(exc, GuardTripped) else None
        outcomes = checks.guards_held_before_failure(selected, sync.within_guards)
        if tripped is not None:
            outcomes.update(checks.guard_outcomes(selected, None, tripped))
        for spec in selected:
            if spec.table in outcomes and checks.GUARDS in _selected_checks(context, spec):
                yield outcomes[spec.table].result(sync_asset_key(spec))
        if isinstance(exc, SyncError) and tripped is None:  # refused: the reason is the step's error
            metadata = _problems_metadata(exc.problems) if exc.problems else {}
            raise dg.Failure(description=str(exc), metadata=metadata) from exc
        if tripped is None:
            raise
        raise dg.Failure(
            description=str(exc),
            metadata={
                **{f"planned_{table}": dg.MetadataValue.json(plan) for table, plan in exc.plans.items()},
                **_problems_metadata(exc.problems),
            },
        ) from exc
    record(None, results)
    guards = checks.guard_outcomes(selected, results, None)
    post = checks.PostWriteChecks(planner, engine)
    by_sync = {r.sync: r for r in results}  # the engine orders tables by the destination's foreign keys
    for spec in selected:
        result = by_sync[spec.name]
        yield _materialization(spec, marts[spec.source], result, target.masked_url)
        wanted = _selected_checks(context, spec)
        if checks.GUARDS in wanted:
            yield guards[spec.table].result(sync_asset_key(spec))
        for outcome in post.run(plans[spec.name], result, wanted):
            yield outcome.result(sync_asset_key(spec))


def _problems_metadata(found) -> dict[str, dg.MetadataValue]:
    """A refusal's problems on the step failure, for the command line and the UI (activation.syncs.problems)."""
    lines = "\n".join(f"- {p}" + (f" (fix: {p.fix})" if p.fix else "") for p in found)
    return {
        problem_values.METADATA_KEY: dg.MetadataValue.json(problem_values.as_json(found)),
        "problems": dg.MetadataValue.md(lines),
    }


def _destination_asset(
    config: SyncConfig, destination: str, ordered: list[SyncSpec], marts: Mapping[str, Mart], kind: str
) -> dg.AssetsDefinition:
    resource_key = destination_resource_key(destination)
    relations = {s.name: marts[s.source].relation for s in ordered}
    history_retention_days = config.history.retention_days

    @dg.multi_asset(
        name=f"sync_{destination}",
        specs=[_spec(config, s, marts, kind) for s in ordered],
        check_specs=[c for s in ordered for c in checks.check_specs(s, sync_asset_key(s))],
        can_subset=True,
        pool=WAREHOUSE_POOL,
        required_resource_keys={resource_key, WAREHOUSE_RESOURCE},
    )
    def _sync(context: dg.AssetExecutionContext, config: SyncRunConfig):
        selected = [s for s in ordered if sync_asset_key(s) in context.selected_asset_keys]
        target = getattr(context.resources, resource_key)
        warehouse = getattr(context.resources, WAREHOUSE_RESOURCE)
        context.log.info(f"syncing {[s.table for s in selected]} into {target.masked_url} (parents first)")
        with warehouse.open(destination, destination_identity(target.url), log=context.log.info) as planner:
            history = RunHistory(
                planner,
                run_id=context.run.run_id,
                destination=destination,
                destination_url=target.url,
                retention_days=history_retention_days,
            )
            history.before(selected)
            yield from _checked_sync(
                context, planner, target, selected, relations, marts, config.full_resync, history=history
            )

    return _sync
