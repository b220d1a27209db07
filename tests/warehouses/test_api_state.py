"""What an API destination needs of the warehouse, on DuckDB and on BigQuery: the operation of each
row to send, deletes of a full plan found from the state, per-record refusals with their own
reasons, refused deletes kept in the state, and a state version that moves with every commit."""

from __future__ import annotations

from activation.warehouses.base import OP
from activation.warehouses.history import RunHistory
from tests.warehouses.test_warehouse import URL, spec


def test_rows_carry_their_operation_and_refusals_keep_what_the_api_did_not_take(backend):
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 7))}")
    with backend.open(URL) as wh:
        assert wh.state_version(spec()) is None
        plan = wh.plan(wh.describe(spec(), backend.relation))
        rows = wh.rows(plan, 100, operation=True).read_all()
        assert set(rows.column(OP).to_pylist()) == {"insert"} and rows.num_rows == 6
        wh.commit(plan)
        first = wh.state_version(spec())
        assert first is not None

    backend.run("UPDATE {items} SET name = 'renamed' WHERE id IN ('K002', 'K003')")
    backend.run("DELETE FROM {items} WHERE id IN ('K004', 'K005')")
    backend.run(f"INSERT INTO {{items}} {backend.items([7])}")
    with backend.open(URL) as wh:
        s = spec()
        history = RunHistory(wh, run_id="r2", destination="api", destination_url="https://api.example.com")
        history.before([s])
        plan = wh.plan(wh.describe(s, backend.relation))
        assert wh.state_version(s) == first  # planning is not committing
        rows = wh.rows(plan, 100, operation=True).read_all().to_pylist()
        assert {r["id"]: r[OP] for r in rows} == {"K002": "update", "K003": "update", "K007": "insert"}
        wh.rejects.reset(plan)
        # the API refused an update and a delete, each with its own message
        wh.rejects.add_refusals(plan, "(record)", [(("K003",), "FIELD_INTEGRITY: name")])
        wh.rejects.refuse_deletes(plan, [(("K005",), "ENTITY_IS_LOCKED")])
        wh.commit(plan)
        history.succeeded([s], [])
        assert wh.state_version(s) != first
        state = {r[0] for r in wh.query(f"SELECT id FROM {wh.state_table(s)}")}
        assert state == {"K001", "K002", "K005", "K006", "K007"}  # K003 is sent again; K005 deleted again
        rejects = wh.query(f"SELECT key, column_name, reason FROM {wh.bookkeeping_table('sync_rejects')} ORDER BY key")
        assert [tuple(r) for r in rejects] == [
            ("K003", "(record)", "FIELD_INTEGRITY: name"),
            ("K005", "(delete)", "ENTITY_IS_LOCKED"),
        ]
        changes = wh.query(f"SELECT key, operation FROM {wh.bookkeeping_table('sync_changes')} ORDER BY key")
        assert [tuple(r) for r in changes] == [("K002", "update"), ("K004", "delete"), ("K007", "insert")]

    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert (plan.new_keys, plan.changed_keys, plan.deleted_keys) == (1, 0, 1)  # K003 again, K005 again


def test_a_full_plan_finds_its_deletes_in_the_state_and_keeps_a_refused_one(backend):
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 6))}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert wh.departed(plan) is None  # no state: nothing to delete
        wh.commit(plan)
    backend.run("DELETE FROM {items} WHERE id IN ('K002', 'K004')")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation), full_resync=True)
        assert wh.departed(plan) == 2
        assert sorted(wh.deleted(plan, 10).read_all().column("id").to_pylist()) == ["K002", "K004"]
        wh.rejects.reset(plan)
        wh.rejects.refuse_deletes(plan, [(("K004",), "locked")])
        wh.commit(plan)
        state = sorted(r[0] for r in wh.query(f"SELECT id FROM {wh.state_table(spec())}"))
        assert state == ["K001", "K003", "K004", "K005"]
    assert backend.left_behind() == []


def test_the_api_engine_syncs_from_either_warehouse(backend, monkeypatch):
    """The engine through the Warehouse interface only: the same run on DuckDB and on BigQuery."""
    from activation.destinations.api.engine import ApiDestination
    from activation.syncs.spec import SyncConfig
    from tests.destinations.http_server import StrictApi

    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 8))}")
    with StrictApi(key_field="id") as api:
        monkeypatch.setenv("ITEMS_API_TOKEN", api.token)
        settings = {
            "url": f"{api.url}/v1/{{object}}/batch",
            "delete_url": f"{api.url}/v1/{{object}}/batch-delete",
            "bearer_token_env": "ITEMS_API_TOKEN",
            "batch_size": 3,
        }
        destination = {"type": "http", "settings": settings, "rate_limit": {"requests": 100}}
        sync = {"source": "items", "destination": "api", "table": "items", "primary_key": "id", "mode": "mirror"}
        config = SyncConfig.model_validate({"destinations": {"api": destination}, "syncs": {"items": sync}})
        s = config.syncs["items"]

        def run():
            with backend.open("http:items") as wh:
                return ApiDestination("api", config.destinations["api"]).sync(
                    wh, [s], {"items": backend.relation}, log=lambda _m: None
                )[0]

        assert run().inserted == 7
        backend.run("UPDATE {items} SET name = 'renamed' WHERE id = 'K002'")
        backend.run("DELETE FROM {items} WHERE id IN ('K003', 'K004')")
        api.refuse["K002"] = "VALIDATION: name is reserved"
        api.refuse_delete["K004"] = "LOCKED"
        result = run()
        assert (result.updated, result.rejected, result.deleted) == (0, 1, 1)
        assert sorted(api.records["items"]) == ["K001", "K002", "K004", "K005", "K006", "K007"]
        with backend.open("http:items") as wh:  # the values kept are what the API holds (it refused two)
            kept = dict(wh.query(f"SELECT id, name FROM {wh.kept_values_relation(s)}"))
        assert kept == {k: r["name"] for k, r in api.records["items"].items()} and kept["K002"] == "name 2"
        api.refuse.clear()
        api.refuse_delete.clear()
        result = run()
        assert (result.inserted + result.updated, result.deleted) == (1, 1)
        assert api.records["items"]["K002"]["name"] == "renamed"
        assert sorted(api.records["items"]) == ["K001", "K002", "K005", "K006", "K007"]
        assert run().rows_sent == 0
    assert backend.left_behind() == []
