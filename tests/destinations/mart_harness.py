"""What the destination harnesses share (conftest.py's API harness, streams_support.py's stream
harness): a DuckDB warehouse file with an `accounts` mart, one sync `scores` out of it run the way
an asset runs it (with its run history), and the sync state read back."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from activation.destinations.base import Destination
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncConfig
from activation.warehouses.history import RunHistory

RELATIONS = {"scores": MartRelation("main", "accounts")}


class MartHarness:
    """Mixed into a dataclass with `tmp`, `name` and `log`, which defines `config`, `destination`,
    `identity` (the destination's identity the state is kept under) and `destination_url`."""

    tmp: Path
    name: str
    log: list[str]
    identity: str
    destination_url: str

    def config(self) -> SyncConfig:
        raise NotImplementedError

    def destination(self) -> Destination:
        raise NotImplementedError

    @property
    def warehouse_path(self) -> Path:
        return self.tmp / "warehouse.duckdb"

    def mart(self, sql: str) -> None:
        with duckdb.connect(str(self.warehouse_path)) as con:
            con.execute(f"CREATE OR REPLACE TABLE accounts AS {sql}")

    def sql(self, statement: str) -> None:
        with duckdb.connect(str(self.warehouse_path)) as con:
            con.execute(statement)

    def sync_once(self, writer: Destination, *, full_resync: bool = False, run_id: str | None = None) -> SyncResult:
        spec = self.config().syncs["scores"]
        warehouse = DuckDBWarehouse(path=str(self.warehouse_path))
        with warehouse.open(self.name, self.identity, log=self.log.append) as wh:
            history = RunHistory(
                wh, run_id=run_id or uuid.uuid4().hex[:8], destination=self.name, destination_url=self.destination_url
            )
            history.before([spec])
            try:
                [result] = writer.sync(wh, [spec], RELATIONS, full_resync=full_resync, log=self.log.append)
            except Exception as exc:
                history.failed([spec], exc)
                raise
            history.succeeded([spec], [result])
            return result

    def preview(self):
        spec = self.config().syncs["scores"]
        warehouse = DuckDBWarehouse(path=str(self.warehouse_path))
        with warehouse.open(self.name, self.identity, dry_run=True) as wh:
            return self.destination().preview(wh, [spec], RELATIONS)

    def state(self, table: str) -> list[tuple]:
        """Rows of a bookkeeping table (the state `sync__scores`, `sync_rejects`, ...); [] before it exists."""
        path = self.tmp / "activation_state" / f"{self.name}.duckdb"
        if not path.exists():
            return []
        with duckdb.connect(str(path), read_only=True) as con:
            if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall():
                return []
            return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()

    def state_keys(self) -> list[str]:
        return [row[0] for row in self.state("sync__scores")]
