"""A DuckDB warehouse with an `accounts` mart, the strict HTTP API (http_server.py), and a sync
between them through the real engine, the real HTTP client and the real rate limiter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from activation.destinations.api.engine import ApiDestination
from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncConfig
from activation.warehouses.history import RunHistory
from tests.destinations.http_server import StrictApi

TOKEN_ENV = "TEST_SCORING_API_TOKEN"
COLUMNS = {
    "external_id": "account_id",
    "Name": "name",
    "LTV": "ltv",
    "Churn": "churn",
    "Active": "active",
    "SignedOn": "signed_on",
    "ScoredAt": "scored_at",
    "Segment": "segment",
}
SCHEMA = {
    "accounts": [
        {"name": "external_id", "type": "id", "length": 20},
        {"name": "Name", "type": "string", "length": 40, "required": True},
        {"name": "LTV", "type": "number", "precision": 20, "scale": 4},
        {"name": "Churn", "type": "number"},
        {"name": "Active", "type": "boolean"},
        {"name": "SignedOn", "type": "date"},
        {"name": "ScoredAt", "type": "datetime"},
        {"name": "Segment", "type": "picklist", "picklist": ["gold", "silver", "bronze"]},
        {"name": "Deleted__c", "type": "datetime"},
        {"name": "Owner", "type": "string", "writable": False},
    ]
}


SEGMENTS = "['gold', 'silver', 'bronze'][i % 3 + 1]"


def account_rows(ids, *, name: str = "'Account ' || i", segment: str = SEGMENTS) -> str:
    """SELECT of `accounts` mart rows for the integers `ids` (DuckDB SQL)."""
    values = ", ".join(f"({i})" for i in ids) or "(NULL)"
    where = "" if ids else "WHERE false"
    return f"""
        SELECT printf('A%04d', i) AS account_id, {name} AS name,
               CAST(i * 1000 + 0.25 AS DECIMAL(12,2)) AS ltv, i / 8.0 AS churn, i % 2 = 0 AS active,
               DATE '2024-01-01' + CAST(i AS INTEGER) AS signed_on,
               TIMESTAMPTZ '2026-03-01 09:00:00+09:00' + INTERVAL (i) MINUTE AS scored_at,
               {segment} AS segment
        FROM (VALUES {values}) t(i) {where}"""


@dataclass
class Harness:
    """One mart, one API, one destination; `run` syncs the way an asset would (with history)."""

    tmp: Path
    api: StrictApi
    settings: dict[str, Any] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    rate: dict[str, Any] = field(default_factory=lambda: {"requests": 1000, "per_seconds": 1})
    name: str = field(default_factory=lambda: f"scoring_{uuid.uuid4().hex[:8]}")
    log: list[str] = field(default_factory=list)

    @property
    def warehouse_path(self) -> Path:
        return self.tmp / "warehouse.duckdb"

    def mart(self, sql: str) -> None:
        with duckdb.connect(str(self.warehouse_path)) as con:
            con.execute(f"CREATE OR REPLACE TABLE accounts AS {sql}")

    def sql(self, statement: str) -> None:
        with duckdb.connect(str(self.warehouse_path)) as con:
            con.execute(statement)

    def config(self) -> SyncConfig:
        settings = {
            "url": f"{self.api.url}/v1/{{object}}/batch",
            "delete_url": f"{self.api.url}/v1/{{object}}/batch-delete",
            "schema_url": f"{self.api.url}/v1/{{object}}/schema",
            "count_url": f"{self.api.url}/v1/{{object}}/count",
            "bearer_token_env": TOKEN_ENV,
            "batch_size": 10,
            "retry": {"attempts": 4, "first_pause_seconds": 0.05, "max_pause_seconds": 1},
            **self.settings,
        }
        sync = {
            "source": "accounts",
            "destination": self.name,
            "table": "accounts",
            "primary_key": "external_id",
            "mode": "mirror",
            "columns": COLUMNS,
            **self.sync,
        }
        destination = {"type": "http", "settings": settings, "rate_limit": self.rate}
        return SyncConfig.model_validate({"destinations": {self.name: destination}, "syncs": {"scores": sync}})

    def destination(self) -> ApiDestination:
        config = self.config()
        return ApiDestination(self.name, config.destinations[self.name])

    def run(self, *, full_resync: bool = False, run_id: str | None = None) -> SyncResult:
        config = self.config()
        spec = config.syncs["scores"]
        warehouse = DuckDBWarehouse(path=str(self.warehouse_path))
        with warehouse.open(self.name, f"http:{self.name}", log=self.log.append) as wh:
            history = RunHistory(
                wh, run_id=run_id or uuid.uuid4().hex[:8], destination=self.name, destination_url=self.api.url
            )
            history.before([spec])
            try:
                relations = {"scores": MartRelation("main", "accounts")}
                [result] = self.destination().sync(wh, [spec], relations, full_resync=full_resync, log=self.log.append)
            except Exception as exc:
                history.failed([spec], exc)
                raise
            history.succeeded([spec], [result])
            return result

    def preview(self):
        config = self.config()
        spec = config.syncs["scores"]
        warehouse = DuckDBWarehouse(path=str(self.warehouse_path))
        with warehouse.open(self.name, f"http:{self.name}", dry_run=True) as wh:
            return self.destination().preview(wh, [spec], {"scores": MartRelation("main", "accounts")})

    def state(self, table: str) -> list[tuple]:
        """Rows of a bookkeeping table (the state `sync__scores`, `sync_rejects`, `sync_api_calls`, ...)."""
        path = self.tmp / "activation_state" / f"{self.name}.duckdb"
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()

    def state_keys(self) -> list[str]:
        return [row[0] for row in self.state("sync__scores")]

    def records(self) -> dict[str, dict]:
        return dict(self.api.records["accounts"])


@pytest.fixture
def api() -> Iterator[StrictApi]:
    with StrictApi(schema=SCHEMA) as server:
        yield server


@pytest.fixture
def harness(tmp_path, api, monkeypatch) -> Harness:
    monkeypatch.setenv(TOKEN_ENV, api.token)
    return Harness(tmp_path, api)
