"""`activation`: the terminal entry point (demo data, plan, sync, impact, without the UI).

Exit codes, for scripts:
  0  success (for `plan`: nothing would be refused)
  1  a sync or the run failed (see the message; what failed was rolled back)
  2  usage or configuration error (unknown sync, invalid syncs.yml, missing mart or manifest)
  3  refused before writing: a guard tripped or a pre-write check failed (NULL/duplicate key, a
     value the destination cannot take, schema drift); for `plan`: a sync would be refused
  4  written, but a check after the write failed (row count, checksum, orphans, rejects);
     Dagster records the run itself as a success

-v/--verbose shows Dagster's full log and the tracebacks of failures.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from activation.cli.common import (
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    UsageError,
    activate_job,
)
from activation.cli.demo import cmd_demo
from activation.cli.history import cmd_history
from activation.cli.impact import cmd_impact, load_lineage
from activation.cli.plan import cmd_plan, plan_syncs
from activation.cli.sync import cmd_run, cmd_sync
from activation.sync_project import Project, ProjectError, load_project

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "Project",
    "UsageError",
    "activate_job",
    "load_lineage",
    "load_project",
    "main",
    "plan_syncs",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="activation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="Dagster's full log and tracebacks")

    demo = sub.add_parser(
        "demo", parents=[common], help="generate the demo Salesforce lake in the local DuckDB warehouse"
    )
    demo.add_argument("--scale", type=float, default=0.01, help="1.0 = 1M activity events (default 0.01)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--next-day", action="store_true", help="apply the next simulated day of changes instead")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", parents=[common], help="build the dbt project and run every sync (the `activate` job)")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser(
        "plan", parents=[common], help="dry run: what each sync would insert, update and delete; writes nothing"
    )
    plan.add_argument("syncs", nargs="*", help="sync names from syncs.yml (default: all)")
    plan.add_argument("--full-resync", action="store_true", help="compare every row, as `sync --full-resync` would")
    plan.add_argument("--sample", type=int, default=5, help="sample keys per operation (default 5)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--against",
        metavar="DBT_TARGET",
        help="review another build (a pull request's dbt target folder) against the production sync state; "
        "reads only, asks no destination",
    )
    plan.add_argument("--against-warehouse", help="DuckDB: the file that build wrote (default: the warehouse)")
    plan.add_argument("--base-manifest", help="the production dbt target folder (default: the project's manifest)")
    plan.add_argument("--format", choices=["text", "markdown", "json"], default="text", help="with --against")
    plan.set_defaults(func=cmd_plan)

    sync = sub.add_parser(
        "sync", parents=[common], help="run the selected syncs (no dbt build) as a Dagster run the UI shows"
    )
    sync.add_argument("syncs", nargs="*", help="sync names from syncs.yml (default: all)")
    sync.add_argument("--full-resync", action="store_true", help="compare every row with the destination")
    sync.set_defaults(func=cmd_sync)

    impact = sub.add_parser(
        "impact",
        parents=[common],
        help="destination columns and API fields that depend on a raw or mart column (dbt lineage + syncs.yml)",
        description="e.g. `activation impact salesforce.account.billing_city` or `raw_salesforce.account.name`; "
        "with --upstream, the raw columns an app column or API field comes from (`impact --upstream "
        "app.facilities.city`, `impact --upstream salesforce/Account.Lifetime_Value__c`)",
    )
    impact.add_argument(
        "column",
        help="table.column: source_name.table.col, raw_schema.table.col, model.col, dest.table.col, dest/Object.Field",
    )
    impact.add_argument("--upstream", action="store_true", help="trace back to the raw source columns instead")
    impact.add_argument("--dbt-target", help="a dbt target path with compiled SQL (default: dbt_project/target)")
    impact.add_argument("--json", action="store_true")
    impact.set_defaults(func=cmd_impact)

    history = sub.add_parser(
        "history", parents=[common], help="recent sync runs (or current rejects) recorded beside the sync state"
    )
    history.add_argument("--sync", help="only this sync")
    history.add_argument("--limit", type=int, default=20)
    shown = history.add_mutually_exclusive_group()
    shown.add_argument("--rejects", action="store_true", help="the rows the last runs set aside, with reasons")
    shown.add_argument(
        "--api-calls",
        action="store_true",
        help="for syncs into APIs: calls made, retries, 429s, server errors and the first API errors per run",
    )
    history.set_defaults(func=cmd_history)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProjectError as exc:  # UsageError included
        print(f"activation {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a person reads the message; --verbose adds the traceback
        if args.verbose:
            traceback.print_exc()
        print(f"activation {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not args.verbose:
            print("(run with --verbose for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
