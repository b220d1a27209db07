"""The dbt project, alone in its module.

`dagster-dbt project prepare-and-package --file activation/project.py` imports this module
to build manifest.json before anything reads it, so it must not define `@dbt_assets`.
"""

from pathlib import Path

from dagster_dbt import DbtProject

from activation.orchestration.dbt import InterpreterDbtPreparer
from activation.settings import Settings


def dbt_project(settings: Settings | None = None) -> DbtProject:
    settings = settings or Settings.from_env()
    project = DbtProject(
        project_dir=settings.dbt_project_dir,
        profiles_dir=settings.dbt_project_dir,
        target=settings.dbt_target,
        # Each target parses to its own schemas: keep its manifest apart from the local one.
        target_path=Path("target") if settings.dbt_target == "local" else Path("target") / settings.dbt_target,
    )
    # Parses the project under `dg dev` / `dagster dev` (with the dbt beside this interpreter);
    # a no-op elsewhere.
    InterpreterDbtPreparer().prepare_if_dev(project)
    return project


activation_dbt_project = dbt_project()
