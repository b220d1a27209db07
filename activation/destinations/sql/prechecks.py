"""The blocking checks before a write, one implementation for the Dagster checks and the dry run.

- `mart_keys_not_null_and_unique`: the sync key is a key of the mart.
- `mart_fits_destination`: every mart value fits its destination column (type, length, range,
  nullability), with the offending rows named; rows the writer would set aside as rejects
  within `max_rejects` pass it.

The verdicts come from the engine's own refusals (`Warehouse.null_and_duplicate_keys`,
`Warehouse.too_long`, `values.find`), so a check and the write never disagree; `judge` puts them
in the sync's plan, and the writer does not search again for what they ruled out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql import schema, values
from activation.destinations.sql.dialect import SqlDialect, sql_dialect
from activation.syncs.model import Plan
from activation.syncs.outcome import FITS, KEYS, SAMPLE, CheckOutcome, markdown_table
from activation.syncs.plan import SyncPlan, Verdict
from activation.syncs.problems import FIX_VALUE, Problem
from activation.warehouses.base import Warehouse


class PreWriteChecks:
    """Judge the mart against the destination before anything is written.

    The verdicts come from the engine's own refusals (`Warehouse.null_and_duplicate_keys`,
    `Warehouse.too_long`); the extra queries here only count and sample for the metadata.
    """

    def __init__(self, planner: Warehouse, engine: sa.Engine | None):
        """`engine` None: only `keys` can run (it reads the warehouse alone), as for an API object."""
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
            metadata["sample_duplicate_keys"] = [k for k, _ in dups[:SAMPLE]]
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
        return self._fits(plan)[0]

    def _fits(self, plan: Plan) -> tuple[CheckOutcome, frozenset[str]]:
        """The outcome, and the columns whose every value it checked."""
        spec = plan.spec
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(spec.table):
                return CheckOutcome(
                    FITS,
                    True,
                    f"{spec.table} does not exist yet: it will be created from the mart's schema",
                    {"columns_checked": 0},
                ), frozenset()
            target = sa.Table(spec.table, sa.MetaData(), autoload_with=conn)
            dialect = sql_dialect(conn)
            charsets = dialect.character_sets(conn, spec.table)
        return self.fits_table(plan, target, dialect, charsets)

    def fits_table(
        self, plan: Plan, target: sa.Table, dialect: SqlDialect, charsets: Mapping[str, str]
    ) -> tuple[CheckOutcome, frozenset[str]]:
        """`fits` against a table already described (a review in CI checks the description kept in
        the state: activation.destinations.sql.described)."""
        spec = plan.spec
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
                return CheckOutcome(FITS, True, summary, metadata), frozenset(checkable)
        if problems:
            metadata["problems"] = markdown_table(
                ["column", "problem", "rows", "sample keys"],
                [(c, p, "all" if n < 0 else f"{n:,}", s) for c, p, n, s in problems],
            )
            metadata["sample_keys"] = {c: s.split(", ") for c, _, n, s in problems if s != "-"}
            first = problems[0]
            summary = (
                f"{spec.table}: {len(problems)} column problem(s), e.g. {first[0]} {first[1]}; "
                "fix the mart or the destination column. Nothing was written."
            )
            return CheckOutcome(FITS, False, summary, metadata, found), frozenset(checkable)
        fit = CheckOutcome(FITS, True, f"all {len(plan.columns)} mart columns fit {spec.table}", metadata)
        return fit, frozenset(checkable)

    def run(self, plan: Plan) -> list[CheckOutcome]:
        return [self.keys(plan), self.fits(plan)]

    def judge(self, plan: SyncPlan) -> tuple[list[CheckOutcome], SyncPlan]:
        """Both checks' outcomes, and the plan carrying their verdicts and what refuses it."""
        keys, (fits, checked) = self.keys(plan.mart), self._fits(plan.mart)
        for outcome in (keys, fits):
            if not outcome.passed:
                plan = plan.refused(outcome.problems, outcome.summary)
        # Clean: nothing found at all (rows within max_rejects are found, and set aside by the writer).
        clean_fit = fits.passed and not fits.metadata.get("columns_failing")
        return [keys, fits], replace(
            plan,
            keys=Verdict(clean=keys.passed, summary=keys.summary),
            fits=Verdict(clean=clean_fit, summary=fits.summary, columns=checked),
        )
