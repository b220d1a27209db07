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


# The files that take longest, longest first (CI's --durations, 2026-12-08). pyproject runs
# `--dist loadfile --no-loadscope-reorder`: each file goes to the next free worker in this order,
# so the long files start first and the short ones fill in at the end (xdist's own order, by
# number of tests, left the one-test files that take a minute for last, one worker idle).
SLOW_FILES_FIRST = (
    "tests/integration/test_end_to_end.py",
    "tests/syncs/test_crash.py",
    "tests/integration/test_celery.py",
    "tests/bigquery/test_bigquery_end_to_end.py",
    "tests/integration/test_cli_plan_and_sync.py",
    "tests/integration/test_component.py",
    "tests/integration/test_definitions.py",
    "tests/integration/test_api_syncs.py",
    "tests/integration/test_checks.py",
    "tests/syncs/test_zero_downtime.py",
    "tests/integration/test_partitions.py",
    "tests/integration/test_stream_demo.py",
    "tests/integration/test_automation_converges.py",
    "tests/syncs/test_sync_plan.py",
    "tests/integration/test_plan_against.py",
    "tests/syncs/test_properties.py",
    "tests/integration/test_pools.py",
    "tests/bigquery/test_bigquery_plan_against.py",
    "tests/integration/test_dbt_executable.py",
)


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    # a stable sort: the other files keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))
