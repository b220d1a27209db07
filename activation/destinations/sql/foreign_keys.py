"""A foreign-key violation the destination raised, explained: the table, the foreign key and
sample keys, so that a person knows which rows and which run order to fix.

SQLite says only 'FOREIGN KEY constraint failed'; MariaDB (1451/1452) and PostgreSQL (23503)
name the constraint and at most one value (each dialect tells a violation:
`SqlDialect.is_foreign_key_violation`). So the rows are found by query, inside the write's own
transaction (the caller keeps it usable), over every foreign key that could have refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

SAMPLE = 5


def all_foreign_keys(conn: sa.Connection) -> dict[str, list[dict]]:
    """Every foreign key in the destination schema, by constrained table."""
    inspector = sa.inspect(conn)
    out: dict[str, list[dict]] = {}
    for (_schema, table), fks in inspector.get_multi_foreign_keys().items():
        out[table] = list(fks)
    return out


def _reflect(conn: sa.Connection, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def _describe(fk: dict, child: str) -> str:
    cols, refs = ", ".join(fk["constrained_columns"]), ", ".join(fk["referred_columns"])
    name = f" ({fk['name']})" if fk.get("name") else ""
    return f"{child}({cols}) -> {fk['referred_table']}({refs}){name}"


def _samples(conn: sa.Connection, table: sa.FromClause, key: Sequence[str], fk: dict, where) -> tuple[int, str]:
    """How many rows of `table` meet `where`, and the first few as `key=... (fk=...)`."""
    count = conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
    if not count:
        return 0, ""
    shown = [table.c[c] for c in key] + [table.c[c] for c in fk["constrained_columns"] if c not in key]
    rows = conn.execute(sa.select(*shown).where(where).order_by(*[table.c[c] for c in key]).limit(SAMPLE)).all()
    names = [c.name for c in shown]

    def one(row) -> str:
        keys = ", ".join(f"{n}={v!r}" for n, v in zip(names[: len(key)], row[: len(key)], strict=True))
        refs = ", ".join(f"{n}={v!r}" for n, v in zip(names[len(key) :], row[len(key) :], strict=True))
        return f"{keys} ({refs})" if refs else keys

    return count, "; ".join(one(r) for r in rows)


def _pointing_at(child: sa.FromClause, fk: dict, parent: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(
        *[parent.c[r] == child.c[c] for c, r in zip(fk["constrained_columns"], fk["referred_columns"], strict=True)]
    )


def orphans(conn: sa.Connection, table: str, sent: sa.Table, key: Sequence[str], fks: Sequence[dict]) -> list[str]:
    """Rows being written into `table` (staged in `sent`) whose foreign-key value has no parent row."""
    problems = []
    for fk in fks:
        parent = _reflect(conn, fk["referred_table"])
        set_ = sa.and_(*[sent.c[c].is_not(None) for c in fk["constrained_columns"]])
        count, shown = _samples(conn, sent, key, fk, sa.and_(set_, ~sa.exists().where(_pointing_at(sent, fk, parent))))
        if count:
            problems.append(
                f"foreign key {_describe(fk, table)}: {count:,} row(s) to write point at no {fk['referred_table']} "
                f"row, e.g. {shown}"
            )
    return problems


def still_referenced(
    conn: sa.Connection, parent: sa.Table, leaving: sa.ColumnElement[bool], fks: dict[str, list[dict]]
) -> list[str]:
    """Rows of other tables that point at the rows of `parent` that meet `leaving` (being deleted)."""
    problems = []
    for name, table_fks in sorted(fks.items()):
        for fk in table_fks:
            if fk["referred_table"] != parent.name:
                continue
            child = _reflect(conn, name)
            if name == parent.name:
                child = child.alias("activation_child")
            key = [c.name for c in child.primary_key.columns] or list(fk["constrained_columns"])
            where = sa.exists().where(_pointing_at(child, fk, parent), leaving)
            count, shown = _samples(conn, child, key, fk, where)
            if count:
                problems.append(
                    f"foreign key {_describe(fk, name)}: rows leaving {parent.name} are still referenced by "
                    f"{count:,} {name} row(s), e.g. {shown}"
                )
    return problems
