"""The engine that syncs marts into streams, whatever the broker (jetstream.py, rabbitmq_stream.py,
redis_stream.py).

A run of one stream destination's selected syncs:
1. In the warehouse only: describe, diff with the state, key checks, planned counts (the API
   path's `plan_job`: the same diff, the same deletes); the guards judge every plan before the
   broker is even connected. Values a stream cannot carry are found next (values.py): refused, or
   set aside under `max_rejects`, before any event is published.
2. Per sync: the stream is prepared (created, its deduplication checked against the retry
   horizon), the upserts then the deletes are published (publisher.py), each event with an id
   derived from (sync, state version, key, content) that the broker deduplicates by.
3. Only when the broker acknowledged every event does `Warehouse.commit` advance the state. A
   failure (the broker gone, a timeout) leaves the state as it was: the next run plans the same
   change against the same state version, so the events it publishes again carry the same ids
   and the broker drops those it already holds; consumers see each event once.
The first sync publishes every row as a snapshot (op r), or with `initial: skip` nothing: the
state is recorded and the next run publishes what changed since.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from activation.destinations.api.plan import ApiJob, plan_job, with_samples
from activation.destinations.base import Capabilities, Destination, Log
from activation.destinations.streams import changes, config, values
from activation.destinations.streams.envelope import Encoder, Origin, UnencodableValue
from activation.destinations.streams.publisher import Broker, Published, publish
from activation.syncs import guards
from activation.syncs.model import MartRelation
from activation.syncs.plan import Counts, Strategy, SyncPlan
from activation.syncs.results import GuardTripped, SyncError, SyncPreview, SyncResult
from activation.syncs.spec import DestinationSpec, SyncSpec
from activation.warehouses.base import Warehouse

OpenBroker = Callable[[], "asyncio.Future[Broker]"]
SAMPLE_EVENTS = 3


def broker_module(kind: str):
    import importlib

    modules = {
        "nats": "activation.destinations.streams.jetstream",
        "rabbitmq_stream": "activation.destinations.streams.rabbitmq_stream",
        "redis_stream": "activation.destinations.streams.redis_stream",
    }
    return importlib.import_module(modules[kind])


class StreamDestination(Destination):
    """One configured broker; each sync publishes into its own stream (the sync's `table`)."""

    capabilities = Capabilities(
        transactions=False,
        transactional_ddl=False,
        atomic_swap=False,
        advisory_locks=False,
        temporary_tables=False,
        read_back=False,
        count=False,  # a stream holds events, not one record per mart row
        record_outcomes=True,  # every event is acknowledged on its own
    )

    def __init__(self, name: str, spec: DestinationSpec, *, open_broker: OpenBroker | None = None):
        super().__init__()
        self.name, self.spec = name, spec
        self.kind = config.KINDS[spec.type]
        self.settings = config.settings(spec)
        self._open = open_broker or (lambda: broker_module(spec.type).open_broker(self.settings))
        self.run_id = uuid.uuid4().hex  # the orchestrator sets its own run's id
        # sync -> what its run published (the checks after the write read it)
        self.published: dict[str, Published] = {}
        # stream -> the problems found before publishing ([]: every value fits)
        self.fitted: dict[str, list] = {}

    # -- the run ---------------------------------------------------------------------------
    def sync(
        self,
        warehouse: Warehouse,
        specs: Sequence[SyncSpec],
        relations: Mapping[str, MartRelation],
        *,
        full_resync: bool = False,
        log: Log = print,
        plans: Mapping[str, SyncPlan] | None = None,
    ) -> list[SyncResult]:
        self.within_guards, self.published, self.fitted = {}, {}, {}
        given = plans or {}
        jobs = [self._plan(warehouse, s, relations[s.name], full_resync, given.get(s.name)) for s in specs]
        guards.check([job.guarded for job in jobs])
        self.within_guards = {job.spec.table: dict(job.planned) for job in jobs}
        return asyncio.run(self._run(warehouse, jobs, log))

    def _plan(self, wh: Warehouse, spec: SyncSpec, relation: MartRelation, full: bool, plan: SyncPlan | None) -> ApiJob:
        job = plan_job(wh, spec, relation, full_resync=full, plan=plan)
        job.plan = replace(job.plan, strategy=Strategy.STREAM)
        if self._skips(wh, job):
            job.plan = replace(job.plan, planned=Counts(), reported=Counts()).warned(
                "initial: skip: the first sync publishes no snapshot; it records the state, and the next run "
                "publishes what changed since"
            )
        return job

    @staticmethod
    def _skips(wh: Warehouse, job: ApiJob) -> bool:
        return job.spec.initial == "skip" and not wh.has_state(job.spec)

    async def _run(self, wh: Warehouse, jobs: list[ApiJob], log: Log) -> list[SyncResult]:
        results: list[SyncResult] = []
        broker: Broker | None = None
        try:
            for job in jobs:
                started = time.monotonic()
                spec, stream = job.spec, job.spec.table
                if self._skips(wh, job):
                    wh.commit(job.mart)
                    results.append(self._result(job, Published(stream), started))
                    continue
                if not (job.planned["insert"] or job.planned["update"] or job.planned["delete"]):
                    self.fitted[stream] = []
                    wh.commit(job.mart)  # nothing changed: no connection at all
                    results.append(self._result(job, Published(stream), started))
                    continue
                if broker is None:
                    broker = await self._connect()
                encoder = self._encoder(wh, job)
                try:
                    job.plan = replace(
                        job.plan,
                        rejected=values.refuse_or_set_aside(wh, job.mart, encoder, broker.max_payload, stream),
                    )
                    self.fitted[stream] = []
                except SyncError as exc:
                    self.fitted[stream] = exc.problems
                    raise
                published = Published(stream)
                self.published[spec.name] = published
                try:
                    published.warnings += await broker.prepare(stream, self.settings.retry_horizon_seconds)
                    if hasattr(broker, "begin"):  # RabbitMQ: names its producer, finds what a failed attempt stored
                        await broker.begin(stream, spec.name, encoder.origin.state_version)
                    published.length_before = await broker.length(stream)
                    await self._publish(wh, job, broker, encoder, published, log)
                    published.length_after = await broker.length(stream)
                except (SyncError, GuardTripped):
                    raise
                except UnencodableValue as exc:
                    raise SyncError(f"{spec.name} -> {stream}: {exc}; the sync state did not advance") from exc
                except Exception as exc:
                    raise SyncError(
                        f"{spec.name} -> {stream}: publishing failed after {published.acked:,} of "
                        f"{published.sent:,} events sent were acknowledged: {type(exc).__name__}: {exc}. The sync "
                        "state did not advance: the next run publishes the same events with the same ids, and "
                        f"the {self.kind} broker drops those it already holds"
                    ) from exc
                wh.commit(job.mart)  # every event acknowledged: the state advances
                result = self._result(job, published, started)
                log(
                    f"{stream}: {published.acked:,} events acknowledged ({dict(published.by_op)}), "
                    f"{published.duplicates:,} duplicates dropped by the broker, {published.bytes:,} bytes"
                )
                results.append(result)
            return results
        except SyncError as exc:
            exc.results = results
            raise
        finally:
            if broker is not None:
                await broker.close()

    async def _connect(self) -> Broker:
        try:
            return await self._open()
        except Exception as exc:
            raise SyncError(
                f"destination {self.name}: could not connect to {config.endpoint(self.spec)}: {exc}; nothing published"
            ) from exc

    def _encoder(self, wh: Warehouse, job: ApiJob) -> Encoder:
        spec = job.spec
        origin = Origin(
            destination=self.name,
            sync=spec.name,
            mart=spec.source,
            run_id=self.run_id,
            state_version=wh.state_version(spec),
            time=dt.datetime.now(dt.UTC),
        )
        plan = job.mart
        return Encoder(origin, spec.primary_key, plan.columns, Encoder.json_columns_of(plan.arrow_schema))

    def _batches(self, wh: Warehouse, job: ApiJob, encoder: Encoder):
        plan, size = job.mart, self.settings.batch_size
        if job.planned["insert"] or job.planned["update"]:
            for batch in changes.upserts(wh, plan, size):
                yield encoder.events(batch, changes.OP)
        if job.planned["delete"]:
            for batch in changes.deletes(wh, plan, size):
                yield encoder.events(batch, changes.OP)

    async def _publish(
        self, wh: Warehouse, job: ApiJob, broker: Broker, encoder: Encoder, published: Published, log: Log
    ) -> None:
        total = job.to_send + job.to_delete

        def progress(done: int) -> None:  # the line activation/cli/live.py draws its bar from
            log(f"{job.spec.table}: sent to {job.spec.destination} {done:,} / {total:,} rows")

        batches = self._batches(wh, job, encoder)
        options = {"max_in_flight": self.settings.max_in_flight, "timeout": self.settings.ack_timeout_seconds}
        await publish(broker, published, batches, progress=progress, **options)

    def _result(self, job: ApiJob, published: Published, started: float) -> SyncResult:
        spec, mart, ops = job.spec, job.mart, published.by_op
        return SyncResult(
            sync=spec.name,
            table=spec.table,
            mode=spec.mode.value,
            strategy=Strategy.STREAM.value,
            reason=mart.reason,
            rows_in_mart=mart.mart_rows,
            rows_sent=published.sent,
            inserted=ops["c"] + ops["r"],
            updated=ops["u"],
            deleted=ops["d"],
            rejected=job.rejected,
            unchanged=max(mart.mart_rows - ops["c"] - ops["r"] - ops["u"] - job.rejected, 0),
            rows_in_destination=published.length_after or 0,
            seconds=time.monotonic() - started,
            columns=[(f.name, str(f.type)) for f in mart.arrow_schema],
            warnings=[*job.plan.warnings, *published.warnings],
            stream=published.as_dict(),
        )

    # -- what `activation plan` shows --------------------------------------------------------
    def preview(
        self,
        warehouse: Warehouse,
        specs: Sequence[SyncSpec],
        relations: Mapping[str, MartRelation],
        *,
        full_resync: bool = False,
        sample: int = 5,
        log: Log = lambda _msg: None,
    ) -> list[SyncPreview]:
        """What each sync would publish, with samples of the events' envelopes, without connecting
        to the broker (a dry-run warehouse: the state is never committed)."""
        out = []
        for spec in specs:
            try:
                job = self._plan(warehouse, spec, relations[spec.name], full_resync, None)
            except SyncError as exc:
                preview = SyncPreview(spec.name, spec.destination, spec.table, spec.mode.value, strategy="stream")
                preview.refuse(exc.problems, str(exc))
                out.append(preview)
                continue
            try:
                guards.check([job.guarded])
            except GuardTripped as exc:
                job.plan = job.plan.refused(exc.problems, str(exc))
            encoder = self._encoder(warehouse, job)
            if not self._skips(warehouse, job):
                try:
                    limit = self.settings.max_payload_bytes
                    job.plan = replace(
                        job.plan, rejected=values.refuse_or_set_aside(warehouse, job.mart, encoder, limit, spec.table)
                    )
                except SyncError as exc:
                    job.plan = job.plan.refused(exc.problems, str(exc))
            job.plan = with_samples(warehouse, job, sample)
            preview = job.plan.preview()
            preview.events = [] if self._skips(warehouse, job) else self._samples(warehouse, job, encoder)
            out.append(preview)
        return out

    def _samples(self, wh: Warehouse, job: ApiJob, encoder: Encoder) -> list[dict]:
        import orjson

        found: list[dict] = []
        try:
            if job.planned["insert"] or job.planned["update"]:
                for batch in changes.upserts(wh, job.mart, SAMPLE_EVENTS, limit=SAMPLE_EVENTS):
                    found += [orjson.loads(e.payload) for e in encoder.events(batch, changes.OP)]
            if job.planned["delete"]:
                for batch in changes.deletes(wh, job.mart, SAMPLE_EVENTS, limit=SAMPLE_EVENTS):
                    found += [orjson.loads(e.payload) for e in encoder.events(batch, changes.OP)]
        except UnencodableValue:
            pass  # the plan names the problem already
        return found
