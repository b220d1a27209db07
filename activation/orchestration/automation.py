"""When things run, and how a person hears about it: automation, freshness, schedule, alerts.

- A destination table syncs when its mart, or the mart of a table its foreign keys connect it
  to, is materialized and every blocking check on those marts passed (dbt tests at severity
  `error` are blocking checks), by declarative automation: tables connected by foreign keys are
  requested in one tick and written in one step. One automation sensor per destination group,
  shipped RUNNING: the default sensor starts STOPPED in open-source Dagster.
- Freshness: each destination from its `freshness:` in syncs.yml, the marts from one default.
- A schedule builds the dbt layer; the syncs follow by automation.
- A run-failure sensor reports failed syncs to the log and, when ACTIVATION_ALERT_WEBHOOK_URL
  is set, as JSON POSTed to that URL (Slack/Teams-style incoming webhook).
"""

from __future__ import annotations

import functools
import json
import operator
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import timedelta

import dagster as dg

from activation.syncs.options import Freshness
from activation.syncs.spec import SyncConfig, SyncSpec

WEBHOOK_ENV = "ACTIVATION_ALERT_WEBHOOK_URL"
DBT_SCHEDULE_ENV = "ACTIVATION_DBT_SCHEDULE"
DEFAULT_DBT_CRON = "0 5 * * *"  # the marts are ready before the working day in Japan (UTC+9 -> 14:00)
MART_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))
MART_GROUP_SUFFIX = "_marts"


def foreign_key_groups(config: SyncConfig) -> list[list[SyncSpec]]:
    """The syncs that must run together: connected components of one destination's tables over
    their foreign keys (a parent and its children, and their other parents), in load order.
    Partitioned syncs run per day in assets of their own, so each is a group of one."""
    group_of = {name: {name} for name in config.syncs}
    for sync in config.syncs.values():
        if sync.partition:
            continue
        for parent in config.parents(sync):
            if parent.partition:
                continue
            merged = group_of[sync.name] | group_of[parent.name]
            for name in merged:
                group_of[name] = merged
    groups = {frozenset(names) for names in group_of.values()}
    order = [s.name for s in config.load_order()]
    return sorted(
        ([config.syncs[n] for n in order if n in names] for names in groups), key=lambda g: order.index(g[0].name)
    )


def _any(conditions: Sequence[dg.AutomationCondition]) -> dg.AutomationCondition | None:
    return functools.reduce(operator.or_, conditions) if conditions else None


def sync_condition(
    destinations: dg.AssetSelection,
    group_marts: Sequence[dg.AssetKey] = (),
    group_syncs: Sequence[dg.AssetKey] = (),
) -> dg.AutomationCondition:
    """`eager()` over the table's foreign-key group: the table is requested when its own mart,
    or the mart of any table its foreign keys connect it to (`group_marts`, the others), updated
    since the table was last requested or synced, once no mart of the group is missing or being
    built, no table of the group is being synced, and every blocking check on those marts passed.
    So one tick requests the whole group and one run writes it in one step, in foreign-key order.

    Destination tables do not gate each other: a parent table's sync does not re-trigger its
    children, and its failed run (a refusal, a tripped guard) never holds them back: the whole
    group is requested again when a mart updates."""
    others = [dg.AutomationCondition.asset_matches(m, dg.AutomationCondition.newly_updated()) for m in group_marts]
    updated = dg.AutomationCondition.any_deps_updated().ignore(destinations)
    if others:
        updated = updated | _any(others)
    blocking_passed = dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(destinations)
    for mart in group_marts:
        blocking_passed = blocking_passed & dg.AutomationCondition.asset_matches(
            mart,
            dg.AutomationCondition.all_checks_match(
                dg.AutomationCondition.check_passed() | dg.AutomationCondition.will_be_requested(), blocking_only=True
            ),
        )
    waiting = [
        dg.AutomationCondition.asset_matches(m, dg.AutomationCondition.missing() | dg.AutomationCondition.in_progress())
        for m in group_marts
    ] + [dg.AutomationCondition.asset_matches(k, dg.AutomationCondition.in_progress()) for k in group_syncs]
    condition = (
        dg.AutomationCondition.in_latest_time_window()
        & (dg.AutomationCondition.newly_missing() | updated).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing().ignore(destinations)
        & ~dg.AutomationCondition.any_deps_in_progress().ignore(destinations)
        & ~dg.AutomationCondition.in_progress()
        & blocking_passed
    )
    if waiting:
        condition = condition & ~_any(waiting)
    label = "sync when a mart of its foreign-key group updates" if others else "sync when the mart updates"
    return condition.with_label(f"{label} and the blocking checks on the marts passed")


