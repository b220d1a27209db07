"""`destination_schemas`: each sync's destination table as last described, beside the sync state.

Written at every real sync, after the destination committed (the description the run wrote
against), so a review of another build (`activation plan --against`) runs the pre-write checks
without destination credentials, and says how old the description is. One row per sync; the
description is JSON (`activation.destinations.sql.described`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

TABLE = "destination_schemas"
COLUMNS = (("sync", "text"), ("destination", "text"), ("table_name", "text"))
COLUMNS += (("described_at", "timestamp"), ("description", "text"))


@dataclass(frozen=True)
class Described:
    description: dict[str, Any]
    described_at: dt.datetime  # UTC

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return now - self.described_at


def record(wh: Warehouse, spec: SyncSpec, description: dict[str, Any]) -> None:
    """Keep the description of this sync's table (replacing the previous one); a dry run keeps nothing."""
    if wh.dry_run:
        return
    f, table = wh.flavour, wh.bookkeeping_table(TABLE)
    body = ", ".join(f"{c} {f.types[kind]}" for c, kind in COLUMNS)
    wh.query(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    values = [spec.name, spec.destination, spec.table, now, json.dumps(description, sort_keys=True)]
    placeholders = ", ".join(f.cast("?", kind) for _, kind in COLUMNS)
    with wh.transaction():
        wh.query(f"DELETE FROM {table} WHERE sync = ?", [spec.name])
        wh.query(f"INSERT INTO {table} VALUES ({placeholders})", values)


def last_described(wh: Warehouse, spec: SyncSpec) -> Described | None:
    """The description the last real sync recorded, or None (no sync since this was kept)."""
    try:
        rows = wh.query(
            f"SELECT described_at, description FROM {wh.bookkeeping_table(TABLE)} WHERE sync = ?", [spec.name]
        )
    except Exception:  # noqa: BLE001 - each warehouse raises its own error for a missing table
        return None
    if not rows:
        return None
    at, text = rows[0]
    if isinstance(at, dt.datetime) and at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    return Described(json.loads(text), at)
