"""The environment switch and the BigQuery resource, without a server."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pyarrow as pa
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from activation.orchestration.bigquery import BigQueryWarehouse
from activation.orchestration.resources import DuckDBWarehouse, warehouse_resource
from activation.settings import Settings
from activation.syncs.spec import SyncConfigError
from activation.warehouses.bigquery import arrow_type

pytestmark = pytest.mark.bigquery


def test_the_dbt_target_picks_the_warehouse(monkeypatch):
    local = Settings.from_env()
    assert isinstance(warehouse_resource(dataclasses.replace(local, dbt_target="local")), DuckDBWarehouse)

    bigquery_settings = dataclasses.replace(local, dbt_target="bigquery")
    monkeypatch.delenv("ACTIVATION_BQ_PROJECT", raising=False)
    with pytest.raises(SyncConfigError, match="ACTIVATION_BQ_PROJECT"):
        warehouse_resource(bigquery_settings)

    monkeypatch.setenv("ACTIVATION_BQ_PROJECT", "my-project")
    monkeypatch.setenv("ACTIVATION_BQ_KEYFILE", "/secrets/key.json")
    monkeypatch.setenv("ACTIVATION_BQ_STATE_DATASET", "sync_state")
    resource = warehouse_resource(bigquery_settings)
    assert isinstance(resource, BigQueryWarehouse)
    # Project and key file stay environment variables: their values never reach the UI.
    assert isinstance(resource.project, dg.EnvVar) and isinstance(resource.keyfile, dg.EnvVar)
    assert resource.state_dataset == "sync_state" and not resource.emulator


def test_an_http_endpoint_is_an_emulator_with_anonymous_credentials():
    resource = BigQueryWarehouse(project="local-project", api_endpoint="http://127.0.0.1:9050")
    with resource.get_client() as client:
        assert isinstance(client._credentials, AnonymousCredentials)
        assert client._connection.API_BASE_URL == "http://127.0.0.1:9050"
    assert resource.storage_client() is None, "no Storage Read endpoint given: REST pages"
    assert BigQueryWarehouse(project="p", read_api="rest").storage_client() is None


def test_bigquery_types_map_to_arrow_types_the_destination_ddl_understands():
    def field(kind, **kw):
        return arrow_type(bigquery.SchemaField("c", kind, **kw))

    assert field("NUMERIC", precision=18, scale=2) == pa.decimal128(18, 2)
    assert field("NUMERIC") == pa.decimal128(38, 9)
    assert field("DATETIME") == pa.timestamp("us")
    assert field("TIMESTAMP") == pa.timestamp("us", tz="UTC")
    assert field("INTEGER") == pa.int64() and field("FLOAT") == pa.float64() and field("BOOLEAN") == pa.bool_()
    assert field("DATE") == pa.date32() and field("STRING") == pa.string() and field("BYTES") == pa.binary()
