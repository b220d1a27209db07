"""Questions the checks ask of a mart, in the warehouse: NULL and duplicate keys, how many rows
to send meet a condition (too long, out of range, outside the scope) and which keys. A mixin of
`Warehouse` (base.py), whose `query`, `source`, `keys` and `to_send` it uses: the blocking checks,
the dry run and the writers ask the same questions through the same SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from activation.syncs.model import Plan
from activation.warehouses.flavour import KeyReport

if TYPE_CHECKING:
    from activation.warehouses.base import Warehouse


class MartChecks:
    def null_and_duplicate_keys(self: Warehouse, plan: Plan, sample: int = 5) -> str | None:
        table = f"{plan.spec.source} -> {plan.spec.table}"
        src, q = self.source(plan), self.flavour.quote
        for key in plan.spec.primary_key:
            nulls = self.query(f"SELECT count(*) FROM {src} x WHERE {q(key)} IS NULL")[0][0]
            if nulls:
                return f"{table}: {nulls} row(s) have a NULL key in column {key!r}; nothing was written"
        keys = self.keys(plan)
        dups = self.query(
            f"SELECT {keys}, count(*) AS n FROM {src} x GROUP BY {keys} HAVING count(*) > 1 ORDER BY n DESC, {keys} "
            f"LIMIT {int(sample)}"
        )
        if dups:
            shown = ", ".join(f"{row[0]!r} x{row[-1]}" if len(row) == 2 else f"{row[:-1]!r} x{row[-1]}" for row in dups)
            return f"{table}: duplicate key {tuple(plan.spec.primary_key)} in the mart ({shown}); nothing was written"
        return None

    def key_report(self: Warehouse, plan: Plan) -> KeyReport:
        q, src, keys = self.flavour.quote, self.source(plan), self.keys(plan)
        any_null = " OR ".join(f"{q(k)} IS NULL" for k in plan.spec.primary_key)
        rows, nulls = self.query(f"SELECT count(*), {self.flavour.count_if(any_null)} FROM {src} x")[0]
        dups = self.query(
            f"SELECT {self.key_text(plan.spec)} AS k, count(*) AS n FROM {src} x WHERE NOT ({any_null}) "
            f"GROUP BY {keys} HAVING count(*) > 1 ORDER BY n DESC, k"
        )
        return KeyReport(rows=rows, null_rows=nulls or 0, duplicates=[(k, n) for k, n in dups])

    def sample_keys(self: Warehouse, plan: Plan, limit: int) -> list[tuple]:
        keys = self.keys(plan)
        return self.query(f"SELECT {keys} FROM {self.source(plan)} x ORDER BY {keys} LIMIT {int(limit)}")

    def count_where(self: Warehouse, plan: Plan, conditions: Sequence[str]) -> list[int]:
        """How many rows to send meet each condition, in one scan."""
        counts = ", ".join(self.flavour.count_if(c) for c in conditions)
        return [n or 0 for n in self.query(f"SELECT {counts} FROM {self.to_send(plan)}")[0]]

    def keys_where(self: Warehouse, plan: Plan, condition: str, limit: int) -> list[str]:
        rows = self.query(
            f"SELECT {self.key_text(plan.spec, 'm')} AS k FROM {self.to_send(plan)} WHERE {condition} "
            f"ORDER BY 1 LIMIT {int(limit)}"
        )
        return [r[0] for r in rows]

    def string_lengths(self: Warehouse, plan: Plan) -> dict[str, int | None]:
        texts = [f.name for f in plan.arrow_schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        if not texts:
            return {}
        f = self.flavour
        lengths = ", ".join(f"max({f.length(f.quote(c))})" for c in texts)
        row = self.query(f"SELECT {lengths} FROM {self.source(plan)} x")[0]
        return dict(zip(texts, row, strict=True))

    def too_long(self: Warehouse, plan: Plan, column: str, limit: int, sample: int = 5) -> list[tuple[str, int]]:
        length = self.flavour.length(self.flavour.quote(column))
        return [
            tuple(r)
            for r in self.query(
                f"SELECT {self.key_text(plan.spec)} AS k, {length} AS n FROM {self.source(plan)} x "
                f"WHERE {self.longer_than(column, limit)} ORDER BY 1 LIMIT {int(sample)}"
            )
        ]

    def scope_violations(self: Warehouse, plan: Plan, scope: dict, columns: Sequence[str]) -> int:
        conds, params = [], []
        for column, value in scope.items():
            if column not in columns:
                continue
            if value is None:
                conds.append(f"{self.flavour.quote(column)} IS NOT NULL")
            else:
                conds.append(f"{self.flavour.quote(column)} IS DISTINCT FROM ?")
                params.append(value)
        if not conds:
            return 0
        return self.query(f"SELECT count(*) FROM {self.source(plan)} x WHERE {' OR '.join(conds)}", params)[0][0]
