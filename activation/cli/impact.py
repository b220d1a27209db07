"""`activation impact`: destination columns that depend on a raw or mart column, and back."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from activation.cli.common import EXIT_OK, UsageError, progress
from activation.sync_project import Project, load_project


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

    from activation.orchestration.dbt import dbt_executable

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
    from activation.orchestration.resources import DuckDBWarehouse

    if not project.settings.warehouse_path.exists():
        raise UsageError(f"warehouse {project.settings.warehouse_path} does not exist; run `activation demo` and dbt")
    compiled = _compiled_dir(project, dbt_target)
    with DuckDBWarehouse(path=str(project.settings.warehouse_path)).connect() as con:
        return build_lineage(project.manifest, compiled, con, project.config)


def cmd_impact(args: argparse.Namespace) -> int:
    from activation.lineage import LineageError

    project = load_project()
    with progress() as bar:
        bar.add_task("tracing column lineage through dbt", total=None)
        graph = load_lineage(project, args.dbt_target)
    try:
        found = graph.upstream(args.column) if args.upstream else graph.impact(args.column)
    except LineageError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps({str(c): [str(p) for p in path] for c, path in found.items()}, indent=2))
        return EXIT_OK
    arrow = " <- " if args.upstream else " -> "
    what = "raw source columns it comes from"
    if not args.upstream:
        what = "destination columns and API fields that depend on it"
    print(f"{args.column}: {len(found)} {what}")
    for column, path in found.items():
        print(f"  {column}    ({arrow.join(str(p) for p in path)})")
    return EXIT_OK
