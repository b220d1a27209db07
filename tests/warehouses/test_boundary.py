"""The warehouse seam stays neutral: its interface and algorithm load without any warehouse's library."""

from __future__ import annotations

from tests.import_probe import loaded_despite

NEUTRAL = ["activation.syncs.model", "activation.warehouses.base", "activation.warehouses.flavour"]
NEUTRAL += ["activation.warehouses.rejects"]
BLOCKED = ["duckdb", "google", "dagster", "sqlalchemy"]


def test_the_warehouse_base_imports_neither_duckdb_nor_google_nor_dagster():
    assert loaded_despite(BLOCKED, NEUTRAL) == []
