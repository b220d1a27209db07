"""Relationships between the objects of one API destination, as the warehouse can see them before
any call: the seed's foreign-key lesson applied to a CRM, which has no transaction to roll a
half-related write back.

- A child row whose foreign key names a parent the API will not hold is refused before any call,
  naming the child's key and the parent's (or set aside under `max_rejects`). The API will hold a
  parent that its sync sends in this run (the parent's mart) or holds already (the parent's
  state), except a key that leaves the mart of a parent sync that deletes (mirror): that record
  is deleted in this run. A parent sync outside the run counts with its state alone.
- Keys compare as the API finds the parent by its key: without regard to case where the parent's
  key field is case-insensitive (a Salesforce external ID unless created case sensitive), so
  'k001' finds 'K001' as Salesforce would.
- A NULL foreign key is no relationship (the link is cleared), never missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from activation.destinations.api.client import FieldInfo
from activation.syncs.model import Plan
from activation.syncs.options import ForeignKey
from activation.syncs.order import parents_first as tables_parents_first
from activation.syncs.problems import Problem
from activation.syncs.spec import SyncSpec
from activation.syncs.validate import Violation
from activation.warehouses.base import Warehouse

if TYPE_CHECKING:
    from activation.destinations.api.plan import ApiJob

SAMPLE = 5


@dataclass(frozen=True)
class Parent:
    """The parent side of one foreign key of a child sync."""

    fk: ForeignKey
    spec: SyncSpec  # the parent's sync
    plan: Plan | None  # its plan when it runs with the child (its mart is sent first), else None


@dataclass(frozen=True)
class Child:
    """A sync whose foreign key points at this sync's object (its records may hold links to ours)."""

    fk: ForeignKey
    spec: SyncSpec


def children(spec: SyncSpec, syncs: Mapping[str, SyncSpec]) -> list[Child]:
    """The syncs of `spec`'s destination (this run's and the config's) relating records to its object."""
    return [
        Child(fk, s)
        for s in syncs.values()
        if s.destination == spec.destination
        for fk in s.parsed_foreign_keys
        if fk.references_table == spec.table
    ]


def links(spec: SyncSpec, syncs: Mapping[str, SyncSpec], plans: Mapping[str, Plan]) -> list[Parent]:
    """The parents of `spec`'s foreign keys among `syncs` (the destination's syncs), with the plans
    of those in this run. A self-reference is a parent like any other."""
    by_table = {s.table: s for s in syncs.values() if s.destination == spec.destination}
    found = []
    for fk in spec.parsed_foreign_keys:
        parent = by_table.get(fk.references_table)
        if parent is not None:
            found.append(Parent(fk, parent, plans.get(parent.name)))
    return found


def _held_keys(wh: Warehouse, parent: Parent, fold: bool) -> str | None:
    """SQL of the keys the API will hold for this parent after its sync, as text (folded)."""
    f, k = wh.flavour, wh.flavour.quote(parent.fk.references_column)

    def text(expression: str) -> str:
        value = f.cast(expression, "text")
        return f"lower({value})" if fold else value

    parts = []
    if parent.plan is not None:
        parts.append(f"SELECT {text('x.' + k)} AS k FROM {wh.source(parent.plan)} x")
    if wh.has_state(parent.spec) and (parent.plan is None or not parent.spec.mode.deletes):
        parts.append(f"SELECT {text('s.' + k)} AS k FROM {wh.state_table(parent.spec)} s")
    return " UNION ALL ".join(parts) or None


def missing(
    wh: Warehouse, plan: Plan, parents: list[Parent], fields_of: Mapping[str, Mapping[str, FieldInfo] | None]
) -> list[tuple[Violation, Problem]]:
    """Rows to send whose foreign key names no parent the API will hold, one finding per foreign
    key; `fields_of` holds each parent object's describe (to compare keys as the API does)."""
    spec, f = plan.spec, wh.flavour
    found = []
    for parent in parents:
        if parent.fk.column not in plan.columns:
            continue
        info = (fields_of.get(parent.spec.table) or {}).get(parent.fk.references_column)
        fold = info is not None and not info.case_sensitive
        c = f.quote(parent.fk.column)
        value = f.cast(c, "text")
        value = f"lower({value})" if fold else value
        held = _held_keys(wh, parent, fold)
        absent = "TRUE" if held is None else f"{value} NOT IN (SELECT p.k FROM ({held}) p WHERE p.k IS NOT NULL)"
        condition = f"({c} IS NOT NULL AND {absent})"
        [rows] = wh.count_where(plan, [condition])
        if not rows:
            continue
        samples = wh.query(
            f"SELECT {wh.key_text(spec, 'm')}, {f.cast('m.' + c, 'text')} FROM {wh.to_send(plan)} "
            f"WHERE {condition} ORDER BY 1 LIMIT {SAMPLE}"
        )
        keys = tuple(f"{key} -> {parent.spec.table} {ref}" for key, ref in samples)
        where = "neither sends nor holds" if parent.plan is not None else "does not hold (it is not in this run)"
        problem = (
            f"point at no {parent.spec.table} record: their {parent.fk.references_table}."
            f"{parent.fk.references_column} is one the sync {parent.spec.name!r} {where}"
        )
        violation = Violation(spec.table, parent.fk.column, problem, rows, keys, condition)
        found.append(
            (
                violation,
                Problem(
                    spec.table,
                    problem,
                    parent.fk.column,
                    rows,
                    keys,
                    tuple(spec.primary_key),
                    f"add the parents to the mart of {parent.spec.name}, or leave {parent.fk.column} empty",
                    spec.destination,
                ),
            )
        )
    return found


def parents_of(job: ApiJob, jobs: Sequence[ApiJob]) -> list[str]:
    """The syncs of this run whose objects this sync's foreign keys point at (itself excluded)."""
    by_table = {j.spec.table: j.spec.name for j in jobs}
    names = [by_table.get(fk.references_table) for fk in job.spec.parsed_foreign_keys]
    return list(dict.fromkeys(n for n in names if n and n != job.spec.name))


def children_of(job: ApiJob, jobs: Sequence[ApiJob]) -> list[str]:
    return [j.spec.name for j in jobs if job.spec.name in parents_of(j, jobs)]


def parents_first(jobs: Sequence[ApiJob]) -> list[ApiJob]:
    """The jobs in topological order over their foreign keys (syncs/order.py, as the SQL path)."""
    by_name = {j.spec.name: j for j in jobs}
    names = tables_parents_first(list(by_name), {j.spec.name: parents_of(j, jobs) for j in jobs})
    return [by_name[n] for n in names]
