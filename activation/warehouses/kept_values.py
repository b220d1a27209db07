"""What was sent, by value: beside (key, hash), the values each destination last accepted.

The state says *that* a row changed; these values say *what* it was, so a diff against another
build (`activation plan --against`) or an event's before-image needs no read of the destination.
Per sync (`keep_values: true`, the default), one table beside the state holds, for every key the
destination accepted, the row as the sync read it from the mart: destination column names, masks
applied (a hashed column is kept hashed, a dropped one is absent), JSON as text. It is written in
the commit that advances the hashes and only for what the destination accepted:
- a row set aside as a reject (SQL: too long, NULL in NOT NULL; API: refused by the API) keeps
  the values it had (the destination still holds the older version), though its hash leaves the
  state so it is sent again;
- a delete the destination refused keeps its values (and its hash), a delete it accepted removes them;
- in `mode: insert` an update is never sent, so the key keeps the values first inserted.
A dry run never commits, so it writes none. Where the values stand against the state is
recorded with them (DuckDB: `kept_values` holds the state's stamp; BigQuery: the state table's
description names the values table), so values that are not the state's (an older state, one
written with `keep_values: false`) are never returned.

Written once over the `Warehouse` I/O; `duckdb.py` and `bigquery.py` say where the table lives
and make it part of their state commit.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

import pyarrow as pa

from activation.syncs.model import Plan
from activation.syncs.options import Mode
from activation.syncs.spec import SyncSpec

if TYPE_CHECKING:
    from activation.warehouses.base import Warehouse

OP = "_activation_op"  # the delta's operation column (base.OP; base imports this module)


class KeptValues:
    """Mixed into `Warehouse`: reading the kept values, and the SQL that makes the next ones."""

    # -- what each warehouse supplies ----------------------------------------------------------
    @abstractmethod
    def _kept_values_table(self, spec: SyncSpec) -> str | None:
        """The quoted table of the values kept with the current state, or None (none kept, or
        kept with another state than the current one)."""

    @abstractmethod
    def kept_values_columns(self, spec: SyncSpec) -> list[str]:
        """The columns of the kept values (empty when none are kept)."""

    # -- reading -------------------------------------------------------------------------------
    def kept_values_relation(self: Warehouse, spec: SyncSpec) -> str | None:
        """A relation (usable in FROM) holding, per key the destination last accepted, the values
        as sent: destination names, masked, keys included. None when the sync keeps no values
        (`keep_values: false`, no state, or a state written before values were kept)."""
        if not spec.keep_values:
            return None
        return self._kept_values_table(spec)

    def kept_values_reader(
        self: Warehouse, plan: Plan, keys_relation: str, batch_size: int = 10_000
    ) -> pa.RecordBatchReader | None:
        """The kept values (before-images) of the keys in `keys_relation`, a relation of the key's
        columns k0, k1, ... (as `Warehouse.key_relation` makes), in key order: the plan's columns
        that were kept (a column new since the last sync is absent). None when no values are kept."""
        table = self.kept_values_relation(plan.spec)
        if table is None:
            return None
        kept = set(self.kept_values_columns(plan.spec))
        fields = [f for f in plan.arrow_schema if f.name in kept]
        q = self.flavour.quote
        on = " AND ".join(f"v.{q(k)} = f.k{i}" for i, k in enumerate(plan.spec.primary_key))
        query = (
            f"SELECT {', '.join('v.' + q(f.name) for f in fields)} FROM {table} v "
            f"WHERE EXISTS (SELECT 1 FROM {keys_relation} f WHERE {on})"
        )
        return self.sorted_reader(query, self.keys(plan, "v"), pa.schema(fields), batch_size)

    # -- the next values, as SQL ---------------------------------------------------------------
    def _values_columns(self: Warehouse, plan: Plan, alias: str) -> str:
        return ", ".join(f"{alias}.{self.flavour.quote(c)}" for c in plan.columns)

    def _accepted(self: Warehouse, plan: Plan, rejected: str | None, alias: str = "d") -> str:
        """The condition on a delta row (alias `d`) that the destination took it: not set aside
        (refused deletes are out of the delta by now: `Warehouse.commit`), and sent at all."""
        conditions = ["TRUE"]
        if rejected:
            conditions.append(f"NOT EXISTS (SELECT 1 FROM {rejected} r WHERE {self.on(plan.spec, 'r', alias)})")
        if plan.spec.mode is Mode.INSERT:  # an update is never sent: the destination keeps the first values
            conditions.append(f"{alias}.{self.flavour.quote(OP)} <> 'update'")
        return " AND ".join(conditions)

    def kept_values_changed(self: Warehouse, plan: Plan, rejected: str | None) -> tuple[str, str]:
        """For an incremental plan over kept values: (the condition on a kept row `v` that it
        goes, the SELECT of the rows that come), both from the delta."""
        delta, f = self.work_table(plan.spec, "delta"), self.flavour
        accepted = self._accepted(plan, rejected)
        gone = f"EXISTS (SELECT 1 FROM {delta} d WHERE {self.on(plan.spec, 'd', 'v')} AND {accepted})"
        came = (
            f"SELECT {self._values_columns(plan, 'd')} FROM {delta} d WHERE d.{f.quote(OP)} <> 'delete' AND {accepted}"
        )
        return gone, came

    def kept_values_held(self: Warehouse, plan: Plan, old: str, rejected: str | None) -> str | None:
        """The old values that stay through a full plan: keys set aside or whose delete was refused
        (None when there are none to keep)."""
        refused = self.rejects.refused_deletes(plan.spec)
        held = [
            f"EXISTS (SELECT 1 FROM {table} r WHERE {self.on(plan.spec, 'r', 'v')})"
            for table in (rejected, refused)
            if table
        ]
        return f"SELECT v.* FROM {old} v WHERE {' OR '.join(held)}" if held else None

    def kept_values_fresh(self: Warehouse, plan: Plan, rejected: str | None, state_keys: str | None) -> str:
        """The values as the mart holds them now, for the keys sent and accepted: every row of a
        full plan but the rejects; with `state_keys` (values not kept before), the keys the new
        state holds (their hash is the hash of the values last sent, so the mart's row is that row)."""
        conditions = []
        if rejected:
            conditions.append(f"NOT EXISTS (SELECT 1 FROM {rejected} r WHERE {self.on(plan.spec, 'r', 'x')})")
        if state_keys:
            conditions.append(f"EXISTS (SELECT 1 FROM {state_keys} s WHERE {self.on(plan.spec, 's', 'x')})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {self._values_columns(plan, 'x')} FROM {self.source(plan)} x{where}"
