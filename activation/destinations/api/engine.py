"""The one engine that syncs marts into API objects, through any vendor's client (client.py).

A run of one API destination's selected syncs:
1. In the warehouse only (api/plan.py): describe, diff with the state, key checks, deletes,
   planned counts, for every sync. The guards judge all plans; a tripped guard raises
   GuardTripped before the client is opened: no call at all.
2. The client opens (its secrets from the environment); each object's describe (read-only) is
   checked against the mapping, and the values the API would refuse are counted in the warehouse:
   refused (nothing sent) or set aside under `max_rejects`, for every sync before any write.
3. Per sync (api/send.py): upserts, then deletes, in the client's batches; per-record refusals
   kept as rejects; then `Warehouse.commit` advances the state for what the API accepted.
Objects fail on their own: one object's describe that does not fit, or its failed call, stops that
sync only; the others are sent and committed, then the run raises one SyncError naming every
failure (`results` holds what was written). A failure of the whole destination (DestinationDown:
its login, its daily API limit) stops every sync not yet sent and says so.
Every call goes through the destination's one RateLimiter and the retry Transport (limits.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

from activation.destinations import registry
from activation.destinations.api import parents as relationships
from activation.destinations.api.client import CallStats, DestinationDown, ObjectClient
from activation.destinations.api.parents import children_of, parents_first, parents_of
from activation.destinations.api.plan import ApiJob, check_fields, plan_job, with_samples
from activation.destinations.api.send import Tally, record_refusals, result_of, send_deletes, send_upserts
from activation.destinations.base import Capabilities, Destination, Log
from activation.syncs import guards
from activation.syncs.model import MartRelation
from activation.syncs.plan import SyncPlan
from activation.syncs.problems import Problem
from activation.syncs.results import ApiCalls, GuardTripped, SyncError, SyncPreview, SyncResult
from activation.syncs.spec import DestinationSpec, SyncSpec
from activation.warehouses import destination_schemas
from activation.warehouses.base import Warehouse

OpenClient = Callable[[Log], ObjectClient]


class ApiDestination(Destination):
    """One configured API destination (an org, a portal, an endpoint) and its one rate limiter."""

    capabilities = Capabilities(
        transactions=False,
        transactional_ddl=False,
        atomic_swap=False,
        advisory_locks=False,
        temporary_tables=False,
        read_back=False,
        count=True,
        record_outcomes=True,
    )

    def __init__(
        self,
        name: str,
        spec: DestinationSpec,
        *,
        open_client: OpenClient | None = None,
        syncs: Sequence[SyncSpec] = (),
    ):
        super().__init__()
        # every sync of this destination in the config: the parents a run's children point at
        # may be synced in another run (api/parents.py)
        self.syncs = {s.name: s for s in syncs if s.destination == name}
        # object -> what its describe and the value checks found before any write call ([]: it fits),
        # for each sync whose object was checked in the last run (the `mart_fits_destination` verdict)
        self.fitted: dict[str, list[Problem]] = {}
        self.name, self.spec = name, spec
        self.kind = spec.type  # the Dagster kind of its assets
        self.capabilities = dataclasses.replace(ApiDestination.capabilities, count=registry.can_count(spec))
        self._open = open_client or (lambda log: registry.open_client(name, spec, log))

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
        self.within_guards, self.fitted = {}, {}
        given = plans or {}
        jobs = [
            plan_job(warehouse, s, relations[s.name], full_resync=full_resync, plan=given.get(s.name)) for s in specs
        ]
        self._relate(jobs)
        guards.check([job.guarded for job in jobs])
        self.within_guards = {job.spec.table: dict(job.planned) for job in jobs}
        if not any(job.to_send or job.to_delete for job in jobs):  # nothing changed: not a single call
            return [self._commit(warehouse, job, Tally(), ApiCalls(), time.monotonic(), log) for job in jobs]
        try:
            client = self._open(log)
        except Exception as exc:
            raise SyncError(f"destination {self.name}: could not open its {self.kind} client: {exc}") from exc
        calls: dict[str, ApiCalls] = {}
        results: list[SyncResult] = []
        failures: list[SyncError] = []
        try:
            fitting = []
            for job in parents_first(jobs):  # a child's check reads its parents' describe
                try:
                    self._check(warehouse, client, job, calls, jobs)
                    fitting.append(job)
                except SyncError as exc:  # this object only: the others go on
                    if isinstance(exc.__cause__, DestinationDown):
                        raise
                    exc.sync = job.spec.name
                    failures.append(exc)
            self._send_all(warehouse, client, fitting, jobs, calls, failures, results, log)
            if failures:
                raise _failed(failures, results, jobs)
            return results
        except SyncError as exc:
            if isinstance(exc.__cause__, DestinationDown):
                exc = _down(self.name, exc.__cause__, failures, results, jobs)
            exc.api_calls, exc.results = calls, results
            raise exc from exc.__cause__
        finally:
            client.close()

    def _relate(self, jobs: Sequence[ApiJob | None]) -> None:
        """Each job's parents (api/parents.py): the run's own syncs, and the config's for the rest."""
        known = [j for j in jobs if j is not None]
        syncs = {**self.syncs, **{j.spec.name: j.spec for j in known}}
        plans = {j.spec.name: j.mart for j in known}
        for job in known:
            job.parents = relationships.links(job.spec, syncs, plans)
            job.children = relationships.children(job.spec, syncs)

    def _check(
        self, wh: Warehouse, client: ObjectClient, job: ApiJob, calls: dict[str, ApiCalls], jobs: Sequence[ApiJob]
    ) -> None:
        """The object's describe against the mapping and the values in the warehouse (no write call)."""
        before = _snapshot(client.stats)
        try:
            check_fields(wh, client, job, others=jobs)
            self.fitted[job.spec.table] = []
        except SyncError as exc:
            self.fitted[job.spec.table] = exc.problems or [
                Problem(job.spec.table, str(exc), destination=job.spec.destination)
            ]
            raise
        except DestinationDown as exc:
            raise SyncError(f"{job.spec.name}: describing {job.spec.table} failed: {exc}") from exc
        except Exception as exc:  # the describe call failed (retries exhausted, a vendor error)
            message = f"{job.spec.name}: describing {job.spec.table} failed: {exc}; nothing was sent"
            raise SyncError(message) from exc
        finally:
            calls[job.spec.name] = _calls_since(client.stats, before, [])

    def _send_all(
        self,
        wh: Warehouse,
        client: ObjectClient,
        jobs: list[ApiJob],
        everyone: list[ApiJob],
        calls: dict[str, ApiCalls],
        failures: list[SyncError],
        results: list[SyncResult],
        log: Log,
    ) -> None:
        """Every sync's upserts, parents before children; then every sync's deletes, children
        before parents; then each sync that went through is committed (into `results`). A child whose parent sync
        failed is not sent; a parent whose child sync failed keeps its deletes back (a delete could
        cascade to children the child sync still holds)."""
        failed = {e.sync for e in failures if getattr(e, "sync", None)}
        order = parents_first(jobs)
        tallies: dict[str, Tally] = {}
        started: dict[str, float] = {}

        def fail(job: ApiJob, exc: SyncError) -> None:
            if isinstance(exc.__cause__, DestinationDown):
                raise exc
            exc.sync = job.spec.name
            failures.append(exc)
            failed.add(job.spec.name)

        if not any(parents_of(job, everyone) for job in jobs):  # unrelated objects: each done and committed in turn
            for job in order:
                tally, begun = Tally(), time.monotonic()
                try:
                    self._step(wh, client, job, calls, tally, send_upserts, log)
                    self._step(wh, client, job, calls, tally, send_deletes, log)
                except SyncError as exc:
                    fail(job, exc)
                    continue
                results.append(self._commit(wh, job, tally, calls[job.spec.name], begun, log))
            return
        for job in order:
            blocked = [p for p in parents_of(job, everyone) if p in failed]
            if blocked:
                fail(
                    job,
                    SyncError(
                        f"{job.spec.name} -> {job.spec.table}: not sent: its parent sync(s) "
                        f"{', '.join(blocked)} failed, and a child waits for its parents"
                    ),
                )
                continue
            tallies[job.spec.name], started[job.spec.name] = Tally(), time.monotonic()
            try:
                self._step(wh, client, job, calls, tallies[job.spec.name], send_upserts, log)
            except SyncError as exc:
                fail(job, exc)
        for job in reversed(order):
            if job.spec.name in failed:
                continue
            children = [c for c in children_of(job, everyone) if c in failed]
            if children and job.to_delete:
                fail(
                    job,
                    SyncError(
                        f"{job.spec.name} -> {job.spec.table}: its {job.to_delete:,} delete(s) were "
                        f"held back: the child sync(s) {', '.join(children)} failed, and deleting a "
                        f"parent can delete the children they still hold (cascade)"
                    ),
                )
                continue
            try:
                self._step(wh, client, job, calls, tallies[job.spec.name], send_deletes, log)
            except SyncError as exc:
                fail(job, exc)
        for job in order:
            if job.spec.name not in failed:
                name = job.spec.name
                results.append(self._commit(wh, job, tallies[name], calls[name], started[name], log))

    def _step(
        self,
        wh: Warehouse,
        client: ObjectClient,
        job: ApiJob,
        calls: dict[str, ApiCalls],
        tally: Tally,
        step: Callable[..., None],
        log: Log,
    ) -> None:
        """One sync's upserts or its deletes; a failed call raises SyncError naming the sync."""
        spec = job.spec
        before = _snapshot(client.stats)
        scope = getattr(client, "set_idempotency_scope", None)
        if scope is not None:  # the same change against the same state is the same request
            scope(f"{spec.name}@{wh.state_version(spec) or 'new'}")
        try:
            total = job.to_send + job.to_delete

            def progress(done: int) -> None:  # the line activation/cli/live.py draws its bar from
                log(f"{spec.table}: sent to {spec.destination} {done:,} / {total:,} rows")

            step(wh, client, job, tally, progress, log)
        except Exception as exc:
            if isinstance(exc, SyncError):
                raise
            if isinstance(exc, DestinationDown):
                raise SyncError(f"{spec.name} -> {spec.table}: {exc}") from exc
            raise SyncError(
                f"{spec.name} -> {spec.table}: the API call failed after {tally.sent:,} record(s) and "
                f"{tally.deleted:,} delete(s) were answered: {exc}. The sync state did not advance: the next run "
                f"sends the same change again (the upsert by {spec.primary_key[0]} absorbs what already arrived)"
            ) from exc
        finally:
            calls[spec.name] = dataclasses.replace(
                _calls_since(client.stats, before, tally.errors, calls.get(spec.name)),
                records_refused=len(tally.refused),
                deletes_refused=len(tally.refused_deletes),
            )

    def _commit(
        self, wh: Warehouse, job: ApiJob, tally: Tally, calls: ApiCalls, started: float, log: Log
    ) -> SyncResult:
        """After the calls: refusals recorded, the state advanced for what the API accepted."""
        spec = job.spec
        record_refusals(wh, job, tally)
        wh.commit(job.mart)
        if job.description is not None:  # read this run: kept for reviews without credentials
            destination_schemas.record(wh, spec, job.description)
        result = result_of(job, tally, calls, time.monotonic() - started)
        log(
            f"{spec.table}: {result.inserted:,} inserted, {result.updated:,} updated, {result.deleted:,} deleted, "
            f"{result.rejected:,} rejected ({result.reason}); {result.api.calls:,} calls, "
            f"{result.api.rate_limited:,} rate-limited"
        )
        for warning in result.warnings:
            log(f"{spec.table}: {warning}")
        return result

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
        """What each sync would insert, update, delete and set aside, with sample keys, and every
        problem that would refuse it, WITHOUT any write call: the only calls are the objects'
        describe (read-only metadata) and whatever the client needs to open (an OAuth token).
        Use a dry-run warehouse: the state is never committed here either."""
        failed: dict[str, SyncPreview] = {}  # syncs whose plan could not be made
        jobs: list[ApiJob | None] = []
        for spec in specs:
            try:
                job = plan_job(warehouse, spec, relations[spec.name], full_resync=full_resync)
            except SyncError as exc:
                out = SyncPreview(
                    sync=spec.name, destination=spec.destination, table=spec.table, mode=spec.mode.value, strategy="api"
                )
                out.refuse(exc.problems, str(exc))
                failed[spec.name] = out
                jobs.append(None)
                continue
            try:
                guards.check([job.guarded])
            except GuardTripped as exc:
                job.plan = job.plan.refused(exc.problems, str(exc))
            jobs.append(job)
        self._relate(jobs)
        planned = [job for job in jobs if job is not None]
        try:
            client = self._open(log)
        except Exception as exc:  # a refused login, a secret unset: what the run would fail with
            message = f"destination {self.name}: could not open its {self.kind} client: {exc}"
            for job in planned:
                job.plan = job.plan.refused([], message)
            for out in failed.values():
                out.refuse([], message)
        else:
            try:
                for job in parents_first(planned):  # a child's check reads its parents' describe
                    problems = check_fields(warehouse, client, job, refuse=False, others=planned)
                    if problems:
                        job.plan = job.plan.refused(problems, f"{len(problems)} problem(s) the API would refuse")
                    job.plan = with_samples(warehouse, job, sample)
            finally:
                client.close()
        return [failed[s.name] if job is None else job.plan.preview() for s, job in zip(specs, jobs, strict=True)]

    def count(self, object_name: str, key_field: str | None = None, log: Log = lambda _msg: None) -> int | None:
        """The object's records as the API counts them (those with `key_field` set, when given: the
        records a sync keys), for a read-back check; None where the API cannot count."""
        client = self._open(log)
        try:
            return client.count(object_name, key_field)
        finally:
            client.close()


