"""What the warehouse plans for a sync, whatever the warehouse: the mart's place, its columns, and
what changed.

Warehouse-neutral on purpose: the destination writer, the checks and the dry run read a `Plan`
without knowing whether DuckDB or BigQuery computed it (`activation.warehouses`). A `Plan` is a
value: the diff and the destination's column decisions make a new one (`dataclasses.replace`);
`activation.syncs.plan.SyncPlan` wraps it with what the destination adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import pyarrow as pa

from activation.syncs import masking
from activation.syncs.spec import SyncSpec

JSON_FIELD = b"activation.json"  # Arrow field metadata: the column travels as JSON text


def is_json(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(JSON_FIELD))


@dataclass(frozen=True)
class MartRelation:
    """Where a dbt mart lives in the warehouse (schema or dataset, and table)."""

    schema: str
    name: str


@dataclass(frozen=True)
class Plan:
    """What one sync would send, as computed in the warehouse."""

    spec: SyncSpec
    relation: MartRelation
    pairs: tuple[tuple[str, str], ...]  # (destination column, mart column)
    arrow_schema: pa.Schema  # destination names, mart types
    mart_rows: int = 0
    new_keys: int = 0
    changed_keys: int = 0
    deleted_keys: int = 0
    full: bool = True  # no usable state: compare everything in the destination
    state_rows: int = 0  # keys in the state the incremental plan compared with
    reason: str = ""
    # destination column -> portable type ("integer") the values are cast to on the way out (after they were checked)
    casts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # destination columns the warehouse sends as their text form (BigQuery GEOGRAPHY, INTERVAL)
    as_text: frozenset[str] = frozenset()

    def __post_init__(self) -> None:  # read-only, whatever the caller passed
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
        object.__setattr__(self, "casts", MappingProxyType(dict(self.casts)))

    @property
    def columns(self) -> list[str]:
        return [d for d, _ in self.pairs]

    @property
    def changes(self) -> int:
        """Keys an incremental plan found new, changed or gone (a full plan: every mart row)."""
        return self.new_keys + self.changed_keys + self.deleted_keys


class PlanError(RuntimeError):
    pass


def column_pairs(spec: SyncSpec, mart_columns: Sequence[str]) -> list[tuple[str, str]]:
    """(destination column, mart column) for every column the sync writes: its `columns` mapping or
    every mart column under its own name, less the columns masked away; the key must be among them."""
    if spec.columns:
        missing = [src for src in spec.columns.values() if src not in mart_columns]
        if missing:
            raise PlanError(f"sync {spec.name}: mart {spec.source} has no column(s) {missing}")
        pairs = list(spec.columns.items())
    else:
        pairs = [(c, c) for c in mart_columns]
    pairs = [(d, s) for d, s in pairs if masking.mask_of(spec, s) is not masking.Mask.DROP]
    problem = masking.check_keys(spec)
    if problem:
        raise PlanError(problem)
    dest = [d for d, _ in pairs]
    missing_keys = [k for k in spec.primary_key if k not in dest]
    if missing_keys:
        raise PlanError(f"sync {spec.name}: primary key column(s) {missing_keys} are not in mart {spec.source}")
    return pairs
