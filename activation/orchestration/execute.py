"""The one flow of a sync step: blocking checks, then the write, then the checks that read back.

A step writes its syncs in one or more `Unit`s. Whole tables are one unit: the selected tables
of one destination, written in one call, parents first. A daily-partitioned sync is one unit per
day of the run's partitions, each within `<column> = <day>` of the same table: rows of other days
are never touched, and every row of the day is compared (state kept per day would be overwritten
by the next). Either way the same code runs:

1. Blocking checks on every unit (keys; a table's fit). A failure writes nothing: the step fails
   with the problems found, before any unit is written.
2. The write, unit by unit, through the `Destination` interface, a database or an API alike. A
   tripped guard or a refusal fails the step with its reason; for days, the days already written
   are named. Verdicts the write reached before its first write call (the guards; an API object's
   fit, judged by its describe) are reported whatever happened next.
3. The materialization and the checks after the write. A check over several days is one result,
   which fails when any day failed (each day in its `by_day` table).

What differs between destinations comes from the destination resource (resources.py): its identity,
its `Destination` and its check suite (checks/suites.py). Whole-table runs are recorded in the run
history, whatever their outcome, with an API's calls and errors (`sync_api_calls`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from activation.destinations.base import Destination
from activation.orchestration.checks.guards import guard_outcomes, guards_held_before_failure
from activation.orchestration.checks.results import asset_check_result, combined
from activation.orchestration.checks.suites import CheckSuite
from activation.orchestration.partitions import days
from activation.orchestration.translator import WAREHOUSE_RESOURCE, SyncTranslator
from activation.syncs import problems as problem_values
from activation.syncs.model import MartRelation
from activation.syncs.outcome import CheckOutcome
from activation.syncs.plan import SyncPlan
from activation.syncs.results import GuardTripped, SyncError, SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse
from activation.warehouses.history import RunHistory

Results = Iterator[dg.AssetCheckResult | dg.MaterializeResult]


@dataclass(frozen=True)
class Unit:
    """What one write applies: specs (scoped to the day for a partition) and the marts they read."""

    day: dt.date | None  # None: whole tables
    specs: list[SyncSpec]
    relations: dict[str, MartRelation]

    @property
    def scope(self) -> dict | None:
        """The rows the read-back checks compare: the day's, or (None) all the sync owns."""
        return self.specs[0].scope if self.day is not None else None


def whole_tables(specs: Sequence[SyncSpec], relations: Mapping[str, MartRelation]) -> list[Unit]:
    return [Unit(None, list(specs), {s.name: relations[s.name] for s in specs})]


def days_of(planner: Warehouse, sync: SyncSpec, relation: MartRelation, window: Sequence[dt.date]) -> list[Unit]:
    """One unit per day: the sync scoped to `<column> = <day>`, reading the mart's rows of that day."""
    column, units = sync.partition.column, []
    for day in window:
        view = planner.filtered(relation, column, day, f"_activation_{sync.name}_{day:%Y%m%d}")
        units.append(Unit(day, [sync.model_copy(update={"scope": {column: day}})], {sync.name: view}))
    return units


def run(
    context: dg.AssetExecutionContext, translator: SyncTranslator, selected: Sequence[SyncSpec], *, full_resync: bool
) -> Results:
    """A sync step: the selected tables of one destination, or the run's days of one partitioned sync."""
    first = selected[0]
    target = getattr(context.resources, translator.get_resource_key(first))
    # an API destination whose secret is unset stops here, naming it; the config's syncs tell it
    # the parents and children of the selected ones
    writer = target.destination(list(translator.config.syncs.values()))
    if hasattr(writer, "run_id"):  # a stream's events name the run that published them
        writer.run_id = context.run.run_id
    warehouse = getattr(context.resources, WAREHOUSE_RESOURCE)
    relations = {s.name: translator.marts[s.source].relation for s in selected}
    window = days(context) if first.partition else []
    if first.partition:
        context.log.info(
            f"syncing {first.table} for {window[0]}..{window[-1]} ({len(window)} days) into {target.masked_url}"
        )
    else:
        context.log.info(f"syncing {[s.table for s in selected]} into {target.masked_url} (parents first)")
    with warehouse.open(first.destination, target.identity, log=context.log.info) as planner:
        if first.partition:
            units, history = days_of(planner, first, relations[first.name], window), None
        else:
            units = whole_tables(selected, relations)
            history = RunHistory(
                planner,
                run_id=context.run.run_id,
                destination=first.destination,
                destination_url=target.url,
                retention_days=translator.config.history.retention_days,
            )
            history.before(selected)
        suite = target.checks(planner, writer)
        yield from checked_sync(
            context,
            translator,
            planner,
            writer,
            suite,
            units,
            full_resync=full_resync,
            history=history,
            destination_url=target.masked_url,
        )


