"""Initial sync and replace's shadow load on several connections, against one stream of the
database's own bulk loader on a ready file, in one run (issue 19, targets 1 and 4).

    uv run python bench/parallel_load.py                       # 1,000,000 rows
    uv run python bench/parallel_load.py --rows 1000000 --rows 4000000
    uv run python bench/parallel_load.py --quick               # 200,000 rows
    uv run python bench/parallel_load.py --only mariadb        # or postgres, sqlite
    uv run python bench/parallel_load.py --rounds 3            # a busy host: medians of same-round ratios

An 11-column mart (BIGINT key, text with Japanese and NULLs, ints, decimal, double, bool, date,
timestamp), sorted by key. Per database:
- reference: one LOAD DATA LOCAL INFILE (MariaDB) or one COPY FROM STDIN (PostgreSQL) of a ready,
  key-sorted CSV file written before the clock starts, into an empty table, committed; SQLite: one
  executemany transaction of the rows fetched from DuckDB (no bulk loader);
- the ceiling: the same file's two key-sorted halves on two connections at once;
- ours, initial sync on one stream (`load_streams: 1`) and on two (`load_streams: 2`): plan in
  DuckDB, create the table under a hidden name, load, rename into place, record the state;
- ours, replace after 1% of the rows changed, on one and two streams: every row into a shadow
  table, compare, swap.
Without `load_streams` a sync picks its streams (parallel_load.py); the first line says how many
it would pick here.
"vs ref" is the reference's seconds over the step's: above 1 is faster than one stream. "cpu s"
is the CPU time of the step's own process (all its threads), "server" the database server's CPU
time over the step (read from /proc: the server must run on this host), so a run on a busy host
still shows where the work goes.
Every step runs in a fresh child process; peak RSS is that whole process's (VmHWM).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import math
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_methods import (  # noqa: E402
    COLUMNS,
    MYSQL_SERVER,
    TABLE,
    _create_database,
    _drop_database,
    bench_spec,
    build_source,
)
from sync_engine import _memory, _status_mb, run  # noqa: E402

from activation.destinations.sql import SqlDestination, normalize_url, parallel_load  # noqa: E402
from activation.destinations.sql.dialect import sql_dialect  # noqa: E402
from activation.destinations.sql.engine import create_engine  # noqa: E402
from activation.destinations.sql.run import Run  # noqa: E402
from activation.orchestration.resources import DuckDBWarehouse  # noqa: E402
from activation.syncs.model import MartRelation  # noqa: E402
from activation.warehouses.duckdb import DuckDB  # noqa: E402

TEXT = ("name", "email", "city")


def server_cpu(kind: str) -> float:
    """CPU seconds the database server on this host has used so far (MariaDB: one process; PostgreSQL:
    its live processes plus what the postmaster's exited backends used), or NaN when not local."""
    names = {"mysql": ("mariadbd", "mysqld"), "postgres": ("postgres",)}.get(kind, ())
    total, found = 0.0, False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm in names:
            found = True
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK") if found else float("nan")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def change(source: str, share: float) -> None:
    """Update, insert and delete `share` of the rows between them (80/10/10)."""
    con = duckdb.connect(source)
    con.execute("SET enable_progress_bar = false")
    n = con.execute("SELECT count(*) FROM src").fetchall()[0][0]
    k = int(n * share)
    con.execute(f"UPDATE src SET score = score + 1 WHERE customer_key % {n // int(k * 0.8)} = 1")
    con.execute(f"DELETE FROM src WHERE customer_key % {n // int(k * 0.1)} = 2")
    con.execute(
        f"INSERT INTO src SELECT * REPLACE (customer_key + {n} AS customer_key) FROM src "
        f"WHERE customer_key < {int(k * 0.1)}"
    )
    con.close()


# -- references: a ready file, the database's own loader ------------------------------------------


def _ready_files(source: str, tmp: str, kind: str, parts: int) -> list[str]:
    """The mart as `parts` key-sorted CSV files the loader reads as they are (before the clock)."""
    con = duckdb.connect(source, read_only=True)
    con.execute("SET enable_progress_bar = false")
    n = con.execute("SELECT count(*) FROM src").fetchall()[0][0]
    quoted = ", ".join(TEXT)
    options = (
        f"FORMAT csv, HEADER false, NULLSTR 'NULL', FORCE_QUOTE ({quoted})"
        if kind == "mysql"
        else f"FORMAT csv, HEADER false, FORCE_QUOTE ({quoted})"
    )
    select = (
        "SELECT * REPLACE (CAST(is_active AS TINYINT) AS is_active) FROM src"
        if kind == "mysql"
        else "SELECT * FROM src"
    )
    paths = []
    for part in range(parts):
        path = os.path.join(tmp, f"{kind}_{part}_of_{parts}.csv")
        low, high = n * part // parts, n * (part + 1) // parts
        con.execute(
            f"COPY ({select} WHERE customer_key >= {low} AND customer_key < {high} ORDER BY customer_key) "
            f"TO '{path}' ({options})"
        )
        paths.append(path)
    con.close()
    return paths


def _reference_table(url: str) -> None:
    """The table our sync creates for this mart, created by a sync of its first row."""
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "one.duckdb")
        build_source(small, 1, integer_keys=True)
        engine = create_engine(url)
        with duckdb.connect(small) as con:
            SqlDestination(engine).sync(
                DuckDB(con, os.path.join(tmp, "state.duckdb"), url),
                [bench_spec("replace")],
                {"bench": MartRelation("main", "src")},
                log=lambda _: None,
            )
        with engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {TABLE}"))
        engine.dispose()


