"""The warehouse behaviours, once, on DuckDB and on BigQuery: the diff, the state, the key checks,
rejects, run history, masking and the dry run of `activation plan`."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from activation.destinations.sql import SqlDestination
from activation.syncs.results import GuardTripped
from activation.warehouses.history import RunHistory
from tests.compare import destination_rows
from tests.syncs.test_load import engine_for, items_config

URL = "sqlite://:/items.sqlite"  # the destination identity the state is recorded for


def spec(mode: str = "mirror", **options):
    return items_config(mode, **options).syncs["items"]


def counts(plan):
    return (plan.full, plan.new_keys, plan.changed_keys, plan.deleted_keys)


def ids(reader) -> list[str]:
    return sorted(reader.read_all().column("id").to_pylist())


def test_only_changes_leave_the_warehouse_and_the_state_moves_only_on_commit(backend):
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 21))}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert (plan.reason, plan.mart_rows, *counts(plan)) == ("first sync: no state yet", 20, True, 20, 0, 0)
        assert ids(wh.rows(plan, 7)) == [f"K{i:03d}" for i in range(1, 21)]
        wh.commit(plan)

    backend.run("UPDATE {items} SET name = 'renamed' WHERE id IN ('K002', 'K003')")
    backend.run("DELETE FROM {items} WHERE id = 'K004'")
    backend.run(f"INSERT INTO {{items}} {backend.items(range(21, 24))}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert (plan.reason, *counts(plan)) == ("incremental", False, 3, 2, 1)
        sent = wh.rows(plan, 1000).read_all().to_pylist()
        assert sorted(r["id"] for r in sent) == ["K002", "K003", "K021", "K022", "K023"]
        assert {r["id"]: r["name"] for r in sent}["K002"] == "renamed"
        assert ids(wh.deleted(plan, 1000)) == ["K004"]
        assert wh.key_problems(plan) is None
        # Planned but never committed (the write failed, the process died): the same changes again.
        again = wh.plan(wh.describe(spec(), backend.relation))
        assert counts(again) == (False, 3, 2, 1)
        wh.commit(again)
        assert counts(wh.plan(wh.describe(spec(), backend.relation))) == (False, 0, 0, 0)

        described = wh.describe(spec(), backend.relation)
        assert wh.scope_violations(described, {"name": "renamed"}, described.columns) == 20
        assert wh.too_long(described, "name", 6) == [(k, 7) for k in ["K002", "K003", "K010", "K011", "K012"]]
        assert wh.string_lengths(described) == {"id": 4, "name": 7}
        assert wh.count_where(described, ["score > 30", "TRUE"]) == [3, 22]
        assert wh.keys_where(described, "score > 30", 2) == ["K021", "K022"]

    # Old hashes mean nothing for another destination, after `forget`, or when asked to resync.
    with backend.open("mysql://db:3306/app") as other:
        assert other.plan(other.describe(spec(), backend.relation)).reason.startswith("columns, key, destination")
    with backend.open(URL) as wh:
        assert wh.plan(wh.describe(spec(), backend.relation), full_resync=True).reason == "full resync requested"
        wh.forget(spec())
        assert wh.plan(wh.describe(spec(), backend.relation)).reason == "first sync: no state yet"


def test_bad_keys_are_found_at_the_cost_of_the_change_and_named(backend):
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 11))}")
    with backend.open(URL) as wh:
        wh.commit(wh.plan(wh.describe(spec(), backend.relation)))
    backend.run(f"INSERT INTO {{items}} {backend.items([5, 5])}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert not plan.full
        assert wh.key_problems(plan) == (
            "items -> items: duplicate key ('id',) in the mart ('K005' x3); nothing was written"
        )
        report = wh.key_report(plan)
        assert (report.rows, report.null_rows, report.duplicates) == (12, 0, [("K005", 3)])
    backend.run("UPDATE {items} SET id = NULL WHERE id = 'K005'")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        assert wh.key_problems(plan) == "items -> items: 3 row(s) have a NULL key in column 'id'; nothing was written"


def test_a_slice_of_the_mart_is_planned_like_a_mart(backend):
    """One day of a partitioned sync: the rows where a column holds one value, as a relation."""
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 11))}")
    with backend.open(URL) as wh:
        day = wh.filtered(backend.relation, "id", "K003", "_activation_items_k003")
        plan = wh.plan(wh.describe(spec(), day), full_resync=True)
        assert plan.mart_rows == 1 and ids(wh.rows(plan, 10)) == ["K003"]
    assert backend.left_behind() == []


def test_rows_are_set_aside_by_their_key_values(backend):
    """Keys the destination would hold as one (its collation) are set aside by value, not by SQL."""
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 6))}")
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(), backend.relation))
        wh.rejects.reset(plan)
        wh.rejects.add_keys(plan, "id", "key equal to another", [("K002",), ("K004",)])
        assert wh.rejects.count(plan) == 2
        assert ids(wh.rows(plan, 10)) == ["K001", "K003", "K005"]
    assert backend.left_behind() == []


def _recorded_run(backend, engine, url, run_id, retention_days=90, **options):
    """A sync run the way the Dagster asset records it."""
    s = spec(**options)
    with backend.open(url) as wh:
        history = RunHistory(wh, run_id=run_id, destination="app", destination_url=url, retention_days=retention_days)
        history.before([s])
        try:
            (result,) = SqlDestination(engine).sync(wh, [s], {"items": backend.relation}, log=lambda _: None)
        except Exception as exc:
            history.failed([s], exc)
            raise
        history.succeeded([s], [result])
        return result


def _history(backend, sql: str, params=()) -> list[tuple]:
    with backend.open(URL) as wh:
        names = ("sync_runs", "sync_changes", "sync_rejects")
        return wh.query(sql.format(**{n: wh.bookkeeping_table(n) for n in names}), params)


def test_rejects_history_and_retention(backend, tmp_path):
    """Rows the destination cannot take are set aside, kept out of the state and retried; each run
    and each changed key is recorded beside the state, and old records expire."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 11))}")
    counts_ = lambda r: (r.inserted, r.updated, r.deleted, r.rejected)  # noqa: E731
    assert counts_(_recorded_run(backend, engine, url, "run-1", max_rejects=5)) == (10, 0, 0, 0)
    backend.run("UPDATE {items} SET name = REPEAT('x', 300) WHERE id = 'K001'")  # synced before, now too long
    too_long = backend.items([900], name="REPEAT('y', 300)")
    backend.run(f"INSERT INTO {{items}} {too_long}")
    backend.run("UPDATE {items} SET name = 'renamed' WHERE id = 'K002'")
    backend.run("DELETE FROM {items} WHERE id = 'K003'")
    second = _recorded_run(backend, engine, url, "run-2", max_rejects=5)
    assert counts_(second) == (0, 1, 1, 2), "the good changes go through, the two bad rows are set aside"
    rows = {r[0]: r[1] for r in destination_rows(url, "items", ["id", "name"], ["id"])}
    assert rows["K001"] == "name 1" and "K900" not in rows and "K003" not in rows, "an older version stays"
    reason = "value longer than the destination's 255 characters"
    assert _history(backend, "SELECT key, column_name, reason FROM {sync_rejects} ORDER BY key") == [
        ("K001", "name", reason),
        ("K900", "name", reason),
    ]
    where, names, listed = next(backend.resource.recorded("sync_rejects", "items", 10))  # `activation history`
    assert "key" in names and sorted(r[names.index("key")] for r in listed) == ["K001", "K900"]

    first = "SELECT operation, count(*) FROM {sync_changes} WHERE run_id = 'run-1' GROUP BY 1"
    assert _history(backend, first) == [("insert", 10)], "a first sync records every key as inserted"
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=40)  # pretend run-1 was long ago
    _history(backend, "UPDATE {sync_runs} SET started_at = ? WHERE run_id = 'run-1'", [old])
    _history(backend, "UPDATE {sync_changes} SET recorded_at = ? WHERE run_id = 'run-1'", [old])
    backend.run("UPDATE {items} SET name = 'fixed' WHERE id IN ('K001', 'K900')")
    third = _recorded_run(backend, engine, url, "run-3", retention_days=30, max_rejects=5)
    assert counts_(third) == (1, 1, 0, 0)
    assert _history(backend, "SELECT count(*) FROM {sync_rejects}") == [(0,)]
    assert _history(backend, "SELECT run_id, key, operation FROM {sync_changes} ORDER BY 1, 2") == [
        ("run-2", "K002", "update"),
        ("run-2", "K003", "delete"),
        ("run-3", "K001", "insert"),  # the state forgot it while rejected: it comes back as new
        ("run-3", "K900", "insert"),
    ]
    runs = "SELECT run_id, status, rows_inserted, rows_updated, rows_deleted, rows_rejected FROM {sync_runs} ORDER BY 1"
    assert _history(backend, runs) == [("run-2", "success", 0, 1, 1, 2), ("run-3", "success", 1, 1, 0, 0)]

    backend.run("DELETE FROM {items} WHERE id > 'K002'")  # most of the mart gone: the delete guard trips
    with pytest.raises(GuardTripped):
        _recorded_run(backend, engine, url, "run-4")
    [(status, error)] = _history(backend, "SELECT status, error FROM {sync_runs} WHERE run_id = 'run-4'")
    assert status == "refused" and "max_deletes" in error
    engine.dispose()


