"""What replace's swap changes, counted from the warehouse's diff where the destination provably
still holds what the sync state says; else by comparing the new table with the old one.

Replace loads every mart row into a shadow table and swaps it in, so the table's content never
depends on these counts: they are what the run reports and what the guards judge. Comparing
the shadow with the table (apply.compare: one LEFT JOIN of both, every value compared) costs
about as much as the load itself on MariaDB (~5 s of a ~10 s replace at 1M rows). The warehouse
already knows the answer when the destination is what the state recorded: its diff of the mart
against the kept key hashes (warehouses/base.py, `plan`) found the new, changed and gone keys.

So the diff's counts are used only when every one of these holds, each measured, not assumed:
- the plan is incremental: a state recorded by a sync with the same columns, key, mode and
  destination (else there is no diff);
- no mart row is set aside as a reject in this run (the diff counts it, the shadow lacks it);
- the table holds the rows the state says (`rows_before`, this run's COUNT(*) = the mart's rows
  less the new keys plus the gone ones; a row added or removed by hand breaks it);
- the server's write mark of the table (`SqlDialect.write_mark`: MariaDB's time of the last
  commit that changed the table and its creation time; PostgreSQL's relation, its file and its
  updated and deleted rows as the statistics count them) is the one the last sync recorded when
  it swapped the table in, which is kept with the table's description only after its state
  committed (phases.keep_description). A row edited since, a restart that forgot the mark, a
  TRUNCATE, or a run that swapped a table in but died before its state committed: the marks
  differ, and the run compares;
- the shadow holds every mart row: the rows the server reported loading (LOAD DATA's and COPY's
  own counts, summed over the streams) are the mart's rows.
Where the server gives no mark (SQLite, any other database) the run always compares.

What the mark cannot see: a write within the same second as the sync's last commit (MariaDB keeps
whole seconds), and a write on PostgreSQL that its backend has not yet reported to the
statistics (up to about a second). Such a write is overwritten by the swap like any other (the
content is right); only the update count can miss it. The compare has the same kind of blind
spot: a write after it ran and before the swap is not counted either. An "update" here is a key
whose row hash changed; a change the destination's type cannot hold (a nanosecond past the
microseconds it keeps) counts as one, where the compare would find the rows equal.
"""

from __future__ import annotations

import sqlalchemy as sa

from activation.destinations.sql.run import Job, Run
from activation.syncs.options import Mode
from activation.syncs.plan import Counts, Strategy
from activation.warehouses import destination_schemas

KEY = "write_mark"  # in the table's description, kept beside the state


def from_the_diff(run: Run, conn: sa.Connection, job: Job) -> Counts | None:
    """The diff's counts for the shadow just loaded, or None (with the reason logged) when the
    destination is not provably what the state says: then the caller compares."""
    why = _why_compare(run, conn, job)
    table = job.spec.table
    if why is not None:
        run.log(f"{table}: comparing the new table with the old one: {why}")
        return None
    mart = job.mart
    run.log(
        f"{table}: counts from the warehouse's diff: the table is as the last sync left it and the "
        f"{job.result.rows_sent:,} rows loaded are the mart's"
    )
    return Counts(insert=mart.new_keys, update=mart.changed_keys, delete=mart.deleted_keys)


def _why_compare(run: Run, conn: sa.Connection, job: Job) -> str | None:
    mart, plan = job.mart, job.plan
    if mart.full:
        return f"no diff to count from ({mart.reason})"
    if plan.rejected:
        return f"{plan.rejected:,} row(s) set aside as rejects"
    expected = mart.mart_rows - mart.new_keys + mart.deleted_keys
    if plan.rows_before != expected:
        return f"the table holds {plan.rows_before:,} rows where the state says {expected:,}"
    if job.result.rows_sent != mart.mart_rows:
        return f"{job.result.rows_sent:,} rows loaded for a mart of {mart.mart_rows:,}"
    recorded = recorded_mark(run, job)
    if recorded is None:
        return "no write mark recorded by the last sync"
    if run.dialect.write_mark(conn, table=job.spec.table) != recorded:
        return "the table was written, or recreated, since the last sync (its write mark changed)"
    return None


def recorded_mark(run: Run, job: Job) -> str | None:
    last = destination_schemas.last_described(run.warehouse, job.spec)
    return None if last is None else last.description.get(KEY)


def remember(run: Run, conn: sa.Connection, job: Job) -> None:
    """After the run's writes committed: the write mark of a table this run filled with exactly
    the mart's rows (a shadow swapped in, a table it created); a replace with nothing to swap keeps
    the mark it found only if that still matched."""
    if job.spec.mode is not Mode.REPLACE or job.plan.blocked or job.target is None:
        return
    if job.strategy is Strategy.UNCHANGED:
        with conn.begin():
            now = run.dialect.write_mark(conn, job.spec.table)
        job.write_mark = now if now is not None and now == recorded_mark(run, job) else None
    elif job.strategy is Strategy.SHADOW or job.plan.creates_table:
        with conn.begin():
            job.write_mark = run.dialect.write_mark(conn, job.spec.table)
