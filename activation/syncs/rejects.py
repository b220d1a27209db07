"""Rows a destination cannot take, set aside as data instead of failing the whole sync.

Before anything is written, the writer looks in the warehouse for rows the destination would
refuse: a value longer than its VARCHAR column, a NULL in a NOT NULL column. Without
`max_rejects` in the sync's config any such row refuses the sync, as before. With it
(`max_rejects: 100` or `"1%"` of the mart), while the count stays within the limit:
- the rows are left out of what is sent (this module's temporary table, anti-joined by the
  Planner), and an existing older version of such a row is kept, not deleted;
- their keys are kept out of the sync state, so the next run sends them again: once fixed in
  the mart they go through;
- after the destination committed, they are listed in `sync_rejects` beside the state
  (`activation.history`), one row per key and reason, replaced on every run.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from activation.resources import quote_duckdb as q

TABLE_SUFFIX = "rejects"


def table(plan) -> str:
    return q(f"_activation_{TABLE_SUFFIX}_{plan.spec.name}")


def _keys(plan, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + q(k) for k in plan.spec.primary_key)


def _on(plan, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{q(k)} = {b}.{q(k)}" for k in plan.spec.primary_key)


def reset(planner, plan) -> None:
    """An empty reject list for this run of the sync."""
    planner.con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table(plan)} AS SELECT {_keys(plan)}, ''::VARCHAR AS column_name, "
        f"''::VARCHAR AS reason FROM {planner._source(plan)} LIMIT 0"
    )


def add(planner, plan, column: str, reason: str, condition: str) -> None:
    """Set aside every mart row matching `condition` (SQL over the mart as the sync reads it)."""
    planner.con.execute(
        f"INSERT INTO {table(plan)} SELECT {_keys(plan)}, ?, ? FROM {planner._source(plan)} WHERE {condition}",
        [column, reason],
    )


def add_keys(planner, plan, column: str, reason: str, keys: list[tuple]) -> None:
    """Set aside the mart rows with these keys (as the destination returned them, byte for byte)."""
    if not keys:
        return
    names = plan.spec.primary_key
    found = pa.table({f"k{i}": [k[i] for k in keys] for i in range(len(names))})
    relation = f"_activation_reject_keys_{plan.spec.name}"
    planner.con.register(relation, found)
    try:
        on = " AND ".join(f"x.{q(k)} = f.k{i}" for i, k in enumerate(names))
        planner.con.execute(
            f"INSERT INTO {table(plan)} SELECT {_keys(plan, 'x')}, ?, ? FROM {planner._source(plan)} x "
            f"WHERE EXISTS (SELECT 1 FROM {q(relation)} f WHERE {on})",
            [column, reason],
        )
    finally:
        planner.con.unregister(relation)


def count(con: duckdb.DuckDBPyConnection, plan) -> int:
    """Distinct keys set aside (0 when the sync has no max_rejects). Looked up rather than caught:
    a failed statement would abort the transaction the state is written in."""
    name = f"_activation_{TABLE_SUFFIX}_{plan.spec.name}"
    if not con.execute("SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = ?", [name]).fetchall():
        return 0
    return con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {_keys(plan)} FROM {table(plan)})").fetchall()[0][0]


def mart_rows(planner, plan) -> int:
    return planner.con.execute(f"SELECT count(*) FROM {plan.relation.sql}").fetchall()[0][0]


def summary(con: duckdb.DuckDBPyConnection, plan, sample: int = 5) -> str:
    rows = con.execute(
        f"SELECT column_name, reason, count(*) FROM {table(plan)} GROUP BY ALL ORDER BY 3 DESC LIMIT {sample}"
    ).fetchall()
    return "; ".join(f"{c}: {r} ({n:,} rows)" for c, r, n in rows)


def without_rejects(con: duckdb.DuckDBPyConnection, plan, source: str) -> str:
    """The mart query minus the rows set aside (unchanged when there are none)."""
    if not count(con, plan):
        return source
    return f"(SELECT * FROM {source} x WHERE NOT EXISTS (SELECT 1 FROM {table(plan)} r WHERE {_on(plan, 'r', 'x')}))"


def forget_in_state(con: duckdb.DuckDBPyConnection, plan, state_table: str) -> None:
    """Keep rejected keys out of the state, so the next run sends them again."""
    if count(con, plan):
        con.execute(f"DELETE FROM {state_table} s USING {table(plan)} r WHERE {_on(plan, 's', 'r')}")


def keys_reader(con: duckdb.DuckDBPyConnection, plan, batch_size: int):
    return con.sql(f"SELECT DISTINCT {_keys(plan)} FROM {table(plan)} ORDER BY {_keys(plan)}").to_arrow_reader(
        batch_size
    )
