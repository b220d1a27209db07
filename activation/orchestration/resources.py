"""Warehouse and destination resources. Connection strings and API secrets come from the environment only.

A destination resource gives the sync flow (execute.py) the same four things, SQL or API: `identity`
(which database or API account the sync state belongs to), `masked_url` (what logs and metadata
show), `destination()` (the `Destination` a write goes through) and `checks(planner)` (its check suite).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import sqlalchemy as sa
from pydantic import PrivateAttr

from activation.destinations.base import Capabilities
from activation.destinations.sql.dialect import sql_dialect
from activation.destinations.sql.engine import create_engine, resolve_path
from activation.destinations.sql.engine import kind as sql_kind
from activation.destinations.urls import destination_identity, masked_url
from activation.settings import Settings
from activation.syncs.spec import DestinationSpec, SyncConfigError, SyncSpec
from activation.warehouses.duckdb_memory import bound_memory


class DuckDBWarehouse(dg.ConfigurableResource):
    """The local warehouse dbt builds into (dbt-duckdb); syncs read marts from it."""

    path: str
    # How long a sync waits for a dbt build (DuckDB's single writer) to release the file.
    lock_timeout_seconds: float = 900.0
    # DuckDB's memory cap, spill folder and threads in this process (see `bound_memory`); unset,
    # they come from ACTIVATION_DUCKDB_MEMORY_LIMIT (default 128MB), _TEMP_DIRECTORY and _THREADS.
    memory_limit: str | None = None
    temp_directory: str | None = None
    threads: int | None = None

    def state_path(self, destination: str) -> str:
        """The sync bookkeeping of one destination: its own file, so it never blocks dbt or other syncs."""
        folder = Path(self.path).parent / "activation_state"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"{destination}.duckdb")

    def _open(self, log: Callable[[str], None], *, read_only: bool) -> duckdb.DuckDBPyConnection:
        """The warehouse file, waiting (up to lock_timeout_seconds) while another process writes it,
        or, read-write, while any other process has it open."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay, waited = 0.2, False
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.ConnectionException as exc:
                # This process already holds the file read-write (dbt-duckdb in an in-process run);
                # share that handle: no other process can hold the file meanwhile.
                if "different configuration" not in str(exc):
                    raise
                return duckdb.connect(self.path)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                if not waited:
                    holder = "a dbt build?" if read_only else "a sync reading the marts?"
                    log(f"warehouse {self.path} is locked by another process ({holder}); waiting")
                    waited = True
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def wait_until_free(self, log: Callable[[str], None] = print) -> None:
        """Before dbt builds: dbt-duckdb fails at once on a file another process reads. Syncs sit in
        their destinations' pools, not in dbt's, so a build started while a sync reads waits here."""
        self._open(log, read_only=False).close()

    @contextmanager
    def connect(self, log: Callable[[str], None] = print) -> Iterator[duckdb.DuckDBPyConnection]:
        """Read-only, so syncs of several destinations read the marts in parallel processes."""
        con = self._open(log, read_only=True)
        try:
            bound_memory(con, self.memory_limit, self.temp_directory, self.threads)
            yield con
        except duckdb.OutOfMemoryException as exc:
            limit = self.memory_limit or Settings.from_env().duckdb_memory_limit
            raise duckdb.OutOfMemoryException(
                f"DuckDB needed more than its memory limit of {limit} on {self.path}: raise "
                "ACTIVATION_DUCKDB_MEMORY_LIMIT (or the warehouse resource's memory_limit). DuckDB spills most "
                "work to disk, but not yet a sort of long text values (a few hundred bytes and more): a mart with many "
                f"of them needs a limit above their total size. DuckDB said: {exc}"
            ) from exc
        finally:
            con.close()

    @contextmanager
    def open(
        self, destination: str, identity: str, *, log: Callable[[str], None] = print, dry_run: bool = False
    ) -> Iterator[Any]:
        """The `activation.warehouses` Warehouse for one destination's syncs. A dry run plans against
        a throwaway copy of the state, so it never holds (or changes) the real one."""
        from activation.warehouses.duckdb import DuckDB, throwaway_state

        with self.connect(log=log) as con:
            if not dry_run:
                yield DuckDB(
                    con, self.state_path(destination), identity, wait_seconds=self.lock_timeout_seconds, log=log
                )
                return
            with throwaway_state(Path(self.path).parent / "activation_state" / f"{destination}.duckdb") as state:
                yield DuckDB(con, state, identity, dry_run=True)

    def recorded(self, table: str, sync: str | None, limit: int) -> Iterator[tuple[str, list[str], list[tuple]]]:
        """(where, column names, rows) of a history table (`sync_runs`, `sync_rejects`), per destination."""
        from activation.warehouses import duckdb as local
        from activation.warehouses.history import listing

        yield from local.recorded(Path(self.path).parent / "activation_state", table, listing(table, sync, limit), sync)

    @property
    def bookkeeping(self) -> str:
        return str(Path(self.path).parent / "activation_state")


def warehouse_resource(settings: Settings) -> dg.ConfigurableResource:
    """The one switch between environments: the dbt target picks the warehouse the syncs read.
    The Google libraries load only for BigQuery (they take seconds to import)."""
    if settings.warehouse == "bigquery":
        from activation.orchestration.bigquery import bigquery_warehouse_from_env

        return bigquery_warehouse_from_env()
    return DuckDBWarehouse(
        path=str(settings.warehouse_path),
        memory_limit=settings.duckdb_memory_limit,
        temp_directory=str(settings.duckdb_temp_directory) if settings.duckdb_temp_directory else None,
        threads=settings.duckdb_threads,
    )


