"""The warehouse -> destination type map, per dialect: explicit, and proven by a round trip."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from activation.destinations.sql import schema
from activation.destinations.sql.dialect import sql_dialect
from activation.syncs.spec import SyncConfig
from tests.syncs.test_load import engine_for, run_specs

DIALECTS = {"mysql": mysql.dialect(), "postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}

EXPECTED = [
    # arrow type, {dialect: DDL type}
    (pa.bool_(), {"mysql": "BOOL", "postgresql": "BOOLEAN", "sqlite": "BOOLEAN"}),
    (pa.int32(), {"mysql": "INTEGER", "postgresql": "INTEGER", "sqlite": "INTEGER"}),
    (pa.int64(), {"mysql": "BIGINT", "postgresql": "BIGINT", "sqlite": "BIGINT"}),
    (pa.float64(), {"mysql": "DOUBLE", "postgresql": "DOUBLE PRECISION", "sqlite": "DOUBLE"}),
    (pa.decimal128(18, 2), {"mysql": "NUMERIC(18, 2)", "postgresql": "NUMERIC(18, 2)", "sqlite": "NUMERIC(18, 2)"}),
    (pa.decimal128(38, 10), {"mysql": "NUMERIC(38, 10)", "postgresql": "NUMERIC(38, 10)", "sqlite": "NUMERIC(38, 10)"}),
    (pa.date32(), {"mysql": "DATE", "postgresql": "DATE", "sqlite": "DATE"}),
    (pa.timestamp("us"), {"mysql": "DATETIME(6)", "postgresql": "TIMESTAMP WITHOUT TIME ZONE", "sqlite": "DATETIME"}),
    (
        pa.timestamp("us", tz="UTC"),
        {"mysql": "DATETIME(6)", "postgresql": "TIMESTAMP(6) WITH TIME ZONE", "sqlite": "DATETIME"},
    ),
    (pa.time64("us"), {"mysql": "TIME(fsp=6)", "postgresql": "TIME WITHOUT TIME ZONE", "sqlite": "TIME"}),
    (pa.string(), {"mysql": "VARCHAR(255)", "postgresql": "VARCHAR(255)", "sqlite": "VARCHAR(255)"}),
]


@pytest.mark.parametrize(("arrow_type", "ddl"), EXPECTED, ids=[str(t) for t, _ in EXPECTED])
def test_type_map(arrow_type, ddl):
    for name, dialect in DIALECTS.items():
        type_ = schema.sql_type(sql_dialect(dialect), arrow_type, table="t", column="c")
        assert type_.compile(dialect=dialect).replace("TIME(fsp=6)", "TIME(6)") == ddl[name].replace(
            "TIME(fsp=6)", "TIME(6)"
        )


def test_long_strings_become_text_and_keys_stay_indexable():
    mysql_ = sql_dialect(DIALECTS["mysql"])
    assert isinstance(schema.sql_type(mysql_, pa.string(), table="t", column="c", max_length=800), sa.String)
    text = schema.sql_type(mysql_, pa.string(), table="t", column="c", max_length=5000)
    assert text.compile(dialect=DIALECTS["mysql"]) == "MEDIUMTEXT"
    key = schema.sql_type(mysql_, pa.string(), table="t", column="id", max_length=5000, is_key=True)
    assert key.compile(dialect=DIALECTS["mysql"]) == "VARCHAR(5000)"


def test_unmappable_types_are_named():
    with pytest.raises(schema.SchemaError, match=r"t\.c: DECIMAL\(76,0\) exceeds the 65 digits"):
        schema.sql_type(sql_dialect(DIALECTS["mysql"]), pa.decimal256(76, 0), table="t", column="c")
    with pytest.raises(schema.SchemaError, match=r"t\.c: the mart type month_day_nano_interval has no destination"):
        schema.sql_type(sql_dialect(DIALECTS["sqlite"]), pa.month_day_nano_interval(), table="t", column="c")


def test_mysql_tables_are_utf8mb4_with_binary_collation():
    mysql_ = sql_dialect(DIALECTS["mysql"])
    table = schema.build_table(mysql_, sa.MetaData(), "t", pa.schema([("id", pa.string())]), ["id"])
    ddl = str(sa.schema.CreateTable(table).compile(dialect=DIALECTS["mysql"]))
    assert "CHARSET=utf8mb4" in ddl and "COLLATE utf8mb4_bin" in ddl


def test_awkward_values_round_trip(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute("""
            CREATE TABLE awkward AS SELECT * FROM (VALUES
              ('a', '🏥 病院 🚑', 12345678901234.56::DECIMAL(18,2), TRUE, DATE '1999-12-31',
               TIMESTAMP '2026-03-01 23:59:59.999999', TIMESTAMPTZ '2026-03-01 09:00:00.5+09:00',
               '{"k": [1, 2], "名": "値"}'::JSON, [1, 2, 3], {'x': 'y'}),
              ('b', '', -0.01::DECIMAL(18,2), FALSE, DATE '1970-01-01',
               TIMESTAMP '1970-01-01 00:00:00', TIMESTAMPTZ '2026-07-01 00:00:00+00:00',
               NULL, [], NULL),
              ('c', NULL, NULL, NULL, NULL, NULL, NULL, 'null'::JSON, NULL, {'x': NULL})
            ) AS t(id, label, amount, flag, "day", "at", at_tz, doc, "list", "order")
        """)
    config = SyncConfig.model_validate(
        {
            "destinations": {"app": {"url_env": "X"}},
            "syncs": {"awkward": {"source": "awkward", "destination": "app", "table": "awkward", "primary_key": "id"}},
        }
    )
    [result] = run_specs(destination_url, duck, list(config.syncs.values())).values()
    assert result.inserted == 3
    engine = engine_for(destination_url)
    try:
        with engine.connect() as conn:
            t = sa.Table("awkward", sa.MetaData(), autoload_with=conn)
            rows = {r[0]: r for r in conn.execute(sa.select(t)).all()}
    finally:
        engine.dispose()
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert a[1] == "🏥 病院 🚑" and b[1] == "" and c[1] is None
    assert str(a[2]) == "12345678901234.56" and str(b[2]) == "-0.01"
    assert bool(a[3]) is True and bool(b[3]) is False and c[3] is None
    assert str(a[5]).startswith("2026-03-01 23:59:59.999999")
    assert str(a[6]).startswith("2026-03-01 00:00:00.5"), "zone-aware values arrive as the same UTC instant"

    def doc(value):
        return value if isinstance(value, dict | list) or value is None else json.loads(value)

    assert doc(a[7]) == {"k": [1, 2], "名": "値"} and doc(a[8]) == [1, 2, 3] and doc(a[9]) == {"x": "y"}
    assert doc(b[8]) == [] and doc(c[9]) == {"x": None}
    # a second run finds nothing to change: JSON and decimals compare equal after the trip
    [again] = run_specs(destination_url, duck, list(config.syncs.values())).values()
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
