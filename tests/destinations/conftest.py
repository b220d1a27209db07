"""A DuckDB warehouse with an `accounts` mart, the strict HTTP API (http_server.py), and a sync
between them through the real engine, the real HTTP client and the real rate limiter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from activation.destinations.api.engine import ApiDestination
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncConfig
from tests.destinations.http_server import StrictApi
from tests.destinations.mart_harness import MartHarness

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
class Harness(MartHarness):
    """One mart, one API, one destination; `run` syncs the way an asset would (with history)."""

    tmp: Path
    api: StrictApi
    settings: dict[str, Any] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    rate: dict[str, Any] = field(default_factory=lambda: {"requests": 1000, "per_seconds": 1})
    name: str = field(default_factory=lambda: f"scoring_{uuid.uuid4().hex[:8]}")
    log: list[str] = field(default_factory=list)

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

    @property
    def identity(self) -> str:
        return f"http:{self.name}"

    @property
    def destination_url(self) -> str:
        return self.api.url

    def run(self, *, full_resync: bool = False, run_id: str | None = None) -> SyncResult:
        return self.sync_once(self.destination(), full_resync=full_resync, run_id=run_id)

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