def _load_file(url: str, kind: str, path: str) -> int:
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True} if kind == "mysql" else {})
    try:
        with engine.begin() as conn:
            if kind == "mysql":
                return conn.exec_driver_sql(
                    f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {TABLE} CHARACTER SET utf8mb4 FIELDS TERMINATED BY "
                    "',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY 0x0A "
                    f"({', '.join(COLUMNS)})"
                ).rowcount
            with conn.connection.dbapi_connection.cursor() as cursor:
                with cursor.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
                    with open(path, "rb") as f:
                        while block := f.read(1 << 20):
                            copy.write(block)
                return cursor.rowcount
    finally:
        engine.dispose()


def step_reference(url: str, kind: str, source: str, tmp: str, streams: int) -> dict:
    """One stream (or `streams` at once) of the loader on ready key-sorted files."""
    paths = _ready_files(source, tmp, kind, streams)
    _reference_table(url)
    start = _status_mb("VmRSS")
    t0, c0, s0 = time.perf_counter(), _cpu(), server_cpu(kind)
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        rows = sum(pool.map(lambda p: _load_file(url, kind, p), paths))
    seconds = time.perf_counter() - t0
    memory = _memory(start) | {"cpu": _cpu() - c0, "server_cpu": server_cpu(kind) - s0}
    for path in paths:
        os.unlink(path)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {TABLE}"))
    engine.dispose()
    return {"rows": rows, "seconds": seconds, **memory, "note": f"{streams} stream(s) of a ready file"}


def step_sqlite_reference(url: str, source: str) -> dict:
    """SQLite has no bulk loader: one executemany transaction of the rows fetched from DuckDB."""
    _reference_table(url)
    path = sa.engine.make_url(url).database
    con = duckdb.connect(source, read_only=True)
    con.execute("SET enable_progress_bar = false")
    start = _status_mb("VmRSS")
    t0, c0 = time.perf_counter(), _cpu()
    db = sqlite3.connect(path)
    # SQLite binds no Decimal: the revenue as text, which its NUMERIC column stores as a number
    result = con.execute(
        f"SELECT * REPLACE (CAST(revenue AS VARCHAR) AS revenue) FROM (SELECT {', '.join(COLUMNS)} FROM src)"
    )
    marks = ", ".join("?" for _ in COLUMNS)
    rows = 0
    with db:
        while batch := result.fetchmany(50_000):
            db.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})", batch)
            rows += len(batch)
    seconds = time.perf_counter() - t0
    memory = _memory(start) | {"cpu": _cpu() - c0, "server_cpu": float("nan")}
    db.execute(f"DROP TABLE {TABLE}")
    db.close()
    return {"rows": rows, "seconds": seconds, **memory, "note": "executemany, one transaction"}


# -- ours ------------------------------------------------------------------------------------------


def step_sync(url: str, source: str, state: str, mode: str, streams: int | None, kind: str) -> dict:
    engine = create_engine(url)
    lines: list[str] = []
    gc.collect()
    start = _status_mb("VmRSS")
    t0, c0, s0 = time.perf_counter(), _cpu(), server_cpu(kind)
    with DuckDBWarehouse(path=source).connect() as con:  # bounded as in production
        [result] = SqlDestination(engine, load_streams=streams).sync(
            DuckDB(con, state, url), [bench_spec(mode)], {"bench": MartRelation("main", "src")}, log=lines.append
        )
    seconds = time.perf_counter() - t0
    memory = _memory(start) | {"cpu": _cpu() - c0, "server_cpu": server_cpu(kind) - s0}
    engine.dispose()
    used = next((line.split(" on ")[1].split(" connections")[0] for line in lines if " connections " in line), "1")
    counted = ""  # replace: counted from the warehouse's diff, or by comparing the tables (shadow_counts.py)
    if any("counts from the warehouse's diff" in line for line in lines):
        counted = ", counts from the diff"
    elif any("comparing the new table with the old" in line for line in lines):
        counted = ", compared"
    return {
        "rows": result.rows_sent,
        "seconds": seconds,
        **memory,
        "note": f"{result.strategy}, {used} stream(s), +{result.inserted:,} ~{result.updated:,} -{result.deleted:,}"
        + counted,
    }


