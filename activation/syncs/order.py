"""The order a run writes its tables in: parents before the tables that reference them (and so
children's deletes before their parents'). Any destination with references between its objects
orders them so."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from activation.syncs.results import SyncError


def parents_first(tables: Sequence[str], parents: Mapping[str, Iterable[str]]) -> list[str]:
    """`tables` with every table after the tables among them it references; a cycle is refused."""
    chosen = set(tables)
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(table: str, path: list[str]) -> None:
        if state.get(table) == "done":
            return
        if state.get(table) == "visiting":
            raise SyncError(f"destination foreign keys form a cycle: {' -> '.join([*path, table])}")
        state[table] = "visiting"
        for parent in sorted(parents.get(table, ())):
            if parent in chosen and parent != table:
                visit(parent, [*path, table])
        state[table] = "done"
        ordered.append(table)

    for table in tables:
        visit(table, [])
    return ordered
