"""A sync's foreign keys as HubSpot associations (CRM associations v4), set after the records'
batch upsert: a contact's `company` foreign key is no property of the contact but a link from the
contact to the company whose unique property (the parent sync's key) holds the value.

For each batch of upserted children, per foreign key:
1. the parents' record ids, read by their unique property (v3 `batch/read` with `idProperty`);
2. the children's current links (v4 `batch/read`, following `paging.next.after`);
3. links to other parents removed (v4 `batch/archive`, every type of the pair), but only to
   parents that carry the parent sync's key property: a link a person made in HubSpot to a
   company no sync keys is left alone, so a moved contact leaves the old company this sync
   linked it to, not the ones people linked it to;
4. the wanted link created with the default type (v4 `batch/associate/default`: contact->company
   279, and HubSpot makes the first company a contact gets its primary). Old links go first, so
   a contact an admin limits to one company can move, and a moved contact with no other company
   gets the new one as its primary.
A NULL foreign key (None) clears: step 3 with no link wanted. A child whose parent HubSpot does not
hold, or whose link HubSpot refused, is refused with HubSpot's message (its properties are written
by then; the record is sent again next run, and the upsert absorbs it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from activation.destinations.hubspot.client import HubSpotClient


@dataclass(frozen=True)
class Wanted:
    """One upserted child's link for one foreign key."""

    index: int  # the record's position in the upsert call
    child: str  # the child's record id
    parent_key: str | None  # the parent's key property value, spelled; None: no link (cleared)


@dataclass
class Linked:
    """What one foreign key's links came to: refusals by record index, and counts for the log."""

    refused: dict[int, str] = field(default_factory=dict)
    created: int = 0
    removed: int = 0
    kept_foreign: int = 0  # links to parents without the key property, left as people made them


def set_links(
    client: HubSpotClient, child_object: str, parent_object: str, parent_key: str, wanted: list[Wanted]
) -> Linked:
    out = Linked()
    size = client.settings.batch_size  # v3 batch/read takes 100; v4 batch/read 1,000
    for start in range(0, len(wanted), size):
        _chunk(client, child_object, parent_object, parent_key, wanted[start : start + size], out)
    return out


def _chunk(
    client: HubSpotClient, child_object: str, parent_object: str, parent_key: str, wanted: list[Wanted], out: Linked
) -> None:
    def refuse(items: list[Wanted], reason: str) -> None:
        for w in items:
            out.refused[w.index] = (
                f"{child_object} record {w.child} was written, but its association to {parent_object} "
                f"({parent_key} {w.parent_key!r}) was not set: {reason}"
            )

    keys = sorted({w.parent_key for w in wanted if w.parent_key is not None})
    found, unknown = client._record_ids(parent_object, parent_key, keys) if keys else ({}, {})
    for w in wanted:
        if w.parent_key is not None and w.parent_key not in found:
            refuse(
                [w], unknown.get(w.parent_key) or f"HubSpot holds no {parent_object} with {parent_key} {w.parent_key!r}"
            )
    live = [w for w in wanted if w.index not in out.refused]
    current, errors = _read_links(client, child_object, parent_object, sorted({w.child for w in live}))
    for w in live:
        if w.child in errors:
            refuse([w], errors[w.child])
    live = [w for w in live if w.index not in out.refused]
    target = {w.child: found.get(w.parent_key) if w.parent_key is not None else None for w in live}
    others = sorted({p for w in live for p in current.get(w.child, set()) if p != target[w.child]})
    managed, reason = _keyed(client, parent_object, parent_key, others) if others else (set(), "")
    if reason:
        refuse([w for w in live if current.get(w.child, set()) - {target[w.child]}], reason)
        live = [w for w in live if w.index not in out.refused]
    stale = {w.child: sorted((current.get(w.child, set()) - {target[w.child]}) & managed) for w in live}
    out.kept_foreign += sum(len((current.get(w.child, set()) - {target[w.child]}) - managed) for w in live)
    removing = [w for w in live if stale[w.child]]
    if removing:
        body = {"inputs": [{"from": {"id": w.child}, "to": [{"id": p} for p in stale[w.child]]} for w in removing]}
        response = client._call("POST", f"/crm/v4/associations/{child_object}/{parent_object}/batch/archive", body)
        if response.status_code in (200, 204):
            out.removed += sum(len(stale[w.child]) for w in removing)
        else:
            refuse(removing, f"HubSpot refused to remove the old link: {client.error_text(response)}")
    adding = [
        w
        for w in live
        if w.index not in out.refused
        and target[w.child] is not None
        and target[w.child] not in current.get(w.child, set())
    ]
    if adding:
        _associate(client, child_object, parent_object, adding, target, out, refuse)


