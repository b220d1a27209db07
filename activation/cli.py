"""`activation`: the terminal entry point (demo data, plan, sync, impact, without the UI).

Exit codes, for scripts:
  0  success (for `plan`: nothing would be refused)
  1  a sync or the run failed (see the message; what failed was rolled back)
  2  usage or configuration error (unknown sync, invalid syncs.yml, missing mart or manifest)
  3  refused before writing: a guard tripped (`sync`), or `plan` found a sync that a guard or
     a pre-write check (NULL/duplicate key, value too long) would refuse
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activation.settings import PROJECT_ROOT, Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


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


# -- shared: the sync config, the marts and the destinations, without building Definitions ---------
@dataclass
class Project:
    settings: Settings
    config: Any  # SyncConfig
    relations: dict  # sync name -> MartRelation
    manifest: dict

    def select(self, names: Sequence[str]) -> list:
        """The named syncs (all when none), in load order; unknown names are a usage error."""
        unknown = sorted(set(names) - set(self.config.syncs))
        if unknown:
            raise UsageError(f"no sync named {unknown}; syncs.yml declares {sorted(self.config.syncs)}")
        return [s for s in self.config.load_order() if not names or s.name in names]

    def destination_url(self, destination: str) -> str:
        import dagster as dg

        from activation.resources import destination_resource

        spec = self.config.destinations[destination]
        url = destination_resource(spec, base_dir=self.settings.syncs_file.parent).url
        return url.get_value() if isinstance(url, dg.EnvVar) else (os.environ.get(spec.url_env) or url)


def load_project() -> Project:
    from activation.dbt import load_manifest, model_relation
    from activation.project import dbt_project
    from activation.syncs.masking import with_dbt_masks
    from activation.syncs.plan import MartRelation
    from activation.syncs.spec import SyncConfigError, load_sync_config

    settings = Settings.from_env()
    try:
        config = load_sync_config(settings.syncs_file)
    except SyncConfigError as exc:
        raise UsageError(str(exc)) from exc
    manifest = load_manifest(dbt_project(settings))
    config = with_dbt_masks(config, manifest)
    relations = {}
    for sync in config.syncs.values():
        relation = model_relation(manifest, sync.source)
        if relation is None:
            raise UsageError(f"{settings.syncs_file}: syncs.{sync.name}.source: no dbt model {sync.source!r}")
        relations[sync.name] = MartRelation(*relation)
    return Project(settings, config, relations, manifest)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # stderr, so stdout stays parseable (`--json`); hidden when stderr is not a terminal
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


# -- plan -------------------------------------------------------------------------------------
@contextmanager
def _throwaway_state(state_path: Path) -> Iterator[str]:
    """A copy of a destination's sync state: the dry run's planner may write to it freely."""
    with tempfile.TemporaryDirectory(prefix="activation_plan_") as tmp:
        copy = Path(tmp) / state_path.name
        for suffix in ("", ".wal"):
            source = Path(str(state_path) + suffix)
            if source.exists():
                shutil.copy(source, str(copy) + suffix)
        yield str(copy)


def _dry_run_engine(url: str):
    import sqlalchemy as sa

    from activation.resources import SQLDestination

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        return sa.create_engine("sqlite://")  # the file does not exist yet: an empty database, not created
    return SQLDestination(url=url).engine()


def plan_syncs(project: Project, specs: Sequence, *, full_resync: bool = False, sample: int = 5) -> list:
    """Preview the given syncs, destination by destination; writes nothing anywhere."""
    from activation.resources import DuckDBWarehouse, destination_identity
    from activation.syncs.plan import Planner
    from activation.syncs.preview import DryRun

    warehouse = DuckDBWarehouse(path=str(project.settings.warehouse_path))
    if not project.settings.warehouse_path.exists():
        raise UsageError(f"warehouse {project.settings.warehouse_path} does not exist; run `activation demo` and dbt")
    state_dir = project.settings.warehouse_path.parent / "activation_state"
    previews = []
    destinations = list(dict.fromkeys(s.destination for s in specs))
    with _progress() as progress:
        task = progress.add_task("planning", total=len(specs))
        for destination in destinations:
            chosen = [s for s in specs if s.destination == destination]
            url = project.destination_url(destination)
            engine = _dry_run_engine(url)
            try:
                with (
                    _throwaway_state(state_dir / f"{destination}.duckdb") as state,
                    warehouse.connect(log=lambda m: progress.console.print(m)) as con,
                ):
                    planner = Planner(con, state, destination_identity(url))
                    for spec in chosen:
                        progress.update(task, description=f"planning {destination}.{spec.table}")
                        previews.extend(DryRun(engine, planner, sample=sample).preview([spec], project.relations))
                        progress.advance(task)
            finally:
                engine.dispose()
    return previews


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
            print(f"  REFUSED: {p.blocked}")


def cmd_plan(args: argparse.Namespace) -> int:
    project = load_project()
    specs = project.select(args.syncs)
    if not args.syncs:  # as `sync`: daily-partitioned syncs run per day, from their own job
        specs = [s for s in specs if not s.partition]
    previews = plan_syncs(project, specs, full_resync=args.full_resync, sample=args.sample)
    if args.json:
        print(json.dumps([p.as_dict() for p in previews], indent=2, default=str, ensure_ascii=False))
    else:
        _print_plan(previews)
    return EXIT_REFUSED if any(p.blocked for p in previews) else EXIT_OK


# -- sync -------------------------------------------------------------------------------------
def _watch(instance, tag: str, total: int, done: threading.Event) -> None:
    """Advance a progress bar as the run's sync assets materialize (the run is in other processes)."""
    import dagster as dg

    with _progress() as progress:
        task = progress.add_task("syncing", total=total)
        run_id = None
        while not done.wait(0.5):
            if run_id is None:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={"activation/cli": tag}), limit=1)
                run_id = runs[0].run_id if runs else None
                continue
            events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            progress.update(task, completed=len(events))


