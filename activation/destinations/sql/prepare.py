"""Before any row is written: the destination's tables made ready for the plan (DDL), and the
strategy each table is written with.

- `prepare`: create a missing table with its keys, or check an existing one (its primary key is
  the sync key, not AUTO_INCREMENT) and reconcile schema drift as `on_schema_change` says.
- `choose_strategy`: `replace` loads a shadow table and swaps it in, where nothing references the
  table and the sync owns all of it; otherwise changes are applied as a diff.
- `distrust_state`, `settle_strategy`: a destination that does not hold what the last sync left
  is compared in full; an empty table is loaded in place; a swap with nothing changed is skipped.
A dry run runs no DDL (MySQL would commit it): a missing table is planned from the table the sync
would create, held in memory only, and `evolve` adds no column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql import schema
from activation.destinations.sql.dialect import quoted
from activation.destinations.sql.run import Job, Run, count, scope_clause, short_name
from activation.syncs.options import Mode
from activation.syncs.order import parents_first
from activation.syncs.plan import Strategy, SyncPlan
from activation.syncs.results import SyncError

SHADOW, OLD = "__activation_new", "__activation_old"


def order(jobs: list[Job], fks: dict[str, list[dict]]) -> list[Job]:
    """Parents first, from the destination's own foreign keys plus the config's."""
    by_table = {j.spec.table: j for j in jobs}
    parents = {
        j.spec.table: {fk["referred_table"] for fk in fks.get(j.spec.table, [])}
        | {fk.references_table for fk in j.spec.parsed_foreign_keys}
        for j in jobs
    }
    return [by_table[t] for t in parents_first([j.spec.table for j in jobs], parents)]


def reflect_parents(conn: sa.Connection, metadata: sa.MetaData, jobs: Sequence[Job]) -> None:
    """Put referenced tables that this run does not write into `metadata`, so FK DDL resolves."""
    written = {j.spec.table for j in jobs}
    inspector = sa.inspect(conn)
    for job in jobs:
        for fk in job.spec.parsed_foreign_keys:
            if fk.references_table in written or fk.references_table in metadata.tables:
                continue
            if not inspector.has_table(fk.references_table):
                raise SyncError(
                    f"{job.spec.table}.{fk.column} references {fk.references_table}, which does not exist yet; "
                    f"sync {fk.references_table} first"
                )
            sa.Table(fk.references_table, metadata, autoload_with=conn)


def new_table(run: Run, metadata: sa.MetaData, job: Job, name: str | None = None) -> sa.Table:
    """The table the sync would create for the mart, named `name` (default: the sync's table);
    its foreign keys point at the hidden names of parents this run creates too."""
    spec, plan = job.spec, job.mart
    return schema.build_table(
        run.dialect,
        metadata,
        name or spec.table,
        plan.arrow_schema,
        spec.primary_key,
        string_lengths=run.warehouse.string_lengths(plan),
        foreign_keys=[
            fk.model_copy(update={"references_table": run.hidden.get(fk.references_table, fk.references_table)})
            for fk in spec.parsed_foreign_keys
        ],
        soft_delete_column=spec.soft_delete_column,
    )


def prepare(run: Run, conn: sa.Connection, metadata: sa.MetaData, job: Job) -> None:
    spec, plan = job.spec, job.mart
    inspector = sa.inspect(conn)
    soft = spec.soft_delete_column
    for column in spec.scope:
        if column not in plan.columns:
            raise SyncError(
                f"{spec.table}: scope column {column!r} must come from mart {spec.source}, so the rows the "
                "sync writes carry it"
            )
    if inspector.has_table(spec.table):
        target = sa.Table(spec.table, metadata, autoload_with=conn)
        actual_key = [c.name for c in target.primary_key.columns]
        if sorted(actual_key) != sorted(spec.primary_key):
            raise SyncError(
                f"{spec.table}: the destination's primary key is {actual_key or 'missing'} but the sync declares "
                f"{spec.primary_key}; the sync key must be the table's primary key"
            )
        for key in spec.primary_key:
            if run.dialect.is_auto_increment(conn, spec.table, key):
                raise SyncError(
                    f"{spec.table}.{key} is AUTO_INCREMENT in the destination: a sync key must come from the "
                    "mart, or the app's foreign keys break on the next full load. Drop AUTO_INCREMENT from "
                    "the column (keep it as the primary key)."
                )
        reconcile_columns(run, conn, job, target)
        if soft and soft not in target.columns:
            raise SyncError(f"{spec.table}: the destination table has no soft-delete column {soft!r}; add it")
    else:
        job.update(creates_table=True)
        if run.dry_run:
            target = new_table(run, metadata, job)
            job.virtual = True  # planned against the table it would create, which exists only here
        elif run.dialect.hides_new_tables:
            # Readers see no table until it is renamed into place, loaded (apply.swap_all).
            run.hidden[spec.table] = short_name(spec.table, SHADOW)
            target = new_table(run, metadata, job, run.hidden[spec.table])
            target.create(conn)
            job.hidden = True
            run.log(f"{spec.table}: created table with {len(target.columns)} columns as {target.name}")
        else:
            target = new_table(run, metadata, job)
            target.create(conn)
            run.log(f"{spec.table}: created table with {len(target.columns)} columns")
    job.target = target
    job.result.columns = [(c.name, str(c.type.compile(conn.dialect))) for c in target.columns]


def reconcile_columns(run: Run, conn: sa.Connection, job: Job, target: sa.Table) -> None:
    """Schema drift, decided by the sync's `on_schema_change`: mart columns the table lacks (new in
    the mart, or dropped by the application), columns whose kind of value changed, and table
    columns the mart no longer feeds."""
    spec, plan, policy = job.spec, job.mart, job.spec.on_schema_change
    missing = [c for c in plan.columns if c not in target.columns]
    retyped = [
        f"{c} ({target.c[c].type.compile(conn.dialect)} <- {plan.arrow_schema.field(c).type})"
        for c in plan.columns
        if c in target.columns and not schema.accepts(target.c[c].type, plan.arrow_schema.field(c).type)
    ]
    keys = [c for c in spec.primary_key if c in missing or any(r.startswith(f"{c} (") for r in retyped)]
    if keys:
        raise SyncError(f"{spec.table}: key column(s) {keys} missing or retyped in the destination; fix the table")
    if (missing or retyped) and policy == "fail":
        parts = []
        if missing:
            parts.append(f"the table has no column(s) {missing} (new in mart {spec.source}, or dropped by the app)")
        if retyped:
            parts.append(f"column(s) changed kind: {', '.join(retyped)}")
        raise SyncError(
            f"{spec.table}: schema drift: {'; '.join(parts)}. Nothing was written. Set on_schema_change: evolve "
            "(add new columns), ignore (sync the columns that still match), or map columns in `columns`."
        )
    if retyped and policy == "evolve":
        raise SyncError(
            f"{spec.table}: column(s) changed kind: {', '.join(retyped)}; evolve only adds columns, it never "
            "retypes the application's. Nothing was written: migrate the column, or set on_schema_change: ignore."
        )
    if missing and policy == "evolve" and run.dry_run:  # a dry run adds no columns: it plans those both have
        job.warn(run, f"on_schema_change evolve would add column(s) {missing}; this plan leaves them out")
        policy = "ignore"
    casts = dict(plan.casts)
    for c in plan.columns:
        dest_type, mart_type = target.c[c].type if c in target.columns else None, plan.arrow_schema.field(c).type
        if (
            isinstance(dest_type, sa.Integer)
            and not isinstance(dest_type, sa.Boolean)
            and (pa.types.is_decimal(mart_type) or pa.types.is_floating(mart_type))
        ):
            casts[c] = "integer"  # whole numbers in a DECIMAL: validate refuses fractions first
    skipped = missing if policy == "ignore" else []
    skipped += [r.split(" (", 1)[0] for r in retyped] if policy == "ignore" else []
    plan = replace(
        plan,
        casts=casts,
        pairs=[(d, s) for d, s in plan.pairs if d not in skipped],
        arrow_schema=pa.schema([f for f in plan.arrow_schema if f.name not in skipped]),
    )
    job.update(mart=plan)
    if skipped and spec.on_schema_change == "ignore":
        job.warn(run, f"schema drift ignored: column(s) {skipped} not synced")
    if missing and policy == "evolve":
        lengths = run.warehouse.string_lengths(plan)
        for name in missing:
            field = plan.arrow_schema.field(name)
            column = schema.build_table(
                run.dialect, sa.MetaData(), "_", pa.schema([field]), [], string_lengths=lengths
            ).c[name]
            conn.execute(
                sa.text(
                    f"ALTER TABLE {quoted(conn, target)} ADD COLUMN {quoted(conn, name)} "
                    f"{column.type.compile(conn.dialect)} NULL"
                )
            )
            target.append_column(sa.Column(name, column.type, nullable=True))
        job.warn(run, f"schema drift: added column(s) {missing} from mart {spec.source}")
    unfed = [
        c.name
        for c in target.columns
        if c.name not in plan.columns and c.name != spec.soft_delete_column and not c.primary_key
    ]
    required = [
        c
        for c in unfed
        if not target.c[c].nullable and target.c[c].server_default is None and target.c[c].autoincrement is not True
    ]
    if required and spec.mode is not Mode.UPDATE:
        raise SyncError(
            f"{spec.table}: column(s) {required} are NOT NULL without a default and mart {spec.source} does not "
            "feed them, so new rows cannot be inserted. Nothing was written: give them a default, or add them "
            "to the mart."
        )
    if unfed:
        job.warn(run, f"column(s) {unfed} are not in mart {spec.source}: left as they are")


def choose_strategy(run: Run, job: Job, fks: dict[str, list[dict]]) -> None:
    """Swap a shadow table in only where nothing references the table and the sync owns all of it."""
    spec = job.spec
    soft = spec.soft_delete_column
    referenced_by = sorted(
        t for t, table_fks in fks.items() if t != spec.table for fk in table_fks if fk["referred_table"] == spec.table
    )
    if spec.mode is Mode.REPLACE:
        why = []
        if not run.dialect.capabilities.atomic_swap:
            why.append("the destination cannot swap tables atomically")
        if referenced_by:
            why.append(f"foreign keys in {referenced_by} point at it (a swapped table would orphan them)")
        if spec.scope:
            why.append("it has a scope (the app's own rows must stay)")
        if soft:
            why.append("it soft-deletes")
        if why:
            job.update(strategy=Strategy.DIFF)
            job.warn(run, f"replace applied as a diff because {' and '.join(why)}")
        else:
            job.update(strategy=Strategy.SHADOW)
    elif spec.mode is Mode.TRUNCATE_INSERT:
        job.update(strategy=Strategy.TRUNCATE)
        if referenced_by:
            job.warn(
                run,
                f"truncate_insert on a table referenced by {referenced_by}: deleting rows they still reference "
                "fails the sync; prefer mirror",
            )


def create_shadow(run: Run, conn: sa.Connection, job: Job) -> None:
    """An empty copy of the table, with its keys, indexes and foreign keys, to load and swap in."""
    name = short_name(job.spec.table, SHADOW)
    src, dst = quoted(conn, job.spec.table), quoted(conn, name)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {dst}"))
    like = run.dialect.create_like
    if like is not None:
        conn.execute(sa.text(like.format(new=dst, table=src)))
        for fk in sa.inspect(conn).get_foreign_keys(job.spec.table):  # LIKE copies no foreign keys
            cols = ", ".join(quoted(conn, c) for c in fk["constrained_columns"])
            refs = ", ".join(quoted(conn, c) for c in fk["referred_columns"])
            ondelete = (fk.get("options") or {}).get("ondelete")
            conn.execute(
                sa.text(
                    f"ALTER TABLE {dst} ADD FOREIGN KEY ({cols}) REFERENCES {quoted(conn, fk['referred_table'])} "
                    f"({refs})" + (f" ON DELETE {ondelete}" if ondelete else "")
                )
            )
        job.shadow = sa.Table(name, sa.MetaData(), autoload_with=conn)
        return
    metadata = sa.MetaData()
    for fk in job.target.foreign_keys:  # the copy's foreign keys must resolve
        fk.column.table.to_metadata(metadata)
    shadow = job.target.to_metadata(metadata, name=name)
    for index in list(shadow.indexes):
        index.name = short_name(index.name or "ix", "_n")
    shadow.create(conn)
    job.shadow = shadow


def remove_leftovers(run: Run, conn: sa.Connection, job: Job) -> bool:
    """A run killed between loading a shadow table and dropping the old one leaves either behind.
    Whether one was dropped."""
    inspector = sa.inspect(conn)
    dropped = False
    for suffix in (SHADOW, OLD):
        name = short_name(job.spec.table, suffix)
        if inspector.has_table(name):
            conn.execute(sa.text(f"DROP TABLE {quoted(conn, name)}"))
            run.log(f"{job.spec.table}: dropped {name}, left by an interrupted run")
            dropped = True
    return dropped


def count_rows_before(run: Run, jobs: Sequence[Job]) -> list[int]:
    """The rows each sync owns in the destination now, on a connection of its own (a table a dry
    run would create holds none)."""
    with run.engine.connect() as conn:
        return [
            0
            if job.virtual
            else count(conn, sa.select(sa.func.count()).select_from(job.target).where(scope_clause(job, job.target)))
            for job in jobs
        ]


def distrust_state(run: Run, plan: SyncPlan) -> SyncPlan:
    """An incremental plan assumes the destination still holds what the last sync wrote.
    When its row count says otherwise (a restore, a truncate, rows deleted by hand), the plan
    compares everything instead of sending only the changes: a new plan, with its reason."""
    mart, spec = plan.mart, plan.spec
    if mart.full:
        return plan
    have = plan.rows_before
    expected = mart.mart_rows - mart.new_keys + mart.deleted_keys  # the mart as of the last sync
    drifted = have < expected if not spec.mode.deletes else have != expected
    if spec.soft_delete_column:
        drifted = have < expected  # soft-deleted rows stay
    if spec.mode in (Mode.INSERT, Mode.UPDATE):
        drifted = have == 0 and expected > 0
    if not drifted:
        return plan
    reason = f"destination holds {have:,} rows where the last sync left {expected:,}: comparing all"
    run.log(f"{spec.table}: {reason}")
    return replace(plan, mart=replace(run.warehouse.plan(mart, full_resync=True), reason=reason))


def settle_strategy(conn: sa.Connection, job: Job) -> None:
    """An empty table (a first sync) is bulk-loaded in place: there is nothing to compare with,
    and staging first would write every row twice. A swap with nothing changed since the last
    sync is skipped."""
    if job.spec.mode is not Mode.UPDATE and job.strategy is not Strategy.UNCHANGED:
        if job.virtual or not job.spec.scope:
            empty = job.plan.rows_before == 0
        else:
            empty = not count(conn, sa.select(sa.func.count()).select_from(job.target))
        if empty:
            job.update(strategy=Strategy.BULK)
    mart = job.mart
    if job.strategy is Strategy.SHADOW and not mart.full and not mart.changes:
        job.update(strategy=Strategy.UNCHANGED)
