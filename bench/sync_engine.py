"""The sync engine end to end into MariaDB, against the physical LOAD DATA reference, in one run.

    uv run python bench/sync_engine.py                    # 1,000,000 and 4,000,000 rows
    uv run python bench/sync_engine.py --rows 1000000     # one size
    uv run python bench/sync_engine.py --rows 16000000 --initial-only   # the reference and our initial sync
    uv run python bench/sync_engine.py --quick            # 100,000 rows
    uv run python bench/sync_engine.py --buffer-pool-mb 2048   # InnoDB sized to hold the table


For each size: the reference (DuckDB COPY to CSV + one LOAD DATA LOCAL INFILE into an empty
table); the usual alternatives, pymysql executemany and pandas.to_sql (on at most --slow-rows
rows: it runs at ~5k rows/s); our initial sync (plan in DuckDB, create the table, stream Arrow,
bulk load, commit, record state); then our incremental sync after 1% and after 10% of rows
changed (updates, inserts and deletes, mode mirror), each beside its floor: the destination
work alone for the same change (LOAD DATA of the changed rows into a staging table, one
INSERT ... ON DUPLICATE KEY UPDATE, one DELETE join), on a copy of the table, with the changed
rows computed before the clock starts. Ratios are against the reference measured in the same run.

Memory: every step runs in a fresh child process, and its peak is that whole process's peak RSS
(VmHWM: interpreter, imports, DuckDB, Arrow, driver), what a container limit sees; "at start" is
its RSS when the step began. Not ru_maxrss: a spawned child's starts at its parent's size. Our
syncs read the warehouse through `DuckDBWarehouse.connect`, so ACTIVATION_DUCKDB_MEMORY_LIMIT
applies as in production.
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

from load_methods import (  # noqa: E402
    COLUMNS,
    MYSQL_SERVER,
    QUERY,
    TABLE,
    _create_database,
    _drop_database,
    _reset_peak_rss,
    build_source,
    m_reference_load_data,
    run_method,
)

from activation.destinations.sql import SqlDestination, normalize_url  # noqa: E402
from activation.orchestration.resources import DuckDBWarehouse  # noqa: E402
from activation.settings import Settings  # noqa: E402
from activation.syncs.model import MartRelation  # noqa: E402
from activation.syncs.spec import SyncConfig  # noqa: E402
from activation.warehouses.duckdb import DuckDB  # noqa: E402


def _spec():
    config = SyncConfig.model_validate(
        {
            "destinations": {"app": {"url_env": "UNUSED"}},
            "syncs": {
                "bench": {
                    "source": "src",
                    "destination": "app",
                    "table": TABLE,
                    "primary_key": "customer_key",
                    "mode": "mirror",
                    "guards": {"max_deletes": "100%", "max_updates": "100%"},
                }
            },
        }
    )
    return config.syncs["bench"]


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


def step_reference(url: str, source: str) -> dict:
    from load_methods import target_table

    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    with engine.begin() as conn:
        target_table().drop(conn, checkfirst=True)
        target_table().create(conn)
    con = duckdb.connect(source, read_only=True)  # DuckDB's own defaults: the reference is unbounded
    con.execute("SET enable_progress_bar = false")
    start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    m_reference_load_data(engine, con, QUERY, 50_000)
    seconds = time.perf_counter() - t0
    memory = _memory(start)
    with engine.begin() as conn:
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one()
        conn.execute(sa.text(f"DROP TABLE {TABLE}"))
    engine.dispose()
    return {"rows": rows, "written": rows, "seconds": seconds, **memory}


def step_sync(url: str, source: str, state: str) -> dict:
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    # The imports above leave garbage that the first full collection walks (~0.1 s in this child):
    # collected before the clock, so a step measures the sync, not where that collection falls.
    gc.collect()
    start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    with DuckDBWarehouse(path=source).connect() as con:  # bounded as in production
        planner = DuckDB(con, state, url)
        [result] = SqlDestination(engine).sync(
            planner, [_spec()], {"bench": MartRelation("main", "src")}, log=lambda _: None
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


FLOOR_TABLE = "floor_copy"


def prepare_floor(url: str, source: str) -> None:
    """Before a change: copy the destination table and the mart, so the floor can replay the change."""
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        conn.exec_driver_sql(f"CREATE TABLE {FLOOR_TABLE} LIKE {TABLE}")
        conn.exec_driver_sql(f"INSERT INTO {FLOOR_TABLE} SELECT * FROM {TABLE}")
    engine.dispose()
    with duckdb.connect(source) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE OR REPLACE TABLE before_change AS SELECT * FROM src")


def step_floor(url: str, source: str, tmp: str) -> dict:
    """The destination's share of an incremental sync: load the changed rows and the deleted keys,
    upsert, delete, commit. The changed rows are found before the clock starts."""
    changed, gone = f"{tmp}/changed.csv", f"{tmp}/gone.csv"
    with duckdb.connect(source) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            f"COPY (SELECT * REPLACE (CAST(is_active AS TINYINT) AS is_active) FROM "
            f"(SELECT {', '.join(COLUMNS)} FROM src EXCEPT SELECT {', '.join(COLUMNS)} FROM before_change) "
            f"ORDER BY customer_key) TO '{changed}' (FORMAT csv, HEADER false, NULLSTR 'NULL', "
            "FORCE_QUOTE (customer_key, name, email, city))"
        )
        con.execute(
            "COPY (SELECT customer_key FROM before_change ANTI JOIN src USING (customer_key) ORDER BY 1) "
            f"TO '{gone}' (FORMAT csv, HEADER false, FORCE_QUOTE (customer_key))"
        )
        con.execute("DROP TABLE before_change")
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    load = "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY 0x0A"
    start = _reset_peak_rss() / 1024  # the peak of the work alone, not of finding the changed rows
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE stage LIKE {FLOOR_TABLE}")
        conn.exec_driver_sql("CREATE TEMPORARY TABLE gone (customer_key VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY)")
        sent = conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE '{changed}' INTO TABLE stage CHARACTER SET utf8mb4 {load} ({', '.join(COLUMNS)})"
        ).rowcount
        conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE '{gone}' INTO TABLE gone CHARACTER SET utf8mb4 {load}")
        updates = ", ".join(f"{c} = VALUES({c})" for c in COLUMNS if c != "customer_key")
        conn.exec_driver_sql(f"INSERT INTO {FLOOR_TABLE} SELECT * FROM stage ON DUPLICATE KEY UPDATE {updates}")
        deleted = conn.exec_driver_sql(
            f"DELETE f FROM {FLOOR_TABLE} f JOIN gone g ON f.customer_key = g.customer_key"
        ).rowcount
    seconds = time.perf_counter() - t0
    memory = _memory(start)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {FLOOR_TABLE}")
    engine.dispose()
    return {
        "rows": sent + deleted,
        "written": sent + deleted,
        "seconds": seconds,
        **memory,
        "note": f"{sent:,} rows upserted, {deleted:,} deleted",
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


def bench_size(rows: int, tmp: Path, slow_rows: int, executemany_rows: int, initial_only: bool) -> list[dict]:
    source = str(tmp / f"src_{rows}.duckdb")
    build_source(source, rows)
    url, admin, name = _create_database("mysql")
    state = str(tmp / f"state_{rows}.duckdb")
    print(f"\nMariaDB, {rows:,} rows x {len(COLUMNS)} columns")
    header = (
        f"{'step':<34} {'seconds':>8} {'rows/s':>10} {'vs ref':>7} {'% of initial':>12} {'peak RSS MB':>11} "
        f"{'at start':>8}  what"
    )
    print(header)
    print("-" * len(header))
    results: list[dict] = []

    def line(label: str, r: dict, rate: float, vs_ref: str, of_initial: str) -> None:
        results.append({**r, "size": rows, "step": label, "rate": rate, "vs_ref": vs_ref, "of_initial": of_initial})
        print(
            f"{label:<34} {r['seconds']:>8.2f} {rate:>10,.0f} {vs_ref:>7} {of_initial:>12} {r['peak_mb']:>11.0f} "
            f"{r['start_mb']:>8.0f}  {r['note']}",
            flush=True,
        )

    try:
        ref = run(step_reference, url, source)
        ref_rate = ref["rows"] / ref["seconds"]
        line("LOAD DATA reference", {**ref, "note": f"{ref['rows']:,} rows"}, ref_rate, "1.00", "")
        alternatives = (
            ("pymysql executemany", "pymysql executemany 10k", min(rows, executemany_rows)),
            ("pandas.to_sql (multi)", "pandas to_sql multi 10k", min(rows, slow_rows)),
        )
        for label, method, n in () if initial_only else alternatives:
            r = run(step_method, "mysql", method, url, source, n, 50_000)
            rate = r["rows"] / r["seconds"]
            r["note"] = f"{r['rows']:,} rows" + (f" (first {n:,} only)" if n < rows else "")
            line(label, r, rate, f"{rate / ref_rate:.2f}", "")
        initial = run(step_sync, url, source, state)
        line(
            "ours: initial sync",
            initial,
            initial["rows"] / initial["seconds"],
            f"{initial['rows'] / initial['seconds'] / ref_rate:.2f}",
            "100.0%",
        )
        for share in () if initial_only else (0.01, 0.10):
            prepare_floor(url, source)
            change(source, share, seed=int(share * 100))
            floor = run(step_floor, url, source, str(tmp))
            r = run(step_sync, url, source, state)
            pct = f"{share:.0%} changed"
            line(
                f"ours: incremental, {pct}",
                r,
                r["written"] / r["seconds"],
                "",
                f"{100 * r['seconds'] / initial['seconds']:.1f}%",
            )
            line(
                "  floor: destination work alone",
                floor,
                floor["written"] / floor["seconds"],
                "",
                f"{100 * floor['seconds'] / initial['seconds']:.1f}%",
            )
    finally:
        _drop_database("mysql", admin, name)
    return results


def print_summary(results: list[dict]) -> None:
    """Per size: the whole-process peak of the reference and of our syncs, and our initial speed."""
    print("\nrows         LOAD DATA peak MB  ours initial: peak MB  vs LOAD DATA  ours incremental 1% / 10%: peak MB")
    for rows in dict.fromkeys(r["size"] for r in results):
        mine = {r["step"]: r for r in results if r["size"] == rows}
        ref, ours = mine["LOAD DATA reference"], mine["ours: initial sync"]
        incremental = " / ".join(
            f"{mine[k]['peak_mb']:.0f}"
            for k in ("ours: incremental, 1% changed", "ours: incremental, 10% changed")
            if k in mine
        )
        peaks = f"{ref['peak_mb']:>17.0f}  {ours['peak_mb']:>21.0f}"
        print(f"{rows:<12,} {peaks}  {ours['vs_ref']:>12}  {incremental or '-':>10}")


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
    sizes = [100_000] if args.quick else (args.rows or [1_000_000, 4_000_000])
    tmp = Path(tempfile.mkdtemp(prefix="activation_bench_"))
    limit = Settings.from_env().duckdb_memory_limit
    print(f"DuckDB memory limit of our syncs: {limit} (ACTIVATION_DUCKDB_MEMORY_LIMIT)")
    results = []
    try:
        with buffer_pool(args.buffer_pool_mb):
            for rows in sizes:
                results += bench_size(rows, tmp, args.slow_rows, args.executemany_rows, args.initial_only)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_summary(results)


if __name__ == "__main__":
    main()
