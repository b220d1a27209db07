"""Everything Dagster shows about a sync, derived from its config in one place.

As dagster-dbt's `DagsterDbtTranslator` does for dbt models, `SyncTranslator` has one `get_*`
per attribute of a sync's asset (key, deps, description, group, owners, kinds, tags, metadata,
automation, freshness), its check specs and its materialization metadata. Assets, the
execution flow and the definitions read these and nothing else; a subclass may override any.

What differs between destinations comes from what each declares (`DestinationTraits`): its
kind (`mysql`, `postgres`, `sqlite`, or an API such as `salesforce`) and its capabilities
(activation.destinations.base.Capabilities), never from its name. A destination that cannot
read its rows back or count them does not declare the checks that would need to, and its
asset says which it left out and why (metadata `checks_not_possible`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg

from activation.destinations.base import Capabilities
from activation.orchestration import automation, stream_translation
from activation.orchestration.checks.post_write import unavailable
from activation.orchestration.checks.results import metadata_value
from activation.syncs.model import MartRelation
from activation.syncs.options import Mode
from activation.syncs.outcome import (
    ACCEPTED,
    CHECKSUM,
    FITS,
    GUARDS,
    KEYS,
    ORPHANS,
    PRE_WRITE,
    REJECTS,
    ROW_COUNT,
    markdown_table,
)
from activation.syncs.results import SyncResult
from activation.syncs.spec import DestinationSpec, SyncConfig, SyncSpec

WAREHOUSE_RESOURCE = "warehouse"


# The sync an asset writes, in its metadata: how the command line finds a sync's asset whatever a
# component's translation renamed it to.
SYNC_METADATA = "activation/sync"


def sync_asset_keys(definitions: dg.Definitions) -> dict[str, dg.AssetKey]:
    """Sync name -> its asset's key, as these definitions name it."""
    graph = definitions.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        name = graph.get(key).metadata.get(SYNC_METADATA)
        if name is not None:
            out[name] = key
    return out


def sync_asset_key(sync: SyncSpec) -> dg.AssetKey:
    """`<destination>/<table>` (`app/facilities`, `salesforce/Account`): what the UI, the asset
    history and the command line's selection know a sync by."""
    return dg.AssetKey([sync.destination, sync.table])


def destination_resource_key(destination: str, spec: DestinationSpec | None = None, *, api: bool = False) -> str:
    """`app_db` for a database, `salesforce_api` for an API, `events_stream` for a broker: its
    resource, and its syncs' default group."""
    if spec is not None and spec.is_stream:
        return f"{destination}_stream"
    return f"{destination}_{'api' if api or (spec is not None and spec.is_api) else 'db'}"


@dataclass(frozen=True)
class Mart:
    """A dbt model a sync reads: its asset key and where it lives in the warehouse."""

    asset_key: dg.AssetKey
    relation: MartRelation


