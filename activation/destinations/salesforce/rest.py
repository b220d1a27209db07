"""The REST side of an org, through simple-salesforce (which sends through our session): describe,
SOQL queries, and sObject Collections for upserts and deletes of up to 200 records a call."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote_plus

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as LibraryError

from activation.destinations.api.client import Outcome
from activation.destinations.salesforce.auth import SalesforceError, refusal
from activation.destinations.salesforce.settings import COLLECTION_LIMIT
from activation.destinations.salesforce.wire import number_text

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Salesforce answers 414 past 16,384 bytes of URL; IN lists stay well under it.
QUERY_URL_BUDGET = 12_000
# A failed delete that means the work is already done: the record was deleted before.
ALREADY_DONE = ("ENTITY_IS_DELETED",)


def api_name(name: str, what: str) -> str:
    """An object or field API name, checked before it goes into a URL or a SOQL statement."""
    if not NAME.match(name):
        raise SalesforceError(f"Salesforce: {what} {name!r} is not an API name (letters, digits, underscores)")
    return name


def rest(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A simple-salesforce call whose HTTP error becomes our error, with Salesforce's own message."""
    try:
        return call(*args, **kwargs)
    except LibraryError as exc:
        content = exc.content
        if isinstance(content, list):
            reason = "; ".join(f"{e.get('errorCode', '?')}: {e.get('message', '')}" for e in content)
        else:
            reason = str(content)[:300]
        raise refusal(f"Salesforce: {what} failed (HTTP {exc.status}): {reason}", exc.status, reason) from None


def record_errors(errors: Sequence[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        fields = e.get("fields") or []
        part = f"{e.get('statusCode', '?')}: {e.get('message', '')}"
        parts.append(f"{part} (fields: {', '.join(fields)})" if fields else part)
    return "; ".join(parts)


def upsert_collection(
    sf: Salesforce, object_name: str, key_field: str, bodies: Sequence[tuple[int, str]]
) -> list[Outcome]:
    """PATCH composite/sobjects/{object}/{externalIdField}, allOrNone=false: one UpsertResult per
    record, in the order sent. `bodies` are (index, JSON sObject) pairs."""
    outcomes: list[Outcome] = []
    for start in range(0, len(bodies), COLLECTION_LIMIT):
        chunk = bodies[start : start + COLLECTION_LIMIT]
        payload = '{"allOrNone":false,"records":[' + ",".join(body for _, body in chunk) + "]}"
        what = f"upserting {len(chunk)} {object_name} records by {key_field} (sObject Collections)"
        path = f"composite/sobjects/{object_name}/{key_field}"
        results = rest(what, sf.restful, path, method="PATCH", data=payload.encode())
        if not isinstance(results, list) or len(results) != len(chunk):
            raise SalesforceError(f"Salesforce: {what} returned {len(results or [])} results for {len(chunk)} records")
        for (index, _), result in zip(chunk, results, strict=True):
            ok = bool(result.get("success"))
            outcomes.append(
                Outcome(
                    index,
                    ok,
                    error="" if ok else record_errors(result.get("errors") or []),
                    record_id=result.get("id"),
                    created=result.get("created"),
                )
            )
    return outcomes


def delete_collection(sf: Salesforce, object_name: str, ids: Sequence[str]) -> dict[str, str]:
    """DELETE composite/sobjects?ids=...&allOrNone=false (to the Recycle Bin): each Id's error, ""
    when it is gone (a record already deleted counts as deleted)."""
    errors: dict[str, str] = {}
    for start in range(0, len(ids), COLLECTION_LIMIT):
        chunk = list(ids[start : start + COLLECTION_LIMIT])
        params = {"ids": ",".join(chunk), "allOrNone": "false"}
        what = f"deleting {len(chunk)} {object_name} records (sObject Collections)"
        results = rest(what, sf.restful, "composite/sobjects", method="DELETE", params=params) or []
        answered = {r.get("id"): r for r in results}
        for position, record_id in enumerate(chunk):
            result = answered.get(record_id) or (results[position] if position < len(results) else {})
            problems = [e for e in result.get("errors") or [] if e.get("statusCode") not in ALREADY_DONE]
            errors[record_id] = "" if result.get("success") or not problems else record_errors(problems)
    return errors


def soql_literal(key: Any) -> str:
    if isinstance(key, str):
        escaped = key.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return f"'{escaped.replace(chr(9), chr(92) + 't')}'"
    if isinstance(key, bool) or not isinstance(key, int | float | Decimal):
        raise SalesforceError(f"Salesforce: a key of type {type(key).__name__} cannot be looked up")
    return number_text(key)


def key_text(value: Any) -> str:
    """A key as one text whether it came from the warehouse or back from a query (123 and 123.0)."""
    if isinstance(value, str):
        return value
    return number_text(Decimal(str(value)).normalize()) if value is not None else ""


def query_in(sf: Salesforce, select: str, field: str, keys: Sequence[Any], what: str) -> list[dict[str, Any]]:
    """The records of `select` (`SELECT ... FROM Object`) whose `field` is one of `keys`, in as many
    queries as the URL budget needs."""
    records: list[dict[str, Any]] = []
    head = f"{select} WHERE {field} IN "
    batch: list[str] = []
    size = len(quote_plus(head))

    def flush() -> None:
        records.extend(rest(what, sf.query_all, head + "(" + ",".join(batch) + ")").get("records", []))

    for key in keys:
        literal = soql_literal(key)
        cost = len(quote_plus(literal)) + 3
        if batch and size + cost > QUERY_URL_BUDGET:
            flush()
            batch, size = [], len(quote_plus(head))
        batch.append(literal)
        size += cost
    if batch:
        flush()
    return records


def lookup_ids(sf: Salesforce, object_name: str, key_field: str, keys: Sequence[Any]) -> dict[str, list[str]]:
    """The Ids of the records whose external ID is one of `keys`, by key text. SOQL compares text
    without regard to case, so a key also matches its case-folded form."""
    found: dict[str, list[str]] = {}
    wanted = {key_text(k): k for k in keys}
    folded = {text.casefold(): text for text in wanted}
    select = f"SELECT Id, {key_field} FROM {object_name}"
    for record in query_in(sf, select, key_field, keys, f"looking up {object_name} Ids by {key_field}"):
        text = key_text(record.get(key_field))
        text = text if text in wanted else folded.get(text.casefold(), text)
        found.setdefault(text, []).append(record["Id"])
    return found
