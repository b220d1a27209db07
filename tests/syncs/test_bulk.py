"""bulk_insert against real SQLite, MariaDB and PostgreSQL: every awkward value must come back exactly."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from activation.destinations.sql import normalize_url
from activation.destinations.sql.bulk import bulk_insert
from tests.databases import destination_database

UTC = dt.UTC

STRINGS = [
    None,
    "",
    "NULL",
    "null",
    "\\N",
    "N",
    "a,b",
    'say "hi"',
    'x",y',
    '"',
    '""',
    'ends with quote"',
    ",",
    "it's",
    "back\\slash",
    "trailing backslash\\",
    "tab\there",
    "line\nbreak",
    "crlf\r\nend",
    "lone\rcr",
    "😀 emoji 𝄞",
    "東京都 大阪府",
    " padded ",
    "\\t not a tab",
]
N = len(STRINGS)


def _pad(values: list, filler=None) -> list:
    return (values + [filler] * N)[:N]


def _tz(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30)))


AWKWARD = pa.table(
    {
        "id": pa.array(range(N), pa.int32()),
        "s": pa.array(STRINGS, pa.string()),
        "txt": pa.array(list(reversed(STRINGS)), pa.large_string()),
        "i": pa.array(_pad([0, -1, 2**31 - 1, -(2**31)]), pa.int32()),
        "bi": pa.array(_pad([None, 2**63 - 1, -(2**63), -42]), pa.int64()),
        "d18": pa.array(
            _pad([Decimal("0.01"), Decimal("-9999999999999999.99"), Decimal("1234567890123456.78"), Decimal("0")]),
            pa.decimal128(18, 2),
        ),
        "d38": pa.array(
            _pad([Decimal("1234567890123456789012345678.1234567890"), Decimal("-0.0000000001"), Decimal("1.5")]),
            pa.decimal128(38, 10),
        ),
        "f": pa.array(_pad([1e300, -1e-300, 2.2250738585072014e-308, 0.1, 1 / 3, -123456789.123456789, 0.0])),
        "b": pa.array(_pad([True, False, None, True])),
        "day": pa.array(_pad([dt.date(2024, 2, 29), dt.date(1970, 1, 1), dt.date(9999, 12, 31)]), pa.date32()),
        "ts": pa.array(
            _pad([dt.datetime(2024, 1, 2, 3, 4, 5, 123456), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)]),
            pa.timestamp("us"),
        ),
        "ts_ns": pa.array(_pad([dt.datetime(2024, 1, 2, 3, 4, 5, 7)]), pa.timestamp("us")).cast(pa.timestamp("ns")),
        # Zone-aware: a naive column must get UTC wall time; a zone-aware column the same instant.
        "tz_naive": pa.array(
            _pad([_tz(2024, 3, 10, 22, 0, 0, 1), _tz(2023, 12, 31, 20, 0)]), pa.timestamp("us", "Asia/Tokyo")
        ),
        "tz_aware": pa.array(_pad([_tz(2024, 3, 10, 22, 0, 0, 1)]), pa.timestamp("us", "America/New_York")),
        "bin": pa.array(_pad([b"", b"\x00\xff\n,\"'\\", bytes(range(256)), None, b"NULL"]), pa.binary()),
    }
)


def _datetime6():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def awkward_table(metadata: sa.MetaData, name: str = "awkward") -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("s", sa.String(100)),
        sa.Column("txt", sa.Text),
        sa.Column("i", sa.Integer),
        sa.Column("bi", sa.BigInteger),
        sa.Column("d18", sa.Numeric(18, 2)),
        sa.Column("d38", sa.Numeric(38, 10)),
        sa.Column("f", sa.Double),
        sa.Column("b", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("ts", _datetime6()),
        sa.Column("ts_ns", _datetime6()),
        sa.Column("tz_naive", _datetime6()),
        sa.Column("tz_aware", sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")),
        sa.Column("bin", sa.LargeBinary),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


@pytest.fixture(scope="module", params=["sqlite", "mariadb", "postgres"])
def engine(request, tmp_path_factory):
    """An engine on an empty database of each dialect (or of those a test names with `only`)."""
    with destination_database(request.param, tmp_path_factory.mktemp("bulk")) as url:
        engine = sa.create_engine(normalize_url(url), connect_args={"local_infile": True} if "mysql" in url else {})
        yield engine
        engine.dispose()


def only(*dialects: str):
    """Run a test on these dialects only, rather than skipping it on the others."""
    return pytest.mark.parametrize("engine", dialects, indirect=True)


def _expected(column: str, value, dialect: str):
    if hasattr(value, "to_pydatetime"):  # nanosecond timestamps come out of Arrow as pandas Timestamps
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        if column == "tz_aware" and dialect == "postgresql":
            return value  # timestamptz: the same instant (aware datetimes compare as instants)
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def test_awkward_values_round_trip(engine):
    table = awkward_table(sa.MetaData())
    dialect = engine.dialect.name
    with engine.begin() as conn:
        table.create(conn)
        seen = []
        assert bulk_insert(conn, table, AWKWARD.to_batches(max_chunksize=10), progress=seen.append) == N
        assert seen and seen[-1] == N
    with engine.connect() as conn:
        got = [row._asdict() for row in conn.execute(sa.select(table).order_by(table.c.id))]
    assert len(got) == N
    for want, row in zip(AWKWARD.to_pylist(), got, strict=True):
        for column, value in want.items():
            expected, actual = _expected(column, value, dialect), row[column]
            if dialect == "sqlite" and column in ("d18", "d38") and value is not None:
                # SQLite has no decimal type: SQLAlchemy stores a float.
                assert math.isclose(float(actual), float(expected), rel_tol=1e-15), (column, value, actual)
                continue
            assert actual == expected and type(actual) is type(expected), (row["id"], column, value, actual)


@only("mariadb")
def test_mysql_boolean_arrives_as_one_and_zero(engine):
    table = awkward_table(sa.MetaData(), "booleans")
    with engine.begin() as conn:
        table.create(conn)
        bulk_insert(conn, table, AWKWARD.select(["id", "b"]).to_batches())
        raw = conn.exec_driver_sql("SELECT b FROM booleans ORDER BY id LIMIT 4").scalars().all()
    assert raw == [1, 0, None, 1]


def _keyed(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("v", sa.String(10)),
    )


def _batch(keys, values=None) -> pa.RecordBatch:
    keys = list(keys)
    values = values if values is not None else [f"v{k}" for k in keys]
    return pa.RecordBatch.from_pydict({"k": pa.array(keys, pa.int32()), "v": pa.array(values, pa.string())})


def _count(conn, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_several_batches_and_an_empty_one(engine):
    table = _keyed("several")
    with engine.begin() as conn:
        table.create(conn)
        seen = []
        batches = [_batch(range(3)), _batch([]), _batch(range(3, 8)), _batch([])]
        assert bulk_insert(conn, table, batches, progress=seen.append) == 8
        assert bulk_insert(conn, table, [_batch([])]) == 0
        assert bulk_insert(conn, table, []) == 0
        assert _count(conn, table) == 8
    assert seen == sorted(seen) and seen[-1] == 8


def test_a_batch_larger_than_one_executemany_arrives_whole(engine):
    """The generic loader sends a big batch in slices (bounded memory): every row, each once."""
    from activation.destinations.sql import bulk

    table = _keyed("sliced")
    n = 2 * bulk.ROWS_PER_EXECUTEMANY + 7
    with engine.begin() as conn:
        table.create(conn)
        assert bulk_insert(conn, table, [_batch(range(n))]) == n
        keys = conn.execute(sa.select(table.c.k).order_by(table.c.k)).scalars().all()
    assert keys == list(range(n))


def test_a_subset_of_the_columns_in_another_order(engine):
    table = _keyed("subset")
    with engine.begin() as conn:
        table.create(conn)
        batch = pa.RecordBatch.from_pydict({"v": ["b", "a"], "k": pa.array([2, 1], pa.int32())})
        assert bulk_insert(conn, table, [batch]) == 2
        assert conn.execute(sa.select(table).order_by(table.c.k)).all() == [(1, "a"), (2, "b")]
        with pytest.raises(ValueError, match="nope"):
            bulk_insert(conn, table, [pa.RecordBatch.from_pydict({"k": [3], "nope": [1]})])


def test_rolled_back_with_the_callers_transaction(engine):
    table = _keyed("rolled_back")
    with engine.begin() as conn:
        table.create(conn)
    with engine.connect() as conn:
        transaction = conn.begin()
        assert bulk_insert(conn, table, [_batch(range(5))]) == 5
        assert _count(conn, table) == 5
        transaction.rollback()
        assert _count(conn, table) == 0


def test_temporary_table(engine):
    table = sa.Table(
        "staged",
        sa.MetaData(),
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("v", sa.String(10)),
        prefixes=["TEMPORARY"],
    )
    with engine.begin() as conn:
        table.create(conn)
        assert bulk_insert(conn, table, [_batch(range(4)), _batch(range(4, 6))]) == 6
        assert _count(conn, table) == 6


@only("mariadb")
def test_nan_is_refused_on_mysql(engine):
    table = sa.Table(
        "floats", sa.MetaData(), sa.Column("k", sa.Integer, primary_key=True), sa.Column("score", sa.Double)
    )
    with engine.begin() as conn:
        table.create(conn)
    for bad in (math.nan, math.inf):
        with engine.begin() as conn, pytest.raises(ValueError, match="'score'.*(NaN|infinity)"):
            bulk_insert(conn, table, [pa.RecordBatch.from_pydict({"k": [1, 2], "score": [1.0, bad]})])


@only("postgres")
def test_postgres_keeps_nan_and_infinity(engine):
    table = sa.Table("floats", sa.MetaData(), sa.Column("k", sa.Integer, primary_key=True), sa.Column("f", sa.Double))
    with engine.begin() as conn:
        table.create(conn)
        values = [math.nan, math.inf, -math.inf, -0.0]
        bulk_insert(conn, table, [pa.RecordBatch.from_pydict({"k": [1, 2, 3, 4], "f": values})])
        got = conn.execute(sa.select(table.c.f).order_by(table.c.k)).scalars().all()
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 0.0]


@only("postgres")
def test_postgres_refuses_nul_in_text(engine):
    table = _keyed("nul")
    with engine.begin() as conn:
        table.create(conn)
        with pytest.raises(ValueError, match="'v'.*NUL"):
            bulk_insert(conn, table, [_batch([1], ["a\x00b"])])


@only("mariadb", "postgres")  # SQLite does not enforce VARCHAR lengths
def test_too_long_string_is_not_truncated(engine):
    table = _keyed("too_long")
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises((ValueError, sa.exc.DataError), match="(?i)too_long|too long|truncat"):
        with engine.begin() as conn:
            bulk_insert(conn, table, [_batch([1, 2], ["ok", "much too long for ten"])])
    with engine.connect() as conn:
        assert _count(conn, table) == 0


def test_duplicate_keys_are_not_skipped(engine):
    table = _keyed("duplicates")
    with engine.begin() as conn:
        table.create(conn)
    with pytest.raises((ValueError, sa.exc.IntegrityError), match="(?i)duplicate|unique"):
        with engine.begin() as conn:
            bulk_insert(conn, table, [_batch([1, 2, 1])])
    with engine.connect() as conn:
        assert _count(conn, table) == 0


def test_zero_in_an_auto_increment_key_stays_zero(engine):
    table = sa.Table("auto", sa.MetaData(), sa.Column("k", sa.Integer, primary_key=True), sa.Column("v", sa.String(10)))
    with engine.begin() as conn:
        table.create(conn)
        mode = (
            conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
            if conn.dialect.name in ("mysql", "mariadb")
            else None
        )
        assert bulk_insert(conn, table, [_batch([0, 1, 2])]) == 3
        assert conn.execute(sa.select(table.c.k).order_by(table.c.k)).scalars().all() == [0, 1, 2]
        if mode is not None:  # the session's sql_mode is restored
            assert conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() == mode
