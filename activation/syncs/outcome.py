"""What a check found, in plain values: the verdict, one line a person reads first, the evidence.

The engine's pre-write checks (`prechecks`) and the read-back checks produce these; the dry run
reads them as they are, and `activation.orchestration.checks.results` turns them into Dagster's
asset check results (a `Markdown` value is shown rendered, a dict or a list as JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from activation.syncs.problems import Problem

# Every check a destination table (or API object) may declare, by the name Dagster shows.
KEYS = "mart_keys_not_null_and_unique"
FITS = "mart_fits_destination"
GUARDS = "guards_within_limits"
ROW_COUNT = "row_count_matches_mart"
CHECKSUM = "content_matches_mart"
ORPHANS = "no_orphaned_foreign_keys"
REJECTS = "rejected_rows_below_threshold"
ACCEPTED = "accepted_equals_sent"  # an API answered every record sent: accepted + refused == sent
PUBLISHED = "published_equals_plan"  # a stream's events by op are the plan's changes
ACKED = "every_event_acknowledged"  # the broker acknowledged every event sent
VISIBLE = "events_visible_in_stream"  # the stream's length grew by the events stored

PRE_WRITE = (KEYS, FITS, GUARDS)  # blocking: a failure writes nothing
SAMPLE = 5  # sample keys shown per problem


@dataclass(frozen=True)
class Markdown:
    """Evidence a person reads as a table or a list."""

    text: str


@dataclass
class CheckOutcome:
    """One evaluated check: the verdict, one line a person reads first, and the evidence."""

    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # what failed, for a person to fix


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markdown:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))
