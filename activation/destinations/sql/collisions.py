"""Keys distinct in the warehouse that the destination's key column holds as one key.

An application's table decides when two keys are the same: MySQL/MariaDB `_ci` collations ignore
case, PAD SPACE ones (`utf8mb4_bin` included) trailing spaces, `_ai` ones accents; PostgreSQL has
`citext` and nondeterministic collations; SQLite `COLLATE NOCASE` and `RTRIM`. Two mart keys equal
under those rules become one app row: one row's values lost, counted as an update, the state
believing both arrived. So before anything is written the database itself is asked (its
collations are never re-implemented here; each dialect reads them from its catalog, key_rules.py):
- `check_sent`, before staging: the keys about to be sent go into a temporary table whose key
  columns compare as the target's do; rows of one group under that comparison collide;
- `check_existing`, on the staged rows: a key equal, under that comparison, to a key of other
  bytes already in the table collides with it;
- `check_parents`: a foreign key value that matches a parent key only under the parent's
  comparison would attach the child to a parent the mart does not name (refused);
- `check_written` (written_keys.py), after the write and inside its transaction: the keys sent are
  in the table in their own bytes and the counts add up, or the write rolls back.
A collision refuses the sync, or with `max_rejects` sets every member of a colliding group aside
(which spelling the app means is not the tool's guess to make; sending one would pick a winner by
row order). Key columns compared byte for byte cannot collide, so for them only `check_written`
runs, and it joins the change with the table only when a trigger or another unique key could merge
rows (integer keys of a plain table: counts only; see written_keys.py). A binary PAD SPACE collation (MySQL's
`utf8mb4_bin`, the tables the tool creates) only ignores trailing spaces: its checks before the
write run only when a key to send ends with a space (or the sync has max_rejects); an app key with
trailing spaces is left to `check_written`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from activation.destinations.sql.dialect import quoted
from activation.destinations.sql.key_rules import Rule, pairs
from activation.destinations.sql.run import Job, Run, short_name
from activation.syncs.plan import Strategy
from activation.syncs.results import SyncError

SAMPLE = 5


def shown(keys: Sequence) -> str:
    return ", ".join(repr(k[0] if len(k) == 1 else tuple(k)) for k in keys)


def _compares(loose: dict[str, Rule]) -> str:
    return "; ".join(f"{c} compares by {r.describe}" for c, r in loose.items())


# -- the checks the writer runs ----------------------------------------------------------------


def key_rules(run: Run, conn: sa.Connection, job: Job) -> dict[str, Rule]:
    """The rules of the target's text key columns, read once per run."""
    if job.key_rules is None:
        job.key_rules = run.dialect.key_rules(conn, job.target.name, job.spec.primary_key)
    return job.key_rules


def loose_key(run: Run, conn: sa.Connection, job: Job) -> bool:
    """Whether byte-different keys can be one key in the target."""
    return any(r.loose for r in key_rules(run, conn, job).values())


def _loose(run: Run, conn: sa.Connection, job: Job) -> dict[str, Rule]:
    return {c: r for c, r in key_rules(run, conn, job).items() if r.loose}


def _key_table(run: Run, conn: sa.Connection, job: Job, loose: dict[str, Rule]) -> sa.Table:
    """A temporary table of the key columns, without a key, comparing as the target's do."""
    columns = []
    for name in job.spec.primary_key:
        type_ = job.target.c[name].type
        rule = loose.get(name)
        if rule is not None:
            type_ = run.dialect.loose_key_type(rule, type_)
        columns.append(sa.Column(name, type_))
    table = sa.Table(
        short_name(f"_activation_{job.spec.table}", "__keys"),
        sa.MetaData(),
        *columns,
        prefixes=["TEMPORARY"],
        **run.dialect.table_options(binary_text=False),
    )
    run.dialect.drop_temporary(conn, table)
    table.create(conn)
    return table


def _key_batches(reader, keys: Sequence[str]) -> Iterator:
    try:
        for batch in reader:
            yield batch.select(list(keys))
    finally:
        reader.close()


def _pads_only(loose: dict[str, Rule]) -> bool:
    return all(r.trailing_spaces_only for r in loose.values())


def _may_pad(run: Run, job: Job, loose: dict[str, Rule], everything: bool) -> bool:
    """Under a binary PAD SPACE collation two keys are equal only if one ends with a space: is
    there such a key among those to send? (Asked once per run.)"""
    if not _pads_only(loose):
        return True
    if job.sends_trailing_space is not None:
        return job.sends_trailing_space
    wh = run.warehouse
    cond = " OR ".join(f"ends_with({wh.flavour.cast('m.' + wh.flavour.quote(c), 'text')}, ' ')" for c in loose)
    plan = dataclasses.replace(job.mart, full=True) if everything else job.mart
    job.sends_trailing_space = wh.count_where(plan, [cond])[0] > 0
    return job.sends_trailing_space


