"""The translator derives a sync's asset and checks from what its destination declares (kind,
capabilities), never from its name: an API object is one more case, and a destination that
cannot read back has no read-back checks, saying so."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import dagster as dg
import pytest

from activation.destinations.base import Capabilities
from activation.destinations.sql import sql_dialect
from activation.orchestration.assets import build_sync_assets
from activation.orchestration.resources import DuckDBWarehouse, SQLDestination
from activation.orchestration.translator import Mart, SyncTranslator
from activation.syncs import outcome as checks
from activation.syncs.model import MartRelation
from activation.syncs.spec import SyncConfig
from tests.databases import sqlite_database
from tests.reliability.support import make_mart
from tests.syncs.test_load import items_config

# what each SQL dialect declares it can do (destinations/sql/<dialect>.py)
SQL_CAPABILITIES = {d.kind: d.capabilities for d in map(sql_dialect, ("mysql://", "postgresql://", "sqlite://"))}

EVERY_CHECK = {
    checks.KEYS,
    checks.FITS,
    checks.GUARDS,
    checks.ROW_COUNT,
    checks.CHECKSUM,
    checks.ORPHANS,
    checks.REJECTS,
}
API = Capabilities(
    transactions=False,
    transactional_ddl=False,
    atomic_swap=False,
    advisory_locks=False,
    temporary_tables=False,
    read_back=False,
    count=True,
)


@dataclass(frozen=True)
class Declared:
    """A destination as the translator sees it: what it declares, nothing else."""

    kind: str
    capabilities: Capabilities


def scores_config(destination: str, table: str) -> SyncConfig:
    """Scores synced into `table`, with a foreign key to owners: every check applies to it."""
    common = {"destination": destination, "mode": "mirror"}
    return SyncConfig.model_validate(
        {
            "destinations": {destination: {"url_env": "UNUSED_URL"}},
            "syncs": {
                "owners": {"source": "owners", "table": "Owner", "primary_key": "owner_id", **common},
                "scores": {
                    "source": "scores",
                    "table": table,
                    "primary_key": "account_id",
                    "foreign_keys": {"owner_id": "Owner.owner_id"},
                    **common,
                },
            },
        }
    )


def marts(*names: str) -> dict[str, Mart]:
    return {n: Mart(dg.AssetKey(n), MartRelation("main", n)) for n in names}


def check_names(translator: SyncTranslator, sync) -> set[str]:
    return {spec.name for spec in translator.get_check_specs(sync)}


@pytest.mark.parametrize("kind", sorted(SQL_CAPABILITIES))
def test_a_sql_destination_declares_every_check(kind):
    config = scores_config("app", "scores")
    translator = SyncTranslator(config, marts("owners", "scores"), {"app": Declared(kind, SQL_CAPABILITIES[kind])})
    scores = config.syncs["scores"]
    assert check_names(translator, scores) == EVERY_CHECK
    assert "checks_not_possible" not in translator.get_metadata(scores)


def test_an_api_object_is_one_more_case_driven_by_its_kind_and_capabilities():
    config = scores_config("salesforce", "Account")
    translator = SyncTranslator(config, marts("owners", "scores"), {"salesforce": Declared("salesforce", API)})
    account = config.syncs["scores"]
    spec = translator.get_asset_spec(account)
    assert spec.key == dg.AssetKey(["salesforce", "Account"])
    assert spec.kinds == {"salesforce"}
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("scores"), dg.AssetKey(["salesforce", "Owner"])}
    # It counts its records through the API, but cannot read them back.
    assert check_names(translator, account) == EVERY_CHECK - {checks.CHECKSUM, checks.ORPHANS}
    said = spec.metadata["checks_not_possible"].value
    assert "content_matches_mart" in said and "no_orphaned_foreign_keys" in said
    assert "the salesforce destination cannot read its rows back" in said

    blind = SyncTranslator(
        config,
        marts("owners", "scores"),
        {"salesforce": Declared("salesforce", dataclasses.replace(API, count=False))},
    )
    assert check_names(blind, account) == {checks.KEYS, checks.FITS, checks.GUARDS, checks.REJECTS}
    assert "cannot count its records" in blind.get_asset_spec(account).metadata["checks_not_possible"].value


class CannotReadBack(SQLDestination):
    """A SQL database used as a destination that declares no read-back (as an API might)."""

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, read_back=False, count=False)


def test_a_run_on_a_destination_that_cannot_read_back_runs_only_the_checks_it_declares(tmp_path):
    duck = tmp_path / "warehouse.duckdb"
    make_mart(duck, 1_000)
    config = items_config()
    with sqlite_database(tmp_path) as url:
        destination = CannotReadBack(url=url)
        translator = SyncTranslator(config, marts("items"), {"app": destination})
        result = dg.materialize(
            build_sync_assets(translator),
            resources={"app_db": destination, "warehouse": DuckDBWarehouse(path=str(duck))},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        evaluated = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert evaluated == {checks.KEYS: True, checks.FITS: True, checks.GUARDS: True, checks.REJECTS: True}
        (materialized,) = result.get_asset_materialization_events()
        assert materialized.materialization.metadata["rows_inserted"].value == 1_000
