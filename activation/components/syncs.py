"""`ActivationSyncs`: the syncs of one syncs.yml, with the dbt project whose models they read, as a
Dagster component (a typed model of its defs.yaml, as dagster-sling's and dagster-dbt's are).

It yields what `activation.definitions.build_definitions` builds, nothing else: the dbt models and
tests, every destination table with its checks, the jobs, schedules and sensors. With
`dbt_component` a dagster-dbt `DbtProjectComponent` of the same defs/ tree builds the models, and
the syncs depend on the keys its translation gives them (activation.orchestration.dbt_component). An attribute left
out falls back to the environment (ACTIVATION_SYNCS_FILE, ACTIVATION_DBT_PROJECT_DIR, ...) and then
to the project's defaults, so the demo's defs.yaml stays empty and the command line reads the same
project. Customise by subclassing: `build_settings`, or `translation` in YAML.

    type: activation.components.ActivationSyncs
    attributes:
      dbt_project: "{{ context.project_root }}/dbt_project"   # or dbt_component: ../dbt (a DbtProjectComponent)
      syncs_file: syncs.yml                 # beside this defs.yaml; or `syncs:` with the same content inline
      translation:
        key: "apps/{{ sync.destination }}/{{ sync.table }}"
        group_name: "{{ sync.destination }}_tables"
        description: "{{ sync.table }}, synced from {{ sync.source }}"
"""

# No `from __future__ import annotations`: Dagster derives the YAML model from the annotations.
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components.resolved.model import Resolver
from dagster.components.scaffold.scaffold import scaffold_with
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver

from activation.components.scaffolder import ActivationSyncsScaffolder
from activation.settings import Settings
from activation.syncs.spec import SyncSpec, parse_sync_config


@scaffold_with(ActivationSyncsScaffolder)
@dataclass
class ActivationSyncs(dg.Component, dg.Resolvable):
    """Reverse ETL syncs (syncs.yml) of dbt marts into application databases and APIs.

    Yields the dbt project's models and tests, one asset per destination table (in the pool
    `activation/<destination>`) with its checks, the `activate`, `dbt_build` and daily jobs, their
    schedules and the automation sensors.
    """

    dbt_project: Annotated[
        str | None,
        Resolver.default(
            description="The dbt project whose models the syncs read, relative to this defs.yaml. "
            "Unset: $ACTIVATION_DBT_PROJECT_DIR, else dbt_project/ of the project.",
            examples=["{{ context.project_root }}/dbt_project"],
        ),
    ] = None
    dbt_component: Annotated[
        str | None,
        Resolver.default(
            description="The folder of a dagster_dbt.DbtProjectComponent in the same defs/ tree, relative to this "
            "defs.yaml, that builds the models instead: the syncs depend on the keys its translation gives them, "
            "read its project's manifest, and no dbt asset is yielded here. Excludes dbt_project.",
            examples=["../dbt"],
        ),
    ] = None
    dbt_target: Annotated[
        str | None,
        Resolver.default(description="The dbt target ('local' DuckDB, 'bigquery'). Unset: $ACTIVATION_DBT_TARGET."),
    ] = None
    syncs_file: Annotated[
        str | None,
        Resolver.default(
            description="The sync config, relative to this defs.yaml. Unset: $ACTIVATION_SYNCS_FILE, else syncs.yml "
            "of the project.",
            examples=["syncs.yml"],
        ),
    ] = None
    syncs: Annotated[
        dict[str, Any] | None,
        Resolver.default(description="The sync config inline (destinations, syncs, ...), instead of syncs_file."),
    ] = None
    warehouse_path: Annotated[
        str | None,
        Resolver.default(description="The DuckDB warehouse dbt builds. Unset: $ACTIVATION_WAREHOUSE_PATH."),
    ] = None
    translation: (
        Annotated[
            TranslationFn[SyncSpec],
            TranslationFnResolver(template_vars_for_translation_fn=lambda sync: {"sync": sync}),
        ]
        | None
    ) = None

    def build_settings(self, context: dg.ComponentLoadContext) -> Settings:
        """The settings the definitions are built from: these attributes over the environment's."""
        base = Settings.from_env()
        here = context.path

        def path(value: str | None) -> Path | None:
            return (here / value).resolve() if value else None

        syncs_file = path(self.syncs_file) or (here / "defs.yaml" if self.syncs is not None else base.syncs_file)
        return dataclasses.replace(
            base,
            dbt_project_dir=path(self.dbt_project) or base.dbt_project_dir,
            dbt_target=self.dbt_target or base.dbt_target,
            syncs_file=syncs_file,
            warehouse_path=path(self.warehouse_path) or base.warehouse_path,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from activation.definitions import build_definitions  # dbt and the manifest: only when loaded
        from activation.orchestration.dbt_component import load_dbt_component

        if self.syncs is not None and self.syncs_file:
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path / 'defs.yaml'}: set either syncs_file or syncs (inline), not both"
            )
        if self.dbt_component and self.dbt_project:
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path / 'defs.yaml'}: set either dbt_project (activation builds the models) or "
                "dbt_component (a dagster_dbt.DbtProjectComponent builds them), not both"
            )
        settings = self.build_settings(context)
        inline = self.syncs is not None
        config = parse_sync_config(self.syncs, f"{settings.syncs_file}: attributes.syncs") if inline else None
        upstream = None
        if self.dbt_component:
            upstream = load_dbt_component(context, (context.path / self.dbt_component).resolve())
        return build_definitions(settings, config=config, translation=self.translation, upstream_dbt=upstream)
