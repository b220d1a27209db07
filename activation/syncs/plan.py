"""One sync's plan, as a value: what it will insert, update, delete and set aside, how, and why.

Made once per sync (`SyncPlan.of` over the warehouse's description of the mart), then completed
by each step that learns something: the blocking checks add their verdicts, the destination
its facts (the table exists or is created, the rows it holds, the strategy), the warehouse its
diff, the dry run its counts and samples. Each step makes a new value with `dataclasses.replace`;
nothing changes a plan in place. `activation plan`, the blocking checks and the real run read
the same plan, so what the dry run shows is what the run does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from activation.syncs import problems as found
from activation.syncs.model import Plan
from activation.syncs.problems import Problem
from activation.syncs.results import OPERATIONS, SyncPreview
from activation.syncs.spec import SyncSpec


class Strategy(StrEnum):
    """How the destination applies a plan."""

    DIFF = "diff"  # stage what the plan sends, compare with the table, upsert and delete
    SHADOW = "shadow"  # load a copy of the table and swap it in (replace)
    TRUNCATE = "truncate"  # delete the sync's rows, insert every mart row (truncate_insert)
    BULK = "bulk"  # the table is empty: load every row in place
    UNCHANGED = "unchanged"  # a shadow swap with nothing changed since the last sync: nothing to do
    API = "api"  # an API object: the diff's rows upserted by the external ID, its deletes by key
    STREAM = "stream"  # a stream: every change of the diff published as an event

    @property
    def sends_everything(self) -> bool:
        """Every mart row is sent, whatever an incremental plan found."""
        return self not in (Strategy.DIFF, Strategy.API, Strategy.STREAM)


@dataclass(frozen=True)
class Counts:
    insert: int = 0
    update: int = 0
    delete: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"insert": self.insert, "update": self.update, "delete": self.delete}


@dataclass(frozen=True)
class Verdict:
    """A blocking check's finding over every mart row, carried so that the writer does not search
    again: `clean` when the check found nothing at all, over `columns` (empty: the keys)."""

    clean: bool
    summary: str = ""
    columns: frozenset[str] = frozenset()


def _no_samples() -> Mapping[str, tuple]:
    return MappingProxyType({op: () for op in OPERATIONS})


@dataclass(frozen=True)
class SyncPlan:
    """What one sync will do. Counts are `None` until measured (the dry run measures them against
    the destination; the run's guards judge them before any write)."""

    mart: Plan  # the mart's columns and the warehouse's diff
    strategy: Strategy = Strategy.DIFF
    creates_table: bool = False
    rows_before: int = 0  # rows the sync owns in the destination before the run
    planned: Counts | None = None  # what the guards judge
    reported: Counts | None = None  # what the dry run shows (truncate: every owned row out, every row in)
    rejected: int = 0  # rows set aside under max_rejects
    warnings: tuple[str, ...] = ()
    # operation -> up to `sample` keys; updates also name the columns that change
    samples: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=_no_samples)
    problems: tuple[Problem, ...] = ()  # each thing that refuses the sync
    blocked: str | None = None
    keys: Verdict | None = None  # the blocking checks' verdicts, when they ran
    fits: Verdict | None = None

    def __post_init__(self) -> None:  # read-only, whatever the caller passed
        frozen = {op: tuple(MappingProxyType(dict(s)) for s in self.samples.get(op, ())) for op in OPERATIONS}
        object.__setattr__(self, "samples", MappingProxyType(frozen))

    @classmethod
    def of(cls, mart: Plan) -> SyncPlan:
        return cls(mart=mart)

    @property
    def spec(self) -> SyncSpec:
        return self.mart.spec

    @property
    def reason(self) -> str:
        return self.mart.reason

    def with_mart(self, **changes: Any) -> SyncPlan:
        """The plan with its mart part changed (columns, casts, the diff, its reason)."""
        return replace(self, mart=replace(self.mart, **changes))

    def warned(self, warning: str) -> SyncPlan:
        return replace(self, warnings=(*self.warnings, warning))

    def refused(self, problems: Sequence[Problem], message: str = "") -> SyncPlan:
        """The plan with what refuses it; `message` stands for problems the refusal did not name."""
        spec = self.spec
        if not problems and message:
            problems = [Problem(spec.table, message, destination=spec.destination)]
        merged = tuple(found.merged(list(self.problems), list(problems)))
        blocked = self.blocked or ((message or str(merged[0])) if merged else None)
        return replace(self, problems=merged, blocked=blocked)

    def sends_everything(self) -> bool:
        return self.mart.full or self.strategy.sends_everything

    def sending(self) -> int:
        """How many rows the plan sends to be staged."""
        m = self.mart
        return m.mart_rows if self.sends_everything() else m.new_keys + m.changed_keys

    def preview(self) -> SyncPreview:
        """What `activation plan` prints of this plan."""
        spec, counts = self.spec, self.reported or self.planned or Counts()
        out = SyncPreview(
            sync=spec.name,
            destination=spec.destination,
            table=spec.table,
            mode=spec.mode.value,
            strategy=self.strategy.value,
            reason=self.reason,
            rows_in_mart=self.mart.mart_rows,
            rows_in_destination=self.rows_before,
            creates_table=self.creates_table,
            counts=counts.as_dict(),
            samples={op: [dict(s) for s in self.samples.get(op, ())] for op in OPERATIONS},
            rejected=self.rejected,
            warnings=list(self.warnings),
        )
        out.problems, out.blocked = list(self.problems), self.blocked
        return out