def _associate(
    client: HubSpotClient,
    child_object: str,
    parent_object: str,
    adding: list[Wanted],
    target: dict[str, str | None],
    out: Linked,
    refuse: Callable[[list[Wanted], str], None],
) -> None:
    body = {"inputs": [{"from": {"id": w.child}, "to": {"id": target[w.child]}} for w in adding]}
    path = f"/crm/v4/associations/{child_object}/{parent_object}/batch/associate/default"
    response = client._call("POST", path, body)
    if response.status_code not in (200, 207):
        refuse(adding, client.error_text(response))
        return
    answer = response.json()
    made = {(str(r["from"]["id"]), str(r["to"]["id"])) for r in answer.get("results") or ()}
    failed: dict[str, str] = {}
    unplaced = ""
    for error in answer.get("errors") or ():
        message = _error(error)
        children = [str(i) for i in (error.get("context") or {}).get("fromObjectId") or ()]
        failed.update(dict.fromkeys(children, message))
        unplaced = unplaced if children else message
    for w in adding:
        if w.child in failed:
            refuse([w], failed[w.child])
        elif (w.child, target[w.child]) in made:
            out.created += 1
        else:
            refuse([w], unplaced or "HubSpot answered neither the association nor an error for it")


def _read_links(
    client: HubSpotClient, child_object: str, parent_object: str, children: list[str]
) -> tuple[dict[str, set[str]], dict[str, str]]:
    """(child id -> linked parent ids, child id -> why HubSpot could not say), every page read."""
    links: dict[str, set[str]] = {c: set() for c in children}
    errors: dict[str, str] = {}
    pending: list[dict[str, Any]] = [{"id": c} for c in children]
    path = f"/crm/v4/associations/{child_object}/{parent_object}/batch/read"
    while pending:
        response = client._call("POST", path, {"inputs": pending})
        if response.status_code not in (200, 207):
            reason = f"HubSpot could not read its links: {client.error_text(response)}"
            errors.update(dict.fromkeys((p["id"] for p in pending), reason))
            return links, errors
        answer, pending = response.json(), []
        for result in answer.get("results") or ():
            child = str(result["from"]["id"])
            links.setdefault(child, set()).update(str(t["toObjectId"]) for t in result.get("to") or ())
            after = ((result.get("paging") or {}).get("next") or {}).get("after")
            if after:
                pending.append({"id": child, "after": after})
        for error in answer.get("errors") or ():
            if str(error.get("subCategory", "")).endswith("NO_ASSOCIATIONS_FOUND"):
                continue  # no links yet: what a new record has
            for child in (error.get("context") or {}).get("fromObjectId") or ():
                errors[str(child)] = _error(error)
    return links, errors


def _keyed(client: HubSpotClient, parent_object: str, parent_key: str, ids: list[str]) -> tuple[set[str], str]:
    """The parents among `ids` that carry the key property (the ones a sync manages), or a reason;
    read by record id in batches of at most `batch_size` (v3 batch read takes 100)."""
    keyed: set[str] = set()
    size = client.settings.batch_size
    for start in range(0, len(ids), size):
        inputs = [{"id": i} for i in ids[start : start + size]]
        body = {"inputs": inputs, "properties": [parent_key], "propertiesWithHistory": []}
        response = client._call("POST", f"/crm/v3/objects/{parent_object}/batch/read", body)
        if response.status_code not in (200, 207):
            return set(), f"HubSpot could not read the linked {parent_object}: {client.error_text(response)}"
        for result in response.json().get("results") or ():
            if (result.get("properties") or {}).get(parent_key) not in (None, ""):
                keyed.add(str(result["id"]))
    return keyed, ""


def _error(error: dict[str, Any]) -> str:
    category, message = error.get("category"), error.get("message") or "no message"
    sub = error.get("subCategory")
    return f"{category}{f' ({sub})' if sub else ''}: {message}" if category else str(message)
