"""The sync engine end to end into MariaDB, PostgreSQL and SQLite, against each one's own reference, in one run.

    uv run python bench/sync_engine.py                    # MariaDB, 1,000,000 and 4,000,000 rows
    uv run python bench/sync_engine.py --destinations mysql,postgres,sqlite --rows 1000000
    uv run python bench/sync_engine.py --rows 16000000 --initial-only   # the reference and our initial sync
    uv run python bench/sync_engine.py --quick            # 100,000 rows
    uv run python bench/sync_engine.py --no-alternatives  # skip executemany and pandas.to_sql
    uv run python bench/sync_engine.py --buffer-pool-mb 2048   # InnoDB sized to hold the table

For each destination and size: the reference load into an empty table (MariaDB: DuckDB COPY to
CSV + one LOAD DATA LOCAL INFILE; PostgreSQL: the same CSV through one COPY FROM STDIN; SQLite:
executemany of the rows in one transaction); for MariaDB the usual alternatives, pymysql
executemany and pandas.to_sql (on at most --slow-rows rows: it runs at ~5k rows/s); our initial
sync (plan in DuckDB, create the table, stream Arrow, bulk load, commit, record state); then our
incremental sync after 1% and after 10% of rows changed (updates, inserts and deletes, mode
mirror), each beside its floor (floors.py): the destination's work alone for the same change,
on a copy of the table, with the changed rows computed before the clock starts. "vs ref" is
against the reference load of the same run, "vs floor" against the floor of the same change.

Memory: every step runs in a fresh child process, and its peak is that whole process's peak RSS
(VmHWM: interpreter, imports, DuckDB, Arrow, driver), what a container limit sees; "at start" is
its RSS when the step began. Not ru_maxrss: a spawned child's starts at its parent's size. Our
syncs open the destination as production does (`destinations.sql.engine.create_engine`) and read
the warehouse through `DuckDBWarehouse.connect`, so ACTIVATION_DUCKDB_MEMORY_LIMIT applies.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floors import prepare_floor, step_floor  # noqa: E402
from load_methods import (  # noqa: E402
    COLUMNS,
    MYSQL_SERVER,
    QUERY,
    TABLE,
    _create_database,
    _drop_database,
    bench_spec,
    build_source,
    m_pg_reference_copy,
    m_reference_load_data,
    run_method,
)

from activation.destinations.sql import SqlDestination, normalize_url  # noqa: E402
from activation.destinations.sql.engine import create_engine  # noqa: E402
from activation.orchestration.resources import DuckDBWarehouse  # noqa: E402
from activation.settings import Settings  # noqa: E402
from activation.syncs.model import MartRelation  # noqa: E402
from activation.warehouses.duckdb import DuckDB  # noqa: E402


def _status_mb(key: str) -> float:
    """A line of /proc/self/status in MB (Linux); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory(start_mb: float) -> dict:
    """The whole process's peak RSS so far (it runs one step), and its RSS when the step began."""
    return {"peak_mb": _status_mb("VmHWM"), "start_mb": start_mb}


def _sqlite_reference(engine: sa.Engine, con: duckdb.DuckDBPyConnection) -> None:
    """executemany of every row, 50k a call, in one transaction (SQLite has no bulk load)."""
    marks = ", ".join("?" * len(COLUMNS))
    result = con.execute(f"SELECT * REPLACE (CAST(revenue AS VARCHAR) AS revenue) FROM ({QUERY})")
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        while rows := result.fetchmany(50_000):
            cursor.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})", rows)


def step_reference(kind: str, url: str, source: str) -> dict:
    from load_methods import target_table

    engine = create_engine(url)
    with engine.begin() as conn:
        target_table().drop(conn, checkfirst=True)
        target_table().create(conn)
    con = duckdb.connect(source, read_only=True)  # DuckDB's own defaults: the reference is unbounded
    con.execute("SET enable_progress_bar = false")
    start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    if kind == "mysql":
        m_reference_load_data(engine, con, QUERY, 50_000)
    elif kind == "postgres":
        m_pg_reference_copy(engine, con, QUERY, 50_000)
    else:
        _sqlite_reference(engine, con)
    seconds = time.perf_counter() - t0
    memory = _memory(start)
    with engine.begin() as conn:
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one()
        conn.execute(sa.text(f"DROP TABLE {TABLE}"))
    engine.dispose()
    return {"rows": rows, "written": rows, "seconds": seconds, **memory}


