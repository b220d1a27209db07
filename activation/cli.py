"""`activation`: the terminal entry point (demo data, running the syncs without the UI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from activation.settings import PROJECT_ROOT, Settings


def _instance():
    """The Dagster instance the UI reads, so runs made here show up in `dg dev` too."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # one step at a time may hold the DuckDB warehouse
        config.write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    return dg.DagsterInstance.get()


def cmd_demo(args: argparse.Namespace) -> int:
    from activation import demo_lake

    settings = Settings.from_env()
    path = settings.warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.next_day:
        changes = demo_lake.apply_day_of_changes(path, seed=args.seed)
        for table, counts in changes.items():
            print(f"{table:28} " + "  ".join(f"{k} {v:>8,}" for k, v in counts.items()))
    else:
        counts = demo_lake.generate_lake(path, scale=args.scale, seed=args.seed)
        for table, n in counts.items():
            print(f"{table:28} {n:>10,} rows")
    print(f"warehouse: {path}")
    return 0


def activate_job():
    """The `activate` job, importable by name so the multiprocess executor can rebuild it per step."""
    from activation.definitions import ACTIVATE_JOB, build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def(ACTIVATE_JOB)


def cmd_run(args: argparse.Namespace) -> int:
    import dagster as dg

    # One process per step, as under the webserver: dbt-duckdb keeps the warehouse open in the
    # process that ran dbt, so the syncs must not share it.
    with dg.execute_job(dg.reconstructable(activate_job), instance=_instance()) as result:
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            counts = {
                k: mat.metadata[k].value for k in ("rows_inserted", "rows_updated", "rows_deleted") if k in mat.metadata
            }
            if counts:
                print(f"{mat.asset_key.to_user_string():28} " + "  ".join(f"{k[5:]} {v:,}" for k, v in counts.items()))
        print(f"run {result.run_id}: " + ("success" if result.success else "FAILED (see the log above)"))
        return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the demo Salesforce lake in the local DuckDB warehouse")
    demo.add_argument("--scale", type=float, default=0.01, help="1.0 = 1M activity events (default 0.01)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--next-day", action="store_true", help="apply the next simulated day of changes instead")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="build the dbt project and run every sync (the `activate` job)")
    run.set_defaults(func=cmd_run)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
