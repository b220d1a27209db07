"""The values each destination last accepted, kept beside the state (warehouses/kept_values.py), on
DuckDB and on BigQuery: equal to what the destination holds after first and incremental syncs,
rejected and refused rows keeping their older values, masks kept, nothing kept when turned off or
for an older state, nothing written by a dry run or a failed write."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination
from activation.syncs.results import SyncError
from tests.compare import destination_rows
from tests.syncs.test_load import engine_for
from tests.warehouses.test_warehouse import URL, spec


def kept(wh, s) -> dict[str, tuple]:
    """The kept values of a sync as {id: (the other columns...)}, or None when none are kept."""
    table = wh.kept_values_relation(s)
    if table is None:
        return None
    columns = [c for c in wh.kept_values_columns(s) if c != "id"]
    q = wh.flavour.quote
    rows = wh.query(f"SELECT {q('id')}, {', '.join(q(c) for c in columns)} FROM {table}")
    return {r[0]: tuple(r[1:]) for r in rows}


def sync(backend, engine, s):
    with backend.open(str(engine.url)) as wh:
        return SqlDestination(engine).sync(wh, [s], {"items": backend.relation}, log=lambda _: None)[0]


def held(url: str) -> dict[str, tuple]:
    return {r[0]: (r[1], r[2]) for r in destination_rows(url, "items", ["id", "name", "score"], ["id"])}


def test_the_values_are_what_the_destination_accepted(backend, tmp_path):
    """SQL path: after a first and an incremental sync the kept values are the destination's rows;
    a row set aside keeps the version the destination still holds, a new rejected row is absent;
    a dry run and a failed write change nothing."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    s = spec(max_rejects=5)
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 11))}")
    sync(backend, engine, s)
    with backend.open(url) as wh:
        assert kept(wh, s) == held(url) and len(held(url)) == 10

    backend.run("UPDATE {items} SET name = 'renamed' WHERE id = 'K002'")
    backend.run("UPDATE {items} SET name = REPEAT('x', 300) WHERE id = 'K001'")  # now too long: set aside
    backend.run("DELETE FROM {items} WHERE id = 'K003'")
    backend.run(f"INSERT INTO {{items}} {backend.items([11])}")
    backend.run(f"INSERT INTO {{items}} {backend.items([900], name='REPEAT(' + chr(39) + 'y' + chr(39) + ', 300)')}")
    result = sync(backend, engine, s)
    assert (result.inserted, result.updated, result.deleted, result.rejected) == (1, 1, 1, 2)
    with backend.open(url) as wh:
        values = kept(wh, s)
        assert values == held(url)
        assert values["K001"][0] == "name 1" and values["K002"][0] == "renamed"
        assert "K003" not in values and "K900" not in values and "K011" in values

    if backend.name != "duckdb":
        return  # neither a dry run nor a failed write reaches the warehouse's commit: one backend proves it
    backend.run("UPDATE {items} SET name = 'planned only' WHERE id = 'K004'")
    with backend.open(url, dry_run=True) as wh:
        (preview,) = SqlDestination(engine).preview(wh, [s], {"items": backend.relation})
        assert preview.counts["update"] == 1
    with backend.open(url) as wh:
        assert kept(wh, s) == values, "a dry run writes no values"

    with engine.begin() as conn:  # the destination refuses every write from now on
        conn.execute(sa.text("CREATE TRIGGER gone BEFORE UPDATE ON items BEGIN SELECT RAISE(ABORT, 'gone'); END"))
    with pytest.raises(SyncError):
        sync(backend, engine, s)
    with backend.open(url) as wh:
        assert kept(wh, s) == values, "a failed write keeps the values it had"
    engine.dispose()


