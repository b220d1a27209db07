"""SQL databases as destinations: `SqlDestination` runs the phases (phases.py over prepare.py and
apply.py; the dry run is the same phases, rolled back), and one module per dialect (mysql.py,
postgres.py, sqlite.py) holds everything particular to its database, behind `SqlDialect`."""

from activation.destinations.sql.destination import SqlDestination
from activation.destinations.sql.dialect import SqlDialect, sql_dialect
from activation.destinations.sql.engine import create_engine, normalize_url

__all__ = ["SqlDestination", "SqlDialect", "create_engine", "normalize_url", "sql_dialect"]