def test_masked_columns_leave_the_warehouse_hashed_redacted_or_not_at_all(backend, tmp_path):
    email = "hanako.yamada@example.jp"
    backend.run(
        "CREATE OR REPLACE TABLE {items} AS "
        f"SELECT 'K000' AS id, '{email}' AS email, '090-0000' AS phone, 42 AS age, 'note' AS note "
        "UNION ALL SELECT 'K001', NULL, '090-0001', 7, 'note'"
    )
    mask = {"email": "hash", "phone": "redact", "age": "redact", "note": "drop"}
    with backend.open(URL) as wh:
        plan = wh.plan(wh.describe(spec(mask=mask), backend.relation))
        sent = wh.rows(plan, 10).read_all()
    assert sent.column_names == ["id", "email", "phone", "age"], "a dropped column is not even read"
    assert sorted(sent.to_pylist(), key=lambda r: r["id"]) == [
        {"id": "K000", "email": hashlib.sha256(email.encode()).hexdigest(), "phone": "[redacted]", "age": None},
        {"id": "K001", "email": None, "phone": "[redacted]", "age": None},
    ]


def test_plan_is_a_dry_run_that_never_moves_the_state(backend, tmp_path):
    """`activation plan`: the dry-run warehouse plans and streams, and records nothing."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    engine = engine_for(url)
    backend.run(f"CREATE OR REPLACE TABLE {{items}} AS {backend.items(range(1, 21))}")
    with backend.open(url) as wh:
        SqlDestination(engine).sync(wh, [spec()], {"items": backend.relation}, log=lambda _: None)
    backend.run("UPDATE {items} SET name = 'renamed' WHERE id = 'K002'")
    backend.run("DELETE FROM {items} WHERE id = 'K004'")
    backend.run(f"INSERT INTO {{items}} {backend.items(range(21, 24))}")
    for _ in range(2):  # the state did not move: the same plan twice
        with backend.open(url, dry_run=True) as wh:
            (preview,) = SqlDestination(engine).preview(wh, [spec()], {"items": backend.relation}, sample=2)
            assert preview.counts == {"insert": 3, "update": 1, "delete": 1}
            assert preview.samples["delete"] == [{"key": "K004"}] and preview.reason == "incremental"
            with pytest.raises(RuntimeError, match="dry run"):
                wh.forget(spec())
        assert backend.left_behind() == []
    with backend.open(url) as wh:
        (result,) = SqlDestination(engine).sync(wh, [spec()], {"items": backend.relation}, log=lambda _: None)
    assert (result.inserted, result.updated, result.deleted) == (3, 1, 1), "the real run applies what was planned"
    engine.dispose()
