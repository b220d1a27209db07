"""The project as the command line and the review job read it: the sync config, the marts and the
destinations, without building Definitions. Below both, so the Dagster layer never imports the
command line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activation.settings import Settings


class ProjectError(Exception):
    """The configuration names what does not exist (a sync, a model): the person running it fixes it."""


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
            raise ProjectError(f"no sync named {unknown}; syncs.yml declares {sorted(self.config.syncs)}")
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
    """The project of the environment (ACTIVATION_SYNCS_FILE, ...), masks from dbt meta applied."""
    from activation.orchestration.dbt import load_manifest, model_relation
    from activation.project import dbt_project
    from activation.syncs.masking import with_dbt_masks
    from activation.syncs.model import MartRelation
    from activation.syncs.spec import SyncConfigError, load_sync_config

    settings = Settings.from_env()
    try:
        config = load_sync_config(settings.syncs_file)
    except SyncConfigError as exc:
        raise ProjectError(str(exc)) from exc
    manifest = load_manifest(dbt_project(settings))
    config = with_dbt_masks(config, manifest)
    relations = {}
    for sync in config.syncs.values():
        relation = model_relation(manifest, sync.source)
        if relation is None:
            raise ProjectError(f"{settings.syncs_file}: syncs.{sync.name}.source: no dbt model {sync.source!r}")
        relations[sync.name] = MartRelation(*relation)
    return Project(settings, config, relations, manifest)
