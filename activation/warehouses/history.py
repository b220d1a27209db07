"""Run history in the warehouse, beside the sync state: what each run did, and what changed per key.

Tables beside the state (DuckDB: the state file `<warehouse_dir>/activation_state/<dest>.duckdb`;
BigQuery: the bookkeeping dataset):
- `sync_runs`: one row per sync per run: counts, timings, status (`success`, `failed`,
  `refused`), the error with credentials masked.
- `sync_changes`: one row per key a successful run sent: `insert`, `update` or `delete`.
- `sync_rejects`: the rows the last run of each sync set aside, with column and reason
  (`activation.warehouses.rejects`); they are sent again on the next run. An API destination's
  refusals carry its own message (column `(record)`, or `(delete)` for a refused delete).
- `sync_api_calls`: for syncs into an API, one row per run: calls, retries, 429s, server errors,
  rows sent and the first errors the API answered (a table of its own, so older files stay readable).

The change log is the difference between the sync's state (key, row hash) before the run and
after the destination committed, so it is exact about what the sync sent and costs one
comparison in the warehouse; it never reads the destination. Rows older than the retention
(`history.retention_days` in syncs.yml) are deleted as each run is recorded. Written once over
the `Warehouse` I/O, so DuckDB and BigQuery keep the same tables.

Analysts query it with DuckDB, e.g.
`ATTACH 'data/activation_state/app.duckdb' AS s (READ_ONLY);
SELECT * FROM s.sync_changes WHERE sync = 'job_postings' AND key = 'a0X...'`,
or in BigQuery: `SELECT * FROM activation_state.sync_runs ORDER BY started_at DESC`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

from sqlalchemy.engine import make_url

from activation.destinations.urls import masked_url
from activation.syncs.options import Mode
from activation.syncs.results import ApiCalls, GuardTripped, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import HASH, Warehouse

DEFAULT_RETENTION_DAYS = 90
# (column, portable kind): the DDL and the typed inserts of each warehouse come from these
RUNS = (
    *(("run_id", "text"), ("sync", "text"), ("destination", "text"), ("table_name", "text")),
    *(("mode", "text"), ("status", "text"), ("started_at", "timestamp"), ("finished_at", "timestamp")),
    *(("duration_seconds", "float"), ("rows_inserted", "integer"), ("rows_updated", "integer")),
    *(("rows_deleted", "integer"), ("rows_rejected", "integer"), ("rows_unchanged", "integer")),
    *(("rows_in_mart", "integer"), ("rows_in_destination", "integer"), ("strategy", "text")),
    *(("change_detection", "text"), ("destination_url", "text"), ("error", "text")),
)
CHANGES = (
    *(("run_id", "text"), ("sync", "text"), ("table_name", "text"), ("key", "text")),
    *(("operation", "text"), ("recorded_at", "timestamp")),
)
REJECTS = (
    *(("sync", "text"), ("table_name", "text"), ("key", "text"), ("column_name", "text")),
    *(("reason", "text"), ("run_id", "text"), ("rejected_at", "timestamp")),
)
API_CALLS = (  # one row per run of a sync into an API destination (a table of its own: older files stay readable)
    *(("run_id", "text"), ("sync", "text"), ("destination", "text"), ("table_name", "text")),
    *(("status", "text"), ("recorded_at", "timestamp"), ("calls", "integer"), ("retries", "integer")),
    *(("rate_limited", "integer"), ("server_errors", "integer"), ("rows_sent", "integer"), ("api_errors", "text")),
)
# What `activation history` lists; {table} is the quoted table, `?` the sync when one is asked for
LISTINGS = {
    "sync_runs": (
        "SELECT started_at, sync, table_name, status, rows_inserted, rows_updated, rows_deleted, rows_rejected, "
        "round(duration_seconds, 2) AS seconds, run_id, error FROM {table} {where} "
        "ORDER BY started_at DESC, sync LIMIT {limit}"
    ),
    "sync_rejects": (
        "SELECT sync, table_name, key, column_name, reason, run_id, rejected_at FROM {table} {where} "
        "ORDER BY rejected_at DESC, sync, key LIMIT {limit}"
    ),
    "sync_api_calls": (
        "SELECT recorded_at, sync, table_name, status, calls, retries, rate_limited, server_errors, rows_sent, "
        "api_errors, run_id FROM {table} {where} ORDER BY recorded_at DESC, sync LIMIT {limit}"
    ),
}


def listing(table: str, sync: str | None, limit: int) -> str:
    """The query `activation history` runs; `{table}` is left for the warehouse to fill in."""
    where = "WHERE sync = ?" if sync else ""
    return LISTINGS[table].replace("{where}", where).replace("{limit}", str(int(limit)))


def mask_secrets(text: str, url: str | None) -> str:
    """Remove the destination's password from a message, and any other `user:password@` in URLs."""
    if url:
        try:
            password = make_url(url).password
        except Exception:  # an unparsable URL has nothing to mask by name
            password = None
        if password and len(str(password)) >= 4:  # a one-letter password would mask every such letter
            text = text.replace(str(password), "***")
    return re.sub(r"(://[^/:@\s]*):[^/@\s]+@", r"\1:***@", text)


