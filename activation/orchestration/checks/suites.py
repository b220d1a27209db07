"""The checks of one step, as the flow in execute.py runs them, whatever the destination: what is
judged before the write, what the write itself decides, and what reads the destination back after.

A destination resource hands the flow its suite (`SQLDestination.checks`, `ApiDestinationResource.checks`):
a SQL database is judged before the write against its reflected columns and read back with SQL
(`SqlChecks`); an API object is judged by its describe inside the write, before any write call, and
counted through its API (`activation.orchestration.checks.api.ApiChecks`).
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa

from activation.destinations.base import Capabilities
from activation.destinations.sql.prechecks import PreWriteChecks
from activation.orchestration.checks.post_write import PostWriteChecks
from activation.syncs.model import Plan
from activation.syncs.outcome import CheckOutcome
from activation.syncs.plan import SyncPlan
from activation.syncs.results import SyncResult
from activation.syncs.spec import SyncSpec
from activation.warehouses.base import Warehouse


class CheckSuite(Protocol):
    def before(self, plan: Plan) -> list[CheckOutcome]:
        """The blocking checks that need no write: a failure stops the step before the write."""

    def judge(self, plan: SyncPlan) -> tuple[list[CheckOutcome], SyncPlan]:
        """`before`, and the plan carrying its verdicts, for the writer not to search again."""

    def decided_by_write(self, spec: SyncSpec, result: SyncResult | None) -> list[CheckOutcome]:
        """Verdicts the write reached before its first write call (None: the write failed)."""

    def after(
        self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None
    ) -> list[CheckOutcome]:
        """The selected checks after the write, as far as the destination's capabilities allow."""


class SqlChecks:
    """A SQL database: keys and fit against its reflected tables before the write; row count,
    checksum, orphans and rejects read back after it."""

    def __init__(self, planner: Warehouse, engine: sa.Engine, capabilities: Capabilities):
        self.pre = PreWriteChecks(planner, engine)
        self.post = PostWriteChecks(planner, engine, capabilities)

    def before(self, plan: Plan) -> list[CheckOutcome]:
        return self.pre.run(plan)

    def judge(self, plan: SyncPlan) -> tuple[list[CheckOutcome], SyncPlan]:
        return self.pre.judge(plan)

    def decided_by_write(self, spec: SyncSpec, result: SyncResult | None) -> list[CheckOutcome]:
        return []  # the guards' verdict comes from the write for every destination (checks/guards.py)

    def after(
        self, plan: Plan, result: SyncResult, selected: set[str], scope: dict | None = None
    ) -> list[CheckOutcome]:
        return self.post.run(plan, result, selected, scope=scope)
