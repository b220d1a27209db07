"""Load modules in a fresh interpreter where some libraries cannot be imported: the layer tests
(warehouse seam, destination seam, engine without Dagster) ask it which blocked libraries or
modules were loaded anyway."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from activation.settings import PROJECT_ROOT

PROBE = """
import json, sys

blocked, modules, watched = json.loads(sys.argv[1])

def is_blocked(name, prefixes):
    for p in prefixes:
        if p.endswith("*") and name.split(".")[0].startswith(p[:-1]):
            return True
        if name == p or name.startswith(p + "."):
            return True
    return False

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if is_blocked(name, blocked):
            raise ImportError(f"{name} is blocked by the layer test")

before = set(sys.modules)  # site's .pth files may register the `google` namespace at start
sys.meta_path.insert(0, Blocked())
for module in modules:
    __import__(module)
print(json.dumps(sorted(m for m in set(sys.modules) - before if is_blocked(m, blocked + watched))))
"""


def loaded_despite(blocked: Sequence[str], modules: Sequence[str], watched: Sequence[str] = ()) -> list[str]:
    """Import `modules` with `blocked` (top-level names or dotted prefixes; `dagster*` for a family)
    unimportable; fails on an import error, else returns the blocked or `watched` modules loaded."""
    argument = json.dumps([list(blocked), list(modules), list(watched)])
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, argument], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # an import of a blocked library fails the probe
    return json.loads(proc.stdout)
