"""When things run, and how a person hears about it: automation, freshness, schedule, alerts.

- A destination table syncs when its mart (or one of its parents' marts) is materialized and
  every blocking check upstream passed (dbt tests at severity `error` are blocking checks), by
  declarative automation. One automation sensor per destination group, shipped RUNNING: the
  default sensor starts STOPPED in open-source Dagster.
- Freshness: each destination from its `freshness:` in syncs.yml, the marts from one default.
- A schedule builds the dbt layer; the syncs follow by automation.
- A run-failure sensor reports failed syncs to the log and, when ACTIVATION_ALERT_WEBHOOK_URL
  is set, as JSON POSTed to that URL (Slack/Teams-style incoming webhook).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import timedelta

import dagster as dg

from activation.syncs.spec import Freshness

WEBHOOK_ENV = "ACTIVATION_ALERT_WEBHOOK_URL"
DBT_SCHEDULE_ENV = "ACTIVATION_DBT_SCHEDULE"
DEFAULT_DBT_CRON = "0 5 * * *"  # the marts are ready before the working day in Japan (UTC+9 -> 14:00)
MART_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))
MART_GROUP_SUFFIX = "_marts"


def sync_condition(destinations: dg.AssetSelection) -> dg.AutomationCondition:
    """`eager()`, plus: every blocking check upstream passed; a parent table's own sync does
    not re-trigger its children (the marts do), so one mart update makes one run."""
    return (
        dg.AutomationCondition.in_latest_time_window()
        & (
            dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated().ignore(destinations)
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("sync when the mart updates and its blocking checks passed")


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


def automation_sensors(groups: Iterable[str]) -> list[dg.AutomationConditionSensorDefinition]:
    return [
        dg.AutomationConditionSensorDefinition(
            f"{group}_automation",
            target=dg.AssetSelection.groups(group),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=30,
            description=f"Syncs the tables of {group} when their marts are materialized.",
        )
        for group in sorted(set(groups))
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
