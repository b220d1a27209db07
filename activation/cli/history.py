"""`activation history`: recent sync runs, or current rejects, recorded beside the sync state."""

from __future__ import annotations

import argparse

from activation.cli.common import EXIT_OK
from activation.settings import Settings


def cmd_history(args: argparse.Namespace) -> int:
    import duckdb

    settings = Settings.from_env()
    folder = settings.warehouse_path.parent / "activation_state"
    files = sorted(folder.glob("*.duckdb")) if folder.is_dir() else []
    table = "sync_rejects" if args.rejects else "sync_runs"
    columns = (
        "sync, table_name, key, column_name, reason, run_id, rejected_at"
        if args.rejects
        else "started_at, sync, table_name, status, rows_inserted, rows_updated, rows_deleted, rows_rejected, "
        "round(duration_seconds, 2) AS seconds, run_id, error"
    )
    order = "rejected_at DESC, sync, key" if args.rejects else "started_at DESC, sync"
    found = 0
    for path in files:
        with duckdb.connect(str(path), read_only=True) as con:
            if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall():
                continue
            where, params = ("WHERE sync = ?", [args.sync]) if args.sync else ("", [])
            rel = con.execute(f"SELECT {columns} FROM {table} {where} ORDER BY {order} LIMIT {int(args.limit)}", params)
            names = [d[0] for d in rel.description]
            rows = rel.fetchall()
        found += len(rows)
        print(f"-- {path.stem} ({path})")
        print("  ".join(names))
        for row in rows:
            print("  ".join("" if v is None else str(v) for v in row))
    if not found:
        print(f"no {table.replace('_', ' ')} recorded under {folder}")
    return EXIT_OK
