"""Every mode keeps its promise over random histories of a mart, checked against a model.

A history is a few successive mart states (keys from a small space, so states overlap: rows
stay, change, leave and come back) with awkward values: NULLs, unicode and emoji, whitespace,
extreme integers and floats. After each sync the destination must equal what the mode promises:

- insert: the previous destination plus the mart's new keys; existing rows untouched
- update: existing keys take the mart's values; no key is added or removed
- upsert: previous destination updated and extended by the mart; nothing deleted
- mirror, replace, truncate_insert: exactly the mart

and the counts reported must be the model's diff (truncate_insert reports its physical delete
and insert). Each example gets a fresh destination database, warehouse and state file.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activation.destinations.sql import SqlDestination
from activation.syncs.model import MartRelation
from activation.warehouses.duckdb import DuckDB
from tests.databases import mariadb_database
from tests.syncs.test_load import engine_for, items_spec

COLUMNS = ["id", "name", "amount", "score", "flag"]
SCHEMA = pa.schema(
    [("id", pa.int64()), ("name", pa.string()), ("amount", pa.int64()), ("score", pa.float64()), ("flag", pa.bool_())]
)
MODES = ["insert", "update", "upsert", "mirror", "replace", "truncate_insert"]

Row = tuple  # (name, amount, score, flag)
State = dict[int, Row]

AWKWARD_TEXT = [
    "",
    " ",
    "a",
    "A",
    "é",
    "e\u0301",
    "😀",
    "🏥",
    "東京",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "\\N",
    "NULL",
    '"',
    "'",
    ",",
]
texts = (
    st.none()
    | st.sampled_from(AWKWARD_TEXT)
    | st.lists(st.sampled_from([*AWKWARD_TEXT, "x", "ß"]), max_size=4).map("".join)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
)
INT64 = (-(2**63), 2**63 - 1)
amounts = st.none() | st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**53 + 1, *INT64]) | st.integers(*INT64)
scores = (
    st.none()
    | st.sampled_from([0.0, -0.0, 0.1, 1 / 3, -2.5, 1e-300, 5e-324, 1.7976931348623157e308, -1e308, 2.0**53])
    | st.floats(allow_nan=False, allow_infinity=False)
)
rows = st.tuples(texts, amounts, scores, st.none() | st.booleans())
marts = st.dictionaries(st.integers(0, 30), rows, max_size=12)


@dataclass
class History:
    seed: State | None  # synced with upsert before the mode under test (always for update)
    steps: list[State]


@st.composite
def histories(draw) -> History:
    seed = draw(st.none() | marts)
    steps = [draw(marts)]
    for _ in range(draw(st.integers(1, 3))):
        previous = steps[-1]
        # Some rows stay as they were, the rest leave or change, and new ones arrive.
        kept = draw(st.sets(st.sampled_from(sorted(previous)))) if previous else set()
        step = {k: previous[k] for k in sorted(kept)}
        step.update(draw(marts))
        steps.append(step)
    return History(seed, steps)


def expect(mode: str, dest: State, mart: State) -> tuple[State, tuple[int, int, int]]:
    """The destination a mode promises, and the (inserted, updated, deleted) it should report."""
    new = [k for k in mart if k not in dest]
    changed = [k for k in mart if k in dest and mart[k] != dest[k]]
    gone = [k for k in dest if k not in mart]
    if mode == "insert":
        return {**dest, **{k: mart[k] for k in new}}, (len(new), 0, 0)
    if mode == "update":
        return {k: mart.get(k, v) for k, v in dest.items()}, (0, len(changed), 0)
    if mode == "upsert":
        return {**dest, **mart}, (len(new), len(changed), 0)
    if mode in ("mirror", "replace"):
        return dict(mart), (len(new), len(changed), len(gone))
    assert mode == "truncate_insert"
    return dict(mart), (len(mart), 0, len(dest))  # the physical delete and insert


def make_spec(mode: str):
    return items_spec(mode, guards={"max_deletes": "100%", "allow_empty_source": True})


def write_mart(con: duckdb.DuckDBPyConnection, state: State) -> None:
    keys = sorted(state)
    columns = [keys, *([state[k][i] for k in keys] for i in range(4))]
    con.register("generated", pa.table(columns, schema=SCHEMA))
    con.execute("CREATE OR REPLACE TABLE items AS SELECT * FROM generated")
    con.unregister("generated")


def destination(engine: sa.Engine) -> State:
    with engine.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM items").fetchall()
    out: State = {}
    for key, name, amount, score, flag in found:
        assert key not in out, f"duplicate key {key}"
        out[key] = (name, amount, score, None if flag is None else bool(flag))
    return out


def check_history(url: str, folder: Path, mode: str, history: History) -> None:
    """Sync each state of the history and compare with the model after each sync.

    The warehouse is an in-memory DuckDB (opening a file costs more than syncing 30 rows);
    the sync state lives in a real file attached to it, fresh for each example."""
    model: State = {}
    plan = ([("upsert", history.seed)] if history.seed is not None or mode == "update" else []) + [
        (mode, step) for step in history.steps
    ]
    engine = engine_for(url)
    try:
        with duckdb.connect() as con:
            for i, (step_mode, mart) in enumerate(plan):
                mart = mart or {}
                write_mart(con, mart)
                planner = DuckDB(con, str(folder / "state.duckdb"), url)
                [result] = SqlDestination(engine).sync(
                    planner, [make_spec(step_mode)], {"items": MartRelation("main", "items")}, log=lambda _: None
                )
                model = check_step(engine, f"step {i}", step_mode, model, mart, result)
    finally:
        engine.dispose()


def check_step(engine: sa.Engine, step: str, mode: str, model: State, mart: State, result) -> State:
    model, counts = expect(mode, model, mart)
    where = f"{step} ({mode}, strategy {result.strategy}, {result.reason})"
    actual = destination(engine)
    if actual != model:
        wrong = {k: (actual.get(k, "<missing>"), model.get(k, "<missing>")) for k in actual.keys() | model.keys()}
        wrong = {k: v for k, v in sorted(wrong.items()) if v[0] != v[1]}
        pytest.fail(f"{where}: destination differs from the model, key: (destination, model): {wrong}")
    assert (result.inserted, result.updated, result.deleted) == counts, f"{where}: reported counts"
    assert result.rows_in_mart == len(mart), where
    assert result.rows_in_destination == len(model), where
    return model


SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, **SETTINGS)
@given(history=histories())
def test_modes_keep_their_promise_on_sqlite(mode, history):
    with tempfile.TemporaryDirectory() as folder:
        check_history(f"sqlite:///{folder}/app.sqlite", Path(folder), mode, history)


@contextmanager
def _mariadb():
    with mariadb_database() as url, tempfile.TemporaryDirectory() as folder:
        yield url, Path(folder)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=8, **SETTINGS)
@given(history=histories())
def test_modes_keep_their_promise_on_mariadb(mode, history):
    with _mariadb() as (url, folder):
        check_history(url, folder, mode, history)


@pytest.mark.parametrize("mode", ["upsert", "mirror", "replace"])
def test_a_change_of_trailing_spaces_alone_is_applied_on_mariadb(mode):
    """utf8mb4_bin is a PAD SPACE collation in MariaDB (and MySQL): 'Tokyo' = 'Tokyo ' and '' = ' '.
    The warehouse sees the change; the destination must get it too, and count it."""
    history = History(
        seed=None,
        steps=[
            {1: ("Tokyo", 1, 1.0, True), 2: ("", None, None, None), 3: ("same", 3, 3.0, False)},
            {1: ("Tokyo ", 1, 1.0, True), 2: (" ", None, None, None), 3: ("same", 3, 3.0, False)},
        ],
    )
    with _mariadb() as (url, folder):
        check_history(url, folder, mode, history)


def test_model_sanity():
    """The model itself: a row that comes back unchanged is neither inserted nor updated by upsert."""
    dest = {1: ("a", 1, 1.0, True), 2: ("b", None, None, None)}
    mart = {1: ("a", 1, 1.0, True), 3: ("c", 0, 0.0, False)}
    assert expect("upsert", dest, mart) == ({**dest, 3: mart[3]}, (1, 0, 0))
    assert expect("mirror", dest, mart) == (mart, (1, 0, 1))
    assert expect("update", dest, {2: ("x", 1, 2.0, False)}) == ({1: dest[1], 2: ("x", 1, 2.0, False)}, (0, 1, 0))