def cmd_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    from activation.syncs.assets import sync_asset_key

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
    keys = [sync_asset_key(s) for s in specs]
    # In one process: without dbt in the run nothing holds the warehouse open, and the shared
    # pool runs one sync step at a time anyway, so separate processes would only add start-up time.
    run_config: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
    if args.full_resync:
        destinations = dict.fromkeys(s.destination for s in specs)
        run_config["ops"] = {f"sync_{d}": {"config": {"full_resync": True}} for d in destinations}
    tag = uuid.uuid4().hex
    instance = _instance()
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(instance, tag, len(keys), done), daemon=True)
    watcher.start()
    try:
        with dg.execute_job(
            dg.reconstructable(activate_job),
            instance=instance,
            asset_selection=keys,
            run_config=run_config,
            tags={"activation/cli": tag},
        ) as result:
            done.set()
            watcher.join()
            _print_counts(result)
            failures = [
                e.event_specific_data.error.message if e.event_specific_data.error else ""
                for e in result.get_step_failure_events()
            ]
            for message in failures:
                print(f"failed: {message.strip()}", file=sys.stderr)
            print(f"run {result.run_id}: " + ("success" if result.success else "FAILED"))
            if result.success:
                return EXIT_OK
            return EXIT_REFUSED if any("guard tripped" in m for m in failures) else EXIT_FAILED
    finally:
        done.set()