def _drop_table(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


def bench(kind: str, rows: int, tmp: Path) -> list[tuple[str, dict]]:
    source = str(tmp / f"src_{rows}.duckdb")
    if not os.path.exists(source):
        build_source(source, rows, integer_keys=True)
    work = str(tmp / f"work_{kind}_{rows}.duckdb")
    shutil.copy(source, work)
    if kind == "sqlite":
        url, admin, name = f"sqlite:///{tmp}/bench_{rows}.sqlite", None, None
    else:
        url, admin, name = _create_database(kind)
    steps: list[tuple[str, dict]] = []
    try:
        if kind == "sqlite":
            steps.append(("reference: executemany", run(step_sqlite_reference, url, work)))
        else:
            loader = "LOAD DATA" if kind == "mysql" else "COPY"
            steps.append((f"reference: one {loader}, ready file", run(step_reference, url, kind, work, str(tmp), 1)))
            steps.append((f"ceiling: two {loader}s, ready halves", run(step_reference, url, kind, work, str(tmp), 2)))
        for streams in (1,) if kind == "sqlite" else (1, 2):
            shutil.copy(source, work)
            _drop_table(url)
            state = str(tmp / f"s_{kind}_{streams}.duckdb")
            label = f"{streams} stream{'s' if streams > 1 else ''}"
            steps.append((f"ours: initial, {label}", run(step_sync, url, work, state, "replace", streams, kind)))
            change(work, 0.01)
            steps.append(
                (f"ours: replace 1% changed, {label}", run(step_sync, url, work, state, "replace", streams, kind))
            )
    finally:
        if admin is not None:
            _drop_database(kind, admin, name)
        os.unlink(work)
    return steps


def _default_streams() -> int:
    url, admin, name = _create_database("mysql")
    try:
        engine = create_engine(url)
        run_ = Run(engine, sql_dialect(engine), None, print)
        with engine.connect() as conn:
            return parallel_load.stream_count(run_, conn, 1_000_000)
    finally:
        engine.dispose()
        _drop_database("mysql", admin, name)


def _s(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="mart size (repeatable)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--only", action="append", choices=["mariadb", "postgres", "sqlite"])
    parser.add_argument("--rounds", type=int, default=1, help="repeat each database's steps (a busy host)")
    args = parser.parse_args()
    sizes = [200_000] if args.quick else (args.rows or [1_000_000])
    kinds = {"mariadb": "mysql", "postgres": "postgres", "sqlite": "sqlite"}
    tmp = Path(tempfile.mkdtemp(prefix="activation_bench_parallel_"))
    local = (None, "", "localhost", "127.0.0.1", "::1")
    print(
        f"{os.cpu_count()} cores; servers on this host: {sa.engine.make_url(MYSQL_SERVER).host in local}; a sync "
        f"picks {_default_streams()} stream(s) for 1M rows here; every step in its own process; "
        "vs ref = reference seconds / step seconds"
    )
    header = (
        f"{'database':<9} {'rows':>10} {'step':<34} {'seconds':>8} {'rows/s':>9} {'vs ref':>7} {'cpu s':>6} "
        f"{'server':>6} {'peak RSS MB':>11}  what"
    )
    print(header)
    print("-" * len(header))
    medians: dict[tuple, list[float]] = {}
    try:
        for rows in sizes:
            for round_ in range(1, args.rounds + 1):
                for label in args.only or list(kinds):
                    steps = bench(kinds[label], rows, tmp)
                    ref = steps[0][1]["seconds"]
                    for step, r in steps:
                        medians.setdefault((label, rows, step), []).append(ref / r["seconds"])
                        print(
                            f"{label:<9} {rows:>10,} {step:<34} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>9,.0f} "
                            f"{ref / r['seconds']:>7.2f} {r['cpu']:>6.1f} {_s(r['server_cpu']):>6} "
                            f"{r['peak_mb']:>11.0f}  {r['note']} (round {round_}, load {os.getloadavg()[0]:.1f})",
                            flush=True,
                        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.rounds > 1:
        print("\nmedian over the rounds of each round's ratio to its own reference")
        for (label, rows, step), ratios in medians.items():
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"{label:<9} {rows:>10,} {step:<34} {statistics.median(ratios):>5.2f}  ({each})")


if __name__ == "__main__":
    main()
