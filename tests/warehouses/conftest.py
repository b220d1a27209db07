"""One warehouse suite, two backends: every test here runs on DuckDB and on the BigQuery emulator.

A `Backend` holds the warehouse resource the Dagster assets use (`DuckDBWarehouse` or
`BigQueryWarehouse`), a mart `items` of its own, and `run`, which executes SQL in the backend's
dialect with `{items}` standing for the mart. `-m bigquery` selects the BigQuery half.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest

from activation.orchestration.resources import DuckDBWarehouse
from activation.syncs.model import MartRelation
from activation.warehouses.base import Warehouse


@dataclass
class Backend:
    name: str
    resource: Any  # DuckDBWarehouse | BigQueryWarehouse
    relation: MartRelation
    run: Callable[[str], None]
    float_type: str
    left_behind: Callable[[], list[str]]  # work tables that outlive the warehouse's connection

    def open(self, identity: str, *, dry_run: bool = False) -> AbstractContextManager[Warehouse]:
        return self.resource.open("app", identity, log=lambda _msg: None, dry_run=dry_run)

    def items(self, ids, name: str = "'name {i}'") -> str:
        """Rows of the mart `items` (id, name, score) as a SELECT both dialects read alike."""
        score = f"CAST({{i}} * 1.5 AS {self.float_type})"
        row = f"SELECT 'K{{i:03d}}' AS id, {name} AS name, {score} AS score"
        return " UNION ALL ".join(row.format(i=i) for i in ids)


def _duckdb(tmp_path) -> Iterator[Backend]:
    path = tmp_path / "w.duckdb"

    def run(sql: str) -> None:
        with duckdb.connect(str(path)) as con:
            con.execute(sql.replace("{items}", "main.items"))

    resource = DuckDBWarehouse(path=str(path))
    yield Backend("duckdb", resource, MartRelation("main", "items"), run, "DOUBLE", lambda: [])  # TEMP tables


def _bigquery(request) -> Iterator[Backend]:
    from activation.orchestration.bigquery import BigQueryWarehouse
    from activation.warehouses.bigquery import quote_bigquery

    bq = request.getfixturevalue("bq")
    marts, state = f"marts_{uuid.uuid4().hex[:8]}", f"state_{uuid.uuid4().hex[:8]}"
    bq.client.create_dataset(marts)
    items = quote_bigquery(bq.client.project, marts, "items")
    resource = BigQueryWarehouse(
        project=bq.emulator.project,
        api_endpoint=bq.emulator.rest,
        storage_endpoint=bq.emulator.grpc,
        state_dataset=state,
    )
    try:
        yield Backend(
            "bigquery",
            resource,
            MartRelation(marts, "items"),
            lambda sql: bq.client.query(sql.replace("{items}", items)).result(),
            "FLOAT64",
            lambda: [
                t.table_id
                for t in bq.client.list_tables(state)
                if not t.table_id.endswith("__state")
                and "__values_" not in t.table_id
                and t.table_id != "destination_schemas"
            ],
        )
    finally:
        for dataset in (marts, state):
            bq.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "duckdb":
        yield from _duckdb(tmp_path)
    else:
        yield from _bigquery(request)
