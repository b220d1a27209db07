"""BigQuery end to end on a local emulator: the raw lake loaded into it, dbt built on it.

The emulator runs once per session (see emulator.py; its fixtures `bigquery_emulator` and `bq`
are in tests/conftest.py, shared with the warehouse suite in tests/warehouses). Select the
BigQuery tests alone with `-m bigquery`.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import duckdb
from google.cloud import bigquery

from activation.demo import RAW_SCHEMA
from activation.orchestration.dbt import dbt_executable
from activation.settings import PROJECT_ROOT

RAW_TABLES = ["account", "contact", "job_posting__c", "application__c", "application__history", "event"]


_BQ_TYPES = {
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOL",
    "INTEGER": "INT64",
    "BIGINT": "INT64",
    "DOUBLE": "FLOAT64",
    "DATE": "DATE",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "DATETIME",
}


def _bq_type(duck_type: str) -> str:
    if duck_type.startswith("DECIMAL"):
        return "NUMERIC"
    return _BQ_TYPES[duck_type]


def load_raw_lake(client: bigquery.Client, lake: Path) -> None:
    """Copy the demo lake's raw tables into the emulator, as the EL tool would land them (CSV loads)."""
    client.create_dataset(RAW_SCHEMA, exists_ok=True)
    with duckdb.connect(str(lake), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for table in RAW_TABLES:
            described = con.execute(f'DESCRIBE "{RAW_SCHEMA}"."{table}"').fetchall()
            schema = [bigquery.SchemaField(name, _bq_type(type_)) for name, type_, *_ in described]
            # Timestamps as UTC wall clock with microseconds: the form BigQuery's CSV reader takes.
            cols = ", ".join(
                f'strftime("{name}", \'%Y-%m-%d %H:%M:%S.%f\') AS "{name}"'
                if type_.startswith("TIMESTAMP")
                else f'"{name}"'
                for name, type_, *_ in described
            )
            path = lake.parent / f"{table}.csv"
            con.execute(f"COPY (SELECT {cols} FROM \"{RAW_SCHEMA}\".\"{table}\") TO '{path}' (HEADER, DELIMITER ',')")
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.CSV,
                skip_leading_rows=1,
                allow_quoted_newlines=True,
                schema=schema,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            )
            with open(path, "rb") as f:
                data = io.BytesIO(f.read())
            client.load_table_from_file(data, f"{client.project}.{RAW_SCHEMA}.{table}", job_config=config).result()


def dbt_build_bigquery(env: dict[str, str], target_path: Path, command: list[str]) -> str:
    proc = subprocess.run(
        [dbt_executable(), *command, "--profiles-dir", ".", "--target", "bigquery", "--target-path", str(target_path)],
        cwd=PROJECT_ROOT / "dbt_project",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc.stdout
