"""PII is hashed, redacted or dropped in the warehouse query: the plain value never reaches Python.
(What the warehouse sends, on DuckDB and BigQuery: tests/warehouses/test_warehouse.py.)"""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from activation.syncs.masking import Mask, dbt_masks, with_dbt_masks
from activation.syncs.model import MartRelation, PlanError
from activation.warehouses.duckdb import DuckDB
from tests.compare import destination_rows
from tests.databases import sqlite_database
from tests.syncs.test_engine import spec
from tests.syncs.test_load import items_config, run_specs

EMAIL = "hanako.yamada@example.jp"


@pytest.fixture
def duck(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"""
            CREATE TABLE items AS SELECT printf('K%03d', i) AS id,
                CASE WHEN i = 0 THEN '{EMAIL}' WHEN i = 1 THEN NULL ELSE 'user' || i || '@example.jp' END AS email,
                '090-0000-' || i AS phone, i AS age, 'private note ' || i AS note
            FROM range(10) t(i)
        """)
    return path


MASK = {"email": "hash", "phone": "redact", "age": "redact", "note": "drop"}


def test_masked_columns_arrive_hashed_redacted_or_not_at_all(tmp_path, duck):
    with sqlite_database(tmp_path) as url:
        result = run_specs(url, duck, [spec(mask=MASK)])["items"]
        assert result.inserted == 10
        assert "note" not in [name for name, _ in result.columns], "a dropped column is not created"
        rows = destination_rows(url, "items", ["id", "email", "phone", "age"], ["id"])
    assert rows[0] == ("K000", hashlib.sha256(EMAIL.encode()).hexdigest(), "[redacted]", None)
    assert rows[1][1] is None, "NULL stays NULL"


def test_keys_cannot_be_masked(duck):
    with duckdb.connect(str(duck), read_only=True) as con:
        planner = DuckDB(con, str(duck.parent / "state.duckdb"), "sqlite://")
        with pytest.raises(PlanError, match="cannot be masked"):
            planner.describe(spec(mask={"id": "hash"}), MartRelation("main", "items"))


def test_dbt_meta_marks_pii_and_the_sync_config_overrides_it():
    manifest = {
        "nodes": {
            "model.p.items": {
                "resource_type": "model",
                "name": "items",
                "columns": {
                    "email": {"meta": {"pii": True}},
                    "phone": {"config": {"meta": {"pii": "redact"}}},
                    "city": {"meta": {"pii": "hash"}},
                },
            }
        }
    }
    assert dbt_masks(manifest, "items") == {"email": Mask.HASH, "phone": Mask.REDACT, "city": Mask.HASH}
    config = items_config("upsert", mask={"city": "none"})
    merged = with_dbt_masks(config, manifest).syncs["items"].mask
    assert merged == {"email": "hash", "phone": "redact", "city": "none"}
