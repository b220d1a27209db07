"""Where the project's inputs live. Every path can be overridden from the environment.

A team points the tool at its own dbt project and sync config without editing code;
the shipped demo is only the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    dbt_project_dir: Path
    dbt_target: str
    syncs_file: Path
    warehouse_path: Path

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
        )
