"""The sync engine end to end into MariaDB, against the physical LOAD DATA reference, in one run.

    uv run python bench/sync_engine.py                    # 1,000,000 and 4,000,000 rows
    uv run python bench/sync_engine.py --rows 1000000     # one size
    uv run python bench/sync_engine.py --quick            # 100,000 rows

For each size: the reference (DuckDB COPY to CSV + one LOAD DATA LOCAL INFILE into an empty
table), our initial sync (plan in DuckDB, create the table, stream Arrow, bulk load, commit,
record state), then our incremental sync after 1% and after 10% of rows changed (a mix of
updates, inserts and deletes, mode mirror). Every step runs in its own child process, so peak
memory is the step's own; ratios are against the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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

from load_methods import COLUMNS, QUERY, TABLE, _create_database, _drop_database, build_source, m_reference_load_data  # noqa: E402

from activation.resources import normalize_url  # noqa: E402
from activation.syncs.load import DestinationSync  # noqa: E402
from activation.syncs.plan import MartRelation, Planner  # noqa: E402
from activation.syncs.spec import SyncConfig  # noqa: E402


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


def step_reference(url: str, source: str) -> dict:
    from load_methods import target_table

    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    with engine.begin() as conn:
        target_table().drop(conn, checkfirst=True)
        target_table().create(conn)
    con = duckdb.connect(source, read_only=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    m_reference_load_data(engine, con, QUERY, 50_000)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with engine.begin() as conn:
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one()
        conn.execute(sa.text(f"DROP TABLE {TABLE}"))
    engine.dispose()
    return {"rows": rows, "written": rows, "seconds": seconds, "peak_mb": (peak - before) / 1024}


def step_sync(url: str, source: str, state: str) -> dict:
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with duckdb.connect(source, read_only=True) as con:
        planner = Planner(con, state, url)
        [result] = DestinationSync(engine, planner, log=lambda _: None).run(
            [_spec()], {"bench": MartRelation("main", "src")}
        )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one()
    engine.dispose()
    return {
        "rows": rows,
        "written": result.inserted + result.updated + result.deleted,
        "seconds": seconds,
        "peak_mb": (peak - before) / 1024,
        "note": f"+{result.inserted:,} ~{result.updated:,} -{result.deleted:,} sent {result.rows_sent:,} "
        f"({result.strategy})",
    }


def change(source: str, share: float, seed: int) -> None:
    """Update, insert and delete `share` of the rows between them (80/10/10)."""
    con = duckdb.connect(source)
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


def run(step, *args) -> dict:
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(step, *args).result()


def bench_size(rows: int, tmp: Path) -> None:
    source = str(tmp / f"src_{rows}.duckdb")
    build_source(source, rows)
    url, admin, name = _create_database("mysql")
    state = str(tmp / f"state_{rows}.duckdb")
    print(f"\nMariaDB, {rows:,} rows x {len(COLUMNS)} columns")
    header = f"{'step':<34} {'seconds':>8} {'rows/s':>10} {'vs ref':>7} {'% of initial':>12} {'peak MB':>8}  what"
    print(header)
    print("-" * len(header))
    try:
        ref = run(step_reference, url, source)
        ref_rate = ref["rows"] / ref["seconds"]
        print(
            f"{'LOAD DATA reference':<34} {ref['seconds']:>8.2f} {ref_rate:>10,.0f} {1:>7.2f} {'':>12} "
            f"{ref['peak_mb']:>8.0f}  {ref['rows']:,} rows",
            flush=True,
        )
        initial = None
        for label, share in (
            ("ours: initial sync", None),
            ("ours: incremental, 1% changed", 0.01),
            ("ours: incremental, 10% changed", 0.10),
        ):
            if share:
                change(source, share, seed=int(share * 100))
            r = run(step_sync, url, source, state)
            initial = initial or r
            rate = r["rows"] / r["seconds"] if share is None else r["written"] / r["seconds"]
            vs_ref = f"{rate / ref_rate:>7.2f}" if share is None else f"{'':>7}"
            share_of_initial = f"{100 * r['seconds'] / initial['seconds']:>11.1f}%"
            print(
                f"{label:<34} {r['seconds']:>8.2f} {rate:>10,.0f} {vs_ref} {share_of_initial} "
                f"{r['peak_mb']:>8.0f}  {r['note']}",
                flush=True,
            )
    finally:
        _drop_database("mysql", admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="table size (repeatable)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else (args.rows or [1_000_000, 4_000_000])
    tmp = Path(tempfile.mkdtemp(prefix="activation_bench_"))
    try:
        for rows in sizes:
            bench_size(rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
