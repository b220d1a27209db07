"""Insert Arrow record batches into a destination table as fast as each database allows.

- MySQL/MariaDB: `LOAD DATA LOCAL INFILE` from CSV files written by pyarrow (C++, no Python row loop),
  about 3x faster than executemany. With LOCAL the server turns data errors into warnings and skips
  duplicate keys, even in strict mode, so every LOAD is checked: any warning, or fewer rows than
  sent, raises.
- PostgreSQL (psycopg 3): `COPY ... FROM STDIN` fed with CSV bytes written by pyarrow.
- Anything else (SQLite): executemany through SQLAlchemy, so its types convert the values.

All of it runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa

# Batches are written to one CSV file, loaded by one LOAD, up to this much Arrow data (the CSV is
# about as big): few round trips, bounded disk; each batch goes to the file as it arrives.
MYSQL_GROUP_BYTES = 32 * 1024 * 1024

_MYSQL_CSV = pcsv.WriteOptions(include_header=False, null_string="NULL")  # unquoted NULL is NULL
_POSTGRES_CSV = pcsv.WriteOptions(include_header=False)  # unquoted empty field is NULL


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    batches: Iterable[pa.RecordBatch],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert every row of `batches` into `table` (columns matched by name; batch columns ⊆ table columns)
    inside the caller's open transaction; return the number of rows the server reports inserted.

    `progress` is called with the running total of rows inserted.
    """
    report = progress or (lambda _done: None)
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb") and conn.dialect.driver in ("pymysql", "mysqldb"):
        return _mysql_load(conn, table, batches, report)
    if dialect == "postgresql" and conn.dialect.driver == "psycopg":
        return _postgres_copy(conn, table, batches, report)
    return _insert_rows(conn, table, batches, report)


# -- shared preparation -------------------------------------------------------------------------


def _check_columns(table: sa.Table, batch: pa.RecordBatch, first: pa.Schema | None) -> pa.Schema:
    if first is not None:
        if not batch.schema.equals(first):
            raise ValueError(f"{table.name}: batches have different schemas:\n{first}\n---\n{batch.schema}")
        return first
    unknown = [name for name in batch.schema.names if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name}: columns {unknown} are not in the table")
    if len(set(batch.schema.names)) != len(batch.schema.names):
        raise ValueError(f"{table.name}: batch has duplicate column names {batch.schema.names}")
    return batch.schema


def _non_empty(table: sa.Table, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    schema = None
    for batch in batches:
        schema = _check_columns(table, batch, schema)
        if batch.num_rows:
            yield batch


def _to_microseconds(name: str, array: pa.Array, tz: str | None) -> pa.Array:
    """Both servers keep microseconds; refuse to drop nanoseconds silently."""
    try:
        return array.cast(pa.timestamp("us", tz))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"column {name!r}: timestamps with nanoseconds cannot be stored exactly: {exc}") from exc


def _hex(array: pa.Array, prefix: str) -> pa.Array:
    """Binary as hex text (CSV carries text only); DuckDB's hex() does it without a Python loop."""
    con = duckdb.connect()
    try:
        con.register("data", pa.table({"b": array.cast(pa.large_binary())}))
        return con.sql(f"SELECT '{prefix}' || hex(b) AS h FROM data").to_arrow_table().column("h").combine_chunks()
    finally:
        con.close()


def _unsupported(name: str, type_: pa.DataType) -> ValueError:
    return ValueError(f"column {name!r}: Arrow type {type_} is not supported by bulk_insert")


