"""Python values in Salesforce's two wire formats: JSON for sObject Collections, CSV for Bulk API 2.0.

They differ where it matters: in Bulk CSV an empty cell means "leave the field as it is" and `#N/A`
means null, while JSON has a real null. Salesforce stores an empty text as null, so None and ""
both become null in either format. Numbers are written in plain decimal notation (never 1e+20) so
a Decimal arrives with every digit; datetimes are sent in UTC with milliseconds (Salesforce keeps no
finer precision)."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from activation.destinations.api.client import Reference

CSV_NULL = "#N/A"
_CSV_SPECIAL = frozenset(',"\r\n')


class NotSendable(ValueError):
    """A value Salesforce cannot take as given (the message names why)."""


class NullLookalike(ValueError):
    """The text '#N/A', which Bulk CSV can only read as null, or a lookup to clear in a relationship
    column; such a record goes as JSON instead."""


def number_text(value: int | float | Decimal) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotSendable(f"{value!r} is not a number Salesforce stores")
        value = Decimal(repr(value))
    if not value.is_finite():
        raise NotSendable(f"{value} is not a number Salesforce stores")
    return format(value, "f")


def datetime_text(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NotSendable(f"{value.isoformat()} has no time zone; Salesforce needs an instant")
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def scalar_text(value: Any) -> str:
    """Dates, datetimes, numbers and booleans as Salesforce reads them in text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return number_text(value)
    if isinstance(value, dt.datetime):
        return datetime_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise NotSendable(f"a {type(value).__name__} value cannot be sent to Salesforce")


def json_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    text = scalar_text(value)
    if isinstance(value, bool | int | float | Decimal):
        return text
    return f'"{text}"'


def relationship_name(field: str, relationships: Mapping[str, str]) -> str:
    """The relationship a lookup field is set through: the describe's `relationshipName`, else
    Salesforce's own convention (AccountId -> Account, Parent__c -> Parent__r)."""
    if field in relationships:
        return relationships[field]
    if field.endswith("__c"):
        return field[:-3] + "__r"
    return field[:-2] if field.endswith("Id") else field


def json_record(object_name: str, record: dict[str, Any], relationships: Mapping[str, str] | None = None) -> str:
    """One sObject of a Collections request, written by hand so Decimals keep every digit. A lookup
    set by its parent's external ID goes in the relationship syntax:
    `"Account": {"attributes": {"type": "Account"}, "Activation_Key__c": "k"}`."""
    parts = []
    for name, value in record.items():
        if isinstance(value, Reference):
            parent = f'{{"attributes":{{"type":{json.dumps(value.object)}}},{json.dumps(value.field)}:'
            parent += f"{_field(name, json_value, value.key)}}}"
            parts.append(f",{json.dumps(relationship_name(name, relationships or {}))}:{parent}")
        else:
            parts.append(f",{json.dumps(name)}:{_field(name, json_value, value)}")
    return f'{{"attributes":{{"type":{json.dumps(object_name)}}}{"".join(parts)}}}'


def csv_header(
    columns: Sequence[str], records: Sequence[dict[str, Any]], relationships: Mapping[str, str] | None = None
) -> list[str]:
    """Bulk CSV column names: a lookup set by its parent's external ID is `Account.Activation_Key__c`."""
    parents = {}
    for record in records:
        for name, value in record.items():
            if isinstance(value, Reference) and name not in parents:
                parents[name] = value.field
    return [f"{relationship_name(c, relationships or {})}.{parents[c]}" if c in parents else c for c in columns]


def _field(name: str, encode: Any, value: Any) -> str:
    try:
        return encode(value)
    except NotSendable as exc:
        raise NotSendable(f"{name}: {exc}") from None


def csv_value(value: Any) -> str:
    if isinstance(value, Reference):
        return csv_value(value.key)
    if value is None or value == "":
        return CSV_NULL
    if isinstance(value, str):
        if value == CSV_NULL:
            raise NullLookalike(value)
        return value
    return scalar_text(value)


def csv_cell(text: str) -> str:
    """Quoted only where Bulk API 2.0 needs it (a comma, a quote, CR or LF in the value)."""
    if _CSV_SPECIAL.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def csv_line(cells: Sequence[str]) -> bytes:
    return (",".join(csv_cell(c) for c in cells) + "\n").encode("utf-8")


def csv_row(record: dict[str, Any], columns: Sequence[str], header: Sequence[str] | None = None) -> list[str]:
    """A record's cells; a field the record lacks is an empty cell (left unchanged). A lookup whose
    column is the relationship (`Account.Ext__c`) cannot be cleared there: such a record (None in
    it) raises NullLookalike and goes as JSON, where the lookup is set to null."""
    cells = []
    for c, title in zip(columns, header or columns, strict=True):
        if c in record and record[c] is None and title != c:
            raise NullLookalike(c)
        cells.append(_field(c, csv_value, record[c]) if c in record else "")
    return cells


def uploads(
    header: Sequence[str], rows: Sequence[tuple[int, list[str]]], max_bytes: int
) -> tuple[list[tuple[list[int], bytes]], list[int]]:
    """Rows packed into CSV uploads of at most `max_bytes` (UTF-8; a character is at least a byte,
    so the 100M-character limit holds too): each upload with the indices it carries, and the
    indices of rows too large for any upload."""
    head = csv_line(header)
    packed: list[tuple[list[int], bytes]] = []
    oversized: list[int] = []
    indices: list[int] = []
    parts: list[bytes] = [head]
    size = len(head)
    for index, cells in rows:
        line = csv_line(cells)
        if len(head) + len(line) > max_bytes:
            oversized.append(index)
            continue
        if size + len(line) > max_bytes:
            packed.append((indices, b"".join(parts)))
            indices, parts, size = [], [head], len(head)
        indices.append(index)
        parts.append(line)
        size += len(line)
    if indices:
        packed.append((indices, b"".join(parts)))
    return packed, oversized