def check_sent(run: Run, conn: sa.Connection, job: Job) -> None:
    """Keys about to be sent that the destination would hold as one: refused, or set aside under
    max_rejects before anything is staged."""
    if job.target is None or job.virtual or job.strategy is Strategy.UNCHANGED:
        return  # no table yet (a dry run's), or nothing changed: the table stays as it is
    loose = _loose(run, conn, job)
    if not loose:
        return
    plan, keys = job.mart, job.spec.primary_key
    everything, total = job.plan.sends_everything(), job.plan.sending()
    if not total or not _may_pad(run, job, loose, everything):
        return
    table = _key_table(run, conn, job, loose)
    try:
        reader = run.warehouse.rows(plan, job.spec.batch_size, everything=everything)
        run.load(conn, job, table, _key_batches(reader, keys), total)
        q = lambda c: quoted(conn, c)  # noqa: E731
        cols = ", ".join(q(k) for k in keys)
        grouped = (
            f"SELECT {cols}, DENSE_RANK() OVER (ORDER BY {cols}) AS activation_group, "
            f"COUNT(*) OVER (PARTITION BY {cols}) AS activation_n FROM {quoted(conn, table)}"
        )
        rows, groups = conn.execute(
            sa.text(f"SELECT COUNT(*), COUNT(DISTINCT activation_group) FROM ({grouped}) g WHERE activation_n > 1")
        ).one()
        if not rows:
            return
        allowed = job.spec.max_rejects
        limit = "" if allowed is not None and allowed.allows(rows, plan.mart_rows) else f"LIMIT {SAMPLE * 4}"
        in_bytes = ", ".join(run.dialect.as_bytes(loose.get(k), q(k)) for k in keys)
        found = conn.execute(
            sa.text(
                f"SELECT {cols}, activation_group FROM ({grouped}) g WHERE activation_n > 1 "
                f"ORDER BY activation_group, {in_bytes} {limit}"
            )
        ).all()
    finally:
        run.dialect.drop_temporary(conn, table)
    by_group: dict[int, list[tuple]] = {}
    for row in found:
        by_group.setdefault(row[-1], []).append(tuple(row[:-1]))
    listed = "; ".join(" = ".join(shown([k]) for k in members) for members in list(by_group.values())[:SAMPLE])
    problem = (
        f"{job.spec.table}.{', '.join(keys)}: {rows:,} row(s) to send have keys that {job.spec.table} holds as one "
        f"key ({_compares(loose)}), {groups:,} group(s): {listed}.\nThe table would merge each group into one row "
        "and lose the other rows' values."
    )
    _set_aside_or_refuse(run, conn, job, [k for members in by_group.values() for k in members], rows, problem)


def check_existing(run: Run, conn: sa.Connection, job: Job) -> int:
    """Staged keys equal to a key of other bytes already in the table (a key the app wrote, or an
    older spelling): refused, or removed from the staging table and set aside. Returns the number
    of staged rows set aside."""
    staging, target = job.staging, job.target
    if staging is None or target is None:
        return 0
    loose = _loose(run, conn, job)
    if not loose:
        return 0
    everything = job.plan.sends_everything()
    if _pads_only(loose) and job.spec.max_rejects is None and not _may_pad(run, job, loose, everything):
        # A binary PAD SPACE key (the tables the tool creates on MySQL): only a key in the table with
        # trailing spaces can meet these; check_written finds it after the write, which then rolls
        # back, at no cost to every sync of such a table.
        return 0
    keys = job.spec.primary_key
    on, exact = pairs(run.dialect, conn, key_rules(run, conn, job), "s", keys, "t", keys)
    stays = "1 = 1"
    if job.strategy is Strategy.TRUNCATE:  # the sync's own rows go before the insert: only the others stay
        if not job.spec.scope:
            return 0
        stays = " OR ".join(f"t.{quoted(conn, c)} <> :scope_{i}" for i, c in enumerate(job.spec.scope))
    params = {f"scope_{i}": v for i, v in enumerate(job.spec.scope.values())}
    q = lambda c: quoted(conn, c)  # noqa: E731
    joined = f"FROM {quoted(conn, staging)} s JOIN {quoted(conn, target)} t ON {on} WHERE NOT ({exact}) AND ({stays})"
    rows = conn.execute(sa.text(f"SELECT COUNT(*) {joined}"), params).scalar_one()
    if not rows:
        return 0
    allowed = job.spec.max_rejects
    limit = "" if allowed is not None and allowed.allows(rows, job.mart.mart_rows) else f"LIMIT {SAMPLE}"
    found = conn.execute(
        sa.text(
            f"SELECT {', '.join('s.' + q(k) for k in keys)}, {', '.join('t.' + q(k) for k in keys)} {joined} "
            f"ORDER BY {', '.join('s.' + q(k) for k in keys)} {limit}"
        ),
        params,
    ).all()
    n = len(keys)
    listed = ", ".join(f"{shown([r[:n]])} is {shown([r[n:]])}" for r in found[:SAMPLE])
    problem = (
        f"{job.spec.table}.{', '.join(keys)}: {rows:,} row(s) to send have a key that {job.spec.table} already "
        f"holds in other bytes ({_compares(loose)}): {listed}.\nWriting them would overwrite those rows instead of "
        "adding their own."
    )
    _set_aside_or_refuse(run, conn, job, [tuple(r[:n]) for r in found], rows, problem)
    name = quoted(conn, staging)
    on, exact = pairs(run.dialect, conn, key_rules(run, conn, job), name, keys, "t", keys)
    conn.execute(
        sa.text(
            f"DELETE FROM {name} WHERE EXISTS (SELECT 1 FROM {quoted(conn, target)} t WHERE {on} AND NOT ({exact}) "
            f"AND ({stays}))"
        ),
        params,
    )
    return rows


