"""What another build of the project (a pull request's dbt target) would do to every destination,
read against the production sync state: `activation plan --against <build>` prints it, the
`review_pull_request` job records it on the destination assets.

Read-only end to end: the other build's marts are read on a read-only connection, the
production state from a throwaway copy (DuckDB) and only by SELECTs, the destinations not at
all (CI holds no destination credentials): rows they would refuse are found against the table as
the last real sync described it (`destination_schemas`). Exit 3 when a sync would be refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from activation.sync_project import Project, ProjectError


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.exists():
        raise ProjectError(f"{folder} has no manifest.json; give the dbt target folder of the build (--target-path)")
    return json.loads(path.read_text(encoding="utf-8"))


def changed_models(base: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, str]]:
    """(model, modified | added | removed): the models whose SQL differs between the two manifests."""

    def models(manifest: dict[str, Any]) -> dict[str, str]:
        return {
            n["name"]: n.get("checksum", {}).get("checksum", "")
            for n in manifest["nodes"].values()
            if n["resource_type"] in ("model", "snapshot", "seed")
        }

    a, b = models(base), models(other)
    found = [(m, "modified") for m in sorted(a.keys() & b.keys()) if a[m] != b[m]]
    found += [(m, "added") for m in sorted(b.keys() - a.keys())]
    return found + [(m, "removed") for m in sorted(a.keys() - b.keys())]


@contextmanager
def _reader(project: Project, against_warehouse: Path | None, destination: str, identity: str) -> Iterator:
    """The warehouse the review reads: the other build's marts and the production state, read-only."""
    if project.settings.warehouse != "bigquery":
        with _duckdb_reader(project, against_warehouse, destination, identity) as wh:
            yield wh
        return
    from activation.orchestration.resources import warehouse_resource

    # BigQuery: the other build's marts are in its own datasets (its manifest names them), the state
    # in the production state dataset, read by SELECTs only (a dry run makes no table there)
    warehouse = warehouse_resource(project.settings).process_config_and_initialize()  # its EnvVars resolved
    with warehouse.open(destination, identity, dry_run=True, log=lambda _: None) as wh:
        yield wh


@contextmanager
def _duckdb_reader(project: Project, against_warehouse: Path | None, destination: str, identity: str) -> Iterator:
    """The other build's marts on a read-only connection, with a throwaway copy of the production
    state of `destination` attached (copying is the only way DuckDB attaches a file it may not lock)."""
    from activation.orchestration.resources import DuckDBWarehouse
    from activation.warehouses.duckdb import DuckDB, throwaway_state

    production = project.settings.warehouse_path
    state = production.parent / "activation_state" / f"{destination}.duckdb"
    marts = against_warehouse or production
    if not marts.exists():
        raise ProjectError(f"warehouse {marts} does not exist; build the pull request's dbt target into it")
    with DuckDBWarehouse(path=str(marts)).connect() as con, throwaway_state(state) as copy:
        yield DuckDB(con, copy, identity, dry_run=True)


def review_build(
    project: Project,
    specs: Sequence,
    against: Path,
    *,
    against_warehouse: Path | None = None,
    base_manifest: Path | None = None,
    sample: int = 3,
):
    """The Review of the build in the dbt target folder `against` (see module docstring)."""
    from activation.destinations.review import review_sync
    from activation.orchestration.dbt import model_relation
    from activation.syncs.masking import with_dbt_masks
    from activation.syncs.model import MartRelation
    from activation.syncs.review import ModelChange, Review
    from activation.syncs.spec import load_sync_config

    other = read_manifest(against)
    base = read_manifest(base_manifest) if base_manifest else project.manifest
    config = with_dbt_masks(load_sync_config(project.settings.syncs_file), other)  # the build's own masks
    chosen = [config.syncs[s.name] for s in specs]
    changes = changed_models(base, other)
    feeds = _feeds(project, config, other, against, against_warehouse, [m for m, c in changes if c != "removed"])
    reviews = []
    for destination in dict.fromkeys(s.destination for s in chosen):
        identity = _identity(project, destination)
        with _reader(project, against_warehouse, destination, identity) as wh:
            for spec in [s for s in chosen if s.destination == destination]:
                relation = model_relation(other, spec.source)
                review = review_sync(wh, spec, MartRelation(*relation) if relation else None, sample=sample)
                fed = _table(spec, config.destinations[destination].is_api)
                review.models = sorted(m for m, cols in feeds.items() if any(c.startswith(fed) for c in cols))
                reviews.append(review)
    models = [ModelChange(m, c, tuple(sorted(feeds.get(m, ())))) for m, c in changes]
    return Review(
        against=str(against), base=str(base_manifest or "the project's manifest"), syncs=reviews, models=models
    )


def _identity(project: Project, destination: str) -> str:
    """Which destination the state belongs to (a URL without its password is enough)."""
    if project.config.destinations[destination].is_api:
        return project.destination_resource(destination).identity
    from activation.destinations.urls import destination_identity

    return destination_identity(project.destination_url(destination))


def _table(spec, api: bool) -> str:
    """How the lineage names the sync's columns (activation.lineage._destination_column)."""
    return f"{spec.destination}/{spec.table}." if api else f"{spec.destination}.{spec.table.lower()}."


def _feeds(project, config, manifest, against: Path, against_warehouse: Path | None, models: list[str]):
    """model -> the destination columns it feeds, from the other build's column lineage (the
    `impact` path); empty when the build left no compiled SQL."""
    import duckdb

    from activation.lineage import build_lineage

    compiled = against / "compiled"
    if not models or not compiled.is_dir():
        return {m: set() for m in models}
    # the columns of `SELECT *` come from the warehouse's catalog: DuckDB's file; on BigQuery the
    # compiled SQL and the manifest alone (an empty catalog)
    path = (
        ":memory:"
        if project.settings.warehouse == "bigquery"
        else str(against_warehouse or project.settings.warehouse_path)
    )
    with duckdb.connect(path, read_only=path != ":memory:") as con:
        graph = build_lineage(manifest, compiled, con, config)
    out: dict[str, set[str]] = {}
    for model in models:
        columns = [c for c in graph.columns if c.kind == "model" and c.table == model]
        out[model] = {str(d) for c in columns for d in graph.impact(str(c))}
    return out
