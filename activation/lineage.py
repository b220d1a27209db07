"""Column lineage from raw source columns through dbt to the destination columns the syncs write.

dbt's part is computed as dagster-dbt computes `dagster/column_lineage` for the UI: sqlglot
resolves each output column of a model's compiled SQL to the columns of its parents, with the
parents' real column lists read from the warehouse. The syncs add the last hop: destination
column -> mart column, from `syncs.yml` (a table's column reads `app.facilities.city`; a field of
an API object is named like its asset, `salesforce/Account.LTV__c`, in the API's own spelling).
`impact` walks the graph downstream ("what in the app changes if this Salesforce field changes"),
`upstream` walks it back to the raw fields.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import MappingSchema, exp, parse_one
from sqlglot.lineage import lineage
from sqlglot.optimizer import optimize

from activation.syncs.spec import SyncConfig


@dataclass(frozen=True, order=True)
class Column:
    """One column of one table: a raw source, a dbt model, or a destination table."""

    kind: str  # source | model | destination
    table: str  # `salesforce.account` (source_name.table) | model name | `app.facilities` | `salesforce/Account`
    column: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


class LineageError(ValueError):
    """A column reference that names nothing in the project."""


@dataclass
class LineageGraph:
    parents: dict[Column, set[Column]] = field(default_factory=lambda: defaultdict(set))
    children: dict[Column, set[Column]] = field(default_factory=lambda: defaultdict(set))
    aliases: dict[str, str] = field(default_factory=dict)  # `raw_salesforce.account` -> `salesforce.account`
    columns: set[Column] = field(default_factory=set)

    def add(self, child: Column, parent: Column) -> None:
        self.parents[child].add(parent)
        self.children[parent].add(child)
        self.columns.update((child, parent))

    def resolve(self, reference: str) -> list[Column]:
        """`salesforce.account.billing_city`, `raw_salesforce.account.name`, `app_facilities.city`
        or `app.facilities.city`. Case, and underscores in the column name, are forgiven
        (`billingcity` finds `billing_city`), as long as only one column matches."""
        table, _, column = reference.strip().lower().rpartition(".")
        if not table:
            raise LineageError(f"{reference!r}: give table.column, e.g. salesforce.account.billing_city")
        table = self.aliases.get(table, table)
        in_table = [c for c in self.columns if c.table.lower() == table]
        if not in_table:
            raise LineageError(f"{reference!r}: no source, model or destination table {table!r}")
        exact = [c for c in in_table if c.column.lower() == column]
        if exact:
            return exact
        loose = [c for c in in_table if c.column.lower().replace("_", "") == column.replace("_", "")]
        if not loose:
            known = ", ".join(sorted({c.column for c in in_table}))
            raise LineageError(f"{reference!r}: {table} has no column {column!r} (it has {known})")
        return loose

    def _walk(self, start: Iterable[Column], edges: Mapping[Column, set[Column]]) -> dict[Column, list[Column]]:
        """Every column reachable from `start`, each with one shortest path to it."""
        paths: dict[Column, list[Column]] = {c: [c] for c in start}
        queue = deque(paths)
        while queue:
            here = queue.popleft()
            for nxt in sorted(edges.get(here, ())):
                if nxt not in paths:
                    paths[nxt] = [*paths[here], nxt]
                    queue.append(nxt)
        return paths

    def impact(self, reference: str) -> dict[Column, list[Column]]:
        """The destination columns that depend on a column, each with the path through dbt."""
        reached = self._walk(self.resolve(reference), self.children)
        return {c: p for c, p in sorted(reached.items()) if c.kind == "destination"}

    def upstream(self, reference: str) -> dict[Column, list[Column]]:
        """The raw source columns a column is computed from, each with the path back through dbt."""
        reached = self._walk(self.resolve(reference), self.parents)
        return {c: p for c, p in sorted(reached.items()) if c.kind == "source"}


def _node_column(node: Mapping[str, Any], column: str) -> Column:
    if node["resource_type"] == "source":
        return Column("source", f"{node['source_name']}.{node['name']}", column.lower())
    return Column("model", node["name"], column.lower())


def _relation(node: Mapping[str, Any]) -> tuple[str, str]:
    """(schema, identifier) as the warehouse names it; the catalog is left out on purpose, as
    it is the DuckDB file's name, which differs between copies of one warehouse."""
    return node["schema"], node.get("identifier") or node.get("alias") or node["name"]


def _warehouse_columns(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, str]]:
    out: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    rows = con.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall()
    for schema, table, column, type_ in rows:
        out[(schema, table)][column] = type_
    return out


