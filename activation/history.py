"""Run history in the warehouse, beside the sync state: what each run did, and what changed per key.

Two tables in the attached state database (`<warehouse_dir>/activation_state/<dest>.duckdb`):
- `sync_runs`: one row per sync per run: counts, timings, status (`success`, `failed`,
  `refused`), the error with credentials masked.
- `sync_changes`: one row per key a successful run sent: `insert`, `update` or `delete`.
- `sync_rejects`: the rows the last run of each sync set aside, with column and reason
  (`activation.syncs.rejects`); they are sent again on the next run.

The change log is the difference between the sync's state (key, row hash) before the run and
after the destination committed, so it is exact about what the sync sent and costs one
comparison in the warehouse; it never reads the destination. Rows older than the retention
(`history.retention_days` in syncs.yml) are deleted as each run is recorded.

Analysts query it with DuckDB, e.g.
`ATTACH 'data/activation_state/app.duckdb' AS s (READ_ONLY);
SELECT * FROM s.sync_changes WHERE sync = 'job_postings' AND key = 'a0X...'`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import duckdb
from sqlalchemy.engine import make_url

from activation.resources import masked_url
from activation.resources import quote_duckdb as q
from activation.syncs.load import GuardTripped, SyncResult
from activation.syncs.plan import STATE
from activation.syncs.spec import Mode, SyncSpec

RUNS = f"{STATE}.sync_runs"
CHANGES = f"{STATE}.sync_changes"
REJECTS = f"{STATE}.sync_rejects"
DEFAULT_RETENTION_DAYS = 90


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


def _state_table(spec: SyncSpec) -> str:
    return f"{STATE}.{q('sync__' + spec.name)}"


def _snapshot(spec: SyncSpec) -> str:
    return q(f"_activation_before_{spec.name}")


class RunHistory:
    """Records one Dagster run's syncs of one destination. Use `before` prior to the writer,
    then `succeeded` or `failed` once it returns or raises."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        run_id: str,
        destination: str,
        destination_url: str,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ):
        self.con = con
        self.run_id = run_id
        self.destination = destination
        self.url = destination_url
        self.retention_days = retention_days
        self.started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {RUNS} (run_id VARCHAR, sync VARCHAR, destination VARCHAR, "
            "table_name VARCHAR, mode VARCHAR, status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, "
            "duration_seconds DOUBLE, rows_inserted BIGINT, rows_updated BIGINT, rows_deleted BIGINT, "
            "rows_rejected BIGINT, rows_unchanged BIGINT, rows_in_mart BIGINT, rows_in_destination BIGINT, "
            "strategy VARCHAR, change_detection VARCHAR, destination_url VARCHAR, error VARCHAR)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {CHANGES} (run_id VARCHAR, sync VARCHAR, table_name VARCHAR, "
            "key VARCHAR, operation VARCHAR, recorded_at TIMESTAMP)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {REJECTS} (sync VARCHAR, table_name VARCHAR, key VARCHAR, "
            "column_name VARCHAR, reason VARCHAR, run_id VARCHAR, rejected_at TIMESTAMP)"
        )

    def _has_state(self, spec: SyncSpec) -> bool:
        return bool(
            self.con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
                [STATE, f"sync__{spec.name}"],
            ).fetchall()
        )

    def before(self, specs: Sequence[SyncSpec]) -> None:
        """Keep each sync's state as it is before the run, to diff against afterwards."""
        for spec in specs:
            if self._has_state(spec):
                self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {_snapshot(spec)} AS SELECT * FROM {_state_table(spec)}"
                )
            else:
                self.con.execute(f"DROP TABLE IF EXISTS {_snapshot(spec)}")

    def _key_expr(self, spec: SyncSpec, alias: str) -> str:
        if len(spec.primary_key) == 1:
            return f"CAST({alias}.{q(spec.primary_key[0])} AS VARCHAR)"
        return f"CAST(to_json([{', '.join(f'CAST({alias}.{q(k)} AS VARCHAR)' for k in spec.primary_key)}]) AS VARCHAR)"

    def _log_changes(self, spec: SyncSpec, now: dt.datetime) -> None:
        if not self._has_state(spec):
            return
        after, on = _state_table(spec), " AND ".join(f"a.{q(k)} = b.{q(k)}" for k in spec.primary_key)
        hash_col = q("_activation_row_hash")
        had_state = self._exists_temp(f"_activation_before_{spec.name}")
        before = _snapshot(spec)
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
        rejected = f"_activation_rejects_{spec.name}"
        not_rejected = "true"
        if self._exists_temp(rejected):  # set aside, not written: not a change
            match = " AND ".join(f"r.{q(k)} = x.{q(k)}" for k in spec.primary_key)
            not_rejected = f"NOT EXISTS (SELECT 1 FROM {q(rejected)} r WHERE {match})"
        for operation, keys in ops:
            self.con.execute(
                f"INSERT INTO {CHANGES} SELECT ?, ?, ?, {self._key_expr(spec, 'x')}, ?, ? FROM ({keys}) x "
                f"WHERE {not_rejected}",
                [self.run_id, spec.name, spec.table, operation, now],
            )
        self.con.execute(f"DROP TABLE IF EXISTS {before}")

    def _record_rejects(self, spec: SyncSpec, now: dt.datetime) -> None:
        """The rows set aside in this run replace the sync's previous list (fixed rows drop out)."""
        self.con.execute(f"DELETE FROM {REJECTS} WHERE sync = ?", [spec.name])
        rejected = f"_activation_rejects_{spec.name}"
        if self._exists_temp(rejected):
            self.con.execute(
                f"INSERT INTO {REJECTS} SELECT ?, ?, {self._key_expr(spec, 'r')}, r.column_name, r.reason, ?, ? "
                f"FROM {q(rejected)} r",
                [spec.name, spec.table, self.run_id, now],
            )

    def _cols(self, spec: SyncSpec, alias: str) -> str:
        return ", ".join(f"{alias}.{q(k)}" for k in spec.primary_key)

    def _exists_temp(self, name: str) -> bool:
        return bool(
            self.con.execute("SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = ?", [name]).fetchall()
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

    def succeeded(self, specs: Sequence[SyncSpec], results: Sequence[SyncResult]) -> None:
        """Call after the destination committed and the state advanced."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        by_name = {r.sync: r for r in results}
        self.con.execute("BEGIN")
        try:
            for spec in specs:
                self._log_changes(spec, now)
                self._record_rejects(spec, now)
                self.con.execute(
                    f"INSERT INTO {RUNS} VALUES ({', '.join('?' * 20)})",
                    self._row(spec, "success", now, by_name.get(spec.name), None),
                )
            self._expire(now)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def failed(self, specs: Sequence[SyncSpec], error: BaseException) -> None:
        """A run that raised: one row per selected sync, status and the (masked) error."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        status = "refused" if isinstance(error, GuardTripped) else "failed"
        message = mask_secrets(f"{type(error).__name__}: {error}", self.url)
        for spec in specs:
            self.con.execute(
                f"INSERT INTO {RUNS} VALUES ({', '.join('?' * 20)})", self._row(spec, status, now, None, message)
            )
            self.con.execute(f"DROP TABLE IF EXISTS {_snapshot(spec)}")
        self._expire(now)

    def _expire(self, now: dt.datetime) -> None:
        cutoff = now - dt.timedelta(days=self.retention_days)
        self.con.execute(f"DELETE FROM {RUNS} WHERE started_at < ?", [cutoff])
        self.con.execute(f"DELETE FROM {CHANGES} WHERE recorded_at < ?", [cutoff])