class DestinationTraits(Protocol):
    """What the translator reads of a destination: a destination resource or a
    `activation.destinations.base.Destination` both have these."""

    @property
    def kind(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...


class SyncTranslator:
    """The Dagster face of every sync in one sync config."""

    def __init__(
        self, config: SyncConfig, marts: Mapping[str, Mart], destinations: Mapping[str, DestinationTraits]
    ) -> None:
        self.config = config
        self.marts = marts
        self.destinations = destinations
        self._groups = automation.foreign_key_groups(config)

    # -- the asset ----------------------------------------------------------------------------
    def get_asset_key(self, sync: SyncSpec) -> dg.AssetKey:
        return sync_asset_key(sync)

    def is_api(self, sync: SyncSpec) -> bool:
        """Whether the sync writes into an API object (wording only: what runs is read from capabilities)."""
        return self.config.destinations[sync.destination].is_api

    def is_stream(self, sync: SyncSpec) -> bool:
        """Whether the sync publishes its changes into a broker's stream."""
        return self.config.destinations[sync.destination].is_stream

    def get_resource_key(self, sync: SyncSpec) -> str:
        return destination_resource_key(sync.destination, self.config.destinations[sync.destination])

    def get_deps(self, sync: SyncSpec) -> list[dg.AssetKey]:
        """Its mart, then the tables its foreign keys point at (parents load first)."""
        return [self.marts[sync.source].asset_key, *[self.get_asset_key(p) for p in self.config.parents(sync)]]

    def get_description(self, sync: SyncSpec) -> str:
        if sync.description:
            return sync.description
        if self.is_stream(sync):
            return stream_translation.description(sync, self.destinations[sync.destination].kind)
        if self.is_api(sync):
            kind = self.destinations[sync.destination].kind
            return (
                f"`{sync.source}` synced into the {kind} object `{sync.table}` of API destination "
                f"`{sync.destination}` ({sync.mode.value} by `{sync.primary_key[0]}`)."
            )
        return f"`{sync.source}` synced into `{sync.table}` of the {sync.destination} database ({sync.mode.value})."

    def get_group_name(self, sync: SyncSpec) -> str:
        return sync.group or self.get_resource_key(sync)

    def get_owners(self, sync: SyncSpec) -> list[str] | None:
        return sync.owners or self.config.owners or None

    def get_kinds(self, sync: SyncSpec) -> set[str]:
        return {self.destinations[sync.destination].kind}

    def get_tags(self, sync: SyncSpec) -> dict[str, str]:
        return {"activation/mode": sync.mode.value}

    def get_automation_condition(self, sync: SyncSpec) -> dg.AutomationCondition:
        """Eager over its foreign-key group (see `automation.sync_condition`)."""
        every_sync = dg.AssetSelection.assets(*[self.get_asset_key(s) for s in self.config.syncs.values()])
        group = next(g for g in self._groups if sync in g)
        others = [s for s in group if s.name != sync.name]
        group_marts = list(dict.fromkeys(self.marts[s.source].asset_key for s in others if s.source != sync.source))
        return automation.sync_condition(
            every_sync, group_marts=group_marts, group_syncs=[self.get_asset_key(s) for s in others]
        )

    def get_freshness_policy(self, sync: SyncSpec) -> dg.FreshnessPolicy | None:
        return automation.freshness_policy(sync.freshness)

    def get_metadata(self, sync: SyncSpec) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "dagster/table_name": f"{sync.destination}.{sync.table}",
            SYNC_METADATA: sync.name,
            "source_model": sync.source,
            "primary_key": ", ".join(sync.primary_key),
            "mode": sync.mode.value,
        }
        if self.is_api(sync):
            metadata.update(self.get_api_metadata(sync))
        if self.is_stream(sync):
            metadata.update(self.get_stream_metadata(sync))
        left_out = self.checks_not_possible(sync)
        if left_out:
            metadata["checks_not_possible"] = metadata_value(
                markdown_table(["check", "why not"], sorted(left_out.items()))
            )
        return metadata

    def get_api_metadata(self, sync: SyncSpec) -> dict[str, Any]:
        """What an API object's asset shows before any run: where, matched by what, fed from which columns."""
        from activation.destinations import registry

        spec = self.config.destinations[sync.destination]
        metadata: dict[str, Any] = {
            "api_object": sync.table,
            "external_id_field": sync.primary_key[0],
            "endpoint": registry.endpoint(spec),
            "rate_limit": f"{spec.rate_limit.requests} per {spec.rate_limit.per_seconds:g}s, "
            f"{spec.rate_limit.max_concurrent} at a time",
            "secrets_from_environment": ", ".join(sorted(registry.secret_names(spec).values())) or "none",
        }
        if sync.columns:  # known before any run: API field <- mart column
            metadata["dagster/column_lineage"] = self._column_lineage(sync, sync.columns)
        return metadata

    def get_stream_metadata(self, sync: SyncSpec) -> dict[str, Any]:
        """What a stream's asset shows before any run: where, how events are keyed and deduplicated."""
        metadata = stream_translation.metadata(sync, self.config.destinations[sync.destination])
        if sync.columns:
            metadata["dagster/column_lineage"] = self._column_lineage(sync, sync.columns)
        return metadata

    def _column_lineage(self, sync: SyncSpec, sources: Mapping[str, str]) -> dg.TableColumnLineage:
        mart_key = self.marts[sync.source].asset_key
        return dg.TableColumnLineage(
            deps_by_column={
                dest: [dg.TableColumnDep(asset_key=mart_key, column_name=src)] for dest, src in sources.items()
            }
        )

    def get_asset_spec(self, sync: SyncSpec) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.get_asset_key(sync),
            deps=self.get_deps(sync),
            description=self.get_description(sync),
            group_name=self.get_group_name(sync),
            owners=self.get_owners(sync),
            kinds=self.get_kinds(sync),
            tags=self.get_tags(sync),
            automation_condition=self.get_automation_condition(sync),
            freshness_policy=self.get_freshness_policy(sync),
            metadata=self.get_metadata(sync),
        )

    # -- its checks ---------------------------------------------------------------------------
    def checks_not_possible(self, sync: SyncSpec) -> dict[str, str]:
        """The checks this sync would have that its destination cannot run, each with the reason (by capability)."""
        reason = unavailable(self.destinations[sync.destination].capabilities)
        kind = self.destinations[sync.destination].kind
        wanted = self.get_check_descriptions(sync)
        return {name: f"the {kind} destination {why}" for name, why in reason.items() if name in wanted}

    def get_check_descriptions(self, sync: SyncSpec) -> dict[str, str]:
        """Every check the sync's mode and config call for, by name, before capabilities."""
        if self.is_stream(sync):
            return self.get_stream_check_descriptions(sync)
        if self.is_api(sync):
            return self.get_api_check_descriptions(sync)
        checks = {
            KEYS: f"Before writing: the key {sync.primary_key} of mart {sync.source} is not null and unique.",
            FITS: "Before writing: every mart value fits the destination's column types, lengths and nullability.",
            GUARDS: "Before writing: the planned inserts, updates and deletes stay within the sync's guards.",
        }
        if sync.mode is not Mode.UPDATE:
            promise = "equals" if sync.mode.deletes else "is at least"
            checks[ROW_COUNT] = f"After writing: the destination's row count {promise} the mart's."
        if sync.checks.checksum and sync.mode is not Mode.INSERT and sync.mode is not Mode.UPDATE:
            checks[CHECKSUM] = "After writing: a checksum of every synced row matches the mart's."
        if sync.foreign_keys:
            checks[ORPHANS] = f"After writing: no orphaned values in {sorted(sync.foreign_keys)}."
        checks[REJECTS] = f"After writing: rejected rows are within {sync.checks.max_rejected}."
        return checks

    def get_stream_check_descriptions(self, sync: SyncSpec) -> dict[str, str]:
        return stream_translation.check_descriptions(sync)

    def get_api_check_descriptions(self, sync: SyncSpec) -> dict[str, str]:
        key, table = sync.primary_key[0], sync.table
        checks = {
            KEYS: f"Before writing: the key {key} of mart {sync.source} is not null and unique.",
            FITS: f"Before any write call: every mapped field exists on {table}, is writable and takes its column's "
            "type, and no value breaks the limits its describe tells (length, picklist, precision), counted in the "
            "warehouse.",
            GUARDS: "Before any call: the planned inserts, updates and deletes stay within the sync's guards.",
        }
        if sync.foreign_keys:
            parents = ", ".join(f"{column} -> {target}" for column, target in sorted(sync.foreign_keys.items()))
            checks[FITS] += f" Every related record's parent ({parents}) is sent or already held."
        exact = sync.mode.deletes and not sync.soft_delete_column
        promise = "equals" if exact else "is at least"
        checks[ROW_COUNT] = (
            f"After writing: the {table} records with {key} set, counted through the API, {promise} the mart's rows "
            "(less the rows rejected)."
        )
        if sync.checks.checksum:
            checks[CHECKSUM] = "After writing: a checksum of every synced record matches the mart's."
        checks[ACCEPTED] = (
            "After writing: every record sent was answered (accepted + refused == sent), and the records sent are "
            "the rows the plan found changed."
        )
        limit = sync.checks.max_rejected
        checks[REJECTS] = f"After writing: rows the API refused or the sync set aside are within {limit}."
        return checks

    def get_check_specs(self, sync: SyncSpec) -> list[dg.AssetCheckSpec]:
        """The checks a sync declares: from its mode and config, those its destination can run."""
        key, left_out = self.get_asset_key(sync), self.checks_not_possible(sync)
        return [
            dg.AssetCheckSpec(name, asset=key, blocking=name in PRE_WRITE, description=description)
            for name, description in self.get_check_descriptions(sync).items()
            if name not in left_out
        ]

    # -- what a run reports -------------------------------------------------------------------
    def get_materialization(
        self, sync: SyncSpec, results: Sequence[tuple[dt.date | None, SyncResult]], destination_url: str
    ) -> dg.MaterializeResult:
        """One materialization per asset and run: a table's counts, or a partitioned sync's summed
        over the days the run wrote (each day's in `by_day`)."""
        if sync.partition:
            metadata = self.get_days_metadata(sync, results)
        else:
            [(_, result)] = results
            metadata = self.get_materialization_metadata(sync, result, destination_url)
        return dg.MaterializeResult(asset_key=self.get_asset_key(sync), metadata=metadata)

    def get_materialization_metadata(self, sync: SyncSpec, result: SyncResult, destination_url: str) -> dict[str, Any]:
        rows_written = result.inserted + result.updated + result.deleted
        column_sources = sync.columns or {name: name for name, _ in result.columns}
        metadata = {
            "rows_inserted": result.inserted,
            "rows_updated": result.updated,
            "rows_deleted": result.deleted,
            "rows_rejected": result.rejected,
            "rows_unchanged": result.unchanged,
            "rows_in_mart": result.rows_in_mart,
            "dagster/row_count": result.rows_in_destination,
            "mode": sync.mode.value,
            "strategy": result.strategy,
            "change_detection": result.reason,
            "rows_sent": result.rows_sent,
            "created_table": result.created_table,
            "duration_seconds": round(result.seconds, 3),
            "rows_per_second": round(rows_written / result.seconds, 1) if result.seconds else 0.0,
            "destination": destination_url,
            **({"masked_columns": dg.MetadataValue.json(dict(sync.mask))} if sync.mask else {}),
            **(
                {"warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))}
                if result.warnings
                else {}
            ),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type_) for name, type_ in result.columns]
            ),
            "dagster/column_lineage": self._column_lineage(sync, column_sources),
        }
        if result.api is not None:  # an API object: no table is created; its calls instead
            metadata.pop("created_table")
            metadata.update(self.get_api_calls_metadata(result))
        if result.stream is not None:
            metadata.pop("created_table")
            metadata.update(self.get_stream_run_metadata(result))
        return metadata

    def get_stream_run_metadata(self, result: SyncResult) -> dict[str, Any]:
        """What a run published: events by op, bytes, the rate, what the broker dropped and holds."""
        return stream_translation.run_metadata(result)

    def get_api_calls_metadata(self, result: SyncResult) -> dict[str, Any]:
        """What a run's calls to an API cost and met (also recorded in the run history's `sync_api_calls`)."""
        api = result.api
        metadata: dict[str, Any] = {
            "api_calls": api.calls,
            "api_retries": api.retries,
            "api_rate_limited_429": api.rate_limited,
            "api_server_errors": api.server_errors,
            "records_refused_by_api": api.records_refused,
            "deletes_refused_by_api": api.deletes_refused,
            "records_sent_per_second": round(result.rows_sent / result.seconds, 1) if result.seconds else 0.0,
        }
        if api.errors:
            metadata["first_api_errors"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in api.errors))
        return metadata

    def get_days_metadata(self, sync: SyncSpec, results: Sequence[tuple[dt.date | None, SyncResult]]) -> dict:
        total = lambda attr: sum(getattr(r, attr) for _, r in results)  # noqa: E731
        return {
            "rows_inserted": total("inserted"),
            "rows_updated": total("updated"),
            "rows_deleted": total("deleted"),
            "rows_rejected": total("rejected"),
            "rows_in_mart": total("rows_in_mart"),
            "days": len(results),
            "mode": f"{sync.mode.value} within {sync.partition.column} = <day>",
            "by_day": metadata_value(
                markdown_table(
                    ["day", "mart rows", "inserted", "updated", "deleted"],
                    [(str(d), r.rows_in_mart, r.inserted, r.updated, r.deleted) for d, r in results],
                )
            ),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(n, t) for n, t in (results[0][1].columns if results else [])]
            ),
        }
