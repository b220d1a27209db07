"""A foreign key the destination enforces refuses a write: the error names the table, the
foreign key and sample keys (found by query; SQLite names no constraint), and nothing changes."""

from __future__ import annotations

import duckdb
import pytest

from activation.syncs.results import SyncError
from tests.compare import destination_rows
from tests.syncs.test_load import CONFIG, PARENT_COLUMNS, make_marts, run_sync

CHILD_COLUMNS = ["id", "parent_id", "label"]


def config(child_mode: str) -> dict:
    syncs = {**CONFIG["syncs"], "children": {**CONFIG["syncs"]["children"], "mode": child_mode}}
    return {**CONFIG, "syncs": syncs}


def test_deleting_parent_rows_still_referenced_names_the_foreign_key_and_the_children(destination_url, tmp_path):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck)
    before = destination_rows(destination_url, "parents", PARENT_COLUMNS, ["id"])
    make_marts(duck, offset=10)  # P00000-P00009 leave the mart; 30 children still point at them in the app

    with pytest.raises(SyncError) as refused:
        run_sync(destination_url, duck, names=("parents",))
    message = str(refused.value)
    assert message.startswith("parents: deleting rows of mart parents violates a foreign key: ")
    assert "children(parent_id) -> parents(id)" in message
    assert "rows leaving parents are still referenced by 30 children row(s)" in message
    assert "id='C00000' (parent_id='P00000')" in message  # the first child, and the parent it points at
    assert "Sync the tables that point at it in the same run" in message
    assert destination_rows(destination_url, "parents", PARENT_COLUMNS, ["id"]) == before

    results = run_sync(destination_url, duck)  # the two together: children's deletes go first
    assert results["parents"].deleted == 10


@pytest.mark.parametrize("child_mode", ["replace", "mirror"])  # a shadow table loaded; a diff applied
def test_writing_children_whose_parent_is_missing_names_the_foreign_key_and_the_rows(
    destination_url, tmp_path, child_mode
):
    duck = tmp_path / "w.duckdb"
    make_marts(duck)
    run_sync(destination_url, duck, config=config(child_mode))
    before = destination_rows(destination_url, "children", CHILD_COLUMNS, ["id"])
    with duckdb.connect(str(duck)) as con:  # 3 children move to parents the app does not have yet
        con.execute("UPDATE children SET parent_id = 'P09' || id[-3:] WHERE id IN ('C00004', 'C00005', 'C00117')")

    with pytest.raises(SyncError) as refused:
        run_sync(destination_url, duck, names=("children",), config=config(child_mode))
    message = str(refused.value)
    assert message.startswith("children: writing rows of mart children violates a foreign key: ")
    assert "children(parent_id) -> parents(id)" in message
    assert "3 row(s) to write point at no parents row" in message
    assert "id='C00004' (parent_id='P09004'); id='C00005' (parent_id='P09005'); id='C00117'" in message
    assert destination_rows(destination_url, "children", CHILD_COLUMNS, ["id"]) == before
