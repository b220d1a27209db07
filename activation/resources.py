"""Warehouse and destination resources. Connection strings come from the environment only."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.engine import make_url

from activation.destinations.sql.engine import create_engine, resolve_path
from activation.destinations.sql.engine import kind as sql_kind
from activation.destinations.sql.engine import normalize_url as normalize_url  # callers and tests import it here
from activation.settings import Settings
from activation.syncs.spec import DestinationSpec, SyncConfigError

# DuckDB's sort needs about this much memory per thread; with less (8 threads under 192MB) it fails with
# "Out of Memory Error: failed to pin block" instead of spilling.
MEMORY_PER_THREAD = 48 * 2**20
_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def bound_memory(
    con: duckdb.DuckDBPyConnection,
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
    threads: int | None = None,
) -> None:
    """Cap DuckDB's buffer manager, which otherwise grows with the data it scans (up to 80% of RAM),
    say where it spills beyond the cap, and run no more threads than the cap can feed. Unset
    arguments come from the settings (ACTIVATION_DUCKDB_MEMORY_LIMIT, _TEMP_DIRECTORY, _THREADS).
    All are settings of the database instance, which every connection to the same file in this
    process shares."""
    settings = Settings.from_env()
    limit = memory_limit or settings.duckdb_memory_limit
    try:
        con.execute(f"SET memory_limit = {_duckdb_literal(limit)}")
    except duckdb.Error as exc:
        raise ValueError(
            f"DuckDB memory limit {limit!r} (ACTIVATION_DUCKDB_MEMORY_LIMIT or the warehouse's memory_limit) "
            f"is not a size DuckDB accepts, such as 512MB or 2GB: {exc}"
        ) from exc
    folder = temp_directory or settings.duckdb_temp_directory
    if folder and con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] != str(folder):
        # DuckDB refuses to move a spill folder it already uses (an instance shared in this process).
        with contextlib.suppress(duckdb.NotImplementedException):
            con.execute(f"SET temp_directory = {_duckdb_literal(str(folder))}")
    threads = threads or settings.duckdb_threads or _threads_for_limit(con)
    if threads:
        con.execute(f"SET threads = {int(threads)}")


def _threads_for_limit(con: duckdb.DuckDBPyConnection) -> int | None:
    """DuckDB's thread count (one per core), lowered so each thread has MEMORY_PER_THREAD."""
    limit, threads = con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchall()[0]
    number, _, unit = str(limit).partition(" ")
    if unit not in _UNITS:
        return None
    return max(1, min(int(threads), int(float(number) * _UNITS[unit]) // MEMORY_PER_THREAD))


def scratch_duckdb() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for work on data read from elsewhere, bounded like the warehouse; it
    spills under the system's temp folder (DuckDB's own default is `.tmp` in the working directory)."""
    con = duckdb.connect()
    try:
        folder = Settings.from_env().duckdb_temp_directory or Path(tempfile.gettempdir()) / "activation_duckdb"
        bound_memory(con, temp_directory=folder)
    except BaseException:
        con.close()
        raise
    return con


def _duckdb_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
                yield DuckDB(con, self.state_path(destination), identity)
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
        from activation.bigquery import bigquery_warehouse_from_env

        return bigquery_warehouse_from_env()
    return DuckDBWarehouse(
        path=str(settings.warehouse_path),
        memory_limit=settings.duckdb_memory_limit,
        temp_directory=str(settings.duckdb_temp_directory) if settings.duckdb_temp_directory else None,
        threads=settings.duckdb_threads,
    )


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
    return sql_kind(url)


class SQLDestination(dg.ConfigurableResource):
    """An application database reached through a SQLAlchemy URL taken from the environment."""

    url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def masked_url(self) -> str:
        return masked_url(self.url)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
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
    return SQLDestination(url=resolve_path(spec.default_url, base_dir))
