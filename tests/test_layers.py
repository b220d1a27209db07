"""The engine stays free of Dagster: nothing under activation/syncs, activation/warehouses or
activation/destinations imports Dagster or the Dagster layer (activation.orchestration, the
definitions, the command line), neither at import time nor inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys

from activation.settings import PROJECT_ROOT

ENGINE = ["syncs", "warehouses", "destinations"]
FORBIDDEN = ("dagster", "activation.orchestration", "activation.definitions", "activation.cli", "activation.project")


def engine_modules() -> dict[str, ast.Module]:
    out = {}
    for package in ENGINE:
        for path in sorted((PROJECT_ROOT / "activation" / package).rglob("*.py")):
            name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


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


PROBE = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("dagster"):
            raise ImportError(f"{name} is Dagster: not for the engine")

sys.meta_path.insert(0, Blocked())
for module in sys.argv[1:]:
    __import__(module)
layer = [m for m in sys.modules if m.split(".")[0].startswith("dagster") or m.startswith("activation.orchestration")]
print(sorted(layer))
"""


def test_every_engine_module_imports_without_dagster():
    modules = sorted(engine_modules())
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # an import of Dagster fails the probe
    assert proc.stdout.strip() == "[]"  # and none was loaded some other way
