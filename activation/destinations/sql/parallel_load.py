"""A large load into a table no reader sees, on several connections at once.

One stream of LOAD DATA (MySQL/MariaDB) or COPY (PostgreSQL) leaves the server's cores idle: two
streams of key-sorted halves load a table 1.5-1.7x faster than one. So the rows to load (the
warehouse sends them in key order) are cut into consecutive key ranges of about `CHUNK_BYTES`,
each written as a CSV file by one producer thread into a bounded queue (`CsvFiles`), while N
loader threads, each on its own connection, take the next file and load it: the warehouse read
and the CSV writing overlap the loads, and each chunk grows the B-tree sequentially.

Where: a table this run created under a hidden name (a first sync), the shadow table `replace`
swaps in, and an empty existing table `replace` owns that no foreign key points at (it gets a
shadow, swapped in).
Each chunk commits on its own connection, so these loads run before the write transaction (under
MySQL's REPEATABLE READ that transaction would not see rows committed after its first read), in
parents-first order, and only for a table whose parents in this run load this way too (a child
row's foreign key is checked against rows already committed, never against the open write
transaction, which it would wait for). Readers never see the table before it is renamed into
place (apply.swap_all); any failure drops it (run.cleanup): the destination stays as it was.

How many streams: the destination's `load_streams` when set (1: the single-stream load, in the
write transaction); otherwise min(MAX_STREAMS, this machine's cores, half the connections the
server still accepts, rows // ROWS_PER_STREAM), and at least 2 for a parallel load. The cores
count even when the server shares them: on a quiet 2-core host with the server on it, two
streams loaded 1M rows 1.5x (MariaDB) and 1.6x (PostgreSQL) faster than one (bench/README.md);
only a host already busy with other work measured no gain. SQLite has one writer: it always
loads in one stream.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Iterable, Sequence

import pyarrow as pa
import sqlalchemy as sa

from activation.destinations.sql import apply, prepare
from activation.destinations.sql.csv_files import CsvFiles
from activation.destinations.sql.run import Job, Run
from activation.syncs.options import Mode
from activation.syncs.plan import Strategy
from activation.syncs.results import SyncError

MAX_STREAMS = 4  # past a few streams InnoDB's index latches, not the client, bound the load
ROWS_PER_STREAM = 100_000  # below this many rows per stream the extra connections do not pay
CHUNK_BYTES = 8 * 1024 * 1024  # Arrow bytes per file: several chunks per stream balance the streams


def load_before_writing(run: Run, conn: sa.Connection, jobs: Sequence[Job], fks: dict[str, list[dict]]) -> None:
    """Load, on several connections, every table no reader sees that is large enough, parents
    first; the write transaction then finds them loaded (`Job.loaded`)."""
    if run.dry_run or not run.dialect.parallel_loads(conn):
        return
    in_run = {j.spec.table: j for j in jobs} | {j.target.name: j for j in jobs if j.target is not None}
    for job in jobs:
        if job.plan.blocked or job.strategy not in (Strategy.BULK, Strategy.SHADOW):
            continue
        if not _parents_loaded(job, in_run, fks):
            continue
        with conn.begin():
            streams = stream_count(run, conn, job.mart.mart_rows)
        if streams < 2:
            continue
        if job.strategy is Strategy.BULK and not job.hidden:
            # An empty existing table is swapped only where replace owns it (a swap takes its triggers
            # and any row the app writes meanwhile) and no foreign key points at it (the keys would
            # stay on the old one): else it loads in place.
            if job.spec.mode is not Mode.REPLACE or _referenced(job, fks):
                continue
            with conn.begin():
                prepare.create_shadow(run, conn, job)
        table = job.target if job.hidden else job.shadow
        with conn.begin(), apply.naming_foreign_key_violations(run, conn, job, fks, deleting=False):
            if job.strategy is Strategy.BULK:
                apply.stage(run, conn, job)  # the planned counts: every row inserted
                apply.judge_guards(run, job)
            rows = run.warehouse.rows(job.mart, job.spec.batch_size, everything=True)
            job.result.rows_sent = load(run, job, table, rows, job.mart.mart_rows, streams)
        if job.strategy is Strategy.BULK:
            job.result.inserted = job.result.rows_sent
        job.loaded = True


def stream_count(run: Run, conn: sa.Connection, rows: int) -> int:
    """How many connections load `rows` at once (see the module's docstring)."""
    if run.load_streams is not None:
        return run.load_streams
    if rows < 2 * ROWS_PER_STREAM:
        return 1
    free = run.dialect.free_connections(conn)
    limits = [MAX_STREAMS, os.cpu_count() or 1, rows // ROWS_PER_STREAM]
    if free is not None:
        limits.append(free // 2)
    return max(1, min(limits))


def _parents_loaded(job: Job, in_run: dict[str, Job], fks: dict[str, list[dict]]) -> bool:
    """Every table it references that this run writes loads before the write transaction too."""
    parents = {fk["referred_table"] for fk in fks.get(job.target.name, [])}
    parents |= {fk.references_table for fk in job.spec.parsed_foreign_keys}
    return all(in_run[p].loaded or _writes_nothing(in_run[p]) for p in parents if p in in_run and in_run[p] is not job)


def _writes_nothing(job: Job) -> bool:
    """An incremental plan that found nothing to change (or a swap skipped): no row locked."""
    return job.strategy is Strategy.UNCHANGED or (
        job.strategy is Strategy.DIFF and not job.plan.sends_everything() and not job.mart.changes
    )


def _referenced(job: Job, fks: dict[str, list[dict]]) -> bool:
    name = job.target.name
    return any(fk["referred_table"] == name for table, found in fks.items() if table != name for fk in found)


def load(run: Run, job: Job, table: sa.Table, batches: Iterable[pa.RecordBatch], total: int, streams: int) -> int:
    """Every row of `batches` into `table` on `streams` connections of their own, each chunk
    committed as it loads; the first error stops the others and is raised."""
    report = run.progress(job, f"loaded into {table.name} on {streams} connections", total)
    stop, lock, done = threading.Event(), threading.Lock(), [0]

    def loaded(rows: int) -> None:
        with lock:
            done[0] += rows
            report(done[0])

    try:
        with CsvFiles(table, batches, run.dialect.csv_rules(), CHUNK_BYTES, waiting=streams) as files:
            with concurrent.futures.ThreadPoolExecutor(streams, thread_name_prefix=f"load-{table.name}") as pool:
                futures = [pool.submit(_stream, run, table, files, stop, loaded) for _ in range(streams)]
                errors = []
                for future in concurrent.futures.as_completed(futures):
                    if future.exception() is not None:
                        stop.set()
                        errors.append(future.exception())
            if errors:
                raise errors[0]
            if done[0] != files.rows:  # every chunk written was loaded, and committed, by one of them
                raise SyncError(
                    f"{job.spec.table}: {files.rows:,} rows were written for {streams} connections to load but "
                    f"{done[0]:,} were loaded; nothing was written (the table is dropped)"
                )
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return done[0]


def _stream(run: Run, table: sa.Table, files: CsvFiles, stop: threading.Event, loaded) -> None:
    """One loader connection: take the next chunk, load it, commit; until none is left."""
    with run.engine.connect() as conn, run.dialect.loading(conn):
        conn.commit()  # the session settings began a transaction
        while not stop.is_set():
            csv_file = files.take()
            if csv_file is None:
                return
            try:
                with conn.begin():  # the load runs on the driver's cursor: this transaction commits it
                    rows = run.dialect.load_csv(conn, table, csv_file)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(csv_file.path)
            loaded(rows)