def check_parents(run: Run, conn: sa.Connection, job: Job, written: sa.Table | None) -> None:
    """Foreign key values in `written` (the rows this run writes) that match a parent key only
    under the parent's comparison, not in their own bytes: the database would accept them and
    attach the child to a parent the mart does not name. Refused (never set aside: the mart's
    own relationship tests compare bytes, so this is a parent the destination holds in other bytes)."""
    if written is None:
        return
    inspector = sa.inspect(conn)
    references = [
        (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
        for fk in inspector.get_foreign_keys(job.target.name)
    ]
    known = {(tuple(c), t) for c, t, _ in references}
    for fk in job.spec.parsed_foreign_keys:
        parent = run.hidden.get(fk.references_table, fk.references_table)  # created in this run: not yet renamed
        if ((fk.column,), parent) not in known:
            references.append(([fk.column], parent, [fk.references_column]))
    q = lambda c: quoted(conn, c)  # noqa: E731
    problems = []
    for columns, parent, parent_columns in references:
        if any(c not in job.mart.columns for c in columns):
            continue
        parent_rules = run.dialect.key_rules(conn, parent, parent_columns)
        loose = {c: r for c, r in parent_rules.items() if r.loose}
        if not loose:
            continue
        on, exact = pairs(run.dialect, conn, parent_rules, "s", columns, "p", parent_columns)
        joined = f"FROM {quoted(conn, written)} s JOIN {q(parent)} p ON {on} WHERE NOT ({exact})"
        rows = conn.execute(sa.text(f"SELECT COUNT(*) {joined}")).scalar_one()
        if not rows:
            continue
        sample = conn.execute(
            sa.text(
                f"SELECT {', '.join('s.' + q(c) for c in columns)}, {', '.join('p.' + q(c) for c in parent_columns)} "
                f"{joined} ORDER BY 1 LIMIT {SAMPLE}"
            )
        ).all()
        n = len(columns)
        listed = ", ".join(f"{shown([r[:n]])} matches {shown([r[n:]])}" for r in sample)
        problems.append(
            f"{job.spec.table}.{', '.join(columns)} -> {parent}.{', '.join(parent_columns)}: {rows:,} row(s) "
            f"reference a parent key that {parent} holds only in other bytes ({_compares(loose)}): {listed}"
        )
    if problems:
        raise SyncError(
            "\n".join(problems) + "\nThe destination would attach these rows to a parent the mart does not name. "
            "Nothing was written: spell the keys as the parent table holds them."
        )


def _set_aside_or_refuse(run: Run, conn: sa.Connection, job: Job, keys: list[tuple], rows: int, problem: str) -> None:
    allowed = job.spec.max_rejects
    if allowed is None:
        raise SyncError(
            f"{problem}\nNothing was written. Make the keys distinct as the destination compares them (in the mart), "
            "give the key column a binary collation, or set max_rejects to set such rows aside."
        )
    rejects = run.warehouse.rejects
    already = rejects.count(job.mart)
    if not allowed.allows(already + rows, run.warehouse.mart_rows(job.mart)):
        raise SyncError(f"{problem}\nThat is over max_rejects {allowed}. Nothing was written.")
    reason = "key equal to another under the destination's comparison"
    rejects.add_keys(job.mart, ", ".join(job.spec.primary_key), reason, keys)
    job.update(rejected=rejects.count(job.mart))
    if job.rejected_keys is not None:  # loaded before these were added: load it again when needed
        run.dialect.drop_temporary(conn, job.rejected_keys)
        job.rejected_keys = None
    job.warn(run, f"{rows:,} rows set aside as rejects: {reason}; they are sent again next run")
