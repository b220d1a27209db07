"""`activation plan`: a dry run of the syncs; writes nothing, and exits 3 when a sync would be refused."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from activation.cli.common import EXIT_OK, EXIT_REFUSED, UsageError, progress
from activation.cli.report import print_problems
from activation.sync_project import Project, load_project


def plan_syncs(project: Project, specs: Sequence, *, full_resync: bool = False, sample: int = 5) -> list:
    """Preview the given syncs, destination by destination; writes nothing anywhere (a dry-run
    warehouse never records its state: DuckDB plans on a throwaway copy, BigQuery in work tables;
    a database is planned on through a dry-run engine; an API gets no write call, only its describe)."""
    from activation.orchestration.resources import warehouse_resource

    settings = project.settings
    if settings.warehouse != "bigquery" and not settings.warehouse_path.exists():
        raise UsageError(f"warehouse {settings.warehouse_path} does not exist; run `activation demo` and dbt")
    warehouse = warehouse_resource(settings).process_config_and_initialize()  # its EnvVars resolved
    previews = []
    destinations = list(dict.fromkeys(s.destination for s in specs))
    with progress() as bar:
        task = bar.add_task("planning", total=len(specs))
        for destination in destinations:
            chosen = [s for s in specs if s.destination == destination]
            log = lambda m: bar.console.print(m)  # noqa: E731
            with _previewer(project, destination) as (target, identity, refusal):
                with warehouse.open(destination, identity, log=log, dry_run=True) as planner:
                    for spec in chosen:
                        bar.update(task, description=f"planning {destination}.{spec.table}")
                        if refusal:  # an API whose secrets are not set: nothing to ask it
                            previews.append(_refused(spec, refusal))
                        else:
                            previews.extend(_preview(target, planner, spec, project, full_resync, sample))
                        bar.advance(task)
    return previews


@contextmanager
def _previewer(project: Project, destination: str) -> Iterator[tuple[Any, str, str | None]]:
    """(the destination to preview through, the identity of its state, why it cannot be asked):
    a database through a dry-run engine, disposed after; an API as it is (its preview makes no
    write call), unless a secret's variable is unset."""
    if project.config.destinations[destination].is_stream:
        resource = project.destination_resource(destination)
        yield resource.destination(), resource.identity, None
        return
    if project.config.destinations[destination].is_api:
        from activation.destinations import registry

        resource = project.destination_resource(destination)
        missing = resource.missing_secrets()
        syncs = list(project.config.syncs.values())
        api = None if missing else registry.api_destination(destination, resource.spec, syncs)
        yield api, resource.identity, missing
        return
    from activation.destinations.sql import SqlDestination
    from activation.destinations.sql.engine import dry_run_engine
    from activation.destinations.urls import destination_identity

    url = project.destination_url(destination)
    engine = dry_run_engine(url)
    try:
        yield SqlDestination(engine), destination_identity(url), None
    finally:
        engine.dispose()


def _refused(spec, message: str):
    from activation.syncs.results import SyncPreview

    preview = SyncPreview(sync=spec.name, destination=spec.destination, table=spec.table, mode=spec.mode.value)
    preview.refuse([], message)
    return preview


def _preview(destination, planner, spec, project: Project, full_resync: bool, sample: int) -> list:
    """One sync's preview; a sync the writer would stop before comparing anything is a refused preview."""
    from activation.syncs.results import SyncError, SyncPreview

    try:
        return destination.preview(planner, [spec], project.relations, full_resync=full_resync, sample=sample)
    except SyncError as exc:
        preview = SyncPreview(sync=spec.name, destination=spec.destination, table=spec.table, mode=spec.mode.value)
        preview.refuse(exc.problems, str(exc))
        return [preview]


def _print_plan(previews: list) -> None:
    for p in previews:
        head = f"{p.destination}.{p.table} ({p.mode}, {p.strategy}; {p.reason})"
        print(head)
        print(
            f"  + {p.counts['insert']:,} insert   ~ {p.counts['update']:,} update   - {p.counts['delete']:,} delete   "
            f"= {p.unchanged:,} unchanged   ! {p.rejected:,} rejected   "
            f"({p.rows_in_mart:,} rows in mart, {p.rows_in_destination:,} in destination)"
        )
        if p.creates_table:
            print("  creates the table")
        for op, mark in (("insert", "+"), ("update", "~"), ("delete", "-")):
            for row in p.samples[op]:
                changed = f"  ({', '.join(row['columns'])})" if row.get("columns") else ""
                print(f"    {mark} {row['key']}{changed}")
        for warning in p.warnings:
            print(f"  warning: {warning}")
        if p.blocked:
            print(f"  REFUSED: the sync would write nothing to {p.destination}.{p.table}:")
            print_problems(p.problems, sys.stdout, indent="    ")


def cmd_plan(args: argparse.Namespace) -> int:
    project = load_project()
    specs = project.select(args.syncs)
    if not args.syncs:  # as `sync`: daily-partitioned syncs run per day, from their own job
        specs = [s for s in specs if not s.partition]
    if args.against:
        from activation.cli.review import report_review

        return report_review(project, specs, args)
    if args.format != "text" or args.against_warehouse or args.base_manifest:
        raise UsageError("--format, --against-warehouse and --base-manifest go with --against")
    return report_plan(project, specs, full_resync=args.full_resync, sample=args.sample, as_json=args.json)


def report_plan(project: Project, specs: Sequence, *, full_resync=False, sample=5, as_json=False) -> int:
    """Plan the syncs, print the plan, and return the exit code: 3 when any sync would be refused."""
    previews = plan_syncs(project, specs, full_resync=full_resync, sample=sample)
    refused = [p for p in previews if p.blocked]
    if as_json:
        print(json.dumps([p.as_dict() for p in previews], indent=2, default=str, ensure_ascii=False))
    else:
        _print_plan(previews)
        if refused:
            print(f"{len(refused)} sync(s) would be refused: {', '.join(p.sync for p in refused)}")
    return EXIT_REFUSED if refused else EXIT_OK
