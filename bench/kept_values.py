"""What keeping the values last sent costs (warehouses/kept_values.py), on against off, in one run.

    uv run python bench/kept_values.py                 # 1,000,000 rows, 2 rounds
    uv run python bench/kept_values.py --rows 100000 --rounds 1

The 11-column, 1M-row mart of bench/sync_engine.py, mode mirror, into MariaDB, through the real
engine (`SqlDestination.sync` over `DuckDBWarehouse.connect`, so its memory cap applies). Two
twins, `keep_values: false` and `true`, each with its own database and state file, sync the same
mart: an initial sync each, then per round 1% of the rows change (80% updated, 10% inserted, 10%
deleted) and each twin syncs it, the twins' order alternating between rounds so drift on a noisy
host falls on both. Every sync runs in a fresh child process: its peak is that whole process's
peak RSS (VmHWM). "state commit" is the time inside `store_state` (hashes, and values when kept).
Storage: the state file's size after each twin's last sync (DuckDB checkpoints on close).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_methods import _create_database, _drop_database, bench_spec, build_source  # noqa: E402
from sync_engine import _status_mb, change, run  # noqa: E402

from activation.destinations.sql import SqlDestination, normalize_url  # noqa: E402
from activation.orchestration.resources import DuckDBWarehouse  # noqa: E402
from activation.syncs.model import MartRelation  # noqa: E402
from activation.warehouses.duckdb import DuckDB  # noqa: E402


class _TimedDuckDB(DuckDB):
    committing = 0.0

    def store_state(self, *args, **kwargs) -> None:
        t0 = time.perf_counter()
        super().store_state(*args, **kwargs)
        self.committing += time.perf_counter() - t0


def step(url: str, source: str, state: str, keep_values: bool) -> dict:
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True})
    gc.collect()  # the imports' garbage, collected before the clock
    t0 = time.perf_counter()
    with DuckDBWarehouse(path=source).connect() as con:
        planner = _TimedDuckDB(con, state, url)
        [result] = SqlDestination(engine).sync(
            planner, [bench_spec(keep_values=keep_values)], {"bench": MartRelation("main", "src")}, log=lambda _: None
        )
        kept = planner.kept_values_relation(bench_spec(keep_values=keep_values))
        values = con.execute(f"SELECT count(*) FROM {kept}").fetchall()[0][0] if kept else 0
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {
        "seconds": seconds,
        "commit": planner.committing,
        "peak_mb": _status_mb("VmHWM"),
        "sent": result.inserted + result.updated + result.deleted,
        "values": values,
    }


def _size_mb(path: str) -> float:
    return sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="incremental syncs of 1%% per twin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_kept_values_") as tmp:
        source = str(Path(tmp) / "src.duckdb")
        build_source(source, args.rows)
        twins = {}
        for keep in (False, True):
            url, admin, name = _create_database("mysql")
            twins[keep] = {"url": url, "admin": admin, "name": name, "state": str(Path(tmp) / f"state_{keep}.duckdb")}
        results: dict[tuple[str, bool], list[dict]] = {}
        try:
            for keep in (False, True):
                t = twins[keep]
                results.setdefault(("initial", keep), []).append(run(step, t["url"], source, t["state"], keep))
            for i in range(args.rounds):
                change(source, 0.01, 100 + i)
                for keep in (False, True) if i % 2 == 0 else (True, False):
                    t = twins[keep]
                    results.setdefault(("1% incremental", keep), []).append(
                        run(step, t["url"], source, t["state"], keep)
                    )
        finally:
            for t in twins.values():
                _drop_database("mysql", t["admin"], t["name"])
        sizes = {keep: _size_mb(twins[keep]["state"]) for keep in twins}
        _print(args.rows, results, sizes)


def _print(rows: int, results: dict, sizes: dict) -> None:
    print(f"\nkeep_values on vs off, {rows:,} rows x 11 columns into MariaDB (median of the runs; each run listed)")
    header = (
        f"{'sync':<16} {'off s':>7} {'on s':>7} {'on/off':>7} {'commit off':>10} {'commit on':>9} "
        f"{'peak off MB':>11} {'peak on MB':>10}  runs on/off"
    )
    print(header)
    print("-" * len(header))
    for kind in ("initial", "1% incremental"):
        off, on = results[(kind, False)], results[(kind, True)]
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        ratios = ", ".join(f"{a['seconds'] / b['seconds']:.2f}" for a, b in zip(on, off, strict=True))
        print(
            f"{kind:<16} {med(off, 'seconds'):>7.2f} {med(on, 'seconds'):>7.2f} "
            f"{med(on, 'seconds') / med(off, 'seconds'):>6.2f}x {med(off, 'commit'):>10.2f} {med(on, 'commit'):>9.2f} "
            f"{max(r['peak_mb'] for r in off):>11.0f} {max(r['peak_mb'] for r in on):>10.0f}  {ratios}"
        )
    kept = results[("1% incremental", True)][-1]["values"]
    extra = sizes[True] - sizes[False]
    print(
        f"state file: off {sizes[False]:.1f} MB, on {sizes[True]:.1f} MB: +{extra:.1f} MB for {kept:,} kept rows "
        f"= {extra / kept * 1e6:.1f} MB per 1M rows"
    )


if __name__ == "__main__":
    main()