def _csv_column(name: str, array: pa.Array, dialect: str) -> tuple[pa.Array, bool]:
    """The column as pyarrow's CSV writer must see it; True when it was hex-encoded binary."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _csv_column(name, array.dictionary_decode(), dialect)
    if pa.types.is_string_view(t):
        return array.cast(pa.large_string()), False
    if pa.types.is_binary_view(t):
        array, t = array.cast(pa.large_binary()), pa.large_binary()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if dialect == "postgresql" and pc.any(pc.match_substring(array, "\x00")).as_py():
            raise ValueError(f"column {name!r}: text contains NUL bytes (\\x00), which PostgreSQL rejects")
        return array, False
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _hex(array, "\\x" if dialect == "postgresql" else ""), True
    if pa.types.is_boolean(t):
        # MySQL's BOOLEAN is TINYINT(1): "true" would load as 0 with a warning.
        return (array.cast(pa.int8()) if dialect != "postgresql" else array), False
    if pa.types.is_floating(t):
        if pa.types.is_float16(t):
            array = array.cast(pa.float32())
        if dialect != "postgresql":
            bad = pc.or_(pc.is_nan(array), pc.is_inf(array))
            if pc.any(bad).as_py():
                raise ValueError(f"column {name!r} holds NaN or infinity, which MySQL cannot store")
        return array, False
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return _to_microseconds(name, array, None), False
        # PostgreSQL: keep the instant ("...Z"): right for timestamptz, and a timestamp column
        # ignores the zone, leaving UTC wall time. MySQL DATETIME has no zone: naive UTC.
        return _to_microseconds(name, array, "UTC" if dialect == "postgresql" else None), False
    if pa.types.is_date64(t):
        return array.cast(pa.date32()), False
    if (
        pa.types.is_integer(t)
        or pa.types.is_decimal(t)
        or pa.types.is_date32(t)
        or pa.types.is_time(t)
        or pa.types.is_null(t)
    ):
        return array, False
    raise _unsupported(name, t)


def _csv_batch(batch: pa.RecordBatch, dialect: str) -> tuple[pa.RecordBatch, list[bool]]:
    columns, hexed = [], []
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        column, is_hex = _csv_column(name, array, dialect)
        columns.append(column)
        hexed.append(is_hex)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), hexed


@contextmanager
def _wrapped_driver_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    """Raise driver errors as SQLAlchemy's (IntegrityError, DataError, ...), as `conn.execute` would:
    callers catch those, and the raw cursor is an implementation detail."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, error, hide_parameters=True, dialect=conn.dialect
        ) from exc


def quoted(conn: sa.Connection, name: str | sa.Table) -> str:
    """A quoted identifier as the server must see it. SQLAlchemy's preparer doubles '%' for drivers
    with pyformat parameters; statements without parameters (and `sa.text`, which doubles again)
    need it single."""
    preparer = conn.dialect.identifier_preparer
    text = preparer.format_table(name) if isinstance(name, sa.Table) else preparer.quote(name)
    return text.replace("%%", "%") if preparer._double_percents else text


# -- MySQL / MariaDB ----------------------------------------------------------------------------


def _mysql_load(
    conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Callable[[int], None]
) -> int:
    dbapi = conn.connection.dbapi_connection
    if getattr(dbapi, "_local_infile", True) is False:  # pymysql
        raise ValueError("LOAD DATA LOCAL INFILE needs the engine created with connect_args={'local_infile': True}")
    _remove_orphaned_files()
    total = 0
    # A 0 sent to an AUTO_INCREMENT column would otherwise become the next id (mysqldump does the same).
    conn.exec_driver_sql(
        "SET @activation_sql_mode = @@SESSION.sql_mode, "
        "SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')"
    )
    try:
        with _CsvFiles(table, batches) as files:
            for csv_file in files:
                total += _load_file(conn, table, csv_file)
                report(total)
    finally:
        conn.exec_driver_sql("SET SESSION sql_mode = @activation_sql_mode")
    return total


_FILE_PREFIX = "activation_load_"


