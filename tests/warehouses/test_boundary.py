"""The warehouse seam stays neutral: its interface and algorithm load without any warehouse's library."""

from __future__ import annotations

import subprocess
import sys

from activation.settings import PROJECT_ROOT

NEUTRAL = ["activation.syncs.model", "activation.warehouses.base", "activation.warehouses.flavour"]
NEUTRAL += ["activation.warehouses.rejects"]
BLOCKED = ["duckdb", "google", "dagster", "sqlalchemy"]

PROBE = f"""
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is not for the warehouse seam")

before = set(sys.modules)  # site's .pth files may register the `google` namespace at start
sys.meta_path.insert(0, Blocked())
for module in {NEUTRAL!r}:
    __import__(module)
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in {BLOCKED!r}))
"""


def test_the_warehouse_base_imports_neither_duckdb_nor_google_nor_dagster():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]  # an import of a blocked library fails the probe
    assert proc.stdout.strip() == "[]"  # and none was loaded some other way
