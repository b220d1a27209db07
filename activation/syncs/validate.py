"""Values a destination cannot store exactly, found in the warehouse before anything is written.

A destination meeting such a value mid-load either refuses the whole statement with a message that
names no row, or (MySQL's LOAD DATA LOCAL, non-strict modes, SQLite) quietly stores something
else: NaN becomes NULL, 10^20 is clipped, year 0 becomes 0000-00-00, an emoji becomes '?'. So
each destination column gets a condition over the mart rows about to be sent (`Check`, written by
the destination: activation.destinations.sql.values for SQL databases), evaluated in the
warehouse in one pass (its `SqlFlavour.value_checks` spell the functions); a violation names the
table, the column, the count and sample keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from activation.syncs.model import Plan
from activation.syncs.problems import FIX_VALUE, Problem
from activation.warehouses.base import Warehouse

SAMPLE_KEYS = 5


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
    condition: str  # the check's SQL: rows matching it can be set aside as rejects

    def __str__(self) -> str:
        keys = ", ".join(repr(k) for k in self.keys)
        return f"{self.table}.{self.column}: {self.rows:,} row(s) {self.problem} (key {keys})"

    def as_problem(self, spec, fix: str = FIX_VALUE) -> Problem:
        fix = "convert the column to utf8mb4" if "utf8mb3" in self.problem else fix
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


def violations(planner: Warehouse, plan: Plan, checks: Sequence[Check]) -> list[Violation]:
    """Evaluate every check over the rows the plan sends, in one pass; sample keys of the failures."""
    if not checks:
        return []
    counts = planner.count_where(plan, [check.condition for check in checks])
    return [
        Violation(
            plan.spec.table,
            check.column,
            check.problem,
            n,
            tuple(planner.keys_where(plan, check.condition, SAMPLE_KEYS)),
            check.condition,
        )
        for check, n in zip(checks, counts, strict=True)
        if n
    ]
