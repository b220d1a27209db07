"""The checks after the write, which read the destination back (where it can) and compare it with
the mart:

- `row_count_matches_mart`: the destination holds as many rows as the mart (mirror, replace,
  truncate_insert), or at least as many (upsert, insert). Needs `Capabilities.count`.
- `content_matches_mart`: an order-independent checksum of a canonical text form of every
  synced row, computed by DuckDB over the mart and over the destination's rows read back
  (cast to the mart's types first, so MariaDB/PostgreSQL/SQLite type differences cancel out).
  Needs `Capabilities.read_back`.
- `no_orphaned_foreign_keys`: every declared foreign key value has its parent row. Needs
  `Capabilities.read_back`.
- `rejected_rows_below_threshold`: rows the destination refused stay within
  `checks.max_rejected`; from the sync's own counts, so every destination has it.

A destination without the capability a check needs does not declare that check
(`SyncTranslator.get_check_specs`), and its asset says which it left out and why (`unavailable`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.base import Capabilities
from activation.orchestration.checks.read_back import (
    JSON_UDF,
    destination_batches,
    owned,
    register_json_udf,
    stream_into,
)
from activation.syncs.model import Plan, is_json
from activation.syncs.outcome import (
    ACCEPTED,
    CHECKSUM,
    ORPHANS,
    REJECTS,
    ROW_COUNT,
    SAMPLE,
    CheckOutcome,
    markdown_table,
)
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.duckdb import quote as q
from activation.warehouses.duckdb_memory import scratch_duckdb

# What each read-back check needs of the destination (a flag of activation.destinations.base.Capabilities).
NEEDS = {ROW_COUNT: "count", CHECKSUM: "read_back", ORPHANS: "read_back", ACCEPTED: "record_outcomes"}
_CANNOT = {
    "count": "cannot count its records",
    "read_back": "cannot read its rows back",
    "record_outcomes": "commits or refuses a write whole, so there is no per-record answer to count",
}


def unavailable(capabilities: Capabilities) -> dict[str, str]:
    """The checks a destination with these capabilities cannot run, each with the reason."""
    return {name: _CANNOT[flag] for name, flag in NEEDS.items() if not getattr(capabilities, flag)}


def rejects(spec: SyncSpec, result: SyncResult) -> CheckOutcome:
    """Rows the destination refused (or the sync set aside) within `checks.max_rejected`; from the
    sync's own counts, so every destination has it."""
    rejected = int(result.rejected or 0)
    limit = spec.checks.max_rejected
    passed = limit.allows(rejected, result.rows_in_mart)
    return CheckOutcome(
        REJECTS,
        passed,
        f"{rejected:,} of {result.rows_in_mart:,} rows rejected (allowed: {limit})",
        {"rows_rejected": rejected, "rows_in_mart": result.rows_in_mart, "max_rejected": str(limit)},
    )


def _key_text(plan: Plan, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " || '/' || ".join(f"CAST({prefix}{q(k)} AS VARCHAR)" for k in plan.spec.primary_key)


class PostWriteChecks:
    """Read the destination back and compare it with the mart, as far as its capabilities allow."""

    def __init__(self, planner: Warehouse, engine: sa.Engine, capabilities: Capabilities):
        self.planner = planner
        self.engine = engine
        self.unavailable = unavailable(capabilities)

    def row_count(self, plan: Plan, result: SyncResult, scope: dict | None = None) -> CheckOutcome:
        spec = plan.spec
        with self.engine.connect() as conn:
            t = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
            have = conn.execute(sa.select(sa.func.count()).select_from(t).where(owned(spec, t, scope))).scalar()
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
            register_json_udf(con)
        view = f"_activation_dest_{spec.name}"
        try:
            if scratch:
                stream_into(con, mart_src, self.planner.rows(plan, 50_000, everything=True))
            dest = pa.RecordBatchReader.from_batches(plan.arrow_schema, destination_batches(self.engine, plan, scope))
            stream_into(con, q(view), dest)
            canon = ", ".join(
                f"coalesce({JSON_UDF}({q(f.name)}), chr(0))"
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
            metadata["sample_differing_keys"] = sorted({k for _, k in diff})
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
            metadata["sample_orphaned_keys"] = {
                fk.column: ["/".join(map(str, r[:-1])) for r in sample] for fk, n, sample in found if n
            }
            return CheckOutcome(
                ORPHANS, False, f"{spec.table}: {total:,} row(s) reference a missing parent; sync the parents", metadata
            )
        return CheckOutcome(ORPHANS, True, f"every foreign key of {spec.table} resolves", metadata)

    def rejects(self, plan: Plan, result: SyncResult) -> CheckOutcome:
        return rejects(plan.spec, result)

    def run(self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None) -> list[CheckOutcome]:
        """The selected checks; those the destination cannot run never run (nor are they declared)."""
        selected = set(selected) - set(self.unavailable)
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