def test_masks_stay_and_no_values_without_keep_values_or_for_an_older_state(backend):
    email = "hanako.yamada@example.jp"
    backend.run(
        f"CREATE OR REPLACE TABLE {{items}} AS SELECT 'K000' AS id, '{email}' AS email, 'n' AS note, 1 AS n "
        "UNION ALL SELECT 'K001', 'taro@example.jp', 'n', 2"
    )
    masked = spec(mask={"email": "hash", "note": "drop"})
    with backend.open(URL) as wh:
        assert wh.kept_values_relation(masked) is None, "no state, no values"
        wh.commit(wh.plan(wh.describe(masked, backend.relation)))
        assert wh.kept_values_columns(masked) == ["id", "email", "n"], "a dropped column is not kept"
        assert kept(wh, masked)["K000"] == (hashlib.sha256(email.encode()).hexdigest(), 1)

    off = spec(mask={"email": "hash", "note": "drop"}, keep_values=False)
    backend.run("UPDATE {items} SET n = 3 WHERE id = 'K001'")
    with backend.open(URL) as wh:
        assert wh.kept_values_relation(off) is None
        wh.commit(wh.plan(wh.describe(off, backend.relation)))
        # the values of the state before are gone, and not handed out when turned on again
        assert wh.kept_values_relation(off) is None and wh.kept_values_relation(masked) is None
    with backend.open(URL) as wh:  # turned on again with nothing changed: kept from the mart and the state
        plan = wh.plan(wh.describe(masked, backend.relation))
        assert plan.changes == 0
        wh.commit(plan)
        assert kept(wh, masked)["K001"] == (hashlib.sha256(b"taro@example.jp").hexdigest(), 3)
    backend.run("UPDATE {items} SET n = 4 WHERE id = 'K000'")
    with backend.open(URL) as wh:
        wh.commit(wh.plan(wh.describe(masked, backend.relation)))
        assert {k: v[1] for k, v in kept(wh, masked).items()} == {"K000": 4, "K001": 3}
        wh.forget(masked)
        assert wh.kept_values_relation(masked) is None, "a forgotten state keeps no values"


def test_an_older_state_keeps_no_values(backend):
    """A state written before values were kept: the next run counts, but hands out no values
    until it stored its own."""
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 4))}")
    with backend.open(URL) as wh:
        wh.commit(wh.plan(wh.describe(spec(), backend.relation)))
        if backend.name == "duckdb":  # what an older release left: no values table, no stamp table
            wh.query(f"DROP TABLE {wh.kept_values_relation(spec())}")
            wh.query(f"DROP TABLE {wh.bookkeeping_table('kept_values')}")
        else:  # the state's description without the values' token
            from activation.warehouses.bigquery import _VALUES_MARK

            table = wh.client.get_table(wh.state_table(spec()).replace("`", ""))
            table.description = table.description.split(_VALUES_MARK)[0]
            wh.client.update_table(table, ["description"])
        assert wh.kept_values_relation(spec()) is None
        assert wh.diffable(wh.describe(spec(), backend.relation)), "the older state still serves the diff"
    backend.run("UPDATE {items} SET name = 'renamed' WHERE id = 'K002'")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert (plan.full, plan.changed_keys) == (False, 1)
        wh.commit(plan)
        assert kept(wh, spec()) == {"K001": ("name 1", 1.5), "K002": ("renamed", 3.0), "K003": ("name 3", 4.5)}


def test_api_refusals_keep_the_values_the_api_holds(backend):
    """API path: a record the API refused keeps its older values, a refused delete keeps its row,
    an accepted delete removes it; a full plan keeps the refused ones too."""
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 7))}")
    with backend.open(URL) as wh:
        wh.commit(wh.plan(wh.describe(spec(), backend.relation)))
    backend.run("UPDATE {items} SET name = 'renamed' WHERE id IN ('K002', 'K003')")
    backend.run("DELETE FROM {items} WHERE id IN ('K004', 'K005')")
    backend.run(f"INSERT INTO {{items}} {backend.items([7])}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        wh.rejects.reset(plan)
        wh.rejects.add_refusals(plan, "(record)", [(("K003",), "FIELD_INTEGRITY: name")])
        wh.rejects.refuse_deletes(plan, [(("K005",), "ENTITY_IS_LOCKED")])
        wh.commit(plan)
        names = {k: v[0] for k, v in kept(wh, spec()).items()}
        assert names == {"K001": "name 1", "K002": "renamed", "K003": "name 3", "K005": "name 5", "K006": "name 6",
                         "K007": "name 7"}  # fmt: skip
    with backend.open(URL) as wh:  # a full resync: the refused ones keep their values again
        plan = wh.plan(wh.describe(spec(), backend.relation), full_resync=True)
        assert wh.departed(plan) == 1
        wh.rejects.reset(plan)
        wh.rejects.add_refusals(plan, "(record)", [(("K003",), "FIELD_INTEGRITY: name")])
        wh.rejects.refuse_deletes(plan, [(("K005",), "ENTITY_IS_LOCKED")])
        wh.commit(plan)
        assert {k: v[0] for k, v in kept(wh, spec()).items()} == names
        with wh.key_relation(plan, [("K003",), ("K007",)]) as keys:
            before = wh.kept_values_reader(plan, keys).read_all().to_pylist()
        assert before == [
            {"id": "K003", "name": "name 3", "score": 4.5},
            {"id": "K007", "name": "name 7", "score": 10.5},
        ]
    assert backend.left_behind() == []
