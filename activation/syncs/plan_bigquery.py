"""Change detection inside BigQuery: the same contract as `plan.Planner`, in BigQuery's dialect.

Per sync, a state table `<sync>__state` in the bookkeeping dataset keeps (key, row hash) as
of the last sync the destination committed; the row hash is
`FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(<value columns>)))`. The diff is SQL run by BigQuery,
so only changed rows (and deleted keys) leave the warehouse. The state advances only in
`commit`, called after the destination committed: one `CREATE OR REPLACE TABLE` that also
records a digest of the sync's signature in the table description, so state and signature change
together or not at all. A crash or a retry re-sends the same changes, applied idempotently.

Rows leave as Arrow record batches: the rows to send are written to a short-lived work
table, then read through the Storage Read API (or REST pages when it is unavailable).
Work tables expire after a day, so a killed run leaves nothing behind for long.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from activation.bigquery import quote_bigquery
from activation.syncs import masking
from activation.syncs.plan import HASH, JSON_FIELD, MartRelation, Plan, PlanError, column_pairs
from activation.syncs.spec import SyncSpec

_EXPIRES = "OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"
# Types that travel as JSON text (into a JSON column) and types that travel as plain text.
_AS_JSON = {"JSON", "RECORD", "STRUCT", "RANGE"}
_AS_TEXT = {"GEOGRAPHY", "INTERVAL"}


def q(name: str) -> str:
    return quote_bigquery(name)


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def arrow_type(field: bigquery.SchemaField) -> pa.DataType:
    """The Arrow type a BigQuery column is sent as (DECIMAL precision kept for the destination DDL)."""
    kind = field.field_type.upper()
    if kind in ("STRING",):
        return pa.string()
    if kind == "BYTES":
        return pa.binary()
    if kind in ("INT64", "INTEGER"):
        return pa.int64()
    if kind in ("FLOAT64", "FLOAT"):
        return pa.float64()
    if kind in ("BOOL", "BOOLEAN"):
        return pa.bool_()
    if kind == "NUMERIC":
        return pa.decimal128(field.precision or 38, field.scale if field.scale is not None else 9)
    if kind == "BIGNUMERIC":
        return pa.decimal256(field.precision or 76, field.scale if field.scale is not None else 38)
    if kind == "DATE":
        return pa.date32()
    if kind == "DATETIME":
        return pa.timestamp("us")
    if kind == "TIMESTAMP":
        return pa.timestamp("us", tz="UTC")
    if kind == "TIME":
        return pa.time64("us")
    return pa.string()


class BigQueryPlanner:
    """Computes plans in BigQuery and streams their rows; the DuckDB `Planner`'s twin."""

    def __init__(
        self,
        client: bigquery.Client,
        state_dataset: str,
        destination_identity: str,
        *,
        storage_client: Any = None,
        project: str | None = None,
    ):
        self.client = client
        self.project = project or client.project
        self.dataset = state_dataset
        self.identity = destination_identity
        self.storage = storage_client
        self._serial = itertools.count()
        self.run_id = uuid.uuid4().hex[:8]
        self._types: dict[str, dict[str, tuple[str, str]]] = {}  # sync -> mart column -> (type, mode)
        quote_bigquery(self.project, state_dataset)  # validate early, with a clear message
        ds = bigquery.Dataset(f"{self.project}.{state_dataset}")
        if client.location:
            ds.location = client.location
        client.create_dataset(ds, exists_ok=True)

    # -- helpers ----------------------------------------------------------------------------
    def _run(self, sql: str, params: Sequence[bigquery.ScalarQueryParameter] = ()) -> list[tuple]:
        config = bigquery.QueryJobConfig(query_parameters=list(params)) if params else None
        return [tuple(row.values()) for row in self.client.query(sql, job_config=config).result()]

    def _work_name(self, plan: Plan, kind: str) -> str:
        # Named per run: two runs of one sync never overwrite each other's work tables.
        return f"{plan.spec.name}__{kind}_{self.run_id}"

    def _work(self, plan: Plan, kind: str) -> str:
        return quote_bigquery(self.project, self.dataset, self._work_name(plan, kind))

    def _state_table(self, spec: SyncSpec) -> str:
        return quote_bigquery(self.project, self.dataset, f"{spec.name}__state")

    def _relation(self, relation: MartRelation) -> str:
        return quote_bigquery(self.project, relation.schema, relation.name)

    def _keys(self, plan: Plan, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + q(k) for k in plan.spec.primary_key)

    def _on(self, plan: Plan, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in plan.spec.primary_key)

    # -- reading the mart -------------------------------------------------------------------
    def describe(self, spec: SyncSpec, relation: MartRelation) -> Plan:
        where = f"{self.project}.{relation.schema}.{relation.name}"
        try:
            table = self.client.get_table(where)
        except NotFound as exc:
            raise PlanError(
                f"sync {spec.name}: mart {spec.source} ({where}) is not in the warehouse; build it with dbt"
            ) from exc
        columns = {f.name: f for f in table.schema}
        pairs = column_pairs(spec, list(columns))
        unapplied = sorted(s for _, s in pairs if masking.mask_of(spec, s) in (masking.Mask.HASH, masking.Mask.REDACT))
        if unapplied:
            raise PlanError(
                f"sync {spec.name}: masking by hash or redact ({unapplied}) is not built for BigQuery yet; nothing "
                "left the warehouse. Use `drop`, or mask in the dbt model."
            )
        fields = []
        for d, s in pairs:
            field = columns[s]
            if field.mode == "REPEATED" or field.field_type.upper() in _AS_JSON:
                fields.append(pa.field(d, pa.string(), metadata={JSON_FIELD: b"1"}))
            else:
                fields.append(pa.field(d, arrow_type(field)))
        self._types[spec.name] = {s: (columns[s].field_type.upper(), columns[s].mode) for _, s in pairs}
        return Plan(spec=spec, relation=relation, pairs=pairs, arrow_schema=pa.schema(fields))

    def _source(self, plan: Plan) -> str:
        types = self._types[plan.spec.name]

        def column(dest: str, src: str) -> str:
            kind, mode = types[src]
            if mode == "REPEATED" or kind in _AS_JSON:
                return f"TO_JSON_STRING({q(src)}) AS {q(dest)}"
            if kind in _AS_TEXT:
                return f"CAST({q(src)} AS STRING) AS {q(dest)}"
            return f"{q(src)} AS {q(dest)}"

        cols = ", ".join(column(d, s) for d, s in plan.pairs)
        return f"(SELECT {cols} FROM {self._relation(plan.relation)})"

    def signature(self, plan: Plan) -> str:
        """Anything that makes old hashes meaningless: columns, types, key, mode, destination, engine."""
        return json.dumps(
            {
                "columns": [(f.name, str(f.type)) for f in plan.arrow_schema],
                "key": plan.spec.primary_key,
                "mode": plan.spec.mode.value,
                "destination": self.identity,
                "table": plan.spec.table,
                "engine": "bigquery farm_fingerprint(to_json_string) v1",
            },
            sort_keys=True,
        )

    def _fingerprint(self, plan: Plan) -> str:
        """What the state table's description records: a digest of the signature (descriptions
        are limited to 16 KiB; a wide mart's signature is not)."""
        return "activation sync state; signature sha256 " + hashlib.sha256(self.signature(plan).encode()).hexdigest()

    def _recorded_signature(self, spec: SyncSpec) -> str | None:
        try:
            return self.client.get_table(f"{self.project}.{self.dataset}.{spec.name}__state").description
        except NotFound:
            return None

    def plan(self, plan: Plan, *, full_resync: bool = False) -> Plan:
        """Hash the mart once, compare with the state, and count what changed."""
        values = [c for c in plan.columns if c not in plan.spec.primary_key]
        hash_expr = (
            f"FARM_FINGERPRINT(TO_JSON_STRING(STRUCT({', '.join(f'{q(c)} AS {q(c)}' for c in values)})))"
            if values
            else "0"
        )
        cur, delta = self._work(plan, "current"), self._work(plan, "delta")
        self._run(
            f"CREATE OR REPLACE TABLE {cur} {_EXPIRES} AS "
            f"SELECT {self._keys(plan)}, {hash_expr} AS {q(HASH)} FROM {self._source(plan)}"
        )
        plan.mart_rows = self._run(f"SELECT COUNT(*) FROM {cur}")[0][0]
        recorded = self._recorded_signature(plan.spec)
        if full_resync:
            plan.full, plan.reason = True, "full resync requested"
        elif recorded is None:
            plan.full, plan.reason = True, "first sync: no state yet"
        elif recorded != self._fingerprint(plan):
            plan.full, plan.reason = True, "columns, key, destination or engine changed since the last sync"
        else:
            plan.full, plan.reason = False, "incremental"
        if plan.full:
            self._run(f"CREATE OR REPLACE TABLE {delta} {_EXPIRES} AS SELECT {self._keys(plan)} FROM {cur}")
            plan.new_keys, plan.changed_keys, plan.deleted_keys = plan.mart_rows, 0, 0
            return plan
        st = self._state_table(plan.spec)
        self._run(
            f"CREATE OR REPLACE TABLE {delta} {_EXPIRES} AS "
            f"SELECT {self._keys(plan, 'c')}, s.{q(HASH)} IS NULL AS is_new "
            f"FROM {cur} c LEFT JOIN {st} s ON {self._on(plan, 'c', 's')} "
            f"WHERE s.{q(HASH)} IS NULL OR s.{q(HASH)} != c.{q(HASH)}"
        )
        (plan.new_keys, plan.changed_keys, plan.deleted_keys) = self._run(
            f"SELECT (SELECT COUNTIF(is_new) FROM {delta}), (SELECT COUNTIF(NOT is_new) FROM {delta}), "
            f"(SELECT COUNT(*) FROM {st} s WHERE NOT EXISTS (SELECT 1 FROM {cur} c WHERE {self._on(plan, 'c', 's')}))"
        )[0]
        plan.new_keys, plan.changed_keys = plan.new_keys or 0, plan.changed_keys or 0
        return plan

    def _read(self, plan: Plan, query: str, schema: pa.Schema, batch_size: int) -> pa.RecordBatchReader:
        """Write a query's result to a work table, then stream it as Arrow batches of `schema`."""
        name = self._work_name(plan, f"send{next(self._serial)}")
        table = quote_bigquery(self.project, self.dataset, name)
        self._run(f"CREATE OR REPLACE TABLE {table} {_EXPIRES} AS {query}")

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                rows = self.client.list_rows(f"{self.project}.{self.dataset}.{name}", page_size=batch_size)
                for batch in rows.to_arrow_iterable(bqstorage_client=self.storage, max_stream_count=1):
                    if batch.num_rows:
                        yield _conform(batch, schema)
            finally:
                self.client.delete_table(f"{self.project}.{self.dataset}.{name}", not_found_ok=True)

        return pa.RecordBatchReader.from_batches(schema, batches())

    sql_flavour = "bigquery"  # for the value checks in activation.syncs.validate

    def _to_send(self, plan: Plan) -> str:
        """FROM clause of the rows the plan sends (alias m), named as in the destination."""
        src = f"{self._source(plan)} m"
        if plan.full:
            return src
        delta = self._work(plan, "delta")
        return f"{src} WHERE EXISTS (SELECT 1 FROM {delta} d WHERE {self._on(plan, 'd', 'm')})"

    def count_where(self, plan: Plan, conditions: Sequence[str]) -> list[int]:
        """How many rows to send meet each condition, in one scan."""
        counts = ", ".join(f"COUNTIF({c})" for c in conditions)
        return [n or 0 for n in self._run(f"SELECT {counts} FROM {self._to_send(plan)}")[0]]

    def keys_where(self, plan: Plan, condition: str, limit: int) -> list[str]:
        key = " || '/' || ".join(f"CAST(m.{q(k)} AS STRING)" for k in plan.spec.primary_key)
        src = self._to_send(plan)
        where = f"AND ({condition})" if " WHERE " in src else f"WHERE {condition}"
        return [r[0] for r in self._run(f"SELECT {key} FROM {src} {where} ORDER BY 1 LIMIT {int(limit)}")]

    def rows(self, plan: Plan, batch_size: int, *, everything: bool = False) -> pa.RecordBatchReader:
        """The rows to send: every mart row for a full plan (or `everything`), else only new and
        changed ones; written in key order (BigQuery does not promise to read them back so)."""
        casts = {"BIGINT": "INT64"}
        cols = ", ".join(
            f"CAST(m.{q(c)} AS {casts.get(plan.casts[c], plan.casts[c])}) AS {q(c)}" if c in plan.casts else f"m.{q(c)}"
            for c in plan.columns
        )
        query = f"SELECT {cols} FROM {self._source(plan)} m"
        if not (plan.full or everything):
            delta = self._work(plan, "delta")
            query += f" WHERE EXISTS (SELECT 1 FROM {delta} d WHERE {self._on(plan, 'd', 'm')})"
        return self._read(plan, f"{query} ORDER BY {self._keys(plan, 'm')}", plan.arrow_schema, batch_size)

    def deleted(self, plan: Plan, batch_size: int) -> pa.RecordBatchReader:
        """Keys the destination holds (as of the last sync) that left the mart."""
        cur, st = self._work(plan, "current"), self._state_table(plan.spec)
        schema = pa.schema([plan.arrow_schema.field(k) for k in plan.spec.primary_key])
        return self._read(
            plan,
            f"SELECT {self._keys(plan, 's')} FROM {st} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {cur} c WHERE {self._on(plan, 'c', 's')}) "
            f"ORDER BY {self._keys(plan, 's')}",
            schema,
            batch_size,
        )

    def commit(self, plan: Plan) -> None:
        """Record the mart as synced, in one statement. Call only after the destination committed."""
        cur, delta, st = self._work(plan, "current"), self._work(plan, "delta"), self._state_table(plan.spec)
        options = f"OPTIONS (description = {_literal(self._fingerprint(plan))})"
        if plan.full:
            self._run(f"CREATE OR REPLACE TABLE {st} {options} AS SELECT * FROM {cur}")
        elif plan.new_keys + plan.changed_keys + plan.deleted_keys == 0:
            pass  # the state already is the mart; rewriting it would only cost a scan
        else:  # unchanged keys keep their state; changed and new keys take the current hash
            self._run(
                f"CREATE OR REPLACE TABLE {st} {options} AS "
                f"SELECT s.* FROM {st} s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {delta} d WHERE {self._on(plan, 'd', 's')}) "
                f"AND EXISTS (SELECT 1 FROM {cur} c WHERE {self._on(plan, 'c', 's')}) "
                f"UNION ALL SELECT c.* FROM {cur} c "
                f"WHERE EXISTS (SELECT 1 FROM {delta} d WHERE {self._on(plan, 'd', 'c')})"
            )
        for kind in ("current", "delta"):
            self.client.delete_table(f"{self.project}.{self.dataset}.{self._work_name(plan, kind)}", not_found_ok=True)

    def forget(self, spec: SyncSpec) -> None:
        """Drop a sync's state, so its next run compares everything (after a failed or partial write)."""
        self.client.delete_table(f"{self.project}.{self.dataset}.{spec.name}__state", not_found_ok=True)

    # -- pre-write checks -------------------------------------------------------------------
    def diffable(self, plan: Plan) -> bool:
        """Whether the state can serve an incremental plan (unless a full resync is asked for)."""
        return self._recorded_signature(plan.spec) == self._fingerprint(plan)

    def key_problems(self, plan: Plan) -> str | None:
        """The engine's key check after `plan`. BigQuery scans columns, so grouping the mart's key
        columns costs little beside the hashing the plan already did: always the whole check."""
        return self.null_and_duplicate_keys(plan)

    def null_and_duplicate_keys(self, plan: Plan, sample: int = 5) -> str | None:
        table = f"{plan.spec.source} -> {plan.spec.table}"
        src = self._source(plan)
        for key in plan.spec.primary_key:
            nulls = self._run(f"SELECT COUNT(*) FROM {src} WHERE {q(key)} IS NULL")[0][0]
            if nulls:
                return f"{table}: {nulls} row(s) have a NULL key in column {key!r}; nothing was written"
        keys = self._keys(plan)
        dups = self._run(
            f"SELECT {keys}, COUNT(*) AS n FROM {src} GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY n DESC, {keys} "
            f"LIMIT {int(sample)}"
        )
        if dups:
            shown = ", ".join(f"{row[0]!r} x{row[-1]}" if len(row) == 2 else f"{row[:-1]!r} x{row[-1]}" for row in dups)
            return f"{table}: duplicate key {tuple(plan.spec.primary_key)} in the mart ({shown}); nothing was written"
        return None

    def string_lengths(self, plan: Plan) -> dict[str, int | None]:
        texts = [f.name for f in plan.arrow_schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        if not texts:
            return {}
        row = self._run(f"SELECT {', '.join(f'MAX(CHAR_LENGTH({q(c)}))' for c in texts)} FROM {self._source(plan)}")[0]
        return dict(zip(texts, row, strict=True))

    def too_long(self, plan: Plan, column: str, limit: int, sample: int = 5) -> list[tuple[str, int]]:
        key = " || '/' || ".join(f"CAST({q(k)} AS STRING)" for k in plan.spec.primary_key)
        return self._run(
            f"SELECT {key} AS k, CHAR_LENGTH({q(column)}) AS n FROM {self._source(plan)} "
            f"WHERE CHAR_LENGTH({q(column)}) > {int(limit)} ORDER BY k LIMIT {int(sample)}"
        )

    def scope_violations(self, plan: Plan, scope: dict, columns: Sequence[str]) -> int:
        conds, params = [], []
        for i, (column, value) in enumerate((c, v) for c, v in scope.items() if c in columns):
            if value is None:
                conds.append(f"{q(column)} IS NOT NULL")
                continue
            conds.append(f"{q(column)} IS DISTINCT FROM @scope{i}")
            params.append(bigquery.ScalarQueryParameter(f"scope{i}", _param_type(value), value))
        if not conds:
            return 0
        return self._run(f"SELECT COUNT(*) FROM {self._source(plan)} WHERE {' OR '.join(conds)}", params)[0][0]


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    return "STRING"


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Batches with exactly the plan's names and types (BigQuery reads NUMERIC(p, s) as (38, 9))."""
    arrays = [batch.column(i).cast(field.type) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
