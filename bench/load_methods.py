"""How fast each way of loading a DuckDB table into MariaDB (and PostgreSQL) is, in one run.

    uv run python bench/load_methods.py            # 1,000,000 rows
    uv run python bench/load_methods.py --quick    # 100,000 rows

Every method runs in a fresh child process (so its peak memory can be measured on its own),
reads the same DuckDB table, loads an empty InnoDB table with a primary key in one transaction,
and commits; the time covers reading the source, converting, loading and committing. A checksum
of the loaded table is compared with the reference, so a fast but wrong method shows up.

Servers: ACTIVATION_BENCH_MYSQL_URL / ACTIVATION_BENCH_POSTGRES_URL (server URLs without a database;
defaults: root@127.0.0.1:3306 and postgres@127.0.0.1:5432). A database is created and dropped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activation.destinations.sql import normalize_url  # noqa: E402
from activation.destinations.sql.bulk import bulk_insert  # noqa: E402

MYSQL_SERVER = os.environ.get("ACTIVATION_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRES_SERVER = os.environ.get("ACTIVATION_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
TABLE = "customers"
COLUMNS = [
    "customer_key",
    "name",
    "email",
    "city",
    "orders",
    "lifetime_views",
    "revenue",
    "score",
    "is_active",
    "signup_date",
    "updated_at",
]
# `src` is stored sorted by key and DuckDB preserves insertion order, so no ORDER BY (its sort
# would dominate every method's memory).
QUERY = f"SELECT {', '.join(COLUMNS)} FROM src"


def build_source(path: str, rows: int, *, integer_keys: bool = False) -> None:
    """11 columns, sorted by key: a varchar key (BIGINT with integer_keys), text incl. Japanese and
    NULLs, ints, decimal, double, bool, date, timestamp with microseconds."""
    key = "CAST(i AS BIGINT)" if integer_keys else "'C' || lpad(CAST(i AS VARCHAR), 9, '0')"
    con = duckdb.connect(path)
    con.sql("SET enable_progress_bar = false")
    con.sql(f"""
        CREATE TABLE src AS
        SELECT
          {key} AS customer_key,
          'Customer ' || CAST(i AS VARCHAR) || CASE WHEN i % 7 = 0 THEN ' 株式会社' ELSE '' END AS name,
          CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || CAST(i AS VARCHAR) || '@example.com' END AS email,
          (['東京都', '大阪府', '札幌市', 'Zürich', 'São Paulo', 'New York'])[1 + i % 6] AS city,
          CAST(i % 1000 AS INTEGER) AS orders,
          CAST(i AS BIGINT) * 1000003 AS lifetime_views,
          CAST((i % 100000) / 100.0 AS DECIMAL(18, 2)) AS revenue,
          CAST(i AS DOUBLE) / 7.0 AS score,
          i % 3 = 0 AS is_active,
          DATE '2020-01-01' + CAST(i % 1500 AS INTEGER) AS signup_date,
          TIMESTAMP '2024-01-01 00:00:00' + to_microseconds(CAST(i AS BIGINT) * 1234567) AS updated_at
        FROM range({rows}) t(i)
        ORDER BY customer_key
    """)
    con.close()


def bench_spec(mode: str = "mirror", **options):
    """The benches' one sync: `src` into TABLE by customer_key, guards open (a bench changes a lot)."""
    from activation.syncs.spec import SyncConfig

    body = {
        "source": "src",
        "destination": "app",
        "table": TABLE,
        "primary_key": "customer_key",
        "mode": mode,
        "guards": {"max_deletes": "100%", "max_updates": "100%"},
        **options,
    }
    config = SyncConfig.model_validate({"destinations": {"app": {"url_env": "UNUSED"}}, "syncs": {"bench": body}})
    return config.syncs["bench"]


