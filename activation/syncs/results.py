"""What a sync reports: its measured counts (SyncResult) and why it refused or failed (SyncError).
Shared by every destination, the checks, the history and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from activation.syncs.problems import Problem


class SyncError(RuntimeError):
    """A sync refused or failed; what the message says was not written. `problems` names what to fix
    (table, column, reason, first keys) when the refusal came from the data."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)
        self.api_calls: dict[str, ApiCalls] = {}  # sync -> the calls an API destination made before it failed


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

    def as_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "errors": list(self.errors),
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
