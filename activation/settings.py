"""Where the project's inputs live. Every path can be overridden from the environment.

A team points the tool at its own dbt project and sync config without editing code;
the shipped demo is only the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# DuckDB's buffer manager otherwise grows with the data a sync scans, up to 80% of RAM; bounded,
# it spills to disk, and an initial sync keeps its speed (bench/README.md). A sync process then
# peaks at 415-450 MB for 1M to 16M rows (this, ~180 MB of imports, Arrow batches, the CSV
# writer): room for a Dagster webserver, daemon and two runs in a 2 GB container.
DEFAULT_DUCKDB_MEMORY_LIMIT = "128MB"


def _path(var: str, default: Path) -> Path:
    return _optional_path(var) or default


def _optional_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else None


def _optional_int(var: str) -> int | None:
    value = os.environ.get(var)
    if not value:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{var}={value!r}: expected a whole number of at least 1")
    return int(value)


@dataclass(frozen=True)
class Settings:
    dbt_project_dir: Path
    dbt_target: str
    syncs_file: Path
    warehouse_path: Path
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    duckdb_temp_directory: Path | None = None  # where DuckDB spills; None: its default, <warehouse>.tmp
    duckdb_threads: int | None = None  # None: one per core, at most one per 64 MB of the memory limit

    @property
    def warehouse(self) -> str:
        """The dbt target also picks the warehouse the syncs read: 'bigquery' or 'duckdb'."""
        return "bigquery" if self.dbt_target.startswith("bigquery") else "duckdb"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            dbt_project_dir=_path("ACTIVATION_DBT_PROJECT_DIR", PROJECT_ROOT / "dbt_project"),
            dbt_target=os.environ.get("ACTIVATION_DBT_TARGET", "local"),
            syncs_file=_path("ACTIVATION_SYNCS_FILE", PROJECT_ROOT / "syncs.yml"),
            # dbt's profiles.yml reads the same variable, so dbt and the syncs see one warehouse.
            warehouse_path=_path("ACTIVATION_WAREHOUSE_PATH", PROJECT_ROOT / "data" / "warehouse.duckdb"),
            duckdb_memory_limit=os.environ.get("ACTIVATION_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT,
            duckdb_temp_directory=_optional_path("ACTIVATION_DUCKDB_TEMP_DIRECTORY"),
            duckdb_threads=_optional_int("ACTIVATION_DUCKDB_THREADS"),
        )