def _strip_catalogs(tree: exp.Expression) -> exp.Expression:
    for table in tree.find_all(exp.Table):
        table.set("catalog", None)
    return tree


def dbt_column_edges(
    manifest: Mapping[str, Any], compiled_dir: Path, con: duckdb.DuckDBPyConnection
) -> list[tuple[Column, Column]]:
    """(child column, parent column) for every model column whose compiled SQL sqlglot can trace."""
    dialect = manifest["metadata"]["adapter_type"]
    columns = _warehouse_columns(con)
    nodes = {**manifest["nodes"], **manifest["sources"]}
    edges: list[tuple[Column, Column]] = []
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] not in ("model", "snapshot"):
            continue
        sql_path = compiled_dir / node["package_name"] / node["original_file_path"]
        own = columns.get(_relation(node))
        if not sql_path.exists() or not own:
            continue
        schema = MappingSchema(dialect=dialect)
        parents: dict[tuple[str, str], Mapping[str, Any]] = {}
        for parent_id in [*manifest["parent_map"].get(uid, []), uid]:
            parent = nodes.get(parent_id)
            if parent is None or parent["resource_type"] not in ("model", "source", "seed", "snapshot"):
                continue
            relation = _relation(parent)
            if relation in columns:
                schema.add_table(exp.table_(relation[1], db=relation[0]), columns[relation], dialect=dialect)
                if parent_id != uid:
                    parents[(relation[0].lower(), relation[1].lower())] = parent
        tree = _strip_catalogs(parse_one(sql_path.read_text(encoding="utf-8"), dialect=dialect))
        optimized = optimize(tree, schema=schema, dialect=dialect)
        sql = optimized.sql(dialect=dialect)  # re-parsed by lineage(); see dagster-dbt's note on sqlglot 28
        for name in optimized.named_selects:
            if name.lower() not in {c.lower() for c in own}:
                continue
            for leaf in lineage(column=name, sql=sql, schema=schema, dialect=dialect).walk():
                if leaf.downstream:
                    continue
                table = leaf.expression.find(exp.Table)
                if table is None:
                    continue
                parent = parents.get((table.db.lower(), table.name.lower()))
                if parent is not None:
                    edges.append((_node_column(node, name), _node_column(parent, exp.to_column(leaf.name).name)))
    return edges


def _destination_column(destination: str, table: str, column: str, api: bool) -> Column:
    """An API field as `salesforce/Account.Name` (as its asset), a table column as `app.facilities.name`."""
    if api:
        return Column("destination", f"{destination}/{table}", column)
    return Column("destination", f"{destination}.{table}", column.lower())


def build_lineage(
    manifest: Mapping[str, Any], compiled_dir: Path, con: duckdb.DuckDBPyConnection, config: SyncConfig
) -> LineageGraph:
    """The whole graph: raw sources -> dbt models -> destination tables."""
    graph = LineageGraph()
    for child, parent in dbt_column_edges(manifest, compiled_dir, con):
        graph.add(child, parent)
    for source in manifest["sources"].values():
        graph.aliases[f"{source['schema']}.{source['identifier']}".lower()] = (
            f"{source['source_name']}.{source['name']}"
        )
        graph.aliases[f"{source['source_name']}.{source['name']}".lower()] = f"{source['source_name']}.{source['name']}"
    warehouse = _warehouse_columns(con)
    by_name = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot", "seed")}
    for sync in config.syncs.values():
        mart = by_name.get(sync.source)
        mart_columns = list(warehouse.get(_relation(mart), {})) if mart else []
        pairs = sync.columns.items() if sync.columns else ((c, c) for c in mart_columns)
        api = not config.destinations[sync.destination].type == "sql"  # named like an object: <destination>/<table>
        for dest, src in pairs:
            if sync.mask.get(src) == "drop":  # never leaves the warehouse
                continue
            target = _destination_column(sync.destination, sync.table, dest, api)
            graph.add(target, Column("model", sync.source, src.lower()))
        for fk in sync.parsed_foreign_keys:  # a child's link follows its parent's key (a lookup, a foreign key)
            graph.add(
                _destination_column(sync.destination, sync.table, fk.column, api),
                _destination_column(sync.destination, fk.references_table, fk.references_column, api),
            )
    for source in manifest["sources"].values():  # raw columns nothing reads still resolve
        for column in warehouse.get(_relation(source), {}):
            graph.columns.add(_node_column(source, column))
    return graph
