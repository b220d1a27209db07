"""MySQL/MariaDB bulk load: `LOAD DATA LOCAL INFILE` from CSV files written by pyarrow, about 3x
faster than executemany. With LOCAL the server turns data errors into warnings and skips duplicate
keys, even in strict mode, so every LOAD is checked: any warning, or fewer rows than sent, raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa

from activation.destinations.sql.bulk import wrapped_driver_errors
from activation.destinations.sql.csv_files import CsvFile, CsvFiles, CsvRules, remove_orphaned_files
from activation.destinations.sql.dialect import quoted

# Batches are written to one CSV file, loaded by one LOAD, up to this much Arrow data (the CSV is
# about as big): few round trips, bounded disk; each batch goes to the file as it arrives.
GROUP_BYTES = 32 * 1024 * 1024

CSV = CsvRules(
    database="MySQL",
    options=pcsv.WriteOptions(include_header=False, null_string="NULL"),  # unquoted NULL is NULL
    binary_prefix="",  # UNHEX() in the LOAD
    booleans_as_integers=True,  # BOOLEAN is TINYINT(1)
    keeps_zone=False,  # DATETIME has no zone: naive UTC
    refuses_nul=False,
    refuses_nan=True,
)


def load_data(
    conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Callable[[int], None]
) -> int:
    total = 0
    with loading(conn), CsvFiles(table, batches, CSV, GROUP_BYTES) as files:
        for csv_file in files:
            total += load_file(conn, table, csv_file)
            report(total)
    return total


@contextlib.contextmanager
def loading(conn: sa.Connection) -> Iterator[None]:
    """The session a LOAD needs, put back afterwards (the connection goes back to its pool)."""
    dbapi = conn.connection.dbapi_connection
    if getattr(dbapi, "_local_infile", True) is False:  # pymysql
        raise ValueError("LOAD DATA LOCAL INFILE needs the engine created with connect_args={'local_infile': True}")
    remove_orphaned_files()
    # A 0 sent to an AUTO_INCREMENT column would otherwise become the next id (mysqldump does the same).
    conn.exec_driver_sql(
        "SET @activation_sql_mode = @@SESSION.sql_mode, "
        "SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')"
    )
    try:
        yield
    except BaseException:
        with contextlib.suppress(sa.exc.DBAPIError):  # a lost connection: the error that matters is raised
            conn.exec_driver_sql("SET SESSION sql_mode = @activation_sql_mode")
        raise
    conn.exec_driver_sql("SET SESSION sql_mode = @activation_sql_mode")


def load_file(conn: sa.Connection, table: sa.Table, csv_file: CsvFile) -> int:
    """LOAD one CSV file; raise unless the server took every row cleanly."""
    statement = _load_statement(conn, table, csv_file.names, csv_file.hexed)
    sql = statement.replace("%(path)s", _literal(conn, csv_file.path))
    with wrapped_driver_errors(conn, sql), conn.connection.dbapi_connection.cursor() as cursor:
        _execute_load(conn, cursor, sql)
        inserted = cursor.rowcount
        cursor.execute("SHOW WARNINGS LIMIT 5")
        warnings = [row for row in cursor.fetchall() if row[0] != "Note"]
    if warnings or inserted != csv_file.rows:
        details = "; ".join(f"{level} {code}: {message}" for level, code, message in warnings)
        raise ValueError(
            f"LOAD DATA into {table.name}: the server inserted {inserted} of {csv_file.rows} rows"
            + (f" and warned: {details}" if details else "")
        )
    return inserted


def _literal(conn: sa.Connection, value: str) -> str:
    """A string literal as this server parses it (the dialect knows about NO_BACKSLASH_ESCAPES)."""
    return str(sa.literal(value, sa.String()).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _execute_load(conn: sa.Connection, cursor, sql: str) -> None:
    """The LOAD, with the server's lost-connection error raised as itself: when the server drops the
    connection while PyMySQL uploads the file, PyMySQL raises that error, then, writing the upload's
    last packet to the closed socket, an AttributeError, which no retry would recognise."""
    try:
        cursor.execute(sql)  # no parameters: a '%' in a column name stays as it is
    except AttributeError as exc:
        lost = exc.__context__
        if isinstance(lost, conn.dialect.loaded_dbapi.OperationalError):
            raise lost from None
        raise


def _load_statement(conn: sa.Connection, table: sa.Table, names: list[str], hexed: list[bool]) -> str:
    """Fields enclosed in '"' (doubled inside), no escape character, so backslashes are data and
    only an unquoted NULL is NULL. Line end as 0x0A: right whatever NO_BACKSLASH_ESCAPES says."""
    fields, sets = [], []
    for i, (name, is_hex) in enumerate(zip(names, hexed, strict=True)):
        column = quoted(conn, name)
        if is_hex:
            fields.append(f"@activation_{i}")
            sets.append(f"{column} = UNHEX(@activation_{i})")
        else:
            fields.append(column)
    return (
        f"LOAD DATA LOCAL INFILE %(path)s INTO TABLE {quoted(conn, table)} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY 0x0A "
        f"({', '.join(fields)})" + (f" SET {', '.join(sets)}" if sets else "")
    )
