"""The destination seam stays neutral: the engine core and the Destination interface load without
Dagster, any warehouse's or database's library; and dialect differences live in the dialect
modules only (one per database), never as name comparisons elsewhere."""

from __future__ import annotations

import ast
import pkgutil

import pytest

import activation.syncs
from activation.settings import PROJECT_ROOT
from tests.import_probe import loaded_despite

PACKAGE = PROJECT_ROOT / "activation"

# activation/syncs is the engine core.
CORE = [f"activation.syncs.{m.name}" for m in pkgutil.iter_modules(activation.syncs.__path__)]
CORE += ["activation.destinations.base"]
BLOCKED = ["dagster", "duckdb", "google", "sqlalchemy", "pymysql", "psycopg", "MySQLdb", "psycopg2"]

# mysql_connect.py is the MySQL dialect's connection setup (PyMySQL's TLS context), split from mysql.py.
DIALECT_MODULES = {
    PACKAGE / "destinations" / "sql" / f"{name}.py" for name in ("mysql", "mysql_connect", "postgres", "sqlite")
}
NAMES = {"mysql", "mariadb", "postgresql", "postgres", "sqlite", "psycopg", "pymysql", "mysqldb"}
DRIVERS = {"pymysql", "psycopg", "psycopg2", "MySQLdb"}


def test_the_engine_core_imports_no_dagster_warehouse_or_database_library():
    assert "activation.syncs.results" in CORE and "activation.syncs.validate" in CORE
    assert loaded_despite(BLOCKED, CORE) == []


def _strings(node: ast.AST) -> set[str]:
    return {n.value.lower() for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _reads_a_dialect_name(node: ast.AST) -> bool:
    """`x.dialect.name`, `x.dialect.driver`, `url.get_backend_name()`, `url.get_driver_name()`."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr in ("name", "driver"):
            if isinstance(n.value, ast.Attribute) and n.value.attr == "dialect":
                return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if n.func.attr in ("get_backend_name", "get_driver_name"):
                return True
    return False


def dialect_branches(source: str) -> list[str]:
    """Where `source` tells databases apart by name: a comparison with a dialect's or driver's name,
    a comparison of what a dialect or URL is called, a type variant keyed by a dialect's name, or an
    import of a dialect's own SQLAlchemy module or driver."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            names = _strings(node) & NAMES
            if names or _reads_a_dialect_name(node):
                found.append(f"line {line}: compares {sorted(names) or 'a dialect name'}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_variant":
            found.append(f"line {line}: a type variant per dialect")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [
                f"line {line}: imports {module}"
                for module in modules
                if module.startswith("sqlalchemy.dialects") or module.split(".")[0] in DRIVERS
            ]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('if conn.dialect.name in ("mysql", "mariadb"):\n    pass', 1),
        ("ok = engine.dialect.name == other", 1),
        ('x = url.get_backend_name() == "sqlite"', 1),
        ('t = sa.Text().with_variant(JSONB(), "postgresql")', 1),
        ("from sqlalchemy.dialects import mysql", 1),
        ("from pymysql.constants import CLIENT", 1),
        ('if dialect.capabilities.advisory_locks:\n    kind = "mysql"', 0),
    ],
)
def test_the_scan_finds_dialect_branches(source, expected):
    """The scan below can fail: it finds each way the code used to tell databases apart."""
    assert len(dialect_branches(source)) == expected, dialect_branches(source)


def test_no_module_outside_the_dialect_modules_branches_on_a_dialect():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p not in DIALECT_MODULES)
    assert PACKAGE / "destinations" / "sql" / "destination.py" in modules and len(modules) > 40
    found = {
        str(path.relative_to(PROJECT_ROOT)): lines for path in modules if (lines := dialect_branches(path.read_text()))
    }
    assert found == {}
