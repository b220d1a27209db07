"""The destination seam: what the engine may ask of any place synced rows go (a SQL database, a
CRM's API), and the capabilities it declares, so callers branch on what a destination can do,
never on its name (as dlt's destinations do)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from activation.syncs.model import MartRelation
from activation.syncs.plan import SyncPlan
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse

Log = Callable[[str], None]


@dataclass(frozen=True)
class Capabilities:
    """What a destination can do; the engine, the checks and the command line read these flags."""

    transactions: bool  # a run's writes commit or roll back together
    transactional_ddl: bool  # CREATE / ALTER roll back with the data (PostgreSQL, SQLite; not MySQL)
    atomic_swap: bool  # `replace` can load a shadow table and swap it in atomically
    advisory_locks: bool  # one writer per table across processes (GET_LOCK, pg_advisory_lock)
    temporary_tables: bool  # rows are staged in session-private tables before they are applied
    read_back: bool  # checks can read the synced rows back (checksum, content, orphans)
    count: bool  # checks can count the destination's records (row_count_matches)
    # each record sent is answered on its own, accepted or refused (an API's batch): a check can
    # prove every record sent was answered (accepted_equals_sent); a SQL write commits or fails whole
    record_outcomes: bool = False


class Destination(ABC):
    """One configured destination (a database, an API account), bound to a warehouse for a run."""

    kind: ClassVar[str]  # the Dagster kind of its assets: mysql, postgres, sqlite, salesforce, ...
    capabilities: ClassVar[Capabilities]

    def __init__(self) -> None:
        # sync table -> planned counts, for each table whose plan passed the guards before a
        # failure (the guard check reports those as held); reset by every run
        self.within_guards: dict[str, dict[str, int]] = {}

    @abstractmethod
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
        """Apply what changed in each spec's mart, parents first; the warehouse state advances only
        for what the destination accepted. Raises SyncError (nothing written) or GuardTripped.
        `plans` (sync -> plan) are the plans the blocking checks judged, where they ran."""
