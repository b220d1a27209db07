"""BigQuery as the warehouse: the resource dbt's `bigquery` target and the syncs share.

Kept apart from `resources.py` so the DuckDB path never imports the Google libraries.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import dagster as dg
from dagster_gcp import BigQueryResource
from google.api_core.client_options import ClientOptions
from google.cloud import bigquery
from pydantic import Field

from activation.syncs.spec import SyncConfigError


class BigQueryWarehouse(BigQueryResource):
    """The production warehouse dbt builds into (dbt-bigquery); syncs read marts from it.

    dagster-gcp's `BigQueryResource`, plus what it cannot do: point at another endpoint (a
    local emulator, a private endpoint), read through the Storage Read API, and keep the sync
    bookkeeping in a dataset of its own. Credentials: a service-account key file
    (`keyfile`), or the base64 key of `gcp_credentials`, or else Application Default
    Credentials. An `http://` endpoint is an emulator: it gets anonymous credentials.
    """

    keyfile: str | None = Field(default=None, description="Path to a service-account JSON key file.")
    api_endpoint: str | None = Field(default=None, description="REST endpoint, e.g. an emulator's http://host:port.")
    storage_endpoint: str | None = Field(
        default=None,
        description="host:port of an emulator's Storage Read API (plain gRPC). Unset: Google's own endpoint.",
    )
    read_api: Literal["storage", "rest"] = Field(default="storage", description="How marts are read.")
    state_dataset: str = Field(
        default="activation_state", description="Dataset for the sync bookkeeping (row hashes per sync)."
    )

    @property
    def emulator(self) -> bool:
        return bool(self.api_endpoint) and self.api_endpoint.startswith("http://")

    def _credentials(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.oauth2 import service_account

        if self.emulator:
            return AnonymousCredentials()
        if self.keyfile:
            return service_account.Credentials.from_service_account_file(self.keyfile)
        if self.gcp_credentials:
            info = json.loads(base64.b64decode(self.gcp_credentials))
            return service_account.Credentials.from_service_account_info(info)
        return None  # Application Default Credentials

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        options = ClientOptions(api_endpoint=self.api_endpoint) if self.api_endpoint else None
        client = bigquery.Client(
            project=self.project, location=self.location, credentials=self._credentials(), client_options=options
        )
        try:
            yield client
        finally:
            client.close()

    def storage_client(self) -> Any:
        """A Storage Read API client, or None to read through REST."""
        if self.read_api == "rest":
            return None
        from google.cloud import bigquery_storage

        if self.storage_endpoint:
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport,
            )

            channel = grpc.insecure_channel(self.storage_endpoint)
            return bigquery_storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
        if self.emulator:
            return None  # an emulator without a Storage Read endpoint: REST only
        return bigquery_storage.BigQueryReadClient(credentials=self._credentials())

    def get_object_to_set_on_execution_context(self) -> Any:
        # Ops and assets see the resource itself (its planner settings), not a bare client.
        return self

    @contextmanager
    def connect(self, log: Callable[[str], None] = print) -> Iterator[bigquery.Client]:
        """The same shape as DuckDBWarehouse.connect: a client for one sync run."""
        with self.get_client() as client:
            yield client

    @contextmanager
    def open(
        self, destination: str, identity: str, *, log: Callable[[str], None] = print, dry_run: bool = False
    ) -> Iterator[Any]:
        """The `activation.warehouses` Warehouse for one destination's syncs (all share the state
        dataset: state tables are named per sync). A dry run writes only work tables."""
        from activation.warehouses.bigquery import BigQuery

        with self.connect(log=log) as client:
            warehouse = BigQuery(
                client, self.state_dataset, identity, storage_client=self.storage_client(), dry_run=dry_run
            )
            try:
                yield warehouse
            finally:
                warehouse.close()

    def recorded(self, table: str, sync: str | None, limit: int) -> Iterator[tuple[str, list[str], list[tuple]]]:
        """(where, column names, rows) of a history table (`sync_runs`, `sync_rejects`)."""
        from activation.warehouses import bigquery as remote
        from activation.warehouses.history import listing

        with self.get_client() as client:
            yield from remote.recorded(
                client, client.project, self.state_dataset, table, listing(table, sync, limit), sync
            )

    @property
    def bookkeeping(self) -> str:
        return f"BigQuery dataset {self.state_dataset}"


def bigquery_warehouse_from_env() -> BigQueryWarehouse:
    """BigQuery configured from the same variables as dbt's `bigquery` target (profiles.yml).
    The project and key file stay EnvVars, so their values never show in the UI."""
    optional: dict[str, Any] = {}
    for field, var in (("location", "ACTIVATION_BQ_LOCATION"), ("keyfile", "ACTIVATION_BQ_KEYFILE")):
        if os.environ.get(var):
            optional[field] = dg.EnvVar(var)
    for field, var in (
        ("api_endpoint", "ACTIVATION_BQ_API_ENDPOINT"),
        ("storage_endpoint", "ACTIVATION_BQ_STORAGE_ENDPOINT"),
        ("state_dataset", "ACTIVATION_BQ_STATE_DATASET"),
        ("read_api", "ACTIVATION_BQ_READ_API"),
    ):
        if os.environ.get(var):
            optional[field] = os.environ[var]
    if not os.environ.get("ACTIVATION_BQ_PROJECT"):
        raise SyncConfigError("ACTIVATION_DBT_TARGET=bigquery needs ACTIVATION_BQ_PROJECT (the GCP project id)")
    return BigQueryWarehouse(project=dg.EnvVar("ACTIVATION_BQ_PROJECT"), **optional)