def checked_sync(
    context: dg.AssetExecutionContext,
    translator: SyncTranslator,
    planner: Warehouse,
    writer: Destination,
    suite: CheckSuite,
    units: Sequence[Unit],
    *,
    full_resync: bool,
    history: RunHistory | None = None,
    destination_url: str = "",
) -> Results:
    """Blocking checks first (a failure writes nothing), then the write, then the checks that
    read the destination back, as far as its capabilities allow. Yields check results and
    materializations; records the run in the history (when there is one), whatever its outcome."""
    everything = [s for unit in units for s in unit.specs]

    def record(error: BaseException | None, results: Sequence[SyncResult] = ()) -> None:
        if history is None:
            return
        try:
            if error is not None:
                done = getattr(error, "results", [])  # an API destination's objects written beside the failure
                if done:
                    names = {r.sync for r in done}
                    history.succeeded([s for s in everything if s.name in names], done)
                history.failed([s for s in everything if s.name not in {r.sync for r in done}], error)
            else:
                history.succeeded(everything, results)
        except Exception as unrecorded:  # the sync's own outcome is the one to report
            context.log.warning(f"could not record the run in the history: {unrecorded}")

    def wanted(spec: SyncSpec) -> set[str]:
        key = translator.get_asset_key(spec)
        return {k.name for k in context.selected_asset_check_keys if k.asset_key == key}

    # One plan per sync (and day): the checks judge it, the writer completes it with the destination's facts.
    plans = {
        (unit.day, s.name): SyncPlan.of(planner.describe(s, unit.relations[s.name]))
        for unit in units
        for s in unit.specs
    }

    # 1. before the write
    before = _Outcomes()
    for unit in units:
        for spec in unit.specs:
            outcomes, plans[(unit.day, spec.name)] = suite.judge(plans[(unit.day, spec.name)])
            for outcome in outcomes:
                before.add(spec, unit.day, outcome)
    yield from before.results(translator, wanted)
    failed = before.failed()
    if failed:
        description = "blocking checks failed before the write; nothing was written: " + " | ".join(
            o.summary for _, o in failed
        )
        record(GuardTripped(description, {}))
        found = [p for spec, o in failed for p in o.problems or [problem_values.Problem(spec.table, o.summary)]]
        raise dg.Failure(description=description, metadata=_problems_metadata(found))

    # 2. the write
    written: list[tuple[Unit, list[SyncResult]]] = []
    for unit in units:
        # The one call of the destination's writer (every row of a day is compared).
        try:
            results = writer.sync(
                planner,
                unit.specs,
                dict(unit.relations),
                full_resync=full_resync or unit.day is not None,
                log=context.log.info,
                plans={s.name: plans[(unit.day, s.name)] for s in unit.specs},
            )
        except Exception as exc:
            record(exc)
            for result in getattr(exc, "results", []):  # objects of an API destination written beside the failure
                spec = next(s for s in unit.specs if s.name == result.sync)
                yield translator.get_materialization(spec, [(unit.day, result)], destination_url)
            yield from _guards_at_failure(translator, wanted, written, unit, exc, writer.within_guards)
            yield from _verdicts_of_failed_write(translator, wanted, suite, unit)
            failure = _step_failure(exc, unit, written)
            if failure is None:
                raise
            raise failure from exc
        written.append((unit, results))
    record(None, [r for _, results in written for r in results])

    # 3. after the write
    by_sync: dict[str, list[tuple[Unit, SyncSpec, SyncResult]]] = {}
    for unit, results in written:
        by_result = {r.sync: r for r in results}  # the writer orders tables by the destination's foreign keys
        for spec in unit.specs:
            by_sync.setdefault(spec.name, []).append((unit, spec, by_result[spec.name]))
    for name, rows in by_sync.items():
        yield translator.get_materialization(rows[0][1], [(u.day, r) for u, _, r in rows], destination_url)
        after = _Outcomes()
        for unit, spec, result in rows:
            after.add(spec, unit.day, guard_outcomes([spec], [result], None)[spec.table])
            for outcome in suite.decided_by_write(spec, result):
                after.add(spec, unit.day, outcome)
            for outcome in suite.after(plans[(unit.day, name)].mart, result, wanted(spec), scope=unit.scope):
                after.add(spec, unit.day, outcome)
        yield from after.results(translator, wanted)