def freshness_policy(freshness: Freshness) -> dg.FreshnessPolicy | None:
    if freshness.cron:
        return dg.FreshnessPolicy.cron(
            deadline_cron=freshness.cron, lower_bound_delta=freshness.lower_bound, timezone=freshness.timezone
        )
    if freshness.fail_after:
        return dg.FreshnessPolicy.time_window(fail_window=freshness.fail_after, warn_window=freshness.warn_after)
    return None


def with_mart_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The marts the syncs read are expected daily; a policy set in dbt (meta) wins."""
    if spec.group_name and spec.group_name.endswith(MART_GROUP_SUFFIX) and spec.freshness_policy is None:
        return spec.replace_attributes(freshness_policy=MART_FRESHNESS)
    return spec


def automation_sensors(
    groups: Iterable[str], together: Iterable[Iterable[str]] = ()
) -> list[dg.AutomationConditionSensorDefinition]:
    """One sensor per asset group; groups that `together` joins (tables of one foreign-key group
    placed in different asset groups) share one, so that its tick requests them in one run."""
    merged = {group: {group} for group in groups}
    for joined in together:
        union = set().union(*(merged[g] for g in joined))
        for group in union:
            merged[group] = union
    return [
        dg.AutomationConditionSensorDefinition(
            f"{min(names)}_automation",
            target=dg.AssetSelection.groups(*sorted(names)),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=30,
            description=f"Syncs the tables of {', '.join(sorted(names))} when their marts are materialized.",
        )
        for names in sorted({frozenset(n) for n in merged.values()}, key=min)
    ]


def dbt_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="dbt_build_schedule",
        job=job,
        cron_schedule=os.environ.get(DBT_SCHEDULE_ENV, DEFAULT_DBT_CRON),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Builds the dbt layer (cron from {DBT_SCHEDULE_ENV}); the syncs follow by automation.",
    )


def daily_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Yesterday's partition of the daily flows, after the day closed (UTC)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name="daily_partitions_schedule",
        hour_of_day=5,
        minute_of_hour=30,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Builds and syncs the last closed day of the daily-partitioned flows.",
    )


def redacted(url: str) -> str:
    """Scheme and host only: webhook paths and query strings carry the secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def failure_report(run: dg.DagsterRun, failures: Sequence[tuple[str, str]], sync_assets: Sequence[str]) -> dict:
    steps = ", ".join(step for step, _ in failures) or "the run"
    return {
        "text": f"activation: sync run {run.run_id[:8]} ({run.job_name}) failed in {steps}",
        "run_id": run.run_id,
        "job": run.job_name,
        "assets": list(sync_assets),
        "failures": [{"step": step, "error": message[:2000]} for step, message in failures],
    }


def post_json(url: str, payload: dict, timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "activation-alerts"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (URL from the operator)
        return response.status


def sync_failure_sensor(sync_keys: Sequence[dg.AssetKey], sync_ops: Sequence[str]) -> dg.SensorDefinition:
    keys, ops = set(sync_keys), set(sync_ops)

    @dg.run_failure_sensor(
        name="sync_failure_alerts",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Reports failed syncs to the log and to ${WEBHOOK_ENV} when set.",
    )
    def _alert(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        failures = [
            (event.step_key or "", event.event_specific_data.error.message.strip() if event.event_specific_data else "")
            for event in context.get_step_failure_events()
        ]
        touched = sorted(k.to_user_string() for k in (run.asset_selection or set()) & keys)
        sync_failed = [f for f in failures if f[0] in ops]
        if not sync_failed and not (touched and not failures):
            return dg.SkipReason(f"run {run.run_id} failed outside the syncs")
        report = failure_report(run, sync_failed or failures, touched)
        context.log.error(report["text"] + "".join(f"\n  {f['step']}: {f['error']}" for f in report["failures"]))
        url = os.environ.get(WEBHOOK_ENV)
        if url:
            try:
                status = post_json(url, report)
                context.log.info(f"alert posted to {redacted(url)} (HTTP {status})")
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                context.log.warning(f"alert to {redacted(url)} failed: {reason}")

    return _alert