def _failed(failures: list[SyncError], results: list[SyncResult], jobs: list[ApiJob]) -> SyncError:
    """The run's verdict when some objects failed on their own: every failure, and what was written."""
    done = ", ".join(r.sync for r in results) or "none"
    message = f"{len(failures)} of {len(jobs)} sync(s) failed: " + " | ".join(str(e) for e in failures)
    problems = [p for e in failures for p in e.problems]
    return SyncError(f"{message}. Written and committed all the same: {done}", problems)


def _down(
    name: str, cause: BaseException, failures: list[SyncError], results: list[SyncResult], jobs: list[ApiJob]
) -> SyncError:
    """The whole destination refused (auth, the daily limit): every sync not yet done stops."""
    done = {r.sync for r in results}
    stopped = ", ".join(j.spec.name for j in jobs if j.spec.name not in done)
    others = "".join(f" | {e}" for e in failures)
    message = (
        f"destination {name} stopped every sync: {cause}. Not sent: {stopped}; written and committed "
        f"before it: {', '.join(sorted(done)) or 'none'}{others}"
    )
    return SyncError(message, [p for e in failures for p in e.problems])


def _snapshot(stats: CallStats) -> tuple[int, int, int, int]:
    return stats.calls, stats.retries, stats.rate_limited, stats.server_errors


def _calls_since(
    stats: CallStats, before: tuple[int, int, int, int], errors: list[str], earlier: ApiCalls | None = None
) -> ApiCalls:
    """The calls one sync made: the client's counters since `before`, added to its `earlier` calls."""
    now = _snapshot(stats)
    calls, retries, limited, failed = (a - b for a, b in zip(now, before, strict=True))
    base = earlier or ApiCalls()
    return ApiCalls(
        calls=base.calls + calls,
        retries=base.retries + retries,
        rate_limited=base.rate_limited + limited,
        server_errors=base.server_errors + failed,
        errors=[*base.errors, *[e for e in errors if e not in base.errors]][:10],
    )
