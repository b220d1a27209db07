"""Values the destination cannot store exactly, found in the warehouse before anything is written.

A database meeting such a value mid-load either refuses the whole statement with a message that
names no row, or (MySQL's LOAD DATA LOCAL, non-strict modes, SQLite) quietly stores something
else: NaN becomes NULL, 10^20 is clipped, year 0 becomes 0000-00-00, an emoji becomes '?'. So
each destination column gets a SQL condition over the mart rows about to be sent, evaluated in
the warehouse in one pass (its `SqlFlavour.value_checks` spell the functions); a violation names
the table, the column, the count and sample keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from activation.syncs.model import Plan
from activation.syncs.problems import FIX_VALUE, Problem
from activation.warehouses.base import Warehouse
from activation.warehouses.flavour import SqlFlavour

SAMPLE_KEYS = 5

# MySQL DATE/DATETIME hold years 1000-9999; TIMESTAMP 1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC.
_MYSQL_DATETIME = (-30610224000, 253402300800)  # epoch seconds of 1000-01-01 and 10000-01-01
_MYSQL_TIMESTAMP = (1, 2147483647)
_INTEGER_RANGES = {  # (signed min, signed max, unsigned max)
    "TINYINT": (-(2**7), 2**7 - 1, 2**8 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1, 2**16 - 1),
    "MEDIUMINT": (-(2**23), 2**23 - 1, 2**24 - 1),
    "INTEGER": (-(2**31), 2**31 - 1, 2**32 - 1),
    "INT": (-(2**31), 2**31 - 1, 2**32 - 1),
    "BIGINT": (-(2**63), 2**63 - 1, 2**64 - 1),
}


@dataclass(frozen=True)
class Check:
    column: str
    condition: str  # warehouse SQL over the mart row, true when the value cannot be stored
    problem: str  # "hold NaN, which MySQL cannot store"


@dataclass(frozen=True)
class Violation:
    table: str
    column: str
    problem: str
    rows: int
    keys: tuple[str, ...]

    def __str__(self) -> str:
        keys = ", ".join(repr(k) for k in self.keys)
        return f"{self.table}.{self.column}: {self.rows:,} row(s) {self.problem} (key {keys})"

    def as_problem(self, spec) -> Problem:
        fix = "convert the column to utf8mb4" if "utf8mb3" in self.problem else FIX_VALUE
        return Problem(
            self.table, self.problem, self.column, self.rows, self.keys, tuple(spec.primary_key), fix, spec.destination
        )


def too_long_problem(planner: Warehouse, plan: Plan, column: str, limit: int, sample: list[tuple[str, int]]) -> Problem:
    """Values longer than a VARCHAR(limit), counted over the whole mart (as `too_long` samples it)."""
    [count] = planner.count_where(dataclasses.replace(plan, full=True), [planner.longer_than(column, limit)])
    spec = plan.spec
    return Problem(
        spec.table,
        f"longer than VARCHAR({limit})",
        column,
        count,
        tuple(f"{k} ({n} chars)" for k, n in sample),
        tuple(spec.primary_key),
        "widen the column in the destination, or trim the value in the mart",
        spec.destination,
    )


def checks(plan: Plan, target: sa.Table, dialect: str, charsets: dict[str, str], flavour: SqlFlavour) -> list[Check]:
    """The conditions for every mart column the sync writes into `target`."""
    found: list[Check] = []
    is_mysql = dialect in ("mysql", "mariadb")
    for column in plan.columns:
        field, dest = plan.arrow_schema.field(column), target.c[column]
        t, c = field.type, flavour.quote(column)

        def f(name: str, c: str = c) -> str:
            return flavour.value_checks[name].format(c=c)

        if not dest.nullable and column not in plan.spec.primary_key:
            found.append(Check(column, f"{c} IS NULL", "are NULL but the destination column is NOT NULL"))
        if pa.types.is_floating(t):
            if is_mysql:
                found.append(
                    Check(column, f"({f('nan')} OR {f('inf')})", "hold NaN or infinity, which MySQL cannot store")
                )
            elif dialect == "sqlite":
                found.append(Check(column, f("nan"), "hold NaN, which SQLite would store as NULL"))
            elif isinstance(dest.type, sa.Numeric) and not isinstance(dest.type, sa.Float):
                found.append(Check(column, f("inf"), f"hold infinity, which {_name(dest)} cannot store"))
        # SQLite's declared DECIMAL(p,s) and INTEGER widths constrain nothing: every value fits.
        fixed = dialect != "sqlite"
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
        if (pa.types.is_timestamp(t) or pa.types.is_date(t)) and is_mysql:
            low, high = _MYSQL_TIMESTAMP if isinstance(dest.type, mysql.TIMESTAMP) else _MYSQL_DATETIME
            found.append(
                Check(
                    column,
                    f"({f('finite')} AND ({f('epoch')} < {low} OR {f('epoch')} >= {high}))",
                    f"are outside the range of {_name(dest)} in MySQL",
                )
            )
        if _is_text(t) and is_mysql and charsets.get(column, "utf8mb4").lower() in ("utf8", "utf8mb3"):
            found.append(
                Check(
                    column,
                    f("four_byte"),
                    "hold 4-byte UTF-8 characters (emoji) but the column's character set is utf8mb3; "
                    "convert it to utf8mb4",
                )
            )
        if _is_text(t) and dialect == "postgresql":
            found.append(Check(column, f("nul"), "contain NUL bytes, which PostgreSQL text cannot hold"))
    return found


def _name(column: sa.Column) -> str:
    try:
        return str(column.type.compile(dialect=mysql.dialect()))
    except Exception:  # noqa: BLE001 - a type only its own dialect can render
        return type(column.type).__name__


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


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


def find(planner: Warehouse, plan: Plan, target: sa.Table, dialect: str, charsets: dict[str, str]) -> list[Violation]:
    """Evaluate every check over the rows the plan sends, in one pass; sample keys of the failures."""
    found = checks(plan, target, dialect, charsets, planner.flavour)
    if not found:
        return []
    counts = planner.count_where(plan, [check.condition for check in found])
    return [
        Violation(
            plan.spec.table,
            check.column,
            check.problem,
            n,
            tuple(planner.keys_where(plan, check.condition, SAMPLE_KEYS)),
        )
        for check, n in zip(found, counts, strict=True)
        if n
    ]


def character_sets(conn: sa.Connection, table: str) -> dict[str, str]:
    """Column -> character set of a MySQL table (empty elsewhere)."""
    if conn.dialect.name not in ("mysql", "mariadb"):
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND CHARACTER_SET_NAME IS NOT NULL"
        ),
        {"t": table},
    ).all()
    return dict(rows)
