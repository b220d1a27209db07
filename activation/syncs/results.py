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


class SwapNotPossible(SyncError):
    """`replace` retried its swap and readers kept the table: a verdict for this run, not retried."""


class GuardTripped(SyncError):
    """A plan crossed a configured threshold; nothing was written."""

    def __init__(self, message: str, plans: dict[str, dict[str, int]], problems: Sequence[Problem] = ()):
        super().__init__(message, problems)
        self.plans = plans


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
