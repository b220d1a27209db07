"""BigQuery as the warehouse: its SQL flavour, and the state in a bookkeeping dataset.

Per sync, a state table `<sync>__state` in the bookkeeping dataset keeps (key, row hash); the
row hash is `FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(<value columns>)))`. `store_state` is one
`CREATE OR REPLACE TABLE` that also records a digest of the sync's signature in the table's
description, so state and signature change together or not at all. History tables
(`sync_runs`, `sync_changes`, `sync_rejects`) live in the same dataset.

Work tables are tables of that dataset named per run (two runs of a sync never share one) that
expire after a day, so a killed run leaves nothing behind for long. Rows leave as Arrow record
batches: a query's result is written to a work table, then read through the Storage Read API
(or REST pages when it is unavailable).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pyarrow as pa
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from activation.syncs.model import MartRelation, Plan, PlanError
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.flavour import JSON, TEXT, MartColumn, SqlFlavour

_BQ_NAME = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")


def quote_bigquery(*parts: str) -> str:
    """`project`.`dataset`.`table`: every part validated, so a name can never close the quote."""
    for part in parts:
        if not _BQ_NAME.match(part):
            raise ValueError(f"{part!r} is not a valid BigQuery project, dataset, table or column name")
    return ".".join(f"`{part}`" for part in parts)


_EXPIRES = "OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"
# Types that travel as JSON text (into a JSON column) and types that travel as plain text.
_AS_JSON = {"JSON", "RECORD", "STRUCT", "RANGE"}
_AS_TEXT = {"GEOGRAPHY", "INTERVAL"}
# In the state table's description, after the signature: the token of the values kept with it
_VALUES_MARK = "; kept values "


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def arrow_type(field: bigquery.SchemaField) -> pa.DataType:
    """The Arrow type a BigQuery column is sent as (DECIMAL precision kept for the destination DDL)."""
    kind = field.field_type.upper()
    simple = {
        "STRING": pa.string(),
        "BYTES": pa.binary(),
        "INT64": pa.int64(),
        "INTEGER": pa.int64(),
        "FLOAT64": pa.float64(),
        "FLOAT": pa.float64(),
        "BOOL": pa.bool_(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
        "DATETIME": pa.timestamp("us"),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "TIME": pa.time64("us"),
    }
    if kind == "NUMERIC":
        return pa.decimal128(field.precision or 38, field.scale if field.scale is not None else 9)
    if kind == "BIGNUMERIC":
        return pa.decimal256(field.precision or 76, field.scale if field.scale is not None else 38)
    return simple.get(kind, pa.string())


def _parameter(value: Any) -> bigquery.ScalarQueryParameter:
    """A positional query parameter; naive datetimes are UTC (as the history records them)."""
    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, Decimal):
        kind = "NUMERIC"
    elif isinstance(value, dt.datetime):
        kind, value = "TIMESTAMP", value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(None, kind, value)


class BigQueryFlavour(SqlFlavour):
    name = "bigquery"
    engine = "bigquery farm_fingerprint(to_json_string) v1"
    types = {"text": "STRING", "integer": "INT64", "float": "FLOAT64", "timestamp": "TIMESTAMP"}
    value_checks = {
        "nan": "IS_NAN({c})",
        "inf": "IS_INF({c})",
        "not_finite": "FALSE",  # BigQuery dates and timestamps are always finite
        "finite": "TRUE",
        "epoch": "UNIX_SECONDS(CAST({c} AS TIMESTAMP))",
        "double": "CAST({c} AS FLOAT64)",
        "four_byte": "REGEXP_CONTAINS({c}, r'[\\x{{10000}}-\\x{{10FFFF}}]')",
        "nul": "STRPOS({c}, CODE_POINTS_TO_STRING([0])) > 0",
        "items_outside": "EXISTS (SELECT 1 FROM UNNEST(SPLIT({c}, ';')) v WHERE v NOT IN ({allowed}))",
    }

    def quote(self, name: str) -> str:
        return quote_bigquery(name)

    def row_hash(self, columns: Sequence[str]) -> str:
        if not columns:
            return "0"
        return f"FARM_FINGERPRINT(TO_JSON_STRING(STRUCT({', '.join(f'{c} AS {c}' for c in columns)})))"

    def json_text(self, expression: str) -> str:
        return f"TO_JSON_STRING({expression})"

    def sha256_hex(self, text: str) -> str:
        return f"TO_HEX(SHA256({text}))"

    def length(self, text: str) -> str:
        return f"CHAR_LENGTH({text})"

    def count_if(self, condition: str) -> str:
        return f"COUNTIF({condition})"

    def text_literal(self, value: str) -> str:
        return _literal(value)


class BigQuery(Warehouse):
    """Plans in BigQuery and streams the rows to send; the state in `state_dataset`."""

    flavour = BigQueryFlavour()

    def __init__(
        self,
        client: bigquery.Client,
        state_dataset: str,
        destination_identity: str,
        *,
        storage_client: Any = None,
        project: str | None = None,
        dry_run: bool = False,
    ):
        super().__init__(destination_identity, dry_run=dry_run)
        self.client = client
        self.project = project or client.project
        self.dataset = state_dataset
        self.storage = storage_client
        self._serial = itertools.count()
        self.run_id = uuid.uuid4().hex[:8]
        self._work: set[str] = set()  # work tables this run created and has not dropped
        self._views: set[str] = set()  # slices of marts (`filtered`)
        quote_bigquery(self.project, state_dataset)  # validate early, with a clear message
        ds = bigquery.Dataset(f"{self.project}.{state_dataset}")
        if client.location:
            ds.location = client.location
        client.create_dataset(ds, exists_ok=True)

    def _id(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        config = bigquery.QueryJobConfig(query_parameters=[_parameter(v) for v in params]) if params else None
        return [tuple(row.values()) for row in self.client.query(sql, job_config=config).result()]

    def reader(self, sql: str, schema: pa.Schema, batch_size: int) -> pa.RecordBatchReader:
        """Write the query's result to a work table, then stream it as Arrow batches of `schema`."""
        name = f"send{next(self._serial)}_{self.run_id}"
        self.query(f"CREATE OR REPLACE TABLE {quote_bigquery(self.project, self.dataset, name)} {_EXPIRES} AS {sql}")

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                rows = self.client.list_rows(self._id(name), page_size=batch_size)
                for batch in rows.to_arrow_iterable(bqstorage_client=self.storage, max_stream_count=1):
                    if batch.num_rows:
                        yield _conform(batch, schema)
            finally:
                self.client.delete_table(self._id(name), not_found_ok=True)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def relation(self, relation: MartRelation) -> str:
        return quote_bigquery(self.project, relation.schema, relation.name)

    def mart_columns(self, spec: SyncSpec, relation: MartRelation) -> dict[str, MartColumn]:
        where = f"{self.project}.{relation.schema}.{relation.name}"
        try:
            table = self.client.get_table(where)
        except NotFound as exc:
            raise PlanError(
                f"sync {spec.name}: mart {spec.source} ({where}) is not in the warehouse; build it with dbt"
            ) from exc
        columns = {}
        for field in table.schema:
            kind = field.field_type.upper()
            travels = JSON if field.mode == "REPEATED" or kind in _AS_JSON else TEXT if kind in _AS_TEXT else "value"
            columns[field.name] = MartColumn(arrow_type(field), travels)
        return columns

    def work_table(self, spec: SyncSpec, kind: str) -> str:
        return quote_bigquery(self.project, self.dataset, f"{spec.name}__{kind}_{self.run_id}")

    def create_work(self, name: str, select: str) -> None:
        self.query(f"CREATE OR REPLACE TABLE {name} {_EXPIRES} AS {select}")
        self._work.add(name)

    def drop_work(self, name: str) -> None:
        self.client.delete_table(name.replace("`", ""), not_found_ok=True)  # parts were validated: no dots
        self._work.discard(name)

    def close(self) -> None:
        """Work tables a run did not drop (a dry run's, rejects, a failed run's) go now, not in a day."""
        for name in sorted(self._work):
            self.drop_work(name)
        for view in sorted(self._views):
            self.query(f"DROP VIEW IF EXISTS {view}")
        self._views.clear()

    def bookkeeping_table(self, name: str) -> str:
        return quote_bigquery(self.project, self.dataset, name)

    def state_table(self, spec: SyncSpec) -> str:
        return self.bookkeeping_table(f"{spec.name}__state")

    def has_state(self, spec: SyncSpec) -> bool:
        return self.recorded_signature(spec) is not None

    def recorded_signature(self, spec: SyncSpec) -> str | None:
        description = self._state_description(spec)
        return None if description is None else description.partition(_VALUES_MARK)[0]

    def _state_description(self, spec: SyncSpec) -> str | None:
        try:
            return self.client.get_table(self._id(f"{spec.name}__state")).description
        except NotFound:
            return None

    def signature_record(self, plan: Plan) -> str:
        """A digest of the signature: descriptions are limited to 16 KiB; a wide mart's signature is not."""
        return "activation sync state; signature sha256 " + hashlib.sha256(self.signature(plan).encode()).hexdigest()

    def store_state(self, plan: Plan, kept: str | None, added: str, rejected: str | None) -> None:
        """One statement switches state, signature and kept values together: the values are written
        first to a table of their own, which the state table's description then names."""
        spec = plan.spec
        recorded, _, old_token = (self._state_description(spec) or "").partition(_VALUES_MARK)
        old = None
        if spec.keep_values and old_token and recorded == self.signature_record(plan):
            old = self._values_table(spec, old_token)  # else other columns: the old values cannot be carried over
        unchanged = kept is not None and not rejected and not plan.new_keys + plan.changed_keys + plan.deleted_keys
        if unchanged and (old is not None or not spec.keep_values):
            if not spec.keep_values and old_token:
                self.client.delete_table(self._id(f"{spec.name}__values_{old_token}"), not_found_ok=True)
            return  # the state already is the mart; rewriting it would only cost a scan
        rows = added if kept is None else f"{kept} UNION ALL {added}"
        if rejected:
            out = f"NOT EXISTS (SELECT 1 FROM {rejected} r WHERE {self.on(spec, 'r', 'x')})"
            rows = f"SELECT * FROM ({rows}) x WHERE {out}"
        token = self._store_values(plan, old, rejected, rows) if spec.keep_values else None
        description = self.signature_record(plan) + (f"{_VALUES_MARK}{token}" if token else "")
        try:
            options = f"OPTIONS (description = {_literal(description)})"
            self.query(f"CREATE OR REPLACE TABLE {self.state_table(spec)} {options} AS {rows}")
        except Exception:
            if token:
                self.client.delete_table(self._id(f"{spec.name}__values_{token}"), not_found_ok=True)
            raise
        if old_token and old_token != token:
            self.client.delete_table(self._id(f"{spec.name}__values_{old_token}"), not_found_ok=True)

    def _store_values(self, plan: Plan, old: str | None, rejected: str | None, state_rows: str) -> str:
        """A new values table for the state about to be stored (kept_values.py); its token."""
        spec, token = plan.spec, f"{self.run_id}{next(self._serial)}"
        if old is not None and not plan.full:
            gone, came = self.kept_values_changed(plan, rejected)
            rows = f"SELECT * FROM {old} v WHERE NOT {gone} UNION ALL {came}"
        else:
            held = self.kept_values_held(plan, old, rejected) if old is not None else None
            keys = None if plan.full else f"(SELECT {self.keys(plan)} FROM ({state_rows}))"
            rows = self.kept_values_fresh(plan, rejected, keys) + (f" UNION ALL {held}" if held else "")
        self.query(
            f"CREATE TABLE {quote_bigquery(self.project, self.dataset, f'{spec.name}__values_{token}')} AS {rows}"
        )
        return token

    def _values_token(self, spec: SyncSpec) -> str | None:
        return (self._state_description(spec) or "").partition(_VALUES_MARK)[2] or None

    def _values_table(self, spec: SyncSpec, token: str) -> str | None:
        try:
            self.client.get_table(self._id(f"{spec.name}__values_{token}"))
        except NotFound:
            return None
        return quote_bigquery(self.project, self.dataset, f"{spec.name}__values_{token}")

    def _kept_values_table(self, spec: SyncSpec) -> str | None:
        token = self._values_token(spec)
        return None if token is None else self._values_table(spec, token)

    def kept_values_columns(self, spec: SyncSpec) -> list[str]:
        token = self._values_token(spec)
        try:
            return [f.name for f in self.client.get_table(self._id(f"{spec.name}__values_{token}")).schema]
        except NotFound:
            return []

    def drop_state(self, spec: SyncSpec) -> None:
        token = self._values_token(spec)
        self.client.delete_table(self._id(f"{spec.name}__state"), not_found_ok=True)
        if token:
            self.client.delete_table(self._id(f"{spec.name}__values_{token}"), not_found_ok=True)

    def state_version(self, spec: SyncSpec) -> str | None:
        """When the state table was last written (`store_state` replaces it whenever it changes)."""
        try:
            table = self.client.get_table(self._id(f"{spec.name}__state"))
        except NotFound:
            return None
        return table.modified.isoformat() if table.modified else table.etag

    def filtered(self, relation: MartRelation, column: str, value: Any, name: str) -> MartRelation:
        """A view in the state dataset, dropped with the run's work tables (views take no parameters)."""
        view = f"{name}_{self.run_id}"
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            literal = f"DATE '{value.isoformat()}'"
        elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            literal = repr(value) if not isinstance(value, Decimal) else f"NUMERIC '{value}'"
        else:
            literal = _literal(str(value))
        quoted = quote_bigquery(self.project, self.dataset, view)
        self.query(
            f"CREATE OR REPLACE VIEW {quoted} AS SELECT * FROM {self.relation(relation)} "
            f"WHERE {quote_bigquery(column)} = {literal}"
        )
        self._views.add(quoted)
        return MartRelation(self.dataset, view)

    @contextmanager
    def key_relation(self, plan: Plan, keys: list[tuple]) -> Iterator[str]:
        """A work table of the keys, built from array parameters (one per column, zipped by offset)."""
        width = len(keys[0])  # the key columns, maybe a reason after them
        types = [_parameter(keys[0][i]).type_ for i in range(width)]
        arrays = [bigquery.ArrayQueryParameter(None, types[i], [k[i] for k in keys]) for i in range(width)]
        unnest = " JOIN ".join(
            f"UNNEST(?) AS k{i} WITH OFFSET o{i}" + (f" ON o{i} = o0" if i else "") for i in range(len(arrays))
        )
        name = self.work_table(plan.spec, "reject_keys")
        select = f"SELECT {', '.join(f'k{i}' for i in range(len(arrays)))} FROM {unnest}"
        config = bigquery.QueryJobConfig(query_parameters=arrays)
        self.client.query(f"CREATE OR REPLACE TABLE {name} {_EXPIRES} AS {select}", job_config=config).result()
        self._work.add(name)
        try:
            yield name
        finally:
            self.drop_work(name)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Batches with exactly the plan's names and types (BigQuery reads NUMERIC(p, s) as (38, 9))."""
    arrays = [batch.column(i).cast(field.type) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def recorded(
    client: bigquery.Client, project: str, dataset: str, table: str, select: str, sync: str | None
) -> Iterator[tuple[str, list[str], list[tuple]]]:
    """(dataset, column names, rows) of a history table in the bookkeeping dataset."""
    try:
        client.get_table(f"{project}.{dataset}.{table}")
    except NotFound:
        return
    params = [_parameter(sync)] if sync else []
    job = client.query(
        select.format(table=quote_bigquery(project, dataset, table)),
        job_config=bigquery.QueryJobConfig(query_parameters=params),
    )
    result = job.result()
    yield f"{project}.{dataset}", [f.name for f in result.schema], [tuple(r.values()) for r in result]
