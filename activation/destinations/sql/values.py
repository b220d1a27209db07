"""The values a SQL table cannot store, as conditions over the mart (activation.syncs.validate
explains why and evaluates them): nullability, lengths, DECIMAL and INTEGER ranges, and what
each dialect adds (SqlDialect.float_checks, value_checks). With `max_rejects` the rows that fail
are set aside as rejects instead of refusing the sync (warehouses/rejects.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql.dialect import SqlDialect
from activation.destinations.sql.run import Job, Run
from activation.syncs import validate
from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError
from activation.syncs.validate import Check, Violation
from activation.warehouses.base import Warehouse
from activation.warehouses.flavour import SqlFlavour

_INTEGER_RANGES = {  # (signed min, signed max, unsigned max)
    "TINYINT": (-(2**7), 2**7 - 1, 2**8 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1, 2**16 - 1),
    "MEDIUMINT": (-(2**23), 2**23 - 1, 2**24 - 1),
    "INTEGER": (-(2**31), 2**31 - 1, 2**32 - 1),
    "INT": (-(2**31), 2**31 - 1, 2**32 - 1),
    "BIGINT": (-(2**63), 2**63 - 1, 2**64 - 1),
}


def value_checks(
    plan: Plan, target: sa.Table, dialect: SqlDialect, charsets: Mapping[str, str], flavour: SqlFlavour
) -> list[Check]:
    """The conditions for every mart column the sync writes into `target`."""
    found: list[Check] = []
    for column in plan.columns:
        field, dest = plan.arrow_schema.field(column), target.c[column]
        t, c = field.type, flavour.quote(column)

        def f(name: str, c: str = c) -> str:
            return flavour.value_checks[name].format(c=c)

        if not dest.nullable and column not in plan.spec.primary_key:
            found.append(Check(column, f"{c} IS NULL", "are NULL but the destination column is NOT NULL"))
        if pa.types.is_floating(t):
            found.extend(dialect.float_checks(column, dest, f))
        fixed = dialect.fixed_widths
        if fixed and _is_numeric_value(t) and isinstance(dest.type, sa.Numeric) and not isinstance(dest.type, sa.Float):
            found.extend(_decimal_checks(column, c, t, dest, f))
        if (
            fixed
            and _is_numeric_value(t)
            and isinstance(dest.type, sa.Integer)
            and not isinstance(dest.type, sa.Boolean)
        ):
            found.extend(_integer_checks(column, c, t, dest))
        if pa.types.is_timestamp(t) or pa.types.is_date(t):  # Arrow cannot even write them as text
            found.append(Check(column, f("not_finite"), "hold an infinite date, which the destination cannot store"))
        found.extend(dialect.value_checks(column, t, dest, f, charsets))
    return found


def _is_numeric_value(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t)


def _decimal_checks(column: str, c: str, t: pa.DataType, dest: sa.Column, f) -> list[Check]:
    precision, scale = dest.type.precision, dest.type.scale or 0
    if precision is None:
        return []  # NUMERIC without precision (PostgreSQL) holds any value
    found = []
    limit = f"1e{precision - scale}"
    finite = f"NOT {f('inf')} AND NOT {f('nan')} AND " if pa.types.is_floating(t) else ""
    found.append(
        Check(
            column,
            f"({finite}abs({f('double')}) >= {limit})",
            f"exceed DECIMAL({precision},{scale}) (at least {limit} in absolute value)",
        )
    )
    if pa.types.is_decimal(t) and t.scale > scale:
        found.append(
            Check(
                column,
                f"({c} <> round({c}, {scale}))",
                f"have more than {scale} decimal places; DECIMAL({precision},{scale}) would round them",
            )
        )
    return found


def _integer_checks(column: str, c: str, t: pa.DataType, dest: sa.Column) -> list[Check]:
    name = type(dest.type).__name__.upper().replace("SMALLINTEGER", "SMALLINT").replace("BIGINTEGER", "BIGINT")
    low, high, unsigned_high = _INTEGER_RANGES.get(name, _INTEGER_RANGES["INTEGER"])
    if getattr(dest.type, "unsigned", False):
        low, high = 0, unsigned_high
    found = []
    if not (pa.types.is_integer(t) and _fits(t, low, high)):
        found.append(
            Check(
                column,
                f"({c} < {low} OR {c} > {high})",
                f"are outside the range of the destination's {name}{' UNSIGNED' if low == 0 else ''} ({low}..{high})",
            )
        )
    if pa.types.is_floating(t) or (pa.types.is_decimal(t) and t.scale > 0):
        found.append(Check(column, f"({c} <> trunc({c}))", f"have a fraction, but the destination column is {name}"))
    return found


def _fits(t: pa.DataType, low: int, high: int) -> bool:
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return high >= 2**bits - 1
    return low <= -(2 ** (bits - 1)) and high >= 2 ** (bits - 1) - 1


def find(
    warehouse: Warehouse, plan: Plan, target: sa.Table, dialect: SqlDialect, charsets: Mapping[str, str]
) -> list[Violation]:
    """Every value of the rows the plan sends that `target` cannot store, with sample keys."""
    return validate.violations(warehouse, plan, value_checks(plan, target, dialect, charsets, warehouse.flavour))


# -- the writer's checks ----------------------------------------------------------------------------


def _verified(job: Job, columns) -> bool:
    """The blocking checks found every value of these columns fits (over every mart row, a superset
    of the rows to send): the writer does not search them again."""
    fits = job.plan.fits
    return fits is not None and fits.clean and all(c in fits.columns for c in columns)


def check_lengths(run: Run, job: Job) -> None:
    """A value longer than its VARCHAR would be cut or rejected mid-load; name it up front.
    With `max_rejects`, such rows, and rows with any value the value checks refuse, are set
    aside as rejects instead (warehouses/rejects.py)."""
    wh, mart = run.warehouse, job.mart
    allowed, rejects = job.spec.max_rejects, wh.rejects
    if allowed is not None:
        rejects.reset(mart)
    too_long: list[tuple[str, Problem]] = []
    for column in job.target.columns:
        limit = getattr(column.type, "length", None)
        if not isinstance(column.type, sa.String) or not limit or column.name not in mart.columns:
            continue
        if _verified(job, [column.name]):
            continue
        rows = wh.too_long(mart, column.name, limit)
        if rows and allowed is None:
            shown = ", ".join(f"key {k!r} ({n} chars)" for k, n in rows)
            line = f"{job.spec.table}.{column.name}: value longer than the destination's {limit} characters in {shown}"
            too_long.append((line, validate.too_long_problem(wh, mart, column.name, limit, rows)))
            continue
        if rows:
            reason = f"value longer than the destination's {limit} characters"
            rejects.add(mart, column.name, reason, wh.longer_than(column.name, limit))
    if too_long:
        raise SyncError(
            "\n".join(line for line, _ in too_long) + "; widen the column or trim it in the mart. Nothing was written.",
            [problem for _, problem in too_long],
        )
    if allowed is not None and not _verified(job, mart.columns):  # every value the destination would refuse or alter
        for check in value_checks(mart, job.target, run.dialect, _charsets(run, job), wh.flavour):
            rejects.add(mart, check.column, check.problem, check.condition)
    count = rejects.verdict(mart, "fix them in the mart or widen the columns") if allowed is not None else 0
    if count:
        job.update(rejected=count)
        job.warn(run, f"{count:,} rows set aside as rejects ({rejects.summary(mart)}); they are sent again next run")


def _charsets(run: Run, job: Job, conn: sa.Connection | None = None) -> Mapping[str, str]:
    """The character sets of the target's columns (a table a dry run would create: none to read)."""
    if job.virtual:
        return {}
    if conn is not None:
        return run.dialect.character_sets(conn, job.target.name)
    with run.engine.connect() as own:
        return run.dialect.character_sets(own, job.target.name)


def check_values(run: Run, conn: sa.Connection, job: Job) -> None:
    """Refuse values the destination would reject or silently alter, naming column and keys."""
    if _verified(job, job.mart.columns):
        return
    problems = find(run.warehouse, job.mart, job.target, run.dialect, _charsets(run, job, conn))
    if problems:
        raise SyncError(
            f"{job.spec.source} -> {job.spec.table}: {len(problems)} problem(s) in the rows to send; nothing "
            "was written:\n" + "\n".join(f"- {p}" for p in problems),
            [p.as_problem(job.spec) for p in problems],
        )
