"""DuckDB's memory bound: every DuckDB connection the code opens (the warehouse, a scratch database
for the checks) caps its buffer manager, which otherwise grows with the data it scans (up to 80%
of RAM), spills beyond the cap, and runs no more threads than the cap can feed."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import duckdb

from activation.settings import Settings

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
    """Cap DuckDB's buffer manager, say where it spills beyond the cap, and run no more threads
    than the cap can feed. Unset arguments come from the settings (ACTIVATION_DUCKDB_MEMORY_LIMIT,
    _TEMP_DIRECTORY, _THREADS). All are settings of the database instance, which every connection
    to the same file in this process shares."""
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
