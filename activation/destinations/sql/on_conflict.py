"""Insert and update in one `INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE` (PostgreSQL, SQLite).

One probe of the table per staged row, where an update join and an insert of the missing keys
take two (SQLite's update join even scans the whole table: 0.7 s of a 1% sync at 1M rows). The
update clause carries the change condition (`Run.differs`), so a row sent with the values it
already holds is neither written nor counted, as before.

It is used only where it means the same as the two statements:
- the conflict target is a unique key on exactly the sync's key columns (ON CONFLICT needs one);
  another unique key is not an arbiter: a row that meets it fails, as the separate INSERT would;
- the table has no trigger of its own: an upsert fires the INSERT triggers of a row it ends up
  updating.
How the statement's rows split into inserts and updates is each dialect's (postgres.py: returned
by the statement; sqlite.py: the staged keys already in the table, counted before it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from activation.destinations.sql.dialect import quoted
from activation.syncs.results import SyncError

if TYPE_CHECKING:
    from activation.destinations.sql.run import Job, Run


def can_upsert(conn: sa.Connection, table: sa.Table, key: Sequence[str], triggers: str) -> bool:
    """A unique key on exactly `key` to be the conflict target, and no trigger of the table's own
    (`triggers`: the dialect's count of them, with :t the table's name and :q its quoted name)."""
    inspector = sa.inspect(conn)
    uniques = [inspector.get_pk_constraint(table.name, schema=table.schema).get("constrained_columns") or []]
    uniques += [u["column_names"] for u in inspector.get_unique_constraints(table.name, schema=table.schema)]
    uniques += [
        i["column_names"]
        for i in inspector.get_indexes(table.name, schema=table.schema)
        if i.get("unique") and not any(k.endswith("_where") for k in i.get("dialect_options", {}))  # not partial
    ]
    if not any(sorted(u) == sorted(key) for u in uniques):
        return False
    found = conn.execute(sa.text(triggers), {"t": table.name, "q": quoted(conn, table)}).scalar_one()
    return found == 0 and not any("%" in c.name for c in table.columns)  # SQLAlchemy 2.1 escapes '%' twice


def upsert(run: Run, job: Job, insert: Callable[[sa.Table], sa.Insert]) -> sa.Insert:
    """The statement, from the dialect's `insert` construct (one with `on_conflict_do_update`)."""
    t, s, spec = job.target, job.staging, job.spec
    columns = list(job.mart.columns)
    selected: list[sa.ColumnElement] = [s.c[c] for c in columns]
    if spec.soft_delete_column:  # a row that comes back is no longer deleted
        columns.append(spec.soft_delete_column)
        selected.append(sa.null())
    # WHERE true: SQLite reads ON CONFLICT after a bare SELECT as a join constraint.
    rows = sa.select(*selected).where(sa.true()).order_by(*[s.c[k] for k in spec.primary_key])
    stmt = insert(t).from_select(columns, rows)
    excluded = t.alias("excluded")  # the row the INSERT proposed, as ON CONFLICT names it
    return stmt.on_conflict_do_update(
        index_elements=[t.c[k] for k in spec.primary_key],
        set_={c: excluded.c[c] for c in columns if c not in spec.primary_key},
        where=run.differs(job, t, excluded),
    )


def checked(job: Job, inserted: int, updated: int, met: int) -> tuple[int, int]:
    """(inserted, updated), once they add up with the rows staged and the rows that met a key."""
    staged = job.result.rows_sent
    if not (0 <= inserted <= staged and 0 <= updated <= met and inserted + met == staged):
        raise SyncError(
            f"{job.spec.table}: the upsert of {staged} staged rows reported {inserted} inserted and {updated} "
            f"updated, {met} meeting an existing key; these counts do not add up, so the write was rolled back"
        )
    return inserted, updated
