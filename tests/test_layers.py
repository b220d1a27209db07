"""The engine stays free of Dagster: nothing under activation/syncs, activation/warehouses or
activation/destinations imports Dagster or the Dagster layer (activation.orchestration, the
definitions, the command line), neither at import time nor inside a function. And the Dagster
layer sits below the command line: nothing it holds imports activation.cli."""

from __future__ import annotations

import ast

from activation.settings import PROJECT_ROOT
from tests.import_probe import loaded_despite

ENGINE = ["syncs", "warehouses", "destinations"]
FORBIDDEN = ("dagster", "activation.orchestration", "activation.definitions", "activation.cli", "activation.project")


# The Dagster layer, and what it reads the project through: the command line is above them all.
BELOW_CLI = ["orchestration", "components", "defs", "definitions.py", "celery_definitions.py", "project.py"]
BELOW_CLI += ["sync_project.py", "settings.py", "lineage.py"]


def modules_of(parts: list[str]) -> dict[str, ast.Module]:
    out = {}
    for part in parts:
        root = PROJECT_ROOT / "activation" / part
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


def engine_modules() -> dict[str, ast.Module]:
    return modules_of(ENGINE)


def imported(tree: ast.Module) -> set[str]:
    """Every module an import statement names, wherever the statement is (lazy imports included)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    # dagster, dagster_dbt, dagster_gcp ... and the Dagster layer of this project
    return name.split(".")[0].startswith("dagster") or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_engine_module_names_dagster_or_the_dagster_layer_in_an_import():
    modules = engine_modules()
    assert len(modules) > 20, "the scan found the engine's modules"
    found = {name: sorted(n for n in imported(tree) if forbidden(n)) for name, tree in modules.items()}
    assert {name: names for name, names in found.items() if names} == {}


def test_every_engine_module_imports_without_dagster():
    layer = loaded_despite(["dagster*"], sorted(engine_modules()), watched=["activation.orchestration"])
    assert layer == []


def test_nothing_below_the_command_line_imports_it():
    modules = modules_of(BELOW_CLI)
    assert "activation.orchestration.review_job" in modules and "activation.sync_project" in modules
    found = {
        name: sorted(n for n in imported(tree) if n == "activation.cli" or n.startswith("activation.cli."))
        for name, tree in modules.items()
    }
    assert {name: names for name, names in found.items() if names} == {}
