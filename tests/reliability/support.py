"""Shared helpers of the reliability tests: marts, a sync runner that takes its own engine, row comparison."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from tests.syncs.test_load import engine_for, items_spec

COLS = ["id", "name", "amount", "score", "note"]
MART = """
CREATE OR REPLACE TABLE items AS
SELECT i AS id,
       'customer ' || i || CASE WHEN i % 13 = 0 THEN ' 🛒' ELSE '' END AS name,
       CAST(i * 1.25 AS DECIMAL(12, 2)) AS amount,
       CAST(i AS DOUBLE) / 7 AS score,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'note ' || (i % 97) END AS note
FROM range({start}, {stop}) t(i)
"""


def make_mart(duck: Path, rows: int) -> None:
    with duckdb.connect(str(duck)) as con:
        con.execute(MART.format(start=0, stop=rows))


def change_mart(duck: Path, rows: int, *, update_every: int = 10, delete_every: int = 100, new: int = 2_000) -> dict:
    """Update, delete and insert rows; return the counts a sync of the change must report."""
    with duckdb.connect(str(duck)) as con:
        deleted = con.execute(f"DELETE FROM items WHERE id % {delete_every} = 7").fetchone()[0]
        updated = con.execute(
            f"UPDATE items SET name = name || ' v2', amount = amount + 1 WHERE id % {update_every} = 3"
        ).fetchone()[0]
        con.execute("INSERT INTO items " + MART.split(" AS\n", 1)[1].format(start=rows, stop=rows + new))
    return {"inserted": new, "updated": updated, "deleted": deleted}


def make_spec(mode: str = "mirror", **extra):
    return items_spec(mode, **extra)


def run_with_engine(engine: sa.Engine, duck: Path, specs, *, log=lambda _m: None, identity: str | None = None):
    """SqlDestination.sync as the asset does it, on an engine the test built (state beside the warehouse)."""
    relations = {s.name: MartRelation("main", s.source) for s in specs}
    with duckdb.connect(str(duck), read_only=True) as con:
        planner = DuckDB(con, str(duck.parent / "state.duckdb"), identity or str(engine.url))
        results = SqlDestination(engine).sync(planner, specs, relations, log=log)
    return {r.table: r for r in results}


def run(url: str, duck: Path, specs, *, log=lambda _m: None, **engine_kwargs):
    engine = engine_for(url) if not engine_kwargs else sa.create_engine(url, **engine_kwargs)
    try:
        return run_with_engine(engine, duck, specs, log=log, identity=url)
    finally:
        engine.dispose()


def dest_rows(url: str, table: str = "items", cols=COLS) -> list[tuple]:
    """Every row in key order, as the driver returns it."""
    engine = engine_for(url)
    quote = engine.dialect.identifier_preparer.quote
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)} ORDER BY {quote(cols[0])}"
                ).all()
            ]
    finally:
        engine.dispose()


def mart_rows(duck: Path, table: str = "items", cols=COLS) -> list[tuple]:
    with duckdb.connect(str(duck), read_only=True) as con:
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {cols[0]}").fetchall()


def assert_same_rows(url: str, duck: Path) -> None:
    want, have = mart_rows(duck), dest_rows(url)
    first = next((i for i, (a, b) in enumerate(zip(have, want, strict=False)) if a != b), None)
    assert first is None, f"row {first}: destination {have[first]} != mart {want[first]}"
    assert len(have) == len(want), f"destination has {len(have)} rows, mart {len(want)}"


def progress(line: str) -> tuple[int, int] | None:
    """(done, total) of a line like "items: loaded into items 2,184 / 200,000 rows"."""
    if " loaded into " not in line or not line.endswith(" rows"):
        return None
    done, _slash, total = line[: -len(" rows")].split(" ")[-3:]
    return int(done.replace(",", "")), int(total.replace(",", ""))


class Log:
    """Thread-safe log sink; `on_line` runs in the syncing thread for every line."""

    def __init__(self, on_line=None):
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.on_line = on_line

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
        if self.on_line:
            self.on_line(line)

    def retries(self) -> list[str]:
        return [line for line in self.lines if line.startswith("transient destination error")]