def target_table() -> sa.Table:
    from sqlalchemy.dialects import mysql

    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("customer_key", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(100)),
        sa.Column("email", sa.String(200)),
        sa.Column("city", sa.String(50)),
        sa.Column("orders", sa.Integer),
        sa.Column("lifetime_views", sa.BigInteger),
        sa.Column("revenue", sa.Numeric(18, 2)),
        sa.Column("score", sa.Double),
        sa.Column("is_active", sa.Boolean),
        sa.Column("signup_date", sa.Date),
        sa.Column("updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


# -- the methods (each runs in its own child process) ---------------------------------------------


def m_reference_load_data(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """DuckDB COPY to CSV, then one LOAD DATA LOCAL INFILE: the physical reference."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "src.csv")
        t0 = time.perf_counter()
        con.sql(
            f"COPY (SELECT * REPLACE (CAST(is_active AS TINYINT) AS is_active) FROM ({query})) TO '{path}' "
            "(FORMAT csv, HEADER false, NULLSTR 'NULL', FORCE_QUOTE (customer_key, name, email, city))"
        )
        csv_seconds = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {TABLE} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY 0x0A "
                f"({', '.join(COLUMNS)})"
            )
    return f"CSV written in {csv_seconds:.2f} s"


def m_bulk_insert(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """Ours: Arrow batches streamed from DuckDB."""
    with engine.begin() as conn:
        bulk_insert(conn, target_table(), con.sql(query).to_arrow_reader(batch))
    return ""


def m_executemany(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """The driver's executemany, 10k rows a call (pymysql folds them into multi-row INSERTs)."""
    marks = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})"
    result = con.execute(query)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        while rows := result.fetchmany(10_000):
            cursor.executemany(sql, rows)
    return ""