def _remove_orphaned_files() -> None:
    """CSV files left by a load that was killed (SIGKILL leaves no chance to clean up): their
    names carry the writer's process id."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{_FILE_PREFIX}*_*.csv")):
        pid = os.path.basename(path)[len(_FILE_PREFIX) :].split("_", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _CsvFile:
    path: str
    rows: int
    names: list[str]
    hexed: list[bool]


_DONE = object()


class _CsvFiles:
    """CSV files of about MYSQL_GROUP_BYTES each, written by a thread while the server loads the
    previous one: the load overlaps reading the warehouse and writing CSV (DuckDB and pyarrow
    release the GIL). At most one file waits, and a batch is in memory only while it is written,
    so memory stays at a batch or two and disk at two or three files."""

    def __init__(self, table: sa.Table, batches: Iterable[pa.RecordBatch]):
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(table, batches), name=f"csv-{table.name}", daemon=True
        )

    def __enter__(self) -> _CsvFiles:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[_CsvFile]:
        while True:
            item = self._ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            try:
                yield item
            finally:
                os.unlink(item.path)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        while self._thread.is_alive() or not self._ready.empty():
            try:
                item = self._ready.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, _CsvFile):
                os.unlink(item.path)
        self._thread.join()

    def _produce(self, table: sa.Table, batches: Iterable[pa.RecordBatch]) -> None:
        current: _CsvWriter | None = None
        try:
            for batch in _non_empty(table, batches):
                if self._stop.is_set():
                    return
                prepared, hexed = _csv_batch(batch, "mysql")
                current = current or _CsvWriter(prepared.schema, hexed)
                current.write(prepared)  # straight to the file: no group of batches held in memory
                if current.bytes >= MYSQL_GROUP_BYTES:
                    done, current = current, None
                    self._put(done.close())
            if current is not None:
                done, current = current, None
                self._put(done.close())
            self._put(_DONE)
        except BaseException as exc:  # handed to the loading thread, which raises it
            self._put(exc)
        finally:
            if current is not None:  # stopped or failed halfway through a file
                current.discard()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        if isinstance(item, _CsvFile):
            os.unlink(item.path)


class _CsvWriter:
    """One CSV file being written, batch by batch; `bytes` counts the Arrow data written so far."""

    def __init__(self, schema: pa.Schema, hexed: list[bool]):
        fd, self.path = tempfile.mkstemp(prefix=f"{_FILE_PREFIX}{os.getpid()}_", suffix=".csv")
        os.close(fd)
        self.names, self.hexed, self.rows, self.bytes = schema.names, hexed, 0, 0
        try:
            self._writer = pcsv.CSVWriter(self.path, schema, write_options=_MYSQL_CSV)
        except BaseException:
            os.unlink(self.path)
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        self.bytes += batch.nbytes

    def close(self) -> _CsvFile:
        try:
            self._writer.close()
        except BaseException:
            self.discard()
            raise
        return _CsvFile(self.path, self.rows, self.names, self.hexed)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _load_file(conn: sa.Connection, table: sa.Table, csv_file: _CsvFile) -> int:
    """LOAD one CSV file; raise unless the server took every row cleanly."""
    statement = _load_statement(conn, table, csv_file.names, csv_file.hexed)
    sql = statement.replace("%(path)s", _literal(conn, csv_file.path))
    with _wrapped_driver_errors(conn, sql), conn.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(sql)  # no parameters: a '%' in a column name stays as it is
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


# -- PostgreSQL ---------------------------------------------------------------------------------


def _postgres_copy(
    conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Callable[[int], None]
) -> int:
    prepared = (_csv_batch(batch, "postgresql")[0] for batch in _non_empty(table, batches))
    first = next(prepared, None)
    if first is None:
        return 0
    columns = ", ".join(quoted(conn, n) for n in first.schema.names)
    statement = f"COPY {quoted(conn, table)} ({columns}) FROM STDIN (FORMAT csv)"
    sent = 0
    with _wrapped_driver_errors(conn, statement), conn.connection.dbapi_connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for batch in itertools.chain([first], prepared):
                sink = pa.BufferOutputStream()
                pcsv.write_csv(batch, sink, _POSTGRES_CSV)
                copy.write(memoryview(sink.getvalue()))
                sent += batch.num_rows
                report(sent)
        inserted = cursor.rowcount
    if inserted != sent:
        raise ValueError(f"COPY into {table.name}: the server inserted {inserted} of {sent} rows")
    return inserted


# -- everything else ----------------------------------------------------------------------------


def _row_column(name: str, array: pa.Array) -> pa.Array:
    """Values SQLAlchemy's types handle: zone-aware timestamps as naive UTC, microseconds."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _row_column(name, array.dictionary_decode())
    if pa.types.is_timestamp(t):
        return _to_microseconds(name, array, None)
    return array


def _insert_rows(
    conn: sa.Connection, table: sa.Table, batches: Iterable[pa.RecordBatch], report: Callable[[int], None]
) -> int:
    total = 0
    for batch in _non_empty(table, batches):
        columns = [_row_column(n, a) for n, a in zip(batch.schema.names, batch.columns, strict=True)]
        rows = pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()
        result = conn.execute(table.insert(), rows)
        total += result.rowcount if result.rowcount >= 0 else len(rows)
        report(total)
    return total
