"""Arrow batches as the CSV a database's bulk loader reads, written by pyarrow (C++, no Python row
loop). `CsvRules` says what one database's loader needs (mysql.py and postgres.py declare theirs):
how it reads binary, booleans and zone-aware timestamps, and which values it cannot store at all,
refused here by name rather than stored as something else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa

from activation.destinations.sql.bulk import non_empty, to_microseconds


@dataclass(frozen=True)
class CsvRules:
    """How one database's bulk loader reads CSV."""

    database: str  # named in errors: "MySQL", "PostgreSQL"
    options: pcsv.WriteOptions  # how NULL is spelled, above all
    binary_prefix: str  # before the hex digits of a binary value
    booleans_as_integers: bool  # MySQL's BOOLEAN is TINYINT(1): "true" would load as 0 with a warning
    keeps_zone: bool  # zone-aware timestamps keep their instant ("...Z"), else naive UTC wall time
    refuses_nul: bool  # text with NUL bytes cannot be stored
    refuses_nan: bool  # floating NaN and infinity cannot be stored


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


def csv_column(name: str, array: pa.Array, rules: CsvRules) -> tuple[pa.Array, bool]:
    """The column as pyarrow's CSV writer must see it; True when it was hex-encoded binary."""
    t = array.type
    if pa.types.is_dictionary(t):
        return csv_column(name, array.dictionary_decode(), rules)
    if pa.types.is_string_view(t):
        return array.cast(pa.large_string()), False
    if pa.types.is_binary_view(t):
        array, t = array.cast(pa.large_binary()), pa.large_binary()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if rules.refuses_nul and pc.any(pc.match_substring(array, "\x00")).as_py():
            raise ValueError(f"column {name!r}: text contains NUL bytes (\\x00), which {rules.database} rejects")
        return array, False
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _hex(array, rules.binary_prefix), True
    if pa.types.is_boolean(t):
        return (array.cast(pa.int8()) if rules.booleans_as_integers else array), False
    if pa.types.is_floating(t):
        if pa.types.is_float16(t):
            array = array.cast(pa.float32())
        if rules.refuses_nan:
            bad = pc.or_(pc.is_nan(array), pc.is_inf(array))
            if pc.any(bad).as_py():
                raise ValueError(f"column {name!r} holds NaN or infinity, which {rules.database} cannot store")
        return array, False
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return to_microseconds(name, array, None), False
        return to_microseconds(name, array, "UTC" if rules.keeps_zone else None), False
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


def csv_batch(batch: pa.RecordBatch, rules: CsvRules) -> tuple[pa.RecordBatch, list[bool]]:
    """The batch as its CSV must hold it, and which columns are hex-encoded binary."""
    columns, hexed = [], []
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        column, is_hex = csv_column(name, array, rules)
        columns.append(column)
        hexed.append(is_hex)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), hexed


# -- CSV files on disk, for a loader that reads files -----------------------------------------------

_FILE_PREFIX = "activation_load_"


def remove_orphaned_files() -> None:
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
class CsvFile:
    path: str
    rows: int
    names: list[str]
    hexed: list[bool]


_DONE = object()


class CsvFiles:
    """CSV files of about `group_bytes` of Arrow data each (the CSV is about as big), written by a
    thread while the server loads the previous one: the load overlaps reading the warehouse and
    writing CSV (DuckDB and pyarrow release the GIL). At most one file waits, and a batch is in
    memory only while it is written, so memory stays at a batch or two and disk at two or three files.
    Several loaders may share one producer (`take`, parallel_load.py): then `waiting` files wait."""

    def __init__(
        self, table: sa.Table, batches: Iterable[pa.RecordBatch], rules: CsvRules, group_bytes: int, waiting: int = 1
    ):
        self._ready: queue.Queue = queue.Queue(maxsize=waiting)
        self.rows = 0  # rows written into the files handed out so far
        self._stop = threading.Event()
        self._rules, self._group_bytes = rules, group_bytes
        self._thread = threading.Thread(
            target=self._produce, args=(table, batches), name=f"csv-{table.name}", daemon=True
        )

    def __enter__(self) -> CsvFiles:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[CsvFile]:
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

    def take(self) -> CsvFile | None:
        """The next file, for one of several loader threads (the caller removes the file once
        loaded), or None when every file was taken; the producer's error is raised to every taker."""
        item = self._ready.get()
        if item is _DONE or isinstance(item, BaseException):
            self._ready.put(item)  # for the other takers: the producer puts nothing after it
            if item is _DONE:
                return None
            raise item
        return item

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        while self._thread.is_alive() or not self._ready.empty():
            try:
                item = self._ready.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, CsvFile):
                os.unlink(item.path)
        self._thread.join()

    def _produce(self, table: sa.Table, batches: Iterable[pa.RecordBatch]) -> None:
        current: _CsvWriter | None = None
        try:
            for batch in non_empty(table, batches):
                if self._stop.is_set():
                    return
                prepared, hexed = csv_batch(batch, self._rules)
                current = current or _CsvWriter(prepared.schema, hexed, self._rules.options)
                current.write(prepared)  # straight to the file: no group of batches held in memory
                if current.bytes >= self._group_bytes:
                    done, current = current, None
                    self._hand_out(done.close())
            if current is not None:
                done, current = current, None
                self._hand_out(done.close())
            self._put(_DONE)
        except BaseException as exc:  # handed to the loading thread, which raises it
            self._put(exc)
        finally:
            if current is not None:  # stopped or failed halfway through a file
                current.discard()

    def _hand_out(self, csv_file: CsvFile) -> None:
        self.rows += csv_file.rows
        self._put(csv_file)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        if isinstance(item, CsvFile):
            os.unlink(item.path)


class _CsvWriter:
    """One CSV file being written, batch by batch; `bytes` counts the Arrow data written so far."""

    def __init__(self, schema: pa.Schema, hexed: list[bool], options: pcsv.WriteOptions):
        fd, self.path = tempfile.mkstemp(prefix=f"{_FILE_PREFIX}{os.getpid()}_", suffix=".csv")
        os.close(fd)
        self.names, self.hexed, self.rows, self.bytes = schema.names, hexed, 0, 0
        try:
            self._writer = pcsv.CSVWriter(self.path, schema, write_options=options)
        except BaseException:
            os.unlink(self.path)
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        self.bytes += batch.nbytes

    def close(self) -> CsvFile:
        try:
            self._writer.close()
        except BaseException:
            self.discard()
            raise
        return CsvFile(self.path, self.rows, self.names, self.hexed)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