def m_pandas(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """pandas to_sql(method="multi", chunksize=10_000)."""
    frame = con.sql(query).df()
    with engine.begin() as conn:
        frame.to_sql(TABLE, conn, if_exists="append", index=False, method="multi", chunksize=10_000)
    return ""


def m_pg_reference_copy(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """DuckDB COPY to CSV, then the file through COPY FROM STDIN."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "src.csv")
        con.sql(f"COPY ({query}) TO '{path}' (FORMAT csv, HEADER false)")
        with engine.begin() as conn, conn.connection.dbapi_connection.cursor() as cursor:
            with (
                cursor.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)") as copy,
                open(path, "rb") as f,
            ):
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
    return ""


def m_pg_write_row(engine: sa.Engine, con: duckdb.DuckDBPyConnection, query: str, batch: int) -> str:
    """psycopg COPY with copy.write_row per row (the alternative to CSV bytes)."""
    result = con.execute(query)
    with engine.begin() as conn, conn.connection.dbapi_connection.cursor() as cursor:
        with cursor.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            while rows := result.fetchmany(10_000):
                for row in rows:
                    copy.write_row(row)
    return ""


MYSQL_METHODS = {
    "LOAD DATA (DuckDB CSV), reference": m_reference_load_data,
    "bulk_insert (ours)": m_bulk_insert,
    "pymysql executemany 10k": m_executemany,
    "pandas to_sql multi 10k": m_pandas,
}
POSTGRES_METHODS = {
    "COPY (DuckDB CSV), reference": m_pg_reference_copy,
    "bulk_insert (ours)": m_bulk_insert,
    "COPY write_row": m_pg_write_row,
    "psycopg executemany 10k": m_executemany,
}


def _checksum(conn: sa.Connection) -> str:
    if conn.dialect.name == "postgresql":
        sql = f"SELECT md5(string_agg(t::text, '|' ORDER BY customer_key)) FROM {TABLE} t"
        return conn.exec_driver_sql(sql).scalar_one()
    return str(conn.exec_driver_sql(f"CHECKSUM TABLE {TABLE}").one()[1])


def _reset_peak_rss() -> int:
    """Current RSS in KiB, with the kernel's peak mark (VmHWM) reset to it. A spawned child's
    ru_maxrss starts at its parent's size, so it cannot show a method's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status("VmRSS")
    except OSError:  # not Linux: ru_maxrss, which can understate
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss() -> int:
    try:
        return _proc_status("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(key)


def run_method(kind: str, name: str, url: str, source: str, rows: int, batch: int) -> dict:
    """In a child process: fresh table, load, commit; time and peak-RSS increase of the load alone."""
    methods = MYSQL_METHODS if kind == "mysql" else POSTGRES_METHODS
    method = methods[name]
    if method is m_pandas:
        import pandas  # noqa: F401 (imported before the memory baseline)
    engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True} if kind == "mysql" else {})
    table = target_table()
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
    con = duckdb.connect(source, read_only=True)
    con.sql("SET enable_progress_bar = false")
    # LIMIT makes DuckDB buffer the ordered result: only when a method takes fewer rows.
    query = QUERY if rows >= con.execute("SELECT count(*) FROM src").fetchall()[0][0] else f"{QUERY} LIMIT {rows}"
    before = _reset_peak_rss()
    t0 = time.perf_counter()
    note = method(engine, con, query, batch)
    seconds = time.perf_counter() - t0
    peak = _peak_rss()
    with engine.connect() as conn:
        loaded = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        checksum = _checksum(conn)
        table.drop(conn)
        conn.commit()
    engine.dispose()
    return {"rows": loaded, "seconds": seconds, "peak_mb": (peak - before) / 1024, "checksum": checksum, "note": note}


# -- driver -----------------------------------------------------------------------------------------


def _create_database(kind: str) -> tuple[str, sa.Engine, str]:
    name = f"activation_bench_{uuid.uuid4().hex[:8]}"
    if kind == "mysql":
        admin = sa.create_engine(normalize_url(MYSQL_SERVER))
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return f"{MYSQL_SERVER}/{name}", admin, name
    admin = sa.create_engine(normalize_url(f"{POSTGRES_SERVER}/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'UTF8'")
    return f"{POSTGRES_SERVER}/{name}", admin, name


def _drop_database(kind: str, admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if kind == "postgres" else ""))
        conn.commit()
    admin.dispose()


def bench(kind: str, methods: dict, source: str, args: argparse.Namespace) -> None:
    try:
        url, admin, name = _create_database(kind)
    except sa.exc.OperationalError as exc:
        print(f"\n{kind}: server not reachable, skipped ({exc.orig})")
        return
    runs: dict[str, list[dict]] = {}
    plan: dict[str, tuple[int, str]] = {}
    for label, method in methods.items():
        rows, note = args.rows, ""
        if method is m_pandas:
            try:
                import pandas  # noqa: F401
            except ImportError:
                plan[label] = (0, "skipped: pandas is not installed")
                continue
            if args.rows > args.slow_rows:
                rows, note = args.slow_rows, f"(first {args.slow_rows:,} rows only; --slow-rows)"
        plan[label] = (rows, note)
    spawn = multiprocessing.get_context("spawn")
    try:
        # Round-robin over the methods, so a noisy neighbour spreads over all of them.
        for repeat in range(args.repeat):
            for label, (rows, _) in plan.items():
                if rows:
                    print(f"  {kind} run {repeat + 1}/{args.repeat}: {label}", file=sys.stderr, flush=True)
                    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                        run = pool.submit(run_method, kind, label, url, source, rows, args.batch).result()
                    runs.setdefault(label, []).append(run)
    finally:
        _drop_database(kind, admin, name)

    print(f"\n{kind}: {args.rows:,} rows x {len(COLUMNS)} columns into an empty table with a primary key")
    if args.repeat > 1:
        print(f"median of {args.repeat} runs; peak MB is the largest of them")
    header = f"{'method':<36} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'vs ref':>7} {'peak MB':>8}  checksum"
    print(header)
    print("-" * len(header))
    reference = None
    for label, (rows, note) in plan.items():
        if not rows:
            print(f"{label:<36} {note}")
            continue
        results = runs[label]
        seconds = statistics.median(x["seconds"] for x in results)
        peak = max(x["peak_mb"] for x in results)
        loaded = results[0]["rows"]
        checksums = {x["checksum"] for x in results}
        rate = loaded / seconds
        reference = reference or {"rate": rate, "checksum": results[0]["checksum"]}
        same = "same" if checksums == {reference["checksum"]} else "DIFFERS"
        if loaded != rows:
            same += f" (loaded {loaded:,} of {rows:,})"
        elif rows != args.rows:
            same = "n/a"
        extra = note or results[0]["note"]
        print(
            f"{label:<36} {loaded:>10,} {seconds:>8.2f} {rate:>9,.0f} {rate / reference['rate']:>7.2f} "
            f"{peak:>8.0f}  {same} {extra}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--batch", type=int, default=50_000, help="Arrow batch size for bulk_insert")
    parser.add_argument("--slow-rows", type=int, default=100_000, help="at most this many rows for pandas (~5k rows/s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the median is shown")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows = 100_000
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "source.duckdb")
        t0 = time.perf_counter()
        build_source(source, args.rows)
        print(f"source: {args.rows:,} rows built in DuckDB in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores")
        bench("mysql", MYSQL_METHODS, source, args)
        if not args.no_postgres:
            bench("postgres", POSTGRES_METHODS, source, args)


if __name__ == "__main__":
    main()
