"""Warehouse and destination resources. Connection strings come from the environment only."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import duckdb
import sqlalchemy as sa
from dagster_gcp import BigQueryResource
from google.api_core.client_options import ClientOptions
from google.cloud import bigquery
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import make_url

from activation.settings import Settings
from activation.syncs.spec import DestinationSpec, SyncConfigError


def quote_duckdb(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class DuckDBWarehouse(dg.ConfigurableResource):
    """The local warehouse dbt builds into (dbt-duckdb); syncs read marts from it."""

    path: str
    # How long a sync waits for a dbt build (DuckDB's single writer) to release the file.
    lock_timeout_seconds: float = 900.0

    def state_path(self, destination: str) -> str:
        """The sync bookkeeping of one destination: its own file, so it never blocks dbt or other syncs."""
        folder = Path(self.path).parent / "activation_state"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"{destination}.duckdb")

    @contextmanager
    def connect(self, log: Callable[[str], None] = print) -> Iterator[duckdb.DuckDBPyConnection]:
        """Read-only, so syncs of several destinations read the marts in parallel processes."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay, waited = 0.2, False
        while True:
            try:
                con = duckdb.connect(self.path, read_only=True)
                break
            except duckdb.ConnectionException as exc:
                # This process already holds the file read-write (dbt-duckdb in an in-process run);
                # share that handle: no other process can hold the file meanwhile.
                if "different configuration" not in str(exc):
                    raise
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                if not waited:
                    log(f"warehouse {self.path} is locked by another process (a dbt build?); waiting")
                    waited = True
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        try:
            yield con
        finally:
            con.close()


_BQ_NAME = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")


def quote_bigquery(*parts: str) -> str:
    """`project`.`dataset`.`table`: every part validated, so a name can never close the quote."""
    for part in parts:
        if not _BQ_NAME.match(part):
            raise ValueError(f"{part!r} is not a valid BigQuery project, dataset, table or column name")
    return ".".join(f"`{part}`" for part in parts)


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


def warehouse_resource(settings: Settings) -> DuckDBWarehouse | BigQueryWarehouse:
    """The one switch between environments: the dbt target picks the warehouse the syncs read."""
    if settings.warehouse == "bigquery":
        return bigquery_warehouse_from_env()
    return DuckDBWarehouse(path=str(settings.warehouse_path))


def normalize_url(url: str) -> str:
    """Make the driver choice and the charset explicit, so `mysql://` works and emoji survive."""
    parsed = make_url(url)
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.get_backend_name()}+pymysql")
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    elif parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def destination_identity(url: str) -> str:
    """Which database a URL points at, without user or password: state recorded for one
    destination must not be trusted for another."""
    u = make_url(url)
    return f"{u.get_backend_name()}://{u.host or ''}:{u.port or ''}/{u.database or ''}"


def masked_url(url: str) -> str:
    """The URL as it may appear in logs and metadata: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def dialect_kind(url: str) -> str:
    """The Dagster `kinds` tag for a destination URL (never carries the secret)."""
    if isinstance(url, dg.EnvVar):
        url = url.get_value() or ""
    backend = make_url(url).get_backend_name()
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores REFERENCES unless asked per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class SQLDestination(dg.ConfigurableResource):
    """An application database reached through a SQLAlchemy URL taken from the environment."""

    url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def masked_url(self) -> str:
        return masked_url(self.url)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            engine = sa.create_engine(
                normalize_url(self.url),
                pool_pre_ping=True,
                hide_parameters=True,  # row values (PII) stay out of error messages and logs
                connect_args={"local_infile": True} if _is_mysql(self.url) else {},
            )
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_foreign_keys)
            self._engine = engine
        return self._engine


def destination_resource(spec: DestinationSpec, base_dir: Path) -> SQLDestination:
    """The resource for a configured destination: the URL from its environment variable
    (kept as an EnvVar, so it never shows in the UI), else the config's password-free default.

    A relative SQLite path in the default is taken from `base_dir` (the sync config's folder),
    so the same file is used whatever the working directory.
    """
    if os.environ.get(spec.url_env):
        return SQLDestination(url=dg.EnvVar(spec.url_env))
    if not spec.default_url:
        raise SyncConfigError(
            f"set {spec.url_env} to a SQLAlchemy URL: it is unset and the destination has no default_url"
        )
    url = make_url(spec.default_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_absolute():
        path = (Path(base_dir) / url.database).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(path))
    return SQLDestination(url=url.render_as_string(hide_password=False))
