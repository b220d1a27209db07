"""`activation demo`: the Salesforce-shaped demo lake in the local DuckDB warehouse."""

from __future__ import annotations

import argparse

from activation.settings import Settings


def cmd_demo(args: argparse.Namespace) -> int:
    from activation import demo

    settings = Settings.from_env()
    path = settings.warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.next_day:
        changes = demo.apply_day_of_changes(path, seed=args.seed)
        for table, counts in changes.items():
            print(f"{table:28} " + "  ".join(f"{k} {v:>8,}" for k, v in counts.items()))
    else:
        counts = demo.generate_lake(path, scale=args.scale, seed=args.seed)
        for table, n in counts.items():
            print(f"{table:28} {n:>10,} rows")
    print(f"warehouse: {path}")
    return 0