def step_sync(url: str, source: str, state: str) -> dict:
    engine = create_engine(url)  # as production opens it
    # The imports above leave garbage that the first full collection walks (~0.1 s in this child):
    # collected before the clock, so a step measures the sync, not where that collection falls.
    gc.collect()
    start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    with DuckDBWarehouse(path=source).connect() as con:  # bounded as in production
        planner = DuckDB(con, state, url)
        [result] = SqlDestination(engine).sync(
            planner, [bench_spec()], {"bench": MartRelation("main", "src")}, log=lambda _: None
        )
    seconds = time.perf_counter() - t0
    memory = _memory(start)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one()
    engine.dispose()
    return {
        "rows": rows,
        "written": result.inserted + result.updated + result.deleted,
        "seconds": seconds,
        **memory,
        "note": f"+{result.inserted:,} ~{result.updated:,} -{result.deleted:,} sent {result.rows_sent:,} "
        f"({result.strategy})",
    }


def change(source: str, share: float, seed: int) -> None:
    """Update, insert and delete `share` of the rows between them (80/10/10)."""
    con = duckdb.connect(source)
    con.execute("SET enable_progress_bar = false")
    n = con.execute("SELECT count(*) FROM src").fetchall()[0][0]
    k = int(n * share)
    con.execute(
        f"UPDATE src SET score = score + 1, updated_at = updated_at + INTERVAL 1 SECOND "
        f"WHERE hash(customer_key, {seed}) % {n} < {int(k * 0.8)}"
    )
    con.execute(f"DELETE FROM src WHERE hash(customer_key, {seed}, 'd') % {n} < {int(k * 0.1)}")
    con.execute(
        f"INSERT INTO src SELECT * REPLACE ('new-{seed}-' || customer_key AS customer_key) FROM src "
        f"USING SAMPLE {int(k * 0.1)} ROWS (reservoir, {seed})"
    )
    con.close()


def step_method(kind: str, name: str, url: str, source: str, rows: int, batch: int) -> dict:
    """A load method of load_methods.py; it marks the peak from the start of the load, so VmHWM
    afterwards is the whole process's peak while it loaded."""
    r = run_method(kind, name, url, source, rows, batch)
    peak = _status_mb("VmHWM")
    return {**r, "peak_mb": peak, "start_mb": peak - r["peak_mb"]}


def run(step, *args) -> dict:
    """One step in a fresh child process, so its peak memory is its own."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(step, *args).result()


NAMES = {"mysql": "MariaDB", "postgres": "PostgreSQL", "sqlite": "SQLite"}
REFERENCES = {"mysql": "LOAD DATA", "postgres": "COPY", "sqlite": "executemany"}


def _database(kind: str, tmp: Path, rows: int) -> tuple[str, sa.Engine | None, str]:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/app_{rows}.sqlite", None, ""
    return _create_database(kind)


def bench_size(
    kind: str, rows: int, tmp: Path, slow_rows: int, executemany_rows: int, initial_only: bool, alternatives: bool
) -> list[dict]:
    source = str(tmp / f"src_{kind}_{rows}.duckdb")
    build_source(source, rows)
    url, admin, name = _database(kind, tmp, rows)
    state = str(tmp / f"state_{kind}_{rows}.duckdb")
    print(f"\n{NAMES[kind]}, {rows:,} rows x {len(COLUMNS)} columns")
    header = (
        f"{'step':<34} {'seconds':>8} {'rows/s':>10} {'vs ref':>7} {'vs floor':>8} {'% of initial':>12} "
        f"{'peak RSS MB':>11} {'at start':>8}  what"
    )
    print(header)
    print("-" * len(header))
    results: list[dict] = []

    def line(label: str, r: dict, vs_ref: str = "", vs_floor: str = "", of_initial: str = "") -> None:
        rate = r["written"] / r["seconds"]
        results.append(
            {**r, "kind": kind, "size": rows, "step": label, "rate": rate, "vs_ref": vs_ref, "vs_floor": vs_floor}
        )
        print(
            f"{label:<34} {r['seconds']:>8.2f} {rate:>10,.0f} {vs_ref:>7} {vs_floor:>8} {of_initial:>12} "
            f"{r['peak_mb']:>11.0f} {r['start_mb']:>8.0f}  {r['note']}",
            flush=True,
        )

    try:
        ref = run(step_reference, kind, url, source)
        ref_rate = ref["rows"] / ref["seconds"]
        line(f"{REFERENCES[kind]} reference", {**ref, "note": f"{ref['rows']:,} rows"}, "1.00")
        methods = (
            ("pymysql executemany", "pymysql executemany 10k", min(rows, executemany_rows)),
            ("pandas.to_sql (multi)", "pandas to_sql multi 10k", min(rows, slow_rows)),
        )
        for label, method, n in methods if kind == "mysql" and alternatives and not initial_only else ():
            r = run(step_method, "mysql", method, url, source, n, 50_000)
            r["note"] = f"{r['rows']:,} rows" + (f" (first {n:,} only)" if n < rows else "")
            r["written"] = r["rows"]
            line(label, r, f"{r['rows'] / r['seconds'] / ref_rate:.2f}")
        initial = run(step_sync, url, source, state)
        line("ours: initial sync", initial, f"{initial['rows'] / initial['seconds'] / ref_rate:.2f}", "", "100.0%")
        for share in () if initial_only else (0.01, 0.10):
            prepare_floor(kind, url, source)
            change(source, share, seed=int(share * 100))
            floor = run(step_floor, kind, url, source, str(tmp))
            r = run(step_sync, url, source, state)
            ratio = f"{r['seconds'] / floor['seconds']:.2f}x"
            line(
                f"ours: incremental, {share:.0%} changed",
                r,
                "",
                ratio,
                f"{100 * r['seconds'] / initial['seconds']:.1f}%",
            )
            line(
                "  floor: destination work alone",
                floor,
                "",
                "1.00x",
                f"{100 * floor['seconds'] / initial['seconds']:.1f}%",
            )
    finally:
        if admin is not None:
            try:
                _drop_database(kind, admin, name)
            except sa.exc.DBAPIError as exc:  # a server restarted by someone else: the run's figures stand
                print(f"could not drop {name}: {exc.orig!r}")
    return results


def print_summary(results: list[dict]) -> None:
    """Per destination and size: the incrementals against their floors, and every step's peak."""
    print(
        "\ndestination  rows         initial vs ref  1% vs floor  10% vs floor  peak RSS MB (ref / initial / 1% / 10%)"
    )
    for kind, rows in dict.fromkeys((r["kind"], r["size"]) for r in results):
        mine = {r["step"]: r for r in results if (r["kind"], r["size"]) == (kind, rows)}
        ours = mine["ours: initial sync"]
        steps = [f"{REFERENCES[kind]} reference", "ours: initial sync"] + [
            f"ours: incremental, {p} changed" for p in ("1%", "10%")
        ]
        peaks = " / ".join(f"{mine[k]['peak_mb']:.0f}" for k in steps if k in mine)
        ratios = [mine.get(f"ours: incremental, {p} changed", {}).get("vs_floor", "-") for p in ("1%", "10%")]
        print(f"{NAMES[kind]:<12} {rows:<12,} {ours['vs_ref']:>14} {ratios[0]:>12} {ratios[1]:>13}  {peaks}")


