"""Apply syncs to one destination database, all selected tables in one transaction.

Why one transaction per destination: the app never sees job postings whose facility is
missing, and a failure anywhere leaves every table as it was. Inside it, rows are inserted
and updated parents-first and deleted children-first, so no foreign key is broken at any
statement, and keys are the mart's own (never the destination's auto_increment).

The mart is streamed in Arrow batches into a temporary staging table; inserts, updates and
deletes are then set-based SQL whose row counts are measured, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from activation.resources import quote_duckdb
from activation.syncs import schema
from activation.syncs.spec import Mode, SyncSpec

Log = Callable[[str], None]
SAMPLE = 5


class SyncError(RuntimeError):
    """A sync refused or failed; the destination is left as it was."""


@dataclass(frozen=True)
class MartRelation:
    """Where a dbt mart lives in the warehouse."""

    schema: str
    name: str

    @property
    def sql(self) -> str:
        return f"{quote_duckdb(self.schema)}.{quote_duckdb(self.name)}"


@dataclass
class SyncResult:
    sync: str
    table: str
    mode: str
    rows_in_mart: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    unchanged: int = 0
    rows_in_destination: int = 0
    created_table: bool = False
    seconds: float = 0.0
    columns: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _TableJob:
    spec: SyncSpec
    relation: MartRelation
    arrow_schema: pa.Schema  # destination column names, mart types
    target: sa.Table | None = None
    staging: sa.Table | None = None
    result: SyncResult | None = None


def _select_list(spec: SyncSpec, mart_columns: Sequence[str]) -> list[tuple[str, str]]:
    """(destination column, mart column) pairs."""
    if spec.columns:
        missing = [src for src in spec.columns.values() if src not in mart_columns]
        if missing:
            raise SyncError(f"sync {spec.name}: mart {spec.source} has no column(s) {missing}")
        return list(spec.columns.items())
    return [(c, c) for c in mart_columns]


def _mart_query(job: _TableJob, pairs: Sequence[tuple[str, str]]) -> str:
    cols = ", ".join(f"{quote_duckdb(src)} AS {quote_duckdb(dest)}" for dest, src in pairs)
    keys = ", ".join(quote_duckdb(k) for k in job.spec.primary_key)
    # Key order makes the destination's B-tree inserts sequential.
    return f"SELECT {cols} FROM {job.relation.sql} ORDER BY {keys}"


class DestinationSync:
    """Runs the selected syncs of one destination against one warehouse connection."""

    def __init__(self, engine: sa.Engine, warehouse: duckdb.DuckDBPyConnection, log: Log = print):
        self.engine = engine
        self.warehouse = warehouse
        self.log = log

    # -- warehouse side -------------------------------------------------------------------
    def _describe(self, spec: SyncSpec, relation: MartRelation) -> tuple[pa.Schema, list[tuple[str, str]]]:
        try:
            mart_schema = self.warehouse.sql(f"SELECT * FROM {relation.sql} LIMIT 0").to_arrow_table().schema
        except duckdb.CatalogException as exc:
            raise SyncError(
                f"sync {spec.name}: mart {spec.source} ({relation.sql}) is not in the warehouse; "
                "build it with dbt first"
            ) from exc
        pairs = _select_list(spec, mart_schema.names)
        dest_names = [d for d, _ in pairs]
        missing_keys = [k for k in spec.primary_key if k not in dest_names]
        if missing_keys:
            raise SyncError(f"sync {spec.name}: primary key column(s) {missing_keys} are not in mart {spec.source}")
        fields = [pa.field(dest, mart_schema.field(src).type) for dest, src in pairs]
        return pa.schema(fields), pairs

    def _check_keys(self, job: _TableJob, pairs: Sequence[tuple[str, str]]) -> None:
        """Refuse null or duplicate keys before anything is written: they would silently merge rows."""
        src = dict(pairs)
        table = f"{job.spec.source} -> {job.spec.table}"
        for key in job.spec.primary_key:
            nulls = self.warehouse.execute(
                f"SELECT count(*) FROM {job.relation.sql} WHERE {quote_duckdb(src[key])} IS NULL"
            ).fetchone()[0]
            if nulls:
                raise SyncError(f"{table}: {nulls} row(s) have a NULL key in column {key!r}; nothing was written")
        key_cols = ", ".join(quote_duckdb(src[k]) for k in job.spec.primary_key)
        dups = self.warehouse.execute(
            f"SELECT {key_cols}, count(*) AS n FROM {job.relation.sql} GROUP BY ALL HAVING count(*) > 1 "
            f"ORDER BY n DESC LIMIT {SAMPLE}"
        ).fetchall()
        if dups:
            sample = ", ".join(f"{row[:-1] if len(row) > 2 else row[0]!r} x{row[-1]}" for row in dups)
            raise SyncError(
                f"{table}: duplicate key {tuple(job.spec.primary_key)} in the mart ({sample}); nothing was written"
            )

    def _string_lengths(self, job: _TableJob, pairs: Sequence[tuple[str, str]]) -> dict[str, int | None]:
        texts = [
            (d, s)
            for d, s in pairs
            if pa.types.is_string(job.arrow_schema.field(d).type)
            or pa.types.is_large_string(job.arrow_schema.field(d).type)
        ]
        if not texts:
            return {}
        exprs = ", ".join(f"max(length({quote_duckdb(s)}))" for _, s in texts)
        row = self.warehouse.execute(f"SELECT {exprs} FROM {job.relation.sql}").fetchone()
        return {d: n for (d, _), n in zip(texts, row, strict=True)}

    def _check_lengths(self, job: _TableJob, pairs: Sequence[tuple[str, str]]) -> None:
        """A value longer than its VARCHAR would be truncated or rejected mid-load; name it up front."""
        src = dict(pairs)
        key_expr = " || '/' || ".join(f"CAST({quote_duckdb(src[k])} AS VARCHAR)" for k in job.spec.primary_key)
        for column in job.target.columns:
            limit = getattr(column.type, "length", None)
            if not isinstance(column.type, sa.String) or not limit or column.name not in src:
                continue
            rows = self.warehouse.execute(
                f"SELECT {key_expr}, length({quote_duckdb(src[column.name])}) FROM {job.relation.sql} "
                f"WHERE length({quote_duckdb(src[column.name])}) > {int(limit)} LIMIT {SAMPLE}"
            ).fetchall()
            if rows:
                sample = ", ".join(f"key {k!r} ({n} chars)" for k, n in rows)
                raise SyncError(
                    f"{job.spec.table}.{column.name}: value longer than the destination's {limit} characters "
                    f"in {sample}; widen the column or trim it in the mart. Nothing was written."
                )

    # -- destination side -----------------------------------------------------------------
    def _prepare_target(
        self, conn: sa.Connection, metadata: sa.MetaData, job: _TableJob, pairs: Sequence[tuple[str, str]]
    ) -> None:
        spec = job.spec
        inspector = sa.inspect(conn)
        if inspector.has_table(spec.table):
            target = sa.Table(spec.table, metadata, autoload_with=conn)
            missing = [c for c in job.arrow_schema.names if c not in target.columns]
            if missing:
                raise SyncError(
                    f"{spec.table}: destination table has no column(s) {missing} that mart {spec.source} "
                    "provides; add them to the table or map them away in `columns`"
                )
            actual_key = [c.name for c in target.primary_key.columns]
            if sorted(actual_key) != sorted(spec.primary_key):
                raise SyncError(
                    f"{spec.table}: the destination's primary key is {actual_key or 'missing'} but the sync "
                    f"declares {spec.primary_key}; the sync key must be the table's primary key"
                )
            created = False
        else:
            target = schema.build_table(
                metadata,
                spec.table,
                job.arrow_schema,
                spec.primary_key,
                string_lengths=self._string_lengths(job, pairs),
                foreign_keys=spec.parsed_foreign_keys,
            )
            target.create(conn)
            self.log(f"{spec.table}: created table with {len(target.columns)} columns")
            created = True
        job.target = target
        job.result = SyncResult(
            sync=spec.name,
            table=spec.table,
            mode=spec.mode.value,
            created_table=created,
            columns=[(c.name, str(c.type.compile(conn.dialect))) for c in target.columns],
        )

    def _stage(self, conn: sa.Connection, job: _TableJob, pairs: Sequence[tuple[str, str]]) -> None:
        """Stream the mart into a temporary table shaped like the target."""
        spec = job.spec
        staging = sa.Table(
            f"_activation_stage_{spec.table}",
            sa.MetaData(),
            *[
                sa.Column(name, job.target.c[name].type, primary_key=name in spec.primary_key, autoincrement=False)
                for name in job.arrow_schema.names
            ],
            prefixes=["TEMPORARY"],
            mysql_engine="InnoDB",
            mysql_charset="utf8mb4",
            mysql_collate="utf8mb4_bin",
        )
        staging.drop(conn, checkfirst=True)
        staging.create(conn)
        job.staging = staging
        naive_utc = conn.dialect.name != "postgresql"
        reader = self.warehouse.sql(_mart_query(job, pairs)).to_arrow_reader(spec.batch_size)
        total = 0
        for batch in reader:
            rows = _python_rows(batch, naive_utc=naive_utc)
            if rows:
                conn.execute(staging.insert(), rows)
            total += len(rows)
            self.log(f"{spec.table}: staged {total:,} rows")
        job.result.rows_in_mart = conn.execute(sa.select(sa.func.count()).select_from(staging)).scalar_one()
        if job.result.rows_in_mart != total:
            raise SyncError(f"{spec.table}: staged {job.result.rows_in_mart} rows but read {total}")

    def _upsert(self, conn: sa.Connection, job: _TableJob) -> None:
        t, s, keys = job.target, job.staging, job.spec.primary_key
        names = job.arrow_schema.names
        on_key = sa.and_(*[t.c[k] == s.c[k] for k in keys])
        values = [n for n in names if n not in keys]
        if values:
            differs = sa.or_(*[t.c[n].is_distinct_from(s.c[n]) for n in values])
            update = sa.update(t).where(on_key, differs).values({n: s.c[n] for n in values})
            job.result.updated = conn.execute(update).rowcount
        insert = sa.insert(t).from_select(
            names,
            sa.select(*[s.c[n] for n in names]).where(~sa.exists().where(on_key)).order_by(*[s.c[k] for k in keys]),
        )
        job.result.inserted = conn.execute(insert).rowcount

    def _delete_missing(self, conn: sa.Connection, job: _TableJob) -> None:
        t, s, keys = job.target, job.staging, job.spec.primary_key
        on_key = sa.and_(*[t.c[k] == s.c[k] for k in keys])
        try:
            job.result.deleted = conn.execute(sa.delete(t).where(~sa.exists().where(on_key))).rowcount
        except sa.exc.IntegrityError as exc:
            raise SyncError(
                f"{job.spec.table}: rows that left mart {job.spec.source} are still referenced by another "
                "table's foreign key; sync the child tables in the same run (select them together) so "
                "their rows are deleted first. Nothing was written."
            ) from exc

    def run(self, specs: Sequence[SyncSpec], relations: dict[str, MartRelation]) -> list[SyncResult]:
        """Apply `specs` (already in parent-before-child order) in one destination transaction."""
        started = time.monotonic()
        jobs: list[tuple[_TableJob, list[tuple[str, str]]]] = []
        for spec in specs:
            relation = relations[spec.name]
            arrow_schema, pairs = self._describe(spec, relation)
            job = _TableJob(spec=spec, relation=relation, arrow_schema=arrow_schema)
            self._check_keys(job, pairs)
            jobs.append((job, pairs))

        metadata = sa.MetaData()
        with self.engine.connect() as conn:
            # Counts are measured: every dialect must report rows affected by INSERT ... SELECT.
            conn.execution_options(preserve_rowcount=True)
            # DDL first and outside the data transaction: MySQL commits implicitly on CREATE TABLE.
            with conn.begin():
                self._reflect_parents(conn, metadata, [j for j, _ in jobs])
                for job, pairs in jobs:
                    self._prepare_target(conn, metadata, job, pairs)
            for job, pairs in jobs:
                self._check_lengths(job, pairs)
            try:
                with conn.begin():
                    for job, pairs in jobs:
                        self._stage(conn, job, pairs)
                    for job, _ in jobs:  # parents first
                        self._upsert(conn, job)
                    for job, _ in reversed(jobs):  # children first
                        if job.spec.mode is Mode.REPLACE:
                            self._delete_missing(conn, job)
            except sa.exc.DBAPIError as exc:
                raise SyncError(f"destination write failed and was rolled back: {exc.orig!r}") from exc
            finally:
                for job, _ in jobs:
                    if job.staging is not None:
                        with conn.begin():
                            job.staging.drop(conn, checkfirst=True)
            elapsed = time.monotonic() - started
            for job, _ in jobs:
                r = job.result
                r.rows_in_destination = conn.execute(sa.select(sa.func.count()).select_from(job.target)).scalar_one()
                r.unchanged = r.rows_in_mart - r.inserted - r.updated
                r.seconds = elapsed
                self.log(
                    f"{r.table}: {r.inserted:,} inserted, {r.updated:,} updated, {r.deleted:,} deleted, "
                    f"{r.unchanged:,} unchanged; {r.rows_in_destination:,} rows now"
                )
        return [job.result for job, _ in jobs]

    def _reflect_parents(self, conn: sa.Connection, metadata: sa.MetaData, jobs: Sequence[_TableJob]) -> None:
        """Put referenced tables that this run does not write into `metadata`, so FK DDL resolves."""
        written = {j.spec.table for j in jobs}
        inspector = sa.inspect(conn)
        for job in jobs:
            for fk in job.spec.parsed_foreign_keys:
                if fk.references_table in written or fk.references_table in metadata.tables:
                    continue
                if not inspector.has_table(fk.references_table):
                    raise SyncError(
                        f"{job.spec.table}.{fk.column} references {fk.references_table}, which does not exist "
                        f"yet; sync {fk.references_table} first"
                    )
                sa.Table(fk.references_table, metadata, autoload_with=conn)


def _python_rows(batch: pa.RecordBatch, *, naive_utc: bool) -> list[dict]:
    """Arrow -> driver values. Zone-aware timestamps become UTC, naive where the column has no zone."""
    columns = []
    for i, f in enumerate(batch.schema):
        col = batch.column(i)
        if naive_utc and pa.types.is_timestamp(f.type) and f.type.tz is not None:
            col = pc.cast(col, pa.timestamp(f.type.unit))  # keeps the UTC instant, drops the zone
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()
