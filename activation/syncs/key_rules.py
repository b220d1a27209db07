"""How a destination compares the values of one text column, read from its catalog, and the SQL
that compares under those rules or byte for byte (activation.syncs.collisions asks the questions).

- MySQL/MariaDB: the column's collation (information_schema). `_ci`, `_ai` and `unicode_ci`
  collations ignore case or accents; every PAD SPACE collation (all but `*_nopad_*` and
  `utf8mb4_0900_*`), `utf8mb4_bin` included, ignores trailing spaces. The server itself is asked
  whether a collation pads.
- PostgreSQL: `citext`, or a nondeterministic collation (pg_attribute, pg_collation).
- SQLite: the collating function in the table's CREATE statement (`NOCASE`, `RTRIM`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from activation.syncs.bulk import quoted


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


# -- what the destination says about its columns ------------------------------------------------


def rules(conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
    """Column -> comparison rule for the text columns among `columns`, read from the catalog."""
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        return _mysql_rules(conn, table, columns)
    if dialect == "postgresql":
        return _postgres_rules(conn, table, columns)
    if dialect == "sqlite":
        return _sqlite_rules(conn, table, columns)
    return {}


def _mysql_rules(conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
    rows = conn.execute(
        sa.text(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLLATION_NAME IS NOT NULL"
        ),
        {"t": table},
    ).all()
    found = {}
    for column, charset, collation in rows:
        if column not in columns:
            continue
        pads = bool(
            conn.execute(
                sa.text(f"SELECT CONVERT('a' USING {charset}) COLLATE {collation} = CONVERT('a ' USING {charset})")
            ).scalar()
        )
        binary = collation.lower().endswith("_bin")
        found[column] = Rule(
            column,
            loose=pads or not binary,
            describe=f"collation {collation}" + (" (PAD SPACE: trailing spaces ignored)" if pads and binary else ""),
            collation=collation,
            charset=charset,
            trailing_spaces_only=pads and binary,
        )
    return found


def _postgres_rules(conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, t.typname, c.collname, c.collisdeterministic FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_collation c ON c.oid = a.attcollation "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped "
            "AND a.attcollation <> 0"
        ),
        {"t": quoted(conn, table)},
    ).all()
    found = {}
    for column, type_name, collation, deterministic in rows:
        if column not in columns:
            continue
        citext = type_name == "citext"
        nondeterministic = deterministic is False
        found[column] = Rule(
            column,
            loose=citext or nondeterministic,
            describe="type citext"
            if citext
            else f"collation {collation}" + (" (nondeterministic)" if nondeterministic else ""),
            collation=collation,
            citext=citext,
        )
    return found


def _sqlite_rules(conn: sa.Connection, table: str, columns: Sequence[str]) -> dict[str, Rule]:
    """SQLite keeps a column's collating function only in the table's CREATE statement."""
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar()
    found = {}
    for name, collation in _sqlite_collations(sql or "").items():
        if name in columns and collation.upper() != "BINARY":
            found[name] = Rule(name, loose=True, describe=f"COLLATE {collation.upper()}", collation=collation.upper())
    return found


def _sqlite_collations(create_sql: str) -> dict[str, str]:
    """Column -> collating function named in a CREATE TABLE statement (column definitions and
    a table-level PRIMARY KEY (col COLLATE x))."""
    body = create_sql[create_sql.find("(") + 1 : create_sql.rfind(")")]
    parts, depth, current = [], 0, ""
    for char in body:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    unquote = re.compile(r'^\s*(?:"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|(\w+))')
    collate = re.compile(r'COLLATE\s+"?(\w+)"?', re.IGNORECASE)
    found: dict[str, str] = {}
    for part in parts:
        if re.match(r"\s*(PRIMARY\s+KEY|UNIQUE)\s*\(", part, re.IGNORECASE):
            inner = part[part.find("(") + 1 : part.rfind(")")]
            for item in inner.split(","):
                m, c = unquote.match(item), collate.search(item)
                if m and c:
                    found[next(g for g in m.groups() if g).replace('""', '"')] = c.group(1)
            continue
        if re.match(r"\s*(CONSTRAINT|FOREIGN|CHECK)\b", part, re.IGNORECASE):
            continue
        m, c = unquote.match(part), collate.search(part)
        if m and c:
            found.setdefault(next(g for g in m.groups() if g).replace('""', '"'), c.group(1))
    return found


# -- comparisons, spelled for each database ----------------------------------------------------


def same_key(conn: sa.Connection, rule: Rule | None, value: str, key: str) -> str:
    """`value` equals the destination column `key` under the column's own rules (an index on
    `key` stays usable)."""
    if rule is None:
        return f"{value} = {key}"
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        return f"CONVERT({value} USING {rule.charset}) COLLATE {rule.collation} = {key}"
    if dialect == "postgresql":
        if rule.citext:
            return f"CAST({value} AS citext) = {key}"
        return f'{value} COLLATE "{rule.collation}" = {key}'
    if dialect == "sqlite":
        return f"{key} = {value} COLLATE {rule.collation}" if rule.loose else f"{key} = {value} COLLATE BINARY"
    return f"{value} = {key}"


def as_bytes(conn: sa.Connection, rule: Rule | None, value: str) -> str:
    """`value` in a form that compares and sorts byte for byte."""
    if rule is None:
        return value
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        return f"CAST(CONVERT({value} USING utf8mb4) AS BINARY)"
    if dialect == "postgresql":
        return f'CAST({value} AS TEXT) COLLATE "C"'
    if dialect == "sqlite":
        return f"{value} COLLATE BINARY"
    return value


def same_bytes(conn: sa.Connection, rule: Rule | None, a: str, b: str) -> str:
    return f"{as_bytes(conn, rule, a)} = {as_bytes(conn, rule, b)}"


def pairs(conn, rules_: dict[str, Rule], left: str, lcols: Sequence[str], right: str, rcols: Sequence[str]):
    """(same key, same bytes) SQL for column lists `lcols` of `left` against `rcols` of `right`,
    under the rules of the right-hand columns."""
    q = lambda c: quoted(conn, c)  # noqa: E731
    keys, exact = [], []
    for lc, rc in zip(lcols, rcols, strict=True):
        rule = rules_.get(rc)
        a, b = f"{left}.{q(lc)}", f"{right}.{q(rc)}"
        keys.append(same_key(conn, rule, a, b))
        if rule is not None and rule.loose:
            exact.append(same_bytes(conn, rule, a, b))
    return " AND ".join(keys), " AND ".join(exact) or "1 = 1"
