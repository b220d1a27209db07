"""Rows a destination cannot take, set aside as data instead of failing the whole sync.

Before anything is written, the writer looks in the warehouse for rows the destination would
refuse: a value longer than its VARCHAR column, a NULL in a NOT NULL column. Without
`max_rejects` in the sync's config any such row refuses the sync, as before. With it
(`max_rejects: 100` or `"1%"` of the mart), while the count stays within the limit:
- the rows are left out of what is sent (a work table of this run, anti-joined by
  `Warehouse.to_send`), and an existing older version of such a row is kept, not deleted;
- their keys are kept out of the sync state, so the next run sends them again: once fixed in
  the mart they go through;
- after the destination committed, they are listed in `sync_rejects` beside the state
  (`activation.warehouses.history`), one row per key and reason, replaced on every run.
Written once over the `Warehouse` I/O, so DuckDB and BigQuery keep rejects alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncSpec

if TYPE_CHECKING:
    from activation.warehouses.base import Warehouse

CHUNK = 10_000  # refusals per statement (BigQuery takes them as array parameters)


class RejectStore:
    """This run's rejects of each sync, in a work table per sync (none without `max_rejects`), and
    the keys whose delete the destination refused (an API answering per record)."""

    def __init__(self, warehouse: Warehouse):
        self.wh = warehouse
        self._tables: dict[str, str] = {}  # sync -> work table, for syncs that keep rejects this run
        self._counts: dict[str, int] = {}
        self._refused: dict[str, str] = {}  # sync -> work table of keys whose delete was refused

    def table(self, spec: SyncSpec) -> str | None:
        return self._tables.get(spec.name)

    def reset(self, plan: Plan) -> None:
        """An empty reject list for this run of the sync."""
        wh, text = self.wh, self.wh.flavour.types["text"]
        name = wh.work_table(plan.spec, "rejects")
        wh.create_work(
            name,
            f"SELECT {wh.keys(plan)}, CAST('' AS {text}) AS column_name, CAST('' AS {text}) AS reason "
            f"FROM {wh.source(plan)} x LIMIT 0",
        )
        self._tables[plan.spec.name] = name
        self._counts[plan.spec.name] = 0
        refused = self._refused.pop(plan.spec.name, None)
        if refused:
            wh.drop_work(refused)

    def add(self, plan: Plan, column: str, reason: str, condition: str) -> None:
        """Set aside every mart row matching `condition` (SQL over the mart as the sync reads it)."""
        wh = self.wh
        wh.query(
            f"INSERT INTO {self._tables[plan.spec.name]} SELECT {wh.keys(plan)}, ?, ? FROM {wh.source(plan)} x "
            f"WHERE {condition}",
            [column, reason],
        )
        self._counts.pop(plan.spec.name, None)

    def add_keys(self, plan: Plan, column: str, reason: str, keys: list[tuple]) -> None:
        """Set aside the mart rows with these keys (as the destination returned them, byte for byte)."""
        if not keys:
            return
        wh, q = self.wh, self.wh.flavour.quote
        on = " AND ".join(f"x.{q(k)} = f.k{i}" for i, k in enumerate(plan.spec.primary_key))
        table = self._tables[plan.spec.name]
        with wh.key_relation(plan, keys) as found:
            wh.query(
                f"INSERT INTO {table} SELECT {wh.keys(plan, 'x')}, ?, ? FROM {wh.source(plan)} x "
                f"WHERE EXISTS (SELECT 1 FROM {found} f WHERE {on})",
                [column, reason],
            )
        self._counts.pop(plan.spec.name, None)

    def add_refusals(self, plan: Plan, column: str, refusals: list[tuple[tuple, str]]) -> None:
        """Set aside the mart rows a destination refused one by one: (key values, its reason)."""
        wh, q, width = self.wh, self.wh.flavour.quote, len(plan.spec.primary_key)
        on = " AND ".join(f"x.{q(k)} = f.k{i}" for i, k in enumerate(plan.spec.primary_key))
        for start in range(0, len(refusals), CHUNK):
            rows = [(*key, reason) for key, reason in refusals[start : start + CHUNK]]
            with wh.key_relation(plan, rows) as found:
                wh.query(
                    f"INSERT INTO {self._tables[plan.spec.name]} SELECT {wh.keys(plan, 'x')}, ?, f.k{width} "
                    f"FROM {wh.source(plan)} x JOIN {found} f ON {on}",
                    [column],
                )
        self._counts.pop(plan.spec.name, None)

    def refuse_deletes(self, plan: Plan, refusals: list[tuple[tuple, str]]) -> None:
        """Keys whose delete the destination refused, each with its reason: `Warehouse.commit` keeps
        them in the state, so the delete is tried again next run; the history lists them (column
        `(delete)`)."""
        if not refusals:
            return
        wh, spec, width = self.wh, plan.spec, len(plan.spec.primary_key)
        name = self._refused.get(spec.name)
        if name is None:
            name = wh.work_table(spec, "refused_deletes")
            wh.create_work(
                name,
                f"SELECT {wh.keys(plan)}, CAST('' AS {wh.flavour.types['text']}) AS reason FROM {wh.source(plan)} x "
                "LIMIT 0",
            )
            self._refused[spec.name] = name
        columns = ", ".join(f"f.k{i}" for i in range(width + 1))
        for start in range(0, len(refusals), CHUNK):
            rows = [(*key, reason) for key, reason in refusals[start : start + CHUNK]]
            with wh.key_relation(plan, rows) as found:
                wh.query(f"INSERT INTO {name} SELECT {columns} FROM {found} f")

    def refused_deletes(self, spec: SyncSpec) -> str | None:
        return self._refused.get(spec.name)

    def count(self, plan: Plan) -> int:
        """Distinct keys set aside (0 when the sync has no max_rejects)."""
        name = plan.spec.name
        if name not in self._tables:
            return 0
        if name not in self._counts:
            keys = self.wh.keys(plan)
            self._counts[name] = self.wh.query(
                f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {self._tables[name]}) x"
            )[0][0]
        return self._counts[name]

    def verdict(self, plan: Plan, fix: str, problems: list[Problem] | None = None) -> int:
        """The `max_rejects` verdict, written once for the SQL and the API paths: the rows set aside
        so far, or SyncError (nothing written) when they are over the limit."""
        count = self.count(plan)
        allowed = plan.spec.max_rejects
        if not count or allowed is None:
            return count
        total = self.wh.mart_rows(plan)
        if not allowed.allows(count, total):
            raise SyncError(
                f"{plan.spec.table}: {count:,} of {total:,} rows cannot be written ({self.summary(plan)}), over "
                f"max_rejects {allowed}; {fix}. Nothing was written.",
                problems or [],
            )
        return count

    def summary(self, plan: Plan, sample: int = 5) -> str:
        rows = self.wh.query(
            f"SELECT column_name, reason, count(*) FROM {self._tables[plan.spec.name]} GROUP BY 1, 2 "
            f"ORDER BY 3 DESC, 1, 2 LIMIT {int(sample)}"
        )
        return "; ".join(f"{c}: {r} ({n:,} rows)" for c, r, n in rows)

    def without(self, plan: Plan, source: str) -> str:
        """The mart query minus the rows set aside (unchanged when there are none)."""
        if not self.count(plan):
            return source
        table = self._tables[plan.spec.name]
        out = f"NOT EXISTS (SELECT 1 FROM {table} r WHERE {self.wh.on(plan.spec, 'r', 'x')})"
        return f"(SELECT * FROM {source} x WHERE {out})"

    def keys(self, plan: Plan, batch_size: int) -> pa.RecordBatchReader:
        schema = pa.schema([plan.arrow_schema.field(k) for k in plan.spec.primary_key])
        keys = self.wh.keys(plan)
        return self.wh.reader(
            f"SELECT DISTINCT {keys} FROM {self._tables[plan.spec.name]} ORDER BY {keys}", schema, batch_size
        )