def _plain(url: str | dg.EnvVar) -> str:
    return (url.get_value() or "") if isinstance(url, dg.EnvVar) else url


def dialect_kind(url: str | dg.EnvVar) -> str:
    """The Dagster `kinds` tag for a destination URL (never carries the secret)."""
    return sql_kind(_plain(url))


class SQLDestination(dg.ConfigurableResource):
    """An application database reached through a SQLAlchemy URL taken from the environment."""

    url: str
    load_streams: int | None = None  # connections a large load uses at once (None: from the server and cores)
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def masked_url(self) -> str:
        return masked_url(self.url)

    @property
    def kind(self) -> str:
        """The Dagster kind of its tables (mysql, postgres, sqlite)."""
        return dialect_kind(self.url)

    @property
    def capabilities(self) -> Capabilities:
        return sql_dialect(_plain(self.url)).capabilities

    @property
    def identity(self) -> str:
        return destination_identity(self.url)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def destination(self, syncs: Sequence[SyncSpec] = ()):
        """The writer of a step (a database reads its foreign keys from its own schema, not `syncs`)."""
        from activation.destinations.sql import SqlDestination

        return SqlDestination(self.engine(), load_streams=self.load_streams)

    def checks(self, planner, destination):
        from activation.orchestration.checks.suites import SqlChecks

        return SqlChecks(planner, self.engine(), self.capabilities)


class ApiDestinationResource(dg.ConfigurableResource):
    """An API destination (Salesforce, HubSpot, any HTTP endpoint) as syncs.yml declares it: URLs,
    limits and the NAMES of the environment variables that hold its secrets, which are read only
    when a sync opens its client. So the definitions load without them, and a missing one fails
    only that destination's assets, naming the variable."""

    name: str
    spec_json: str  # the destination's syncs.yml entry, as JSON (never a secret: those are env names)

    @property
    def spec(self) -> DestinationSpec:
        return DestinationSpec.model_validate_json(self.spec_json)

    @property
    def kind(self) -> str:
        return self.spec.type

    @property
    def capabilities(self) -> Capabilities:
        from activation.destinations import registry

        return registry.api_destination(self.name, self.spec).capabilities

    @property
    def url(self) -> str:
        """Where its API is (`https://acme.my.salesforce.com`): no path, no credentials."""
        from activation.destinations import registry

        return registry.endpoint(self.spec)

    @property
    def masked_url(self) -> str:
        return self.url

    @property
    def identity(self) -> str:
        from activation.destinations import registry

        return registry.identity(self.name, self.spec)

    def missing_secrets(self) -> str | None:
        from activation.destinations import registry

        return registry.missing_secrets(self.name, self.spec)

    def destination(self, syncs: Sequence[SyncSpec] = ()):
        """The `ApiDestination` a step writes through; a secret's variable unset fails here, named.
        `syncs`: the config's, whose relationships the destination checks (api/parents.py)."""
        from activation.destinations import registry

        missing = self.missing_secrets()
        if missing:
            raise dg.Failure(description=missing)
        return registry.api_destination(self.name, self.spec, syncs)

    def checks(self, planner, destination):
        from activation.orchestration.checks.api import ApiChecks

        return ApiChecks(planner, destination)


class StreamDestinationResource(dg.ConfigurableResource):
    """A broker (NATS JetStream, RabbitMQ Streams, Redis Streams) as syncs.yml declares it; its
    secrets are names of environment variables, read when a sync connects."""

    name: str
    spec_json: str

    @property
    def spec(self) -> DestinationSpec:
        return DestinationSpec.model_validate_json(self.spec_json)

    @property
    def kind(self) -> str:
        from activation.destinations.streams.config import KINDS

        return KINDS[self.spec.type]

    @property
    def capabilities(self) -> Capabilities:
        from activation.destinations.streams.engine import StreamDestination

        return StreamDestination.capabilities

    @property
    def url(self) -> str:
        from activation.destinations.streams.config import endpoint

        return endpoint(self.spec)

    @property
    def masked_url(self) -> str:
        return self.url

    @property
    def identity(self) -> str:
        from activation.destinations.streams.config import identity

        return identity(self.name, self.spec)

    def destination(self, syncs: Sequence[SyncSpec] = (), run_id: str | None = None):
        from activation.destinations.streams.engine import StreamDestination

        destination = StreamDestination(self.name, self.spec)
        if run_id:
            destination.run_id = run_id
        return destination

    def checks(self, planner, destination):
        from activation.orchestration.checks.streams import StreamChecks

        return StreamChecks(planner, destination)


def destination_resource(
    name: str, spec: DestinationSpec, base_dir: Path
) -> SQLDestination | ApiDestinationResource | StreamDestinationResource:
    """The resource for a configured destination. A database: the URL from its environment variable
    (kept as an EnvVar, so it never shows in the UI), else the config's password-free default; a
    relative SQLite path in the default is taken from `base_dir` (the sync config's folder), so the
    same file is used whatever the working directory. An API: its settings, secrets read at run time.
    """
    if spec.is_stream:
        return StreamDestinationResource(name=name, spec_json=spec.model_dump_json())
    if spec.is_api:
        return ApiDestinationResource(name=name, spec_json=spec.model_dump_json())
    if os.environ.get(spec.url_env):
        return SQLDestination(url=dg.EnvVar(spec.url_env), load_streams=spec.load_streams)
    if not spec.default_url:
        raise SyncConfigError(
            f"set {spec.url_env} to a SQLAlchemy URL: it is unset and the destination has no default_url"
        )
    return SQLDestination(url=resolve_path(spec.default_url, base_dir), load_streams=spec.load_streams)