@contextlib.contextmanager
def buffer_pool(megabytes: int | None):
    """Run with InnoDB's buffer pool at `megabytes` (a production server holds its hot tables in
    memory; a fresh install has 128 MB), and put the server's own setting back afterwards."""
    engine = sa.create_engine(normalize_url(MYSQL_SERVER))
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar_one()
        if megabytes:
            conn.exec_driver_sql(f"SET GLOBAL innodb_buffer_pool_size = {int(megabytes) * 1024 * 1024}")
            time.sleep(2)  # the resize runs in the background
        now = conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar_one()
        version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
    print(f"MariaDB {version}, innodb_buffer_pool_size {now // 2**20:,} MB")
    try:
        yield
    finally:
        if megabytes:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET GLOBAL innodb_buffer_pool_size = {before}")
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="table size (repeatable)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument(
        "--destinations", default="mysql", help="comma-separated, of mysql, postgres, sqlite (default: mysql)"
    )
    parser.add_argument(
        "--no-alternatives", action="store_true", help="skip pymysql executemany and pandas.to_sql (MariaDB)"
    )
    parser.add_argument("--slow-rows", type=int, default=100_000, help="at most this many rows for pandas.to_sql")
    parser.add_argument(
        "--executemany-rows", type=int, default=4_000_000, help="at most this many rows for pymysql executemany"
    )
    parser.add_argument(
        "--initial-only", action="store_true", help="only the LOAD DATA reference and our initial sync (big sizes)"
    )
    parser.add_argument(
        "--buffer-pool-mb", type=int, help="set InnoDB's buffer pool for the run (restored after; needs SUPER)"
    )
    args = parser.parse_args()
    kinds = [k.strip() for k in args.destinations.split(",") if k.strip()]
    unknown = set(kinds) - set(NAMES)
    if unknown:
        parser.error(f"unknown destination(s) {', '.join(sorted(unknown))}: pick from {', '.join(NAMES)}")
    sizes = [100_000] if args.quick else (args.rows or [1_000_000, 4_000_000])
    tmp = Path(tempfile.mkdtemp(prefix="activation_bench_"))
    limit = Settings.from_env().duckdb_memory_limit
    print(f"DuckDB memory limit of our syncs: {limit} (ACTIVATION_DUCKDB_MEMORY_LIMIT)")
    results = []
    try:
        with buffer_pool(args.buffer_pool_mb) if "mysql" in kinds else contextlib.nullcontext():
            for kind in kinds:
                for rows in sizes:
                    results += bench_size(
                        kind,
                        rows,
                        tmp,
                        args.slow_rows,
                        args.executemany_rows,
                        args.initial_only,
                        not args.no_alternatives,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_summary(results)


if __name__ == "__main__":
    main()
