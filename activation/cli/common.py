"""What the commands share: exit codes, the Dagster instance, the project (syncs, marts, destinations)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from activation.settings import PROJECT_ROOT, Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_CHECK_FAILED = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


def instance():
    """The Dagster instance the UI reads, so runs made here show up in `dg dev` too."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # one step at a time may hold the DuckDB warehouse
        config.write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    return dg.DagsterInstance.get()


def activate_job():
    """The `activate` job, importable by name so the multiprocess executor can rebuild it per step."""
    from activation.definitions import ACTIVATE_JOB, build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def(ACTIVATE_JOB)


@dataclass
class Project:
    """The sync config, the marts and the destinations, without building Definitions."""

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

    def destination_resource(self, destination: str):
        """The destination's resource, as the definitions build it (a database's, or an API's)."""
        from activation.orchestration.resources import destination_resource

        spec = self.config.destinations[destination]
        return destination_resource(destination, spec, base_dir=self.settings.syncs_file.parent)

    def destination_url(self, destination: str) -> str:
        """A database's URL, its password included (the command line connects with it)."""
        import dagster as dg

        spec = self.config.destinations[destination]
        url = self.destination_resource(destination).url
        return url.get_value() if isinstance(url, dg.EnvVar) else (os.environ.get(spec.url_env) or url)


def load_project() -> Project:
    from activation.orchestration.dbt import load_manifest, model_relation
    from activation.project import dbt_project
    from activation.syncs.masking import with_dbt_masks
    from activation.syncs.model import MartRelation
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
