from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.bigquery import emulator as emu
from tests.databases import destination_database

DIALECTS = ["sqlite", "mariadb", "postgres"]
BQ_DATASET = "activation"  # dbt's target dataset; marts land in activation_app, activation_crm ...


@pytest.fixture(params=DIALECTS)
def destination_url(request, tmp_path):
    """A URL to an empty database of each dialect, dropped after the test."""
    with destination_database(request.param, tmp_path) as url:
        yield url


@dataclass(frozen=True)
class BigQueryEnv:
    emulator: emu.Emulator
    env: dict[str, str]  # what dbt and the Dagster definitions read
    client: Any  # google.cloud.bigquery.Client


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory) -> Iterator[emu.Emulator]:
    """One BigQuery emulator per session (tests/bigquery/emulator.py), for the BigQuery end-to-end
    tests and the warehouse suite; the tests skip, saying why, only when it cannot start."""
    try:
        server = emu.start(tmp_path_factory.mktemp("bqemulator") / "server.log")
    except emu.EmulatorUnavailable as exc:
        pytest.skip(f"the BigQuery emulator (bqemulator {emu.VERSION}) cannot start here: {exc}")
    try:
        yield server
    finally:
        emu.stop(server.process)


@pytest.fixture(scope="session")
def bq(bigquery_emulator) -> Iterator[BigQueryEnv]:
    # Google's libraries load only when a test asks for BigQuery (they take seconds to import).
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    env = {
        "ACTIVATION_DBT_TARGET": "bigquery",
        "ACTIVATION_BQ_PROJECT": bigquery_emulator.project,
        "ACTIVATION_BQ_DATASET": BQ_DATASET,
        "ACTIVATION_BQ_LOCATION": "US",
        "ACTIVATION_BQ_API_ENDPOINT": bigquery_emulator.rest,
        "ACTIVATION_BQ_STORAGE_ENDPOINT": bigquery_emulator.grpc,
    }
    client = bigquery.Client(
        project=bigquery_emulator.project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_emulator.rest),
    )
    yield BigQueryEnv(emulator=bigquery_emulator, env=env, client=client)
    client.close()
