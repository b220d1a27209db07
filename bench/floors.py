"""The floor of an incremental sync: the destination's own work for the same change, nothing else.

Before a change, `prepare_floor` copies the destination table (same keys) and the mart. After it,
`step_floor` finds the changed rows and the deleted keys in DuckDB (before its clock starts: that
is the warehouse's work, not the destination's), then, on the clock, gives them to the destination
the cheapest way each one offers, in one transaction:
- MariaDB: LOAD DATA of the changed rows into a staging table and of the deleted keys into
  another, one INSERT ... SELECT ... ON DUPLICATE KEY UPDATE, one DELETE join;
- PostgreSQL: COPY into temporary tables, one INSERT ... SELECT ... ON CONFLICT DO UPDATE, one
  DELETE ... USING;
- SQLite: executemany of INSERT ... ON CONFLICT DO UPDATE, executemany of DELETE by key.
"""

from __future__ import annotations

import time

import duckdb
import sqlalchemy as sa
from load_methods import COLUMNS, TABLE, _reset_peak_rss

from activation.destinations.sql import normalize_url

FLOOR_TABLE = "floor_copy"
KEY = "customer_key"
_VALUES = [c for c in COLUMNS if c != KEY]


def engine_for(kind: str, url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), connect_args={"local_infile": True} if kind == "mysql" else {})


def prepare_floor(kind: str, url: str, source: str) -> None:
    """Before a change: copy the destination table with its keys, and the mart, so the floor can
    replay the same change on a table of the same size."""
    engine = engine_for(kind, url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        if kind == "mysql":
            conn.exec_driver_sql(f"CREATE TABLE {FLOOR_TABLE} LIKE {TABLE}")
        elif kind == "postgres":
            conn.exec_driver_sql(f"CREATE TABLE {FLOOR_TABLE} (LIKE {TABLE} INCLUDING ALL)")
        else:
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
            conn.exec_driver_sql(ddl.scalar_one().replace(TABLE, FLOOR_TABLE, 1))
        conn.exec_driver_sql(f"INSERT INTO {FLOOR_TABLE} SELECT * FROM {TABLE}")
    engine.dispose()
    with duckdb.connect(source) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE OR REPLACE TABLE before_change AS SELECT * FROM src")


def _changes(source: str, tmp: str, kind: str) -> tuple[str, str, list[tuple], list[tuple]]:
    """The changed rows and the deleted keys, as files (MariaDB, PostgreSQL) or rows (SQLite)."""
    changed, gone = f"{tmp}/changed.csv", f"{tmp}/gone.csv"
    cols = ", ".join(COLUMNS)
    changed_rows = f"SELECT {cols} FROM src EXCEPT SELECT {cols} FROM before_change ORDER BY {KEY}"
    gone_keys = f"SELECT {KEY} FROM before_change ANTI JOIN src USING ({KEY}) ORDER BY 1"
    with duckdb.connect(source) as con:
        con.execute("SET enable_progress_bar = false")
        rows: list[tuple] = []
        keys: list[tuple] = []
        if kind == "mysql":
            con.execute(
                f"COPY (SELECT * REPLACE (CAST(is_active AS TINYINT) AS is_active) FROM ({changed_rows})) "
                f"TO '{changed}' (FORMAT csv, HEADER false, NULLSTR 'NULL', FORCE_QUOTE ({KEY}, name, email, city))"
            )
            con.execute(f"COPY ({gone_keys}) TO '{gone}' (FORMAT csv, HEADER false, FORCE_QUOTE ({KEY}))")
        elif kind == "postgres":
            con.execute(f"COPY ({changed_rows}) TO '{changed}' (FORMAT csv, HEADER false)")
            con.execute(f"COPY ({gone_keys}) TO '{gone}' (FORMAT csv, HEADER false)")
        else:
            rows, keys = con.execute(changed_rows).fetchall(), con.execute(gone_keys).fetchall()
        con.execute("DROP TABLE before_change")
    return changed, gone, rows, keys


def _mysql(conn: sa.Connection, changed: str, gone: str) -> tuple[int, int]:
    load = "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY 0x0A"
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE stage LIKE {FLOOR_TABLE}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE gone ({KEY} VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY)")
    sent = conn.exec_driver_sql(
        f"LOAD DATA LOCAL INFILE '{changed}' INTO TABLE stage CHARACTER SET utf8mb4 {load} ({', '.join(COLUMNS)})"
    ).rowcount
    conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE '{gone}' INTO TABLE gone CHARACTER SET utf8mb4 {load}")
    updates = ", ".join(f"{c} = VALUES({c})" for c in _VALUES)
    conn.exec_driver_sql(f"INSERT INTO {FLOOR_TABLE} SELECT * FROM stage ON DUPLICATE KEY UPDATE {updates}")
    deleted = conn.exec_driver_sql(f"DELETE f FROM {FLOOR_TABLE} f JOIN gone g ON f.{KEY} = g.{KEY}").rowcount
    return sent, deleted


def _postgres(conn: sa.Connection, changed: str, gone: str) -> tuple[int, int]:
    conn.exec_driver_sql(f"CREATE TEMP TABLE stage (LIKE {FLOOR_TABLE}) ON COMMIT DROP")
    conn.exec_driver_sql(f"CREATE TEMP TABLE gone ({KEY} text PRIMARY KEY) ON COMMIT DROP")
    with conn.connection.dbapi_connection.cursor() as cursor:
        for table, path in (("stage", changed), ("gone", gone)):
            with cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy, open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _VALUES)
    sent = conn.exec_driver_sql(
        f"INSERT INTO {FLOOR_TABLE} SELECT * FROM stage ON CONFLICT ({KEY}) DO UPDATE SET {updates}"
    ).rowcount
    deleted = conn.exec_driver_sql(f"DELETE FROM {FLOOR_TABLE} f USING gone g WHERE f.{KEY} = g.{KEY}").rowcount
    return sent, deleted


