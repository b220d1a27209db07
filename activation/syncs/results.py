"""What a sync reports: its measured counts (SyncResult), why it refused or failed (SyncError), and
what a dry run found it would do (SyncPreview). Shared by every destination, the checks, the
history and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from activation.syncs import problems as found
from activation.syncs.problems import Problem

OPERATIONS = ("insert", "update", "delete")


class SyncError(RuntimeError):
    """A sync refused or failed; what the message says was not written. `problems` names what to fix
    (table, column, reason, first keys) when the refusal came from the data."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)
        self.api_calls: dict[str, ApiCalls] = {}  # sync -> the calls an API destination made before it failed
        # the syncs of the same run that were written and committed all the same (an API
        # destination's objects fail on their own): the run fails, but these are done
        self.results: list = []
        self.sync: str | None = None  # the one sync this error is about, when it is about one


class SwapNotPossible(SyncError):
    """`replace` retried its swap and readers kept the table: a verdict for this run, not retried."""


class GuardTripped(SyncError):
    """A plan crossed a configured threshold; nothing was written."""

    def __init__(self, message: str, plans: dict[str, dict[str, int]], problems: Sequence[Problem] = ()):
        super().__init__(message, problems)
        self.plans = plans


@dataclass
class ApiCalls:
    """What one sync's calls to an API cost and met: run history (`sync_api_calls`) and the UI show it."""

    calls: int = 0  # HTTP requests made, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers (or the vendor's equivalent)
    server_errors: int = 0  # 5xx answers and dropped connections
    errors: list[str] = field(default_factory=list)  # the first distinct errors the API answered
    records_refused: int = 0  # records sent that the API answered with an error (kept as rejects)
    deletes_refused: int = 0  # deletes the API refused (their keys stay in the state, tried again)

    def as_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "errors": list(self.errors),
            "records_refused": self.records_refused,
            "deletes_refused": self.deletes_refused,
        }


@dataclass
class SyncResult:
    sync: str
    table: str
    mode: str
    strategy: str = ""
    reason: str = ""
    rows_in_mart: int = 0
    rows_sent: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    unchanged: int = 0
    rows_in_destination: int = 0
    created_table: bool = False
    seconds: float = 0.0
    columns: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    api: ApiCalls | None = None  # set by API destinations
    stream: dict[str, Any] | None = None  # set by stream destinations: events by op, acks, bytes (streams/publisher.py)


@dataclass
class SyncPreview:
    """What a sync would do, from a dry run that wrote nothing."""

    sync: str
    destination: str
    table: str
    mode: str
    strategy: str = ""
    reason: str = ""
    rows_in_mart: int = 0
    rows_in_destination: int = 0
    creates_table: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    # operation -> up to `sample` keys (tuples); updates also name the columns that change
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    rejected: int = 0  # rows set aside under max_rejects (warehouses/rejects.py)
    blocked: str | None = None  # a guard or a pre-write check would refuse the sync
    problems: list[Problem] = field(default_factory=list)  # each thing that would refuse it
    warnings: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # a stream's: samples of the events it would publish

    def refuse(self, problems: list[Problem], message: str = "") -> None:
        """Record what would refuse the sync; `message` stands for problems the refusal did not name."""
        if not problems and message:
            problems = [Problem(self.table, message, destination=self.destination)]
        self.problems = found.merged(self.problems, problems)
        if self.problems and not self.blocked:
            self.blocked = message or str(self.problems[0])

    @property
    def unchanged(self) -> int:
        return max(self.rows_in_mart - self.counts["insert"] - self.counts["update"] - self.rejected, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "destination": self.destination,
            "table": self.table,
            "mode": self.mode,
            "strategy": self.strategy,
            "reason": self.reason,
            "rows_in_mart": self.rows_in_mart,
            "rows_in_destination": self.rows_in_destination,
            "creates_table": self.creates_table,
            **{f"{op}s": n for op, n in self.counts.items()},
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "samples": self.samples,
            "blocked": self.blocked,
            "problems": found.as_json(self.problems),
            "warnings": self.warnings,
            **({"events": self.events} if self.events else {}),  # a stream's sample envelopes
        }
