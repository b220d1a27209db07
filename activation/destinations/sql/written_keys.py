"""After the write, inside its transaction: the keys sent are in the table in their own bytes and
the counts add up, or the write rolls back (the last of the key checks of collisions.py).

The question is whether the write merged a row sent into a row of another key: a key column that
compares loosely (a `_ci` or PAD SPACE collation, citext, NOCASE), a trigger that rewrites keys, a
unique key besides the primary key. Where none of these can happen (integer keys, byte-comparing
collations of a plain table) only the counts are checked. Where only the comparison can merge and
the write was MySQL's one INSERT ... ON DUPLICATE KEY UPDATE, the merge itself counted the rows
that met a key of other bytes (`twins`, mysql.py), so nothing is joined unless it found one. Only
otherwise are the staged rows joined with the table: one index probe per row sent, a cost in
proportion to the change, which on a table larger than the server's buffer pool is still as much
as a second merge (10% of 1M rows: 1.6 s of a 7 s sync).
"""

from __future__ import annotations

import sqlalchemy as sa

from activation.destinations.sql.collisions import SAMPLE, key_rules, loose_key, shown
from activation.destinations.sql.dialect import quoted
from activation.destinations.sql.key_rules import pairs
from activation.destinations.sql.run import Job, Run
from activation.syncs.options import Mode
from activation.syncs.results import SyncError

_TRIGGERS = {
    "sqlite": "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t",
    "mysql": "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
    "AND EVENT_OBJECT_TABLE = :t",
    "mariadb": "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
    "AND EVENT_OBJECT_TABLE = :t",
    "postgresql": "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = to_regclass(:q) AND NOT tgisinternal",
}


def _may_rewrite(conn: sa.Connection, job: Job) -> bool:
    """Whether something besides the key's comparison could merge rows: a trigger on the table (it
    may rewrite keys) or a unique key besides the primary key (an upsert meets it). Catalog
    questions only, asked once per table and run."""
    if job.may_merge is not None:
        return job.may_merge
    target = job.target
    triggers = _TRIGGERS.get(conn.dialect.name)
    if triggers is None:
        job.may_merge = True
        return True
    n = conn.execute(sa.text(triggers), {"t": target.name, "q": quoted(conn, target)}).scalar_one()
    inspector = sa.inspect(conn)
    unique = inspector.get_unique_constraints(target.name, schema=target.schema)
    indexes = [i for i in inspector.get_indexes(target.name, schema=target.schema) if i.get("unique")]
    job.may_merge = bool(n or unique or indexes)
    return job.may_merge


def _counts_only(run: Run, conn: sa.Connection, job: Job) -> str | None:
    """Why the join can be left out (None: it cannot)."""
    if _may_rewrite(conn, job):
        return None
    if not loose_key(run, conn, job):
        return "keys compared byte for byte"
    if job.twins == 0:
        return "the merge met no key of other bytes"
    return None


def check_written(run: Run, conn: sa.Connection, job: Job) -> None:
    """The counts must agree with what the table holds for the keys sent (rows matched, not
    statements run). Every staged row that met a row met its own key bytes, and, unless the mode
    only updates, every staged row is now in the table under its own key. A disagreement (a merge
    the checks before the write did not foresee: a trigger, another unique key, a comparison the
    catalog did not tell, an app key with trailing spaces under PAD SPACE) raises, and the write
    rolls back."""
    staging, target = job.staging, job.target
    if staging is None or target is None or job.strategy not in ("diff", "truncate"):
        return
    keys = job.spec.primary_key
    r = job.result
    why = _counts_only(run, conn, job)
    if why is not None:
        sent = r.rows_sent
        if r.inserted + r.updated > sent:
            raise SyncError(
                f"{job.spec.table}: after the write the counts do not agree with the table: {r.inserted:,} inserted "
                f"+ {r.updated:,} updated is more than the {sent:,} rows sent. The write was rolled back. "
                "Nothing was written."
            )
        run.log(f"{job.spec.table}: post-write key check skipped ({why})")
        return
    on, exact = pairs(run.dialect, conn, key_rules(run, conn, job), "s", keys, "t", keys)
    sent, met, same = conn.execute(
        sa.text(
            f"SELECT COUNT(*), COUNT(t.{quoted(conn, keys[0])}), "
            f"COALESCE(SUM(CASE WHEN t.{quoted(conn, keys[0])} IS NOT NULL AND {exact} THEN 1 ELSE 0 END), 0) "
            f"FROM {quoted(conn, staging)} s LEFT JOIN {quoted(conn, target)} t ON {on}"
        )
    ).one()
    problems = []
    if met != same:
        n = len(keys)
        both = ", ".join(f"{side}.{quoted(conn, k)}" for side in "st" for k in keys)
        sample = conn.execute(
            sa.text(
                f"SELECT {both} FROM {quoted(conn, staging)} s JOIN {quoted(conn, target)} t ON {on} "
                f"WHERE NOT ({exact}) LIMIT {SAMPLE}"
            )
        ).all()
        found = ", ".join(f"{shown([x[:n]])} met {shown([x[n:]])}" for x in sample)
        problems.append(f"{met - same:,} of the {sent:,} rows sent met a row whose key has other bytes ({found})")
    if job.spec.mode is not Mode.UPDATE and same != sent:
        problems.append(f"only {same:,} of the {sent:,} rows sent are in the table under their own key")
    if r.inserted + r.updated > sent:
        problems.append(f"{r.inserted:,} inserted + {r.updated:,} updated is more than the {sent:,} rows sent")
    if job.twins and not problems:
        problems.append(f"the merge met {job.twins:,} row(s) whose key has other bytes")
    if problems:
        raise SyncError(
            f"{job.spec.table}: after the write the counts do not agree with the table: {'; '.join(problems)}. "
            "The write was rolled back. Nothing was written."
        )
