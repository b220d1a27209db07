"""DuckDB as the warehouse: its SQL flavour, and the state in a DuckDB file of its own.

The bookkeeping (state, history) lives in a separate file per destination, ATTACHed
read-write to a read-only warehouse connection: DuckDB admits one writer per file, and dbt
must stay free to build. Work tables are TEMP tables of the connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from activation.syncs.model import MartRelation, Plan, PlanError
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.flavour import JSON, MartColumn, SqlFlavour

STATE = "activation_state"  # the attached bookkeeping database
log = logging.getLogger(__name__)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBFlavour(SqlFlavour):
    name = "duckdb"
    engine = f"duckdb {duckdb.__version__}"
    types = {"text": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMP"}
    value_checks = {
        "nan": "isnan({c})",
        "inf": "isinf({c})",
        "not_finite": "NOT isfinite({c})",
        "finite": "isfinite({c})",
        "epoch": "epoch({c})",
        "double": "CAST({c} AS DOUBLE)",
        "four_byte": "regexp_matches({c}, '[\\x{{10000}}-\\x{{10FFFF}}]')",
        "nul": "contains({c}, chr(0))",
        # a multi-select value ('a;b') holding an item outside {allowed} (a list of literals)
        "items_outside": "NOT list_has_all([{allowed}], string_split({c}, ';'))",
    }

    def quote(self, name: str) -> str:
        return quote(name)

    def row_hash(self, columns: Sequence[str]) -> str:
        return f"hash({', '.join(columns)})" if columns else "0::UBIGINT"

    def json_text(self, expression: str) -> str:
        return f"CAST(to_json({expression}) AS VARCHAR)"

    def sha256_hex(self, text: str) -> str:
        return f"sha256({text})"

    def length(self, text: str) -> str:
        return f"length({text})"

    def count_if(self, condition: str) -> str:
        return f"count(*) FILTER (WHERE {condition})"


def attach_state(con: duckdb.DuckDBPyConnection, path: str, *, wait_seconds: float, log: Callable[[str], None]) -> None:
    """ATTACH a destination's state read-write, waiting while another process holds it. Holding the
    file is the destination's lock on this machine: a second writer of the destination (another run,
    a Celery worker that ignores Dagster's pools) waits here before it reads the state, then plans
    from what the first one committed."""
    deadline = time.monotonic() + wait_seconds
    delay, waited = 0.1, False
    while True:
        try:
            con.execute(f"ATTACH IF NOT EXISTS {_literal(path)} AS {STATE} (READ_WRITE)")
            if waited:
                log(f"sync state {path} is ours now")
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            if not waited:
                log(f"sync state {path} is held by another sync of this destination; waiting")
                waited = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class DuckDB(Warehouse):
    """Plans and streams the marts of one read-only warehouse connection."""

    flavour = DuckDBFlavour()

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        state_path: str,
        destination_identity: str,
        *,
        dry_run: bool = False,
        wait_seconds: float = 0.0,
        log: Callable[[str], None] = log.info,
    ):
        super().__init__(destination_identity, dry_run=dry_run)
        self.con = con
        con.execute("SET enable_progress_bar = false")
        attach_state(con, state_path, wait_seconds=wait_seconds, log=log)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE}.syncs (sync VARCHAR PRIMARY KEY, signature VARCHAR, "
            "synced_at TIMESTAMP)"
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params) or None).fetchall()

    def reader(self, sql: str, schema: pa.Schema, batch_size: int) -> pa.RecordBatchReader:
        return self.con.sql(sql).to_arrow_reader(batch_size)

    def relation(self, relation: MartRelation) -> str:
        return f"{quote(relation.schema)}.{quote(relation.name)}"

    def mart_columns(self, spec: SyncSpec, relation: MartRelation) -> dict[str, MartColumn]:
        try:
            rel = self.con.sql(f"SELECT * FROM {self.relation(relation)} LIMIT 0")
            schema = rel.to_arrow_table().schema
        except duckdb.CatalogException as exc:
            raise PlanError(
                f"sync {spec.name}: mart {spec.source} ({self.relation(relation)}) is not in the warehouse; "
                "build it with dbt"
            ) from exc
        columns = {}
        for name, duck_type in zip(rel.columns, rel.types, strict=True):
            type_ = schema.field(name).type
            json = str(duck_type) == "JSON" or pa.types.is_nested(type_)
            columns[name] = MartColumn(type_, JSON if json else "value")
        return columns

    def work_table(self, spec: SyncSpec, kind: str) -> str:
        return quote(f"_activation_{kind}_{spec.name}")

    def create_work(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")

    def drop_work(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def bookkeeping_table(self, name: str) -> str:
        return f"{STATE}.{quote(name)}"

    def state_table(self, spec: SyncSpec) -> str:
        return self.bookkeeping_table(f"sync__{spec.name}")

    def has_state(self, spec: SyncSpec) -> bool:
        return bool(
            self.con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
                [STATE, f"sync__{spec.name}"],
            ).fetchall()
        )

    def recorded_signature(self, spec: SyncSpec) -> str | None:
        rows = self.con.execute(f"SELECT signature FROM {STATE}.syncs WHERE sync = ?", [spec.name]).fetchall()
        return rows[0][0] if rows else None

    def store_state(self, plan: Plan, kept: str | None, added: str, rejected: str | None) -> None:
        """In one transaction, with the values kept beside the state; an incremental plan touches
        only the changed keys."""
        st, spec = self.state_table(plan.spec), plan.spec
        old = self.kept_values_relation(spec)
        if old is not None and self.recorded_signature(spec) != self.signature_record(plan):
            old = None  # other columns: the old values cannot be carried over
        with self.transaction():
            if kept is None:
                self.con.execute(f"CREATE OR REPLACE TABLE {st} AS {added}")
            else:
                delta = self.work_table(spec, "delta")
                self.con.execute(f"DELETE FROM {st} s USING {delta} d WHERE {self.on(spec, 's', 'd')}")
                self.con.execute(f"INSERT INTO {st} {added}")
            if rejected:
                self.con.execute(f"DELETE FROM {st} s USING {rejected} r WHERE {self.on(spec, 's', 'r')}")
            self.con.execute(
                f"INSERT OR REPLACE INTO {STATE}.syncs VALUES (?, ?, now()::TIMESTAMP)",
                [spec.name, self.signature_record(plan)],
            )
            self._store_values(plan, old, rejected)

    def _values_name(self, spec: SyncSpec) -> str:
        return self.bookkeeping_table(f"values__{spec.name}")

    def _store_values(self, plan: Plan, old: str | None, rejected: str | None) -> None:
        """The values the destination accepted, and the state stamp they belong to (kept_values.py)."""
        spec, values = plan.spec, self._values_name(plan.spec)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE}.kept_values (sync VARCHAR PRIMARY KEY, synced_at TIMESTAMP)"
        )
        if not spec.keep_values:
            self.con.execute(f"DROP TABLE IF EXISTS {values}")
            self.con.execute(f"DELETE FROM {STATE}.kept_values WHERE sync = ?", [spec.name])
            return
        if old is not None and not plan.full:
            gone, came = self.kept_values_changed(plan, rejected)
            self.con.execute(f"DELETE FROM {values} v WHERE {gone}")
            self.con.execute(f"INSERT INTO {values} {came}")
        else:
            held = self.kept_values_held(plan, old, rejected) if old is not None else None
            if held:
                self.create_work(self.work_table(spec, "held_values"), held)
                held = self.work_table(spec, "held_values")
            fresh = self.kept_values_fresh(plan, rejected, None if plan.full else self.state_table(spec))
            rows = f"{fresh} UNION ALL SELECT * FROM {held}" if held else fresh
            self.con.execute(f"CREATE OR REPLACE TABLE {values} AS {rows}")
            if held:
                self.drop_work(held)
        self.con.execute(
            f"INSERT OR REPLACE INTO {STATE}.kept_values SELECT sync, synced_at FROM {STATE}.syncs WHERE sync = ?",
            [spec.name],
        )

    def _kept_values_table(self, spec: SyncSpec) -> str | None:
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name IN (?, 'kept_values')",
            [STATE, f"values__{spec.name}"],
        ).fetchall()[0][0]
        if found < 2:
            return None
        current = self.con.execute(
            f"SELECT 1 FROM {STATE}.syncs s JOIN {STATE}.kept_values k USING (sync, synced_at) WHERE sync = ?",
            [spec.name],
        ).fetchall()
        return self._values_name(spec) if current else None

    def kept_values_columns(self, spec: SyncSpec) -> list[str]:
        rows = self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
            [STATE, f"values__{spec.name}"],
        ).fetchall()
        return [r[0] for r in rows]

    def drop_state(self, spec: SyncSpec) -> None:
        self.con.execute(f"DELETE FROM {STATE}.syncs WHERE sync = ?", [spec.name])
        self.con.execute(f"DROP TABLE IF EXISTS {self._values_name(spec)}")

    def state_version(self, spec: SyncSpec) -> str | None:
        """When the state was stored (microseconds): every `store_state` stamps it."""
        rows = self.con.execute(
            f"SELECT CAST(synced_at AS VARCHAR) FROM {STATE}.syncs WHERE sync = ?", [spec.name]
        ).fetchall()
        return rows[0][0] if rows else None

    def filtered(self, relation: MartRelation, column: str, value: Any, name: str) -> MartRelation:
        literal = f"DATE '{value.isoformat()}'" if isinstance(value, dt.date) else _literal(str(value))
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM {self.relation(relation)} "
            f"WHERE {quote(column)} = {literal}"
        )
        return MartRelation("temp", name)

    def duckdb_source(self, plan: Plan) -> tuple[Any, str] | None:
        return self.con, self.source(plan)

    @contextmanager
    def key_relation(self, plan: Plan, keys: list[tuple]) -> Iterator[str]:
        name = f"_activation_reject_keys_{plan.spec.name}"
        width = len(keys[0]) if keys else len(plan.spec.primary_key)  # key columns, maybe a reason after them
        self.con.register(name, pa.table({f"k{i}": [k[i] for k in keys] for i in range(width)}))
        try:
            yield quote(name)
        finally:
            self.con.unregister(name)

    def sorted_reader(self, query: str, order: str, schema: pa.Schema, batch_size: int) -> pa.RecordBatchReader:
        try:
            return self.con.sql(f"{query} ORDER BY {order}").to_arrow_reader(batch_size)
        except duckdb.OutOfMemoryException:
            # DuckDB sorts before the first row leaves, and cannot spill a sort of long text values:
            # past its memory cap, send the rows as the mart holds them (slower to load, as correct).
            log.warning(
                "the rows to send do not fit DuckDB's memory cap to be sorted by key; sending them in "
                "the mart's order (raise ACTIVATION_DUCKDB_MEMORY_LIMIT to load in key order)"
            )
            return self.con.sql(query).to_arrow_reader(batch_size)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")


@contextmanager
def throwaway_state(state_path: str | Path) -> Iterator[str]:
    """A copy of a destination's sync state: a dry run may write to it freely."""
    state_path = Path(state_path)
    with tempfile.TemporaryDirectory(prefix="activation_plan_") as tmp:
        copy = Path(tmp) / state_path.name
        for suffix in ("", ".wal"):
            source = Path(str(state_path) + suffix)
            if source.exists():
                shutil.copy(source, str(copy) + suffix)
        yield str(copy)


def recorded(folder: Path, table: str, select: str, sync: str | None) -> Iterator[tuple[str, list[str], list[tuple]]]:
    """(destination file, column names, rows) of a history table in every state file of `folder`."""
    for path in sorted(folder.glob("*.duckdb")) if folder.is_dir() else []:
        with duckdb.connect(str(path), read_only=True) as con:
            if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall():
                continue
            rel = con.execute(select.format(table=quote(table)), [sync] if sync else [])
            yield f"{path.stem} ({path})", [d[0] for d in rel.description], rel.fetchall()
