"""`activation run` (dbt build, then every sync) and `activation sync` (selected syncs, no dbt).

Both launch the `activate` job in the Dagster instance the UI reads. Unless `--verbose`, the
run's console logger (`loggers: console: config: log_level`, Dagster's own switch) shows nothing,
and what the step processes print goes to /dev/null; the instance still stores every event and
each step's output, so the UI shows the full log. What a person reads instead: progress bars on
a terminal, then a table per sync and what failed (`report`).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from activation.cli.common import EXIT_USAGE, activate_job, instance, sync_asset_keys
from activation.cli.live import LiveRun
from activation.cli.report import RunSummary
from activation.sync_project import Project, load_project


def _console_log_level(verbose: bool) -> dict[str, Any]:
    return {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}}}


@contextmanager
def _quiet(enabled: bool) -> Iterator[IO[str] | None]:
    """While the run executes, send what it prints to /dev/null: dbt's log, which dagster-dbt echoes to
    stdout, and the line each step process logs before it reads the run's logger config. Step
    processes inherit these file descriptors. The instance keeps the event log and each step's
    output for the UI. Yields the real stderr, for the progress bars."""
    if not enabled:
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    stderr = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    try:
        with open(os.devnull, "w") as sink:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield stderr
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        stderr.close()


def _dbt_steps(project: Project) -> int:
    """Models and tests the dbt build runs (the daily-partitioned models run in their own job)."""
    return sum(
        1
        for node in project.manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed", "snapshot", "test") and "daily" not in node.get("tags", [])
    )


def execute(
    project: Project,
    sync_assets: list[str],
    *,
    verbose: bool,
    run_config: dict[str, Any],
    asset_selection: list | None = None,
    with_dbt: bool = False,
) -> int:
    """Run the `activate` job (or the selected assets of it), show its progress, print its summary."""
    import dagster as dg

    tag = uuid.uuid4().hex
    dagster = instance()
    with (
        _quiet(not verbose) as console,
        LiveRun(dagster, tag, _dbt_steps(project) if with_dbt else 0, sync_assets, console),
        dg.execute_job(
            dg.reconstructable(activate_job),
            instance=dagster,
            asset_selection=asset_selection,
            run_config={**run_config, **_console_log_level(verbose)},
            tags={"activation/cli": tag},
        ) as result,
    ):
        summary = RunSummary.from_result(result, sync_assets)
    summary.print(verbose=verbose, with_dbt=with_dbt)
    return summary.exit_code()


def cmd_run(args: argparse.Namespace) -> int:
    project = load_project()
    specs = [s for s in project.select([]) if not s.partition]
    # One process per step, as under the webserver: dbt-duckdb keeps the warehouse open in the
    # process that ran dbt, so the syncs must not share it.
    return execute(
        project,
        [k.to_user_string() for k in sync_asset_keys(specs)],
        verbose=args.verbose,
        run_config={},
        with_dbt=True,
    )


def cmd_sync(args: argparse.Namespace) -> int:
    project = load_project()
    specs = project.select(args.syncs)
    daily = [s.name for s in specs if s.partition]
    if daily and args.syncs:
        print(
            f"{', '.join(daily)}: partitioned by day; run them with the activate_daily job or a backfill in the UI",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if daily:
        print(f"skipping {', '.join(daily)} (partitioned by day: the activate_daily job and backfills run them)")
    specs = [s for s in specs if not s.partition]
    keys = sync_asset_keys(specs)
    # In one process: without dbt in the run nothing holds the warehouse open, and the demo has
    # one destination of whole tables (one step), so separate processes would only add start-up time.
    run_config: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
    if args.full_resync:
        destinations = dict.fromkeys(s.destination for s in specs)
        run_config["ops"] = {f"sync_{d}": {"config": {"full_resync": True}} for d in destinations}
    return execute(
        project,
        [k.to_user_string() for k in keys],
        verbose=args.verbose,
        run_config=run_config,
        asset_selection=keys,
    )
