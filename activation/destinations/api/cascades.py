"""A parent's delete that the CRM would carry over to children another sync still holds.

Salesforce deletes some children with their parent (describe: `childRelationships` with
`cascadeDelete`, as an Account's Contacts). Children's deletes already go before their parents'
(engine.py), but a child sync that does not delete (upsert), one outside this run, or a child
moved to the parent in the CRM can leave records pointing at a parent about to go. So before a
parent sync deletes records, the engine asks the API which records of each cascading child object
point at them (the CRM's own answer, not the warehouse's guess):
- a parent with a child that a sync of this destination holds (its key is in that sync's state)
  keeps its delete back: the key stays in the parent's state and the delete is tried again next
  run, with a reason naming the child and the sync;
- children that no sync holds (made in the CRM) go with their parent, as the CRM decides; the log
  counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from activation.destinations.api.client import ObjectClient
from activation.warehouses.base import Warehouse

if TYPE_CHECKING:
    from activation.destinations.api.plan import ApiJob

Log = Callable[[str], None]
CHUNK = 500


def _held_by(wh: Warehouse, child, keys: list[Any]) -> set[str]:
    """Which of `keys` (lower-cased text) the child sync's state holds."""
    if not keys or not wh.has_state(child):
        return set()
    f = wh.flavour
    column = f"lower({f.cast(f.quote(child.primary_key[0]), 'text')})"
    held: set[str] = set()
    texts = sorted({str(k).lower() for k in keys})
    for start in range(0, len(texts), CHUNK):
        literals = ", ".join(f.text_literal(t) for t in texts[start : start + CHUNK])
        rows = wh.query(f"SELECT {column} FROM {wh.state_table(child)} WHERE {column} IN ({literals})")
        held.update(r[0] for r in rows)
    return held


KEPT_BACK = "kept back: "  # how a delete this module holds back is told from one the API refused


def held_back(wh: Warehouse, client: ObjectClient, job: ApiJob, keys: Sequence[Any], log: Log) -> dict[int, str]:
    """Index (in `keys`) -> why that parent's delete is kept back this run."""
    cascades = getattr(client, "cascades", None)
    if cascades is None or not job.children or not keys:
        return {}
    parent, parent_key = job.spec.table, job.spec.primary_key[0]
    by_text = {str(k).lower(): i for i, k in enumerate(keys)}
    reasons: dict[int, str] = {}
    unheld: list[int] = []  # the parent of each child no sync holds
    for child_object, lookup in cascades(parent):
        for child in (c for c in job.children if c.spec.table == child_object and c.fk.column == lookup):
            found = client.referencing(child_object, lookup, child.spec.primary_key[0], parent_key, list(keys))
            held = _held_by(wh, child.spec, [k for k, _ in found])
            for child_key, parent_value in found:
                index = by_text.get(str(parent_value).lower())
                if index is None:
                    continue
                if str(child_key).lower() not in held:
                    unheld.append(index)
                    continue
                reasons.setdefault(
                    index,
                    f"{KEPT_BACK}deleting {parent} {keys[index]!r} would delete {child_object} {child_key!r} "
                    f"with it ({child_object}.{lookup} cascades), which sync {child.spec.name!r} still holds",
                )
    going = sum(1 for i in unheld if i not in reasons)
    if going:
        log(f"{parent}: its deletes also delete {going:,} child record(s) no sync holds (the CRM cascades them)")
    return reasons
