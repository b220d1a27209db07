"""`activation history`: recent sync runs, current rejects, or the calls syncs into APIs made,
recorded beside the sync state (DuckDB: the state files; BigQuery: the bookkeeping dataset)."""

from __future__ import annotations

import argparse

from activation.cli.common import EXIT_OK
from activation.settings import Settings


def cmd_history(args: argparse.Namespace) -> int:
    from activation.orchestration.resources import warehouse_resource

    warehouse = warehouse_resource(Settings.from_env()).process_config_and_initialize()
    table = "sync_rejects" if args.rejects else "sync_api_calls" if args.api_calls else "sync_runs"
    found = 0
    for where, names, rows in warehouse.recorded(table, args.sync, args.limit):
        found += len(rows)
        print(f"-- {where}")
        print("  ".join(names))
        for row in rows:
            print("  ".join("" if v is None else str(v) for v in row))
    if not found:
        print(f"no {table.replace('_', ' ')} recorded under {warehouse.bookkeeping}")
    return EXIT_OK
