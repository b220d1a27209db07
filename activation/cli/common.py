"""What the commands share: exit codes, the Dagster instance, the code location and its sync keys."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from activation.settings import PROJECT_ROOT
from activation.sync_project import ProjectError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_CHECK_FAILED = 0, 1, 2, 3, 4


class UsageError(ProjectError):
    """Bad arguments or configuration: exit code 2 (as a ProjectError of activation.sync_project is)."""


def instance():
    """The Dagster instance the UI reads, so runs made here show up in `dg dev` too."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # one step at a time may hold the DuckDB warehouse
        config.write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    return dg.DagsterInstance.get()


def code_location():
    """The Definitions `dg dev` loads (the components of activation/defs), so a component's
    translation, or the dbt component it points at, renames the assets here too."""
    from activation.definitions import defs

    return defs()


def activate_job():
    """The `activate` job, importable by name so the multiprocess executor can rebuild it per step."""
    from activation.definitions import ACTIVATE_JOB

    return code_location().resolve_job_def(ACTIVATE_JOB)


def sync_asset_keys(syncs: Sequence) -> list:
    """The asset keys of these syncs in the code location (after any translation)."""
    from activation.orchestration.translator import sync_asset_keys as keys_in

    keys = keys_in(code_location())
    missing = sorted(s.name for s in syncs if s.name not in keys)
    if missing:
        raise UsageError(f"syncs {missing} are not in the code location activation/defs loads")
    return [keys[s.name] for s in syncs]


def progress(*columns, file: IO[str] | None = None):
    """A progress display on stderr (stdout stays parseable), hidden when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=file) if file is not None else Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *(columns or (MofNCompleteColumn(),)),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
