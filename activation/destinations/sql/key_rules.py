"""How a destination compares the values of one text column, and the SQL that compares two column
lists under those rules and byte for byte (activation.destinations.sql.collisions asks the questions).

Each dialect reads the rules from its own catalog (`SqlDialect.key_rules`): MySQL/MariaDB the
column's collation, PostgreSQL `citext` or a nondeterministic collation, SQLite the collating
function in the table's CREATE statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from activation.destinations.sql.dialect import quoted

if TYPE_CHECKING:
    from activation.destinations.sql.dialect import SqlDialect


@dataclass(frozen=True)
class Rule:
    """How the destination compares one text column."""

    column: str
    loose: bool  # byte-different values can be equal
    describe: str  # "collation utf8mb4_general_ci", "type citext", "COLLATE NOCASE"
    collation: str | None = None  # MySQL / PostgreSQL collation, SQLite collating function
    charset: str | None = None  # MySQL
    citext: bool = False
    trailing_spaces_only: bool = False  # a binary PAD SPACE collation


def same_bytes(dialect: SqlDialect, rule: Rule | None, a: str, b: str) -> str:
    return f"{dialect.as_bytes(rule, a)} = {dialect.as_bytes(rule, b)}"


def pairs(
    dialect: SqlDialect,
    conn: sa.Connection,
    rules: dict[str, Rule],
    left: str,
    lcols: Sequence[str],
    right: str,
    rcols: Sequence[str],
) -> tuple[str, str]:
    """(same key, same bytes) SQL for column lists `lcols` of `left` against `rcols` of `right`,
    under the rules of the right-hand columns."""
    keys, exact = [], []
    for lc, rc in zip(lcols, rcols, strict=True):
        rule = rules.get(rc)
        a, b = f"{left}.{quoted(conn, lc)}", f"{right}.{quoted(conn, rc)}"
        keys.append(dialect.same_key(rule, a, b))
        if rule is not None and rule.loose:
            exact.append(same_bytes(dialect, rule, a, b))
    return " AND ".join(keys), " AND ".join(exact) or "1 = 1"
