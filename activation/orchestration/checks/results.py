"""Check outcomes (activation.syncs.outcome) as Dagster asset check results, and the outcomes of
one check over several days of a partitioned sync as one result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from activation.syncs.outcome import CheckOutcome, Markdown, markdown_table


def metadata_value(value: Any) -> Any:
    """Evidence as Dagster shows it: markdown rendered, dicts and lists as JSON, the rest as it is."""
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(value.text)
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(value)
    return value


def dagster_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: metadata_value(value) for key, value in metadata.items()}


def asset_check_result(outcome: CheckOutcome, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=dagster_metadata({"summary": outcome.summary, **outcome.metadata}),
        description=outcome.summary,
    )


def combined(name: str, results: Sequence[tuple[dt.date, CheckOutcome]]) -> CheckOutcome:
    """One check result for a run over several days: it fails when any day failed."""
    failed = [(d, o) for d, o in results if not o.passed]
    shown = failed or results
    day, first = shown[0]
    metadata = dict(first.metadata)
    metadata["days_checked"] = len(results)
    metadata["days_failed"] = [str(d) for d, _ in failed]
    metadata["by_day"] = markdown_table(
        ["day", "passed", "summary"], [(str(d), "yes" if o.passed else "**no**", o.summary) for d, o in results]
    )
    summary = f"{day}: {first.summary}" if len(results) > 1 else first.summary
    if len(failed) > 1:
        summary += f" (and {len(failed) - 1} more day(s))"
    return CheckOutcome(name, not failed, summary, metadata, [p for _, o in failed for p in o.problems])