class RunHistory:
    """Records one Dagster run's syncs of one destination. Use `before` prior to the writer,
    then `succeeded` or `failed` once it returns or raises."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        run_id: str,
        destination: str,
        destination_url: str,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ):
        self.wh = warehouse
        self.run_id = run_id
        self.destination = destination
        self.url = destination_url
        self.retention_days = retention_days
        self.started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self._snapshots: set[str] = set()  # syncs whose state was kept by `before`
        types, ddl = warehouse.flavour.types, []
        tables = (("sync_runs", RUNS), ("sync_changes", CHANGES), ("sync_rejects", REJECTS))
        for name, columns in (*tables, ("sync_api_calls", API_CALLS)):
            body = ", ".join(f"{c} {types[kind]}" for c, kind in columns)
            ddl.append(f"CREATE TABLE IF NOT EXISTS {warehouse.bookkeeping_table(name)} ({body})")
        warehouse.query("; ".join(ddl))  # one script: on BigQuery, one job instead of three

    def _table(self, name: str) -> str:
        return self.wh.bookkeeping_table(name)

    def before(self, specs: Sequence[SyncSpec]) -> None:
        """Keep each sync's state as it is before the run, to diff against afterwards."""
        for spec in specs:
            snapshot = self.wh.work_table(spec, "before")
            if self.wh.has_state(spec):
                self.wh.create_work(snapshot, f"SELECT * FROM {self.wh.state_table(spec)}")
                self._snapshots.add(spec.name)
            else:
                self.wh.drop_work(snapshot)
                self._snapshots.discard(spec.name)

    def _key_expr(self, spec: SyncSpec, alias: str) -> str:
        f = self.wh.flavour
        texts = [f.cast(f"{alias}.{f.quote(k)}", "text") for k in spec.primary_key]
        return texts[0] if len(texts) == 1 else f.json_text(f"[{', '.join(texts)}]")

    def _cols(self, spec: SyncSpec, alias: str) -> str:
        return self.wh.keys(spec, alias)

    def _log_changes(self, spec: SyncSpec, now: dt.datetime) -> None:
        wh = self.wh
        if not wh.has_state(spec):
            return
        after, on, hash_col = wh.state_table(spec), wh.on(spec, "a", "b"), wh.flavour.quote(HASH)
        had_state = spec.name in self._snapshots
        before = wh.work_table(spec, "before")
        ops = []  # (operation, query of the key columns)
        if spec.mode is not Mode.UPDATE:  # update mode never inserts
            where = f"NOT EXISTS (SELECT 1 FROM {before} b WHERE {on})" if had_state else "true"
            ops.append(("insert", f"SELECT {self._cols(spec, 'a')} FROM {after} a WHERE {where}"))
        if had_state and spec.mode is not Mode.INSERT:  # insert mode never updates
            ops.append(
                (
                    "update",
                    f"SELECT {self._cols(spec, 'a')} FROM {after} a JOIN {before} b ON {on} "
                    f"WHERE a.{hash_col} IS DISTINCT FROM b.{hash_col}",
                )
            )
        if had_state and spec.mode.deletes:
            ops.append(
                (
                    "delete",
                    f"SELECT {self._cols(spec, 'b')} FROM {before} b "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {after} a WHERE {on})",
                )
            )
        rejected = wh.rejects.table(spec)
        not_rejected = "true"
        if rejected:  # set aside, not written: not a change
            not_rejected = f"NOT EXISTS (SELECT 1 FROM {rejected} r WHERE {wh.on(spec, 'r', 'x')})"
        for operation, keys in ops:
            wh.query(
                f"INSERT INTO {self._table('sync_changes')} SELECT ?, ?, ?, {self._key_expr(spec, 'x')}, ?, ? "
                f"FROM ({keys}) x WHERE {not_rejected}",
                [self.run_id, spec.name, spec.table, operation, now],
            )
        wh.drop_work(before)
        self._snapshots.discard(spec.name)

    def _record_rejects(self, spec: SyncSpec, now: dt.datetime) -> None:
        """The rows set aside in this run replace the sync's previous list (fixed rows drop out)."""
        self.wh.query(f"DELETE FROM {self._table('sync_rejects')} WHERE sync = ?", [spec.name])
        rejected = self.wh.rejects.table(spec)
        if rejected:
            self.wh.query(
                f"INSERT INTO {self._table('sync_rejects')} SELECT ?, ?, {self._key_expr(spec, 'r')}, "
                f"r.column_name, r.reason, ?, ? FROM {rejected} r",
                [spec.name, spec.table, self.run_id, now],
            )
        refused = self.wh.rejects.refused_deletes(spec)
        if refused:  # deletes the destination refused: tried again next run
            self.wh.query(
                f"INSERT INTO {self._table('sync_rejects')} SELECT ?, ?, {self._key_expr(spec, 'r')}, "
                f"'(delete)', r.reason, ?, ? FROM {refused} r",
                [spec.name, spec.table, self.run_id, now],
            )

    def _row(self, spec: SyncSpec, status: str, now: dt.datetime, result: SyncResult | None, error: str | None):
        r = result
        return [
            self.run_id,
            spec.name,
            self.destination,
            spec.table,
            spec.mode.value,
            status,
            self.started_at,
            now,
            r.seconds if r else (now - self.started_at).total_seconds(),
            *(
                (r.inserted, r.updated, r.deleted, r.rejected, r.unchanged, r.rows_in_mart, r.rows_in_destination)
                if r
                else (0, 0, 0, 0, 0, None, None)
            ),
            r.strategy if r else None,
            r.reason if r else None,
            masked_url(self.url),
            error,
        ]

    def _insert_run(self, values: list) -> None:
        # Typed placeholders: a NULL has its column's type on every warehouse.
        f = self.wh.flavour
        placeholders = ", ".join(f.cast("?", kind) for _, kind in RUNS)
        self.wh.query(f"INSERT INTO {self._table('sync_runs')} VALUES ({placeholders})", values)

    def _insert_api_calls(self, spec: SyncSpec, status: str, now: dt.datetime, api: ApiCalls, sent: int) -> None:
        f = self.wh.flavour
        errors = mask_secrets(json.dumps(api.errors, ensure_ascii=False), self.url) if api.errors else None
        values = [self.run_id, spec.name, self.destination, spec.table, status, now, api.calls, api.retries]
        values += [api.rate_limited, api.server_errors, sent, errors]
        placeholders = ", ".join(f.cast("?", kind) for _, kind in API_CALLS)
        self.wh.query(f"INSERT INTO {self._table('sync_api_calls')} VALUES ({placeholders})", values)

    def succeeded(self, specs: Sequence[SyncSpec], results: Sequence[SyncResult]) -> None:
        """Call after the destination committed and the state advanced."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        by_name = {r.sync: r for r in results}
        with self.wh.transaction():
            for spec in specs:
                self._log_changes(spec, now)
                self._record_rejects(spec, now)
                result = by_name.get(spec.name)
                self._insert_run(self._row(spec, "success", now, result, None))
                if result is not None and result.api is not None:
                    self._insert_api_calls(spec, "success", now, result.api, result.rows_sent)
            self._expire(now)

    def failed(self, specs: Sequence[SyncSpec], error: BaseException) -> None:
        """A run that raised: one row per selected sync, status and the (masked) error; for an API
        destination also the calls it made before it stopped (SyncError.api_calls)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        status = "refused" if isinstance(error, GuardTripped) else "failed"
        message = mask_secrets(f"{type(error).__name__}: {error}", self.url)
        calls = getattr(error, "api_calls", None) or {}
        for spec in specs:
            self._insert_run(self._row(spec, status, now, None, message))
            if spec.name in calls:
                self._insert_api_calls(spec, status, now, calls[spec.name], 0)
            self.wh.drop_work(self.wh.work_table(spec, "before"))
            self._snapshots.discard(spec.name)
        self._expire(now)

    def _expire(self, now: dt.datetime) -> None:
        cutoff = now - dt.timedelta(days=self.retention_days)
        self.wh.query(f"DELETE FROM {self._table('sync_runs')} WHERE started_at < ?", [cutoff])
        self.wh.query(f"DELETE FROM {self._table('sync_changes')} WHERE recorded_at < ?", [cutoff])
        self.wh.query(f"DELETE FROM {self._table('sync_api_calls')} WHERE recorded_at < ?", [cutoff])
