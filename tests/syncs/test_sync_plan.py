"""The dry run is the run's own phases, rolled back: on SQLite, MariaDB and PostgreSQL, in every
mode, what `preview` says (strategy, reason, counts, the table it creates, rejects, warnings,
refusals) is what `sync` then does, and the preview itself changes nothing, in the destination
or in the state."""

from __future__ import annotations

from collections import Counter

import duckdb
import pytest

from activation.destinations.sql import SqlDestination, values
from activation.destinations.sql.prechecks import PreWriteChecks
from activation.syncs.model import MartRelation
from activation.syncs.plan import SyncPlan
from activation.syncs.results import GuardTripped
from activation.warehouses.duckdb import DuckDB
from tests.compare import destination_rows, sorted_mart_rows
from tests.syncs.test_engine import COLS, edit, mart
from tests.syncs.test_load import engine_for, execute, items_spec


def _warehouse(con, duck, url, *, dry_run: bool) -> DuckDB:
    return DuckDB(con, str(duck.parent / "state.duckdb"), url, dry_run=dry_run)


def preview_then_sync(url, duck, spec):
    """The preview and the result of the sync run right after it; the preview changed nothing."""
    relations = {spec.name: MartRelation("main", spec.source)}
    engine = engine_for(url)
    try:
        before = _rows(url)
        with duckdb.connect(str(duck), read_only=True) as con:
            wh = _warehouse(con, duck, url, dry_run=True)
            (planned,) = SqlDestination(engine).preview(wh, [spec], relations, sample=1000)
            (again,) = SqlDestination(engine).preview(wh, [spec], relations, sample=1000)
        assert again.as_dict() == planned.as_dict(), "a dry run moves no state: the same plan twice"
        assert _rows(url) == before, "a dry run writes nothing"
        with duckdb.connect(str(duck), read_only=True) as con:
            wh = _warehouse(con, duck, url, dry_run=False)
            try:
                (result,) = SqlDestination(engine).sync(wh, [spec], relations, log=lambda _: None)
            except GuardTripped as exc:
                return planned, exc
        return planned, result
    finally:
        engine.dispose()


def _rows(url):
    try:
        return destination_rows(url, "items", COLS, ["id"])
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return None


def assert_agree(planned, result) -> None:
    assert not planned.blocked, planned.blocked
    assert (planned.strategy, planned.reason) == (result.strategy, result.reason)
    assert planned.creates_table == result.created_table
    assert planned.counts == {"insert": result.inserted, "update": result.updated, "delete": result.deleted}
    assert (planned.rejected, planned.rows_in_mart) == (result.rejected, result.rows_in_mart)
    assert planned.warnings == result.warnings
    assert planned.unchanged == result.unchanged


@pytest.mark.parametrize("mode", ["mirror", "replace", "truncate_insert", "upsert"])
def test_the_dry_run_shows_what_the_run_does(destination_url, tmp_path, mode):
    duck = tmp_path / "w.duckdb"
    mart(duck)
    spec = items_spec(mode)
    seen = []
    for step in ("new table", "changes", "nothing changed", "rows deleted by hand", "full resync"):
        if step == "changes":
            edit(
                duck,
                "UPDATE items SET name = 'renamed' WHERE id IN ('K001', 'K002')",
                "DELETE FROM items WHERE id IN ('K003', 'K004')",
                "INSERT INTO items VALUES ('K900', 'new', 0.5)",
            )
        if step == "rows deleted by hand":
            execute(destination_url, "DELETE FROM items WHERE id IN ('K010', 'K011', 'K012')")
        planned, result = preview_then_sync(destination_url, duck, spec)
        assert_agree(planned, result)
        seen.append((step, planned.strategy, planned.counts))
        if step == "new table":
            assert planned.creates_table and planned.strategy == "bulk" and planned.counts["insert"] == 100
            assert len(planned.samples["insert"]) == 100
        if step == "changes" and mode == "mirror":
            assert planned.counts == {"insert": 1, "update": 2, "delete": 2}
            assert [s["key"] for s in planned.samples["delete"]] == ["K003", "K004"]
            assert planned.samples["update"] == [
                {"key": "K001", "columns": ["name"]},
                {"key": "K002", "columns": ["name"]},
            ]
        if step == "rows deleted by hand":
            assert planned.reason.startswith("destination holds"), (planned.reason, seen)
            if mode != "truncate_insert":  # which shows every row going out and in
                assert [s["key"] for s in planned.samples["insert"]] == ["K010", "K011", "K012"]
    if mode == "replace":
        assert [s for _, s, _ in seen][2] in ("unchanged", "diff"), seen  # diff where a swap is not possible


def test_a_tripped_guard_is_shown_and_then_refuses(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    mart(duck)
    spec = items_spec("mirror", guards={"max_deletes": 5})
    assert_agree(*preview_then_sync(destination_url, duck, spec))
    edit(duck, "DELETE FROM items WHERE id >= 'K050'")
    planned, refused = preview_then_sync(destination_url, duck, spec)
    assert isinstance(refused, GuardTripped)
    assert planned.blocked and "max_deletes" in planned.blocked
    assert planned.counts["delete"] == 50 and refused.plans["items"]["delete"] == 50


def _spied(calls: Counter, name: str, function):
    def spy(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)

    return spy


def _sync_counting_searches(url, duck, spec, monkeypatch, *, judged: bool) -> Counter:
    """Sync once; count the writer's searches for key and value problems (spies that call through)."""
    relations = {spec.name: MartRelation("main", spec.source)}
    calls: Counter = Counter()
    engine = engine_for(url)
    try:
        with duckdb.connect(str(duck), read_only=True) as con:
            wh = _warehouse(con, duck, url, dry_run=False)
            plans = {}
            if judged:  # as the Dagster step does: the blocking checks judge the plan the writer then gets
                outcomes, plans[spec.name] = PreWriteChecks(wh, engine).judge(
                    SyncPlan.of(wh.describe(spec, relations[spec.name]))
                )
                assert all(o.passed for o in outcomes)
            for name in ("null_and_duplicate_keys", "key_problems", "too_long"):
                setattr(wh, name, _spied(calls, name, getattr(wh, name)))
            monkeypatch.setattr(values, "find", _spied(calls, "values.find", values.find))
            SqlDestination(engine).sync(wh, [spec], relations, log=lambda _: None, plans=plans)
        return calls
    finally:
        engine.dispose()


def test_what_the_blocking_checks_ruled_out_is_not_searched_again(destination_url, tmp_path, monkeypatch):
    duck = tmp_path / "w.duckdb"
    mart(duck)
    spec = items_spec("mirror")
    first = _sync_counting_searches(destination_url, duck, spec, monkeypatch, judged=False)
    assert first["null_and_duplicate_keys"] == 1 and first["values.find"] == 1, first  # no state: checked up front
    edit(duck, "UPDATE items SET name = 'renamed' WHERE id = 'K001'")
    judged = _sync_counting_searches(destination_url, duck, spec, monkeypatch, judged=True)
    assert sum(judged.values()) == 0, judged
    assert destination_rows(destination_url, "items", COLS, ["id"]) == sorted_mart_rows(duck, "items", COLS, ["id"])
    edit(duck, "UPDATE items SET name = 'again' WHERE id = 'K002'")
    plain = _sync_counting_searches(destination_url, duck, spec, monkeypatch, judged=False)
    assert plain["key_problems"] == 1 and plain["values.find"] == 1, plain  # unjudged: the writer searches itself