def _verdicts_of_failed_write(translator: SyncTranslator, wanted, suite: CheckSuite, unit: Unit) -> Results:
    """What the write judged before it failed (an API object's fit, from its describe)."""
    verdicts = _Outcomes()
    for spec in unit.specs:
        for outcome in suite.decided_by_write(spec, None):
            verdicts.add(spec, unit.day, outcome)
    yield from verdicts.results(translator, wanted)


class _Outcomes:
    """Check outcomes per sync and check, each over the units (days) it was evaluated on."""

    def __init__(self) -> None:
        self.by_check: dict[tuple[str, str], tuple[SyncSpec, list[tuple[dt.date | None, CheckOutcome]]]] = {}

    def add(self, spec: SyncSpec, day: dt.date | None, outcome: CheckOutcome) -> None:
        self.by_check.setdefault((spec.name, outcome.name), (spec, []))[1].append((day, outcome))

    def failed(self) -> list[tuple[SyncSpec, CheckOutcome]]:
        return [(spec, o) for spec, outcomes in self.by_check.values() for _, o in outcomes if not o.passed]

    def results(self, translator: SyncTranslator, wanted) -> Iterator[dg.AssetCheckResult]:
        for (_, name), (spec, outcomes) in self.by_check.items():
            if name in wanted(spec):
                yield asset_check_result(_one(name, outcomes), translator.get_asset_key(spec))


def _one(name: str, outcomes: list[tuple[dt.date | None, CheckOutcome]]) -> CheckOutcome:
    """A table's outcome as it is; a partitioned sync's days as one outcome."""
    if outcomes[0][0] is None:  # whole tables: one unit, one outcome
        return outcomes[0][1]
    return combined(name, outcomes)


def _guards_at_failure(
    translator: SyncTranslator,
    wanted,
    written: Sequence[tuple[Unit, list[SyncResult]]],
    unit: Unit,
    exc: BaseException,
    within: dict[str, dict[str, int]],
) -> Iterator[dg.AssetCheckResult]:
    """The guards' verdicts when a write failed. Only a plan over the limits fails the guards; the
    guards that judged a plan before another failure held, and those never reached show as not
    executed. Days written before the failing one passed theirs."""
    tripped = exc if isinstance(exc, GuardTripped) else None
    failing = guards_held_before_failure(unit.specs, within)
    if tripped is not None:
        failing.update(guard_outcomes(unit.specs, None, tripped))
    guards = _Outcomes()
    for spec in unit.specs:
        if spec.table not in failing:
            continue
        for done, results in written:
            passed = guard_outcomes([spec], results, None).get(spec.table)
            if passed is not None:
                guards.add(spec, done.day, passed)
        guards.add(spec, unit.day, failing[spec.table])
    yield from guards.results(translator, wanted)


def _step_failure(exc: BaseException, unit: Unit, written: Sequence[tuple[Unit, list]]) -> dg.Failure | None:
    """What the step fails with: a refusal's or a tripped guard's reason (for a day, which days
    were written already), with the problems to fix; None: any other error, as it is."""
    if not isinstance(exc, SyncError):
        return None
    description = str(exc)
    if unit.day is not None:
        done = ", ".join(str(u.day) for u, _ in written) or "none"
        description = f"{unit.day}: {exc} Days already written: {done}."
    metadata = _problems_metadata(exc.problems) if exc.problems else {}
    if isinstance(exc, GuardTripped):
        planned = {f"planned_{table}": dg.MetadataValue.json(plan) for table, plan in exc.plans.items()}
        metadata = {**planned, **_problems_metadata(exc.problems)}
    return dg.Failure(description=description, metadata=metadata)


def _problems_metadata(found) -> dict[str, dg.MetadataValue]:
    """A refusal's problems on the step failure, for the command line and the UI (activation.syncs.problems)."""
    lines = "\n".join(f"- {p}" + (f" (fix: {p.fix})" if p.fix else "") for p in found)
    return {
        problem_values.METADATA_KEY: dg.MetadataValue.json(problem_values.as_json(found)),
        "problems": dg.MetadataValue.md(lines),
    }