# -- impact -----------------------------------------------------------------------------------
def _compiled_dir(project: Project, given: str | None) -> Path:
    """dbt's compiled SQL: the given target folder, else the newest that a dbt build left in the
    project's target folder (Dagster runs write `target/<op>-<id>/compiled`), else a fresh
    `dbt compile` (kept beside the warehouse, reused while the manifest does not change)."""
    if given:
        folder = Path(given) / "compiled"
        if not folder.is_dir():
            raise UsageError(f"{given} has no compiled/ folder; point --dbt-target at a dbt target path")
        return folder
    target_dir = project.settings.dbt_project_dir / "target"
    built = [target_dir / "compiled", *target_dir.glob("*/compiled")]
    built = [folder for folder in built if folder.is_dir()]
    if built:
        return max(built, key=lambda folder: folder.stat().st_mtime)
    target = project.settings.warehouse_path.parent / "activation_lineage"
    manifest = target_dir / "manifest.json"
    if (
        (target / "compiled").is_dir()
        and manifest.exists()
        and ((target / "compiled").stat().st_mtime >= manifest.stat().st_mtime)
    ):
        return target / "compiled"
    import subprocess

    from activation.dbt import dbt_executable

    proc = subprocess.run(
        [dbt_executable(), "compile", "--quiet", "--profiles-dir", ".", "--target-path", str(target)],
        cwd=project.settings.dbt_project_dir,
        env={**os.environ, "ACTIVATION_WAREHOUSE_PATH": str(project.settings.warehouse_path)},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UsageError(f"dbt compile failed; build the project first:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return target / "compiled"


def load_lineage(project: Project, dbt_target: str | None = None):
    from activation.lineage import build_lineage
    from activation.resources import DuckDBWarehouse

    if not project.settings.warehouse_path.exists():
        raise UsageError(f"warehouse {project.settings.warehouse_path} does not exist; run `activation demo` and dbt")
    compiled = _compiled_dir(project, dbt_target)
    with DuckDBWarehouse(path=str(project.settings.warehouse_path)).connect() as con:
        return build_lineage(project.manifest, compiled, con, project.config)


def cmd_impact(args: argparse.Namespace) -> int:
    from activation.lineage import LineageError

    project = load_project()
    with _progress() as progress:
        progress.add_task("tracing column lineage through dbt", total=None)
        graph = load_lineage(project, args.dbt_target)
    try:
        found = graph.upstream(args.column) if args.upstream else graph.impact(args.column)
    except LineageError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps({str(c): [str(p) for p in path] for c, path in found.items()}, indent=2))
        return EXIT_OK
    arrow = " <- " if args.upstream else " -> "
    what = "raw source columns it comes from" if args.upstream else "destination columns that depend on it"
    print(f"{args.column}: {len(found)} {what}")
    for column, path in found.items():
        print(f"  {column}    ({arrow.join(str(p) for p in path)})")
    return EXIT_OK


# -- history ----------------------------------------------------------------------------------
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


def _print_counts(result) -> None:
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        counts = {
            k: mat.metadata[k].value
            for k in ("rows_inserted", "rows_updated", "rows_deleted", "rows_rejected")
            if k in mat.metadata
        }
        if counts:
            print(f"{mat.asset_key.to_user_string():28} " + "  ".join(f"{k[5:]} {v:,}" for k, v in counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="activation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the demo Salesforce lake in the local DuckDB warehouse")
    demo.add_argument("--scale", type=float, default=0.01, help="1.0 = 1M activity events (default 0.01)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--next-day", action="store_true", help="apply the next simulated day of changes instead")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="build the dbt project and run every sync (the `activate` job)")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="dry run: what each sync would insert, update and delete; writes nothing")
    plan.add_argument("syncs", nargs="*", help="sync names from syncs.yml (default: all)")
    plan.add_argument("--full-resync", action="store_true", help="compare every row, as `sync --full-resync` would")
    plan.add_argument("--sample", type=int, default=5, help="sample keys per operation (default 5)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    sync = sub.add_parser("sync", help="run the selected syncs (no dbt build) as a Dagster run the UI shows")
    sync.add_argument("syncs", nargs="*", help="sync names from syncs.yml (default: all)")
    sync.add_argument("--full-resync", action="store_true", help="compare every row with the destination")
    sync.set_defaults(func=cmd_sync)

    impact = sub.add_parser(
        "impact",
        help="destination columns that depend on a raw or mart column (dbt column lineage + syncs.yml)",
        description="e.g. `activation impact salesforce.account.billing_city` or `raw_salesforce.account.name`; "
        "with --upstream, the raw columns an app column comes from (`impact --upstream app.facilities.city`)",
    )
    impact.add_argument(
        "column", help="table.column: source_name.table.col, raw_schema.table.col, model.col, dest.table.col"
    )
    impact.add_argument("--upstream", action="store_true", help="trace back to the raw source columns instead")
    impact.add_argument("--dbt-target", help="a dbt target path with compiled SQL (default: dbt_project/target)")
    impact.add_argument("--json", action="store_true")
    impact.set_defaults(func=cmd_impact)

    history = sub.add_parser("history", help="recent sync runs (or current rejects) recorded beside the sync state")
    history.add_argument("--sync", help="only this sync")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--rejects", action="store_true", help="the rows the last runs set aside, with reasons")
    history.set_defaults(func=cmd_history)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"activation {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
