"""Quality gates on every destination table, derived from its sync config.

Before the write (blocking: a failure stops the sync and nothing is written):
- `mart_keys_not_null_and_unique`: the sync key is a key of the mart.
- `mart_fits_destination`: every mart value fits its destination column (type, length,
  range, nullability), with the offending rows named.
- `guards_within_limits`: the plan stays within the sync's guards (the engine evaluates them
  inside the write transaction and rolls back, so a tripped guard also writes nothing). Only a
  plan over the limits fails it: a sync refused for another reason fails its step instead.

After the write:
- `row_count_matches_mart`: the destination holds as many rows as the mart (mirror, replace,
  truncate_insert), or at least as many (upsert, insert).
- `content_matches_mart`: an order-independent checksum of a canonical text form of every
  synced row, computed by DuckDB over the mart and over the destination's rows read back
  (cast to the mart's types first, so MariaDB/PostgreSQL/SQLite type differences cancel out).
- `no_orphaned_foreign_keys`: every declared foreign key value has its parent row.
- `rejected_rows_below_threshold`: rows the destination refused stay within `checks.max_rejected`.

Every result carries counts, sample keys and a short markdown table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import dagster as dg
import duckdb
import duckdb.sqltypes as sqltypes
import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql import schema, values
from activation.destinations.sql.dialect import sql_dialect
from activation.resources import scratch_duckdb
from activation.syncs.model import Plan, is_json
from activation.syncs.problems import FIX_VALUE, Problem
from activation.syncs.results import GuardTripped, SyncResult
from activation.syncs.spec import Mode, SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.duckdb import quote as q

KEYS = "mart_keys_not_null_and_unique"
FITS = "mart_fits_destination"
GUARDS = "guards_within_limits"
ROW_COUNT = "row_count_matches_mart"
CHECKSUM = "content_matches_mart"
ORPHANS = "no_orphaned_foreign_keys"
REJECTS = "rejected_rows_below_threshold"

PRE_WRITE = (KEYS, FITS, GUARDS)
SAMPLE = 5
_JSON_UDF = "activation_canonical_json"


@dataclass
class CheckOutcome:
    """One evaluated check: the verdict, one line a person reads first, and the evidence."""

    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # what failed, for a person to fix

    def result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=self.name,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"summary": self.summary, **self.metadata},
            description=self.summary,
        )


def check_specs(sync: SyncSpec, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks a sync declares, from its mode and config."""

    def spec(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=asset_key, blocking=name in PRE_WRITE, description=description)

    specs = [
        spec(KEYS, f"Before writing: the key {sync.primary_key} of mart {sync.source} is not null and unique."),
        spec(FITS, "Before writing: every mart value fits the destination's column types, lengths and nullability."),
        spec(GUARDS, "Before writing: the planned inserts, updates and deletes stay within the sync's guards."),
    ]
    if sync.mode is not Mode.UPDATE:
        promise = "equals" if sync.mode.deletes else "is at least"
        specs.append(spec(ROW_COUNT, f"After writing: the destination's row count {promise} the mart's."))
    if sync.checks.checksum and sync.mode is not Mode.INSERT and sync.mode is not Mode.UPDATE:
        specs.append(spec(CHECKSUM, "After writing: a checksum of every synced row matches the mart's."))
    if sync.foreign_keys:
        specs.append(spec(ORPHANS, f"After writing: no orphaned values in {sorted(sync.foreign_keys)}."))
    specs.append(spec(REJECTS, f"After writing: rejected rows are within {sync.checks.max_rejected}."))
    return specs


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> dg.MetadataValue:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _key_text(plan: Plan, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " || '/' || ".join(f"CAST({prefix}{q(k)} AS VARCHAR)" for k in plan.spec.primary_key)


# -- before the write ----------------------------------------------------------------------


class PreWriteChecks:
    """Judge the mart against the destination before anything is written.

    The verdicts come from the engine's own refusals (`Warehouse.null_and_duplicate_keys`,
    `Warehouse.too_long`); the extra queries here only count and sample for the metadata.
    """

    def __init__(self, planner: Warehouse, engine: sa.Engine):
        self.planner = planner
        self.engine = engine

    def keys(self, plan: Plan) -> CheckOutcome:
        report = self.planner.key_report(plan)
        rows, nulls, dups = report.rows, report.null_rows, report.duplicates
        # The engine refuses on exactly these two findings; its own message is the verdict.
        verdict = self.planner.null_and_duplicate_keys(plan, sample=SAMPLE) if nulls or dups else None
        metadata: dict[str, Any] = {
            "rows_in_mart": rows,
            "null_key_rows": nulls,
            "duplicated_keys": len(dups),
            "rows_with_duplicated_keys": sum(n for _, n in dups),
        }
        if nulls or dups:
            metadata["sample_duplicate_keys"] = dg.MetadataValue.json([k for k, _ in dups[:SAMPLE]])
            metadata["problems"] = markdown_table(
                ["problem", "rows", "sample keys"],
                [
                    *([("NULL key", nulls, "-")] if nulls else []),
                    *(
                        [("duplicate key", sum(n for _, n in dups), ", ".join(f"{k} x{n}" for k, n in dups[:SAMPLE]))]
                        if dups
                        else []
                    ),
                ],
            )
        passed = verdict is None and not nulls and not dups
        summary = verdict or f"{rows:,} mart rows, every key {plan.spec.primary_key} present and unique"
        spec, key_columns = plan.spec, tuple(plan.spec.primary_key)
        found = []
        if nulls:
            fix = "give every mart row a key (filter or fill NULL keys in the dbt model)"
            found.append(
                Problem(spec.table, "have a NULL key", "/".join(key_columns), nulls, (), (), fix, spec.destination)
            )
        if dups:
            shown = tuple(f"{k} (x{n})" for k, n in dups[:SAMPLE])
            fix = "make the key unique in the mart (deduplicate in the dbt model), or choose another primary_key"
            found.append(
                Problem(
                    spec.table,
                    "share a key with another row",
                    "/".join(key_columns),
                    sum(n for _, n in dups),
                    shown,
                    key_columns,
                    fix,
                    spec.destination,
                )
            )
        return CheckOutcome(KEYS, passed, summary, metadata, found)

    def fits(self, plan: Plan) -> CheckOutcome:
        spec = plan.spec
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(spec.table):
                return CheckOutcome(
                    FITS,
                    True,
                    f"{spec.table} does not exist yet: it will be created from the mart's schema",
                    {"columns_checked": 0},
                )
            target = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
            dialect = sql_dialect(conn)
            charsets = dialect.character_sets(conn, spec.table)
        problems: list[tuple[str, str, int, str]] = []  # column, problem, rows, sample keys
        found: list[Problem] = []
        drift_fix = "set on_schema_change (evolve or ignore) or map columns in `columns`, or migrate the column"

        def problem(column: str, reason: str, rows: int | None, keys: Sequence[str] = (), fix: str = FIX_VALUE) -> None:
            problems.append((column, reason, -1 if rows is None else rows, ", ".join(keys) or "-"))
            found.append(
                Problem(spec.table, reason, column, rows, tuple(keys), tuple(spec.primary_key), fix, spec.destination)
            )

        policy, checkable, conditions = spec.on_schema_change, [], []
        for name in plan.columns:
            fld = plan.arrow_schema.field(name)
            if name not in target.c:
                if policy == "fail":
                    problem(name, "no such column in the destination (on_schema_change: fail)", None, fix=drift_fix)
                continue
            column = target.c[name]
            if not schema.accepts(column.type, fld.type):
                if policy != "ignore":
                    problem(
                        name, f"mart type {fld.type} does not fit destination type {column.type}", None, fix=drift_fix
                    )
                continue
            checkable.append(name)
            limit = getattr(column.type, "length", None)
            if isinstance(column.type, sa.String) and limit:
                too_long = self.planner.too_long(plan, name, limit, sample=SAMPLE)
                if too_long:
                    longer = self.planner.longer_than(name, limit)
                    [count] = self.planner.count_where(dataclasses.replace(plan, full=True), [longer])
                    conditions.append(longer)
                    shown = [f"{k} ({n} chars)" for k, n in too_long]
                    fix = "widen the column in the destination, or trim the value in the mart"
                    problem(name, f"longer than VARCHAR({limit})", count, shown, fix)
        # The values the engine itself refuses (destinations/sql/values.py), over every mart row.
        fitting = dataclasses.replace(
            plan,
            pairs=[(d, m) for d, m in plan.pairs if d in checkable],
            arrow_schema=pa.schema([f for f in plan.arrow_schema if f.name in checkable]),
            full=True,
        )
        for v in values.find(self.planner, fitting, target, dialect, charsets):
            p = v.as_problem(spec)
            problem(p.column, p.reason, p.rows, p.keys, p.fix)
        metadata: dict[str, Any] = {"columns_checked": len(plan.columns), "columns_failing": len(problems)}
        rejectable = spec.max_rejects is not None
        if found and rejectable and all(p.rows is not None for p in found):
            # The writer sets such rows aside as rejects while they stay within max_rejects.
            flavour = self.planner.flavour
            conditions += [c.condition for c in values.value_checks(fitting, target, dialect, charsets, flavour)]
            either = " OR ".join(f"({c})" for c in conditions)
            bad, total = self.planner.count_where(fitting, [either, "TRUE"])
            if spec.max_rejects.allows(bad, total):
                metadata["rows_to_reject"] = bad
                summary = (
                    f"{bad:,} of {total:,} mart rows do not fit {spec.table}; within max_rejects "
                    f"{spec.max_rejects}, they are set aside as rejects"
                )
                return CheckOutcome(FITS, True, summary, metadata)
        if problems:
            metadata["problems"] = markdown_table(
                ["column", "problem", "rows", "sample keys"],
                [(c, p, "all" if n < 0 else f"{n:,}", s) for c, p, n, s in problems],
            )
            metadata["sample_keys"] = dg.MetadataValue.json({c: s.split(", ") for c, _, n, s in problems if s != "-"})
            first = problems[0]
            summary = (
                f"{spec.table}: {len(problems)} column problem(s), e.g. {first[0]} {first[1]}; "
                "fix the mart or the destination column. Nothing was written."
            )
            return CheckOutcome(FITS, False, summary, metadata, found)
        return CheckOutcome(FITS, True, f"all {len(plan.columns)} mart columns fit {spec.table}", metadata)

    def run(self, plan: Plan) -> list[CheckOutcome]:
        return [self.keys(plan), self.fits(plan)]


def guard_outcomes(
    specs: Sequence[SyncSpec], results: Sequence[SyncResult] | None, tripped: GuardTripped | None
) -> dict[str, CheckOutcome]:
    """The guards' verdict per sync table. The engine checks them table by table inside its write
    transaction; a tripped guard rolls that transaction back and names the table it tripped on."""
    out = {}
    if tripped is not None:
        for spec in specs:
            plan = tripped.plans.get(spec.table)
            if plan is None:
                continue  # not reached: an earlier table tripped (and nothing was written)
            out[spec.table] = CheckOutcome(
                GUARDS,
                False,
                str(tripped),
                {
                    "planned_inserts": plan.get("insert", 0),
                    "planned_updates": plan.get("update", 0),
                    "planned_deletes": plan.get("delete", 0),
                    "guards": dg.MetadataValue.json(spec.guards.model_dump(mode="json")),
                },
            )
        return out
    by_sync = {r.sync: r for r in results or []}
    for spec in specs:
        result = by_sync.get(spec.name)
        if result is None:
            continue
        out[spec.table] = CheckOutcome(
            GUARDS,
            True,
            f"+{result.inserted:,} ~{result.updated:,} -{result.deleted:,} within the guards",
            {
                "planned_inserts": result.inserted,
                "planned_updates": result.updated,
                "planned_deletes": result.deleted,
                "guards": dg.MetadataValue.json(spec.guards.model_dump(mode="json")),
            },
        )
    return out


def guards_held_before_failure(specs: Sequence[SyncSpec], within: dict[str, dict[str, int]]) -> dict[str, CheckOutcome]:
    """The guards' verdict per sync table when a run failed for another reason (a refusal, a foreign key, a lost
    connection): a table whose plan the guards judged passed them; the failure is the run's, and
    a failed guard check would send a person after limits that were never crossed."""
    out = {}
    for spec in specs:
        plan = within.get(spec.table)
        if plan is not None:
            out[spec.table] = CheckOutcome(
                GUARDS,
                True,
                f"+{plan.get('insert', 0):,} ~{plan.get('update', 0):,} -{plan.get('delete', 0):,} planned, within "
                "the guards; the run then failed for another reason (see the step's error) and wrote nothing",
                {
                    "planned_inserts": plan.get("insert", 0),
                    "planned_updates": plan.get("update", 0),
                    "planned_deletes": plan.get("delete", 0),
                    "guards": dg.MetadataValue.json(spec.guards.model_dump(mode="json")),
                },
            )
    return out


# -- after the write -----------------------------------------------------------------------


class PostWriteChecks:
    """Read the destination back and compare it with the mart."""

    def __init__(self, planner: Warehouse, engine: sa.Engine):
        self.planner = planner
        self.engine = engine

    def _owned(self, spec: SyncSpec, table: sa.Table, scope: dict | None = None) -> sa.ColumnElement[bool]:
        conds = [table.c[c] == v for c, v in (scope if scope is not None else spec.scope).items()]
        if spec.soft_delete_column:
            conds.append(table.c[spec.soft_delete_column].is_(None))
        return sa.and_(sa.true(), *conds)

    def row_count(self, plan: Plan, result: SyncResult, scope: dict | None = None) -> CheckOutcome:
        spec = plan.spec
        with self.engine.connect() as conn:
            t = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
            have = conn.execute(sa.select(sa.func.count()).select_from(t).where(self._owned(spec, t, scope))).scalar()
        want = result.rows_in_mart
        exact = spec.mode.deletes
        passed = have == want if exact else have >= want
        relation = "==" if exact else ">="
        summary = (
            f"{spec.table} holds {have:,} rows, mart {spec.source} {want:,} (promised: destination {relation} mart)"
        )
        return CheckOutcome(
            ROW_COUNT,
            passed,
            summary,
            {
                "rows_in_destination": have,
                "rows_in_mart": want,
                "difference": have - want,
                "counts": markdown_table(["", "rows"], [("mart", f"{want:,}"), (spec.table, f"{have:,}")]),
            },
        )

    def _destination_batches(self, plan: Plan, scope: dict | None) -> Iterator[pa.RecordBatch]:
        """The synced columns of the rows this sync owns, cast to the mart's Arrow types, a batch at a time."""
        spec = plan.spec
        with self.engine.connect() as conn:
            t = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
            for column in t.columns:
                if isinstance(column.type, sa.Float):
                    column.type.asdecimal = False  # MySQL reflects DOUBLE as Decimal-returning
            stmt = sa.select(*[t.c[c] for c in plan.columns]).where(self._owned(spec, t, scope))
            result = conn.execution_options(yield_per=50_000).execute(stmt)
            coercers = [_coercer(f) for f in plan.arrow_schema]
            for chunk in result.partitions():
                cols = list(zip(*chunk, strict=True)) if chunk else [[] for _ in plan.columns]
                arrays = [
                    pa.array([c(v) for v in values], type=f.type)
                    for values, f, c in zip(cols, plan.arrow_schema, coercers, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=plan.arrow_schema)

    def checksum(self, plan: Plan, scope: dict | None = None) -> CheckOutcome:
        spec = plan.spec
        scratch = False  # an in-memory DuckDB of our own, closed at the end
        local = self.planner.duckdb_source(plan)
        if local is not None:
            con, mart_src = local
        else:  # another warehouse (BigQuery): both sides are read back and hashed the same way in DuckDB
            con, scratch = scratch_duckdb(), True
            mart_src = q(f"_activation_mart_{spec.name}")
        if any(is_json(f) for f in plan.arrow_schema):
            _register_json_udf(con)
        view = f"_activation_dest_{spec.name}"
        try:
            if scratch:
                _stream_into(con, mart_src, self.planner.rows(plan, 50_000, everything=True))
            dest = pa.RecordBatchReader.from_batches(plan.arrow_schema, self._destination_batches(plan, scope))
            _stream_into(con, q(view), dest)
            canon = ", ".join(
                f"coalesce({_JSON_UDF}({q(f.name)}), chr(0))"
                if is_json(f)
                else f"coalesce(CAST({q(f.name)} AS VARCHAR), chr(0))"
                for f in plan.arrow_schema
            )
            if scope:
                conds = " AND ".join(f"{q(c)} = ?" for c in scope)
                mart_src = f"(SELECT * FROM {mart_src} WHERE {conds})"
            dest_src = q(view)
            if not spec.mode.deletes:  # upsert keeps rows that left the mart: compare the mart's keys
                using = ", ".join(q(k) for k in spec.primary_key)
                dest_src = f"(SELECT d.* FROM {q(view)} d SEMI JOIN {mart_src} m USING ({using}))"
            params = list(scope.values()) if scope else []

            def hashed(src: str) -> str:
                return f"SELECT {_key_text(plan)} AS k, hash(concat_ws(chr(31), {canon})) AS h FROM {src}"

            def aggregate(src: str, p: list) -> tuple[int, int]:
                n, total = con.execute(
                    f"SELECT count(*), coalesce(sum(h::HUGEINT) % 18446744073709551616, 0) FROM ({hashed(src)})", p
                ).fetchall()[0]
                return int(n), int(total)

            dest_params = [] if spec.mode.deletes else params
            mart_n, mart_sum = aggregate(mart_src, params)
            dest_n, dest_sum = aggregate(dest_src, dest_params)
            metadata: dict[str, Any] = {
                "rows_compared_mart": mart_n,
                "rows_compared_destination": dest_n,
                "mart_checksum": f"{mart_sum:016x}",
                "destination_checksum": f"{dest_sum:016x}",
            }
            if mart_n == dest_n and mart_sum == dest_sum:
                return CheckOutcome(CHECKSUM, True, f"{mart_n:,} rows identical in {spec.table} and the mart", metadata)
            diff = con.execute(
                f"SELECT 'only in mart' AS side, k FROM (({hashed(mart_src)}) EXCEPT ({hashed(dest_src)})) "
                f"UNION ALL SELECT 'only in destination', k FROM (({hashed(dest_src)}) EXCEPT ({hashed(mart_src)})) "
                f"ORDER BY k, side LIMIT {SAMPLE * 2}",
                params + dest_params + dest_params + params,
            ).fetchall()
            metadata["sample_differing_keys"] = dg.MetadataValue.json(sorted({k for _, k in diff}))
            metadata["differences"] = markdown_table(["key", "row differs"], [(k, side) for side, k in diff])
            return CheckOutcome(
                CHECKSUM,
                False,
                f"{spec.table} differs from mart {spec.source}: rows {dest_n:,} vs {mart_n:,}, checksums differ; "
                "run the sync with full_resync to repair edits made in the destination",
                metadata,
            )
        finally:
            con.execute(f"DROP TABLE IF EXISTS {q(view)}")
            if scratch:
                con.close()

    def orphans(self, plan: Plan) -> CheckOutcome:
        spec = plan.spec
        found = []
        with self.engine.connect() as conn:
            md = sa.MetaData()
            child = sa.Table(spec.table, md, autoload_with=conn)
            for fk in spec.parsed_foreign_keys:
                parent = (
                    child
                    if fk.references_table == spec.table
                    else sa.Table(fk.references_table, md, autoload_with=conn)
                )
                parent_alias = parent.alias("p")
                col = child.c[fk.column]
                orphan = sa.and_(
                    col.is_not(None),
                    ~sa.exists().where(parent_alias.c[fk.references_column] == col),
                )
                n = conn.execute(sa.select(sa.func.count()).select_from(child).where(orphan)).scalar()
                keys = [child.c[k] for k in spec.primary_key]
                sample = conn.execute(sa.select(*keys, col).where(orphan).order_by(*keys).limit(SAMPLE)).all()
                found.append((fk, n, sample))
        total = sum(n for _, n, _ in found)
        metadata: dict[str, Any] = {"orphaned_rows": total}
        metadata["foreign_keys"] = markdown_table(
            ["column", "references", "orphaned rows", "sample (key -> missing value)"],
            [
                (
                    fk.column,
                    f"{fk.references_table}.{fk.references_column}",
                    f"{n:,}",
                    ", ".join(f"{'/'.join(map(str, r[:-1]))} -> {r[-1]}" for r in sample) or "-",
                )
                for fk, n, sample in found
            ],
        )
        if total:
            metadata["sample_orphaned_keys"] = dg.MetadataValue.json(
                {fk.column: ["/".join(map(str, r[:-1])) for r in sample] for fk, n, sample in found if n}
            )
            return CheckOutcome(
                ORPHANS, False, f"{spec.table}: {total:,} row(s) reference a missing parent; sync the parents", metadata
            )
        return CheckOutcome(ORPHANS, True, f"every foreign key of {spec.table} resolves", metadata)

    def rejects(self, plan: Plan, result: SyncResult) -> CheckOutcome:
        spec = plan.spec
        rejected = int(getattr(result, "rejected", 0) or getattr(result, "rows_rejected", 0) or 0)
        limit = spec.checks.max_rejected
        passed = limit.allows(rejected, result.rows_in_mart)
        return CheckOutcome(
            REJECTS,
            passed,
            f"{rejected:,} of {result.rows_in_mart:,} rows rejected (allowed: {limit})",
            {"rows_rejected": rejected, "rows_in_mart": result.rows_in_mart, "max_rejected": str(limit)},
        )

    def run(self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None) -> list[CheckOutcome]:
        out = []
        if ROW_COUNT in selected:
            out.append(self.row_count(plan, result, scope))
        if CHECKSUM in selected:
            out.append(self.checksum(plan, scope))
        if ORPHANS in selected:
            out.append(self.orphans(plan))
        if REJECTS in selected:
            out.append(self.rejects(plan, result))
        return out


def _stream_into(con: duckdb.DuckDBPyConnection, table: str, reader: pa.RecordBatchReader) -> None:
    """Copy a stream of batches into a DuckDB temp table (`table` quoted), which DuckDB keeps within
    its memory limit, spilling beyond it, where a pyarrow Table would hold every row in memory."""
    stream = "_activation_stream"
    con.register(stream, reader)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {stream}")
    finally:
        con.unregister(stream)


def _register_json_udf(con: duckdb.DuckDBPyConnection) -> None:
    """JSON text in one canonical form (sorted keys, no spaces): PostgreSQL's JSONB reorders keys."""

    def canonical(text: str) -> str:
        try:
            return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            return text

    try:
        con.create_function(_JSON_UDF, canonical, [sqltypes.VARCHAR], sqltypes.VARCHAR)
    except (duckdb.NotImplementedException, duckdb.CatalogException):
        pass  # registered earlier on this connection


def _coercer(fld: pa.Field):
    """A destination value as the mart's Arrow type expects it (drivers differ per dialect)."""
    t = fld.type
    if is_json(fld):
        return lambda v: v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    if pa.types.is_boolean(t):
        return lambda v: None if v is None else bool(v)
    if pa.types.is_integer(t):
        return lambda v: None if v is None else int(v)
    if pa.types.is_floating(t):
        return lambda v: None if v is None else float(v)
    if pa.types.is_decimal(t):
        quantum = Decimal(1).scaleb(-t.scale)
        return lambda v: None if v is None else Decimal(str(v)).quantize(quantum)
    if pa.types.is_timestamp(t):
        aware = t.tz is not None

        def ts(v):
            if v is None:
                return None
            if isinstance(v, str):
                v = dt.datetime.fromisoformat(v)
            if aware:  # stored as UTC where the database has no zone-aware type
                return v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC)
            return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v

        return ts
    if pa.types.is_date(t):

        def day(v):
            if isinstance(v, dt.datetime):
                return v.date()
            return dt.date.fromisoformat(v) if isinstance(v, str) else v

        return day
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda v: v.decode() if isinstance(v, bytes) else v
    return lambda v: v