def _sqlite(conn: sa.Connection, rows: list[tuple], keys: list[tuple]) -> tuple[int, int]:
    cursor = conn.connection.dbapi_connection.cursor()
    updates = ", ".join(f"{c} = excluded.{c}" for c in _VALUES)
    marks = ", ".join("?" * len(COLUMNS))
    upsert = f"INSERT INTO {FLOOR_TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})"
    cursor.executemany(f"{upsert} ON CONFLICT ({KEY}) DO UPDATE SET {updates}", rows)
    cursor.executemany(f"DELETE FROM {FLOOR_TABLE} WHERE {KEY} = ?", keys)
    return len(rows), cursor.rowcount if cursor.rowcount >= 0 else len(keys)


def step_floor(kind: str, url: str, source: str, tmp: str) -> dict:
    """In a child process: the destination's share of an incremental sync, on the clock."""
    changed, gone, rows, keys = _changes(source, tmp, kind)
    if kind == "sqlite":  # the rows as the driver takes them (SQLite has no date or decimal type)
        rows = [tuple(v if isinstance(v, int | float | str | None) else str(v) for v in r) for r in rows]
    engine = engine_for(kind, url)
    with engine.connect():  # the connection opens before the clock, as a sync's pool would have it
        pass
    start = _reset_peak_rss() / 1024  # the peak of the work alone, not of finding the changed rows
    t0 = time.perf_counter()
    with engine.begin() as conn:
        if kind == "mysql":
            sent, deleted = _mysql(conn, changed, gone)
        elif kind == "postgres":
            sent, deleted = _postgres(conn, changed, gone)
        else:
            sent, deleted = _sqlite(conn, rows, keys)
    seconds = time.perf_counter() - t0
    from sync_engine import _status_mb

    peak = _status_mb("VmHWM")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {FLOOR_TABLE}")
    engine.dispose()
    return {
        "rows": sent + deleted,
        "written": sent + deleted,
        "seconds": seconds,
        "peak_mb": peak,
        "start_mb": start,
        "note": f"{sent:,} rows upserted, {deleted:,} deleted",
    }
