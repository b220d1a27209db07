"""PII masking applied in the warehouse, in the SQL that reads the mart.

A column marked as PII is hashed, redacted or dropped by the query the warehouse runs (DuckDB or
BigQuery), so the plain value never reaches Python, the change-detection state or the destination.

Where a column is marked (by mart column name):
- in the dbt project, column `meta: {pii: hash | redact | drop}` (`pii: true` means `hash`);
- in `syncs.yml`, per sync: `mask: {email: hash, phone: redact, notes: drop, city: none}`,
  which overrides dbt's mark (`none` sends the plain value).

`hash` is the SHA-256 hex digest of the value as text (stable, so the app can still join or
deduplicate on it); `redact` sends `[redacted]` for text and NULL for other types; `drop`
leaves the column out of the destination table. Key columns cannot be masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import pyarrow as pa

REDACTED = "[redacted]"


class Mask(StrEnum):
    HASH = "hash"
    REDACT = "redact"
    DROP = "drop"
    NONE = "none"


def _from_meta(value: Any) -> Mask | None:
    if value is True:
        return Mask.HASH
    if isinstance(value, str) and value.lower() in Mask._value2member_map_:
        return Mask(value.lower())
    return None


def dbt_masks(manifest: Mapping[str, Any], model: str) -> dict[str, Mask]:
    """Columns a dbt model marks as PII in their `meta`."""
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "seed", "snapshot") and node["name"] == model:
            out = {}
            for name, column in (node.get("columns") or {}).items():
                meta = {**(column.get("config") or {}).get("meta", {}), **(column.get("meta") or {})}
                mask = _from_meta(meta.get("pii"))
                if mask is not None:
                    out[name] = mask
            return out
    return {}


def with_dbt_masks(config, manifest: Mapping[str, Any]):
    """The sync config with dbt's PII marks merged under each sync's own `mask` (which wins)."""
    syncs = {}
    for name, sync in config.syncs.items():
        merged = {**dbt_masks(manifest, sync.source), **sync.mask}
        syncs[name] = sync.model_copy(update={"mask": merged}) if merged != sync.mask else sync
    return config.model_copy(update={"syncs": syncs})


def mask_of(spec, mart_column: str) -> Mask:
    return Mask(spec.mask.get(mart_column, Mask.NONE))


def check_keys(spec) -> str | None:
    masked = [k for k in spec.primary_key if mask_of(spec, spec.columns.get(k, k)) is not Mask.NONE]
    if masked:
        return f"sync {spec.name}: key column(s) {masked} cannot be masked; the key identifies the row in the app"
    return None


def masked_type(spec, mart_column: str, type_: pa.DataType) -> pa.DataType:
    return pa.string() if mask_of(spec, mart_column) is Mask.HASH else type_


def masked_sql(spec, mart_column: str, expression: str, type_: pa.DataType, flavour) -> str:
    """The SQL for one mart column as it may leave the warehouse, in the warehouse's `SqlFlavour`
    (activation.warehouses.base): the same digest on DuckDB and BigQuery."""
    mask = mask_of(spec, mart_column)
    if mask is Mask.HASH:
        digest = flavour.sha256_hex(flavour.cast(expression, "text"))
        return f"CASE WHEN {expression} IS NULL THEN NULL ELSE {digest} END"
    if mask is Mask.REDACT:
        if pa.types.is_string(type_) or pa.types.is_large_string(type_):
            return f"CASE WHEN {expression} IS NULL THEN NULL ELSE '{REDACTED}' END"
        return f"CASE WHEN false THEN {expression} END"  # NULL, of the column's own type
    return expression
