"""What another build's mart would do to a destination, measured against the production sync state.

Read-only on purpose: every number here comes from SELECTs over the other build's mart (read as
the sync reads it: destination names, masks applied) and the state of the last sync the
destination committed. Nothing is staged, no work table is made, so the same queries run in a
pull request's CI on DuckDB and on BigQuery without writing anything anywhere.

- With the values the destination last accepted (`Warehouse.kept_values_relation`), the diff is
  exact per column: which rows change, and from what to what (masked columns stay masked: both
  sides are the values as sent).
- Without them (a state written before values were kept), keys still give the inserts and the
  deletes, and the row hashes the updates where the columns did not change; no column detail.
"""

from __future__ import annotations

from collections.abc import Sequence

from activation.syncs.model import Plan
from activation.syncs.options import Mode
from activation.syncs.review import ColumnChange, Effect
from activation.warehouses.base import HASH, Warehouse

NO_VALUES = (
    "the production state keeps no values for this sync (written before values were kept, or keep_values: "
    "false): the report counts rows by key and hash but cannot show which columns change"
)


def _text(wh: Warehouse, expression: str) -> str:
    return wh.flavour.cast(expression, "text")


def effect(
    wh: Warehouse,
    plan: Plan,
    *,
    kept: str | None,
    kept_columns: Sequence[str] = (),
    fed: Sequence[str] | None = None,
    sample: int = 3,
) -> Effect:
    """The effect of `plan`'s mart against the state. `fed`: the destination columns the run would
    write (the drift policy may leave some out); default every column of the plan."""
    spec, f = plan.spec, wh.flavour
    q = f.quote
    keys = list(spec.primary_key)
    fed = [c for c in (fed if fed is not None else plan.columns) if c not in keys]
    has_state = wh.has_state(spec)
    old = kept if kept else (wh.state_table(spec) if has_state else None)
    new = wh.source(plan)
    if old is None:  # never synced: every mart row is new
        rows = wh.mart_rows(plan)
        shown = wh.query(f"SELECT {wh.key_text(spec, 'n')} FROM {new} n ORDER BY {wh.keys(plan, 'n')} LIMIT {sample}")
        return Effect(rows, 0, 0, rows, 0, samples={"insert": tuple(r[0] for r in shown), "delete": ()})
    both = " AND ".join(f"n.{q(k)} IS NOT NULL AND o.{q(k)} IS NOT NULL" for k in keys[:1])
    only_new = f"o.{q(keys[0])} IS NULL"
    only_old = f"n.{q(keys[0])} IS NULL"
    on = wh.on(spec, "n", "o")
    compared = [c for c in fed if c in kept_columns] if kept else []
    differs = {c: f"{_text(wh, 'n.' + q(c))} IS DISTINCT FROM {_text(wh, 'o.' + q(c))}" for c in compared}
    # a column the destination gains (evolve) is written on every kept row: a change where it holds a value
    gained = [c for c in fed if kept and c not in kept_columns]
    differs.update({c: f"n.{q(c)} IS NOT NULL" for c in gained})
    hash_comparable = not kept and wh.diffable(plan)
    if hash_comparable:
        value_cols = [q(c) for c in plan.columns if c not in keys]
        new = f"(SELECT {wh.keys(plan)}, {f.row_hash(value_cols)} AS {q(HASH)} FROM {new} x)"
    measures = [f.count_if(f"NOT ({only_old})"), f.count_if(only_new), f.count_if(only_old)]
    measures.append(f.count_if(f"NOT ({only_new})"))  # keys in the state
    if differs:
        measures.append(f.count_if(f"{both} AND ({' OR '.join(differs.values())})"))
        measures += [f.count_if(f"{both} AND {d}") for d in differs.values()]
    elif hash_comparable:
        measures.append(f.count_if(f"{both} AND n.{q(HASH)} IS DISTINCT FROM o.{q(HASH)}"))
    [row] = wh.query(f"SELECT {', '.join(measures)} FROM {new} n FULL JOIN {old} o ON {on}")
    in_mart, inserted, deleted, in_state, *rest = row
    updated: int | None = rest[0] if (differs or hash_comparable) else None
    columns: list[ColumnChange] = []
    for (column, condition), rows in zip(differs.items(), rest[1:], strict=False):
        if not rows:
            continue
        before = "NULL" if column in gained else _text(wh, "o." + q(column))
        shown = wh.query(
            f"SELECT {wh.key_text(spec, 'n')}, {before}, {_text(wh, 'n.' + q(column))} FROM {new} n "
            f"JOIN {old} o ON {on} WHERE {condition} ORDER BY {wh.keys(plan, 'n')} LIMIT {int(sample)}"
        )
        columns.append(ColumnChange(column, rows, tuple((k, b, a) for k, b, a in shown)))
    samples = {
        "insert": _keys(wh, plan, new, old, on, only_new, "n", sample),
        "delete": _keys(wh, plan, new, old, on, only_old, "o", sample),
    }
    if spec.mode is Mode.INSERT:
        updated = 0
    if spec.mode is Mode.UPDATE:
        inserted, samples["insert"] = 0, ()
    if not spec.mode.deletes:
        deleted, samples["delete"] = 0, ()
    detail = None
    if not kept:
        detail = NO_VALUES
        if updated is None:
            detail += (
                "; the columns changed since the last sync, so the row hashes cannot say which rows update either "
                "(the run compares every row with the destination)"
            )
    return Effect(inserted, updated, deleted, in_mart, in_state, tuple(columns), samples, detail)


def _keys(wh: Warehouse, plan: Plan, new: str, old: str, on: str, where: str, side: str, sample: int) -> tuple:
    rows = wh.query(
        f"SELECT {wh.key_text(plan.spec, side)} FROM {new} n FULL JOIN {old} o ON {on} WHERE {where} "
        f"ORDER BY {wh.keys(plan, side)} LIMIT {int(sample)}"
    )
    return tuple(r[0] for r in rows)
