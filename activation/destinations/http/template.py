"""The body of one record, from a JSON template, and JSON that keeps decimals exact.

A template is plain JSON (in syncs.yml) whose strings may hold `{{ name }}` placeholders, e.g.
`{"externalId": "{{ account_id }}", "properties": {"ltv": "{{ ltv }}", "note": "LTV {{ ltv }}"}}`:
- a string that is exactly one placeholder becomes the value itself, typed (a number stays a
  number, None becomes null);
- a placeholder inside other text is replaced by the value's text (None: empty);
- names are the record's API fields, plus `_key` (the external ID's value), `_object`,
  `_operation` (upsert or delete) and `_idempotency_key`.
Nothing is evaluated: no expressions, filters or code, so a template cannot reach anything but
the record (a deliberate choice over a general template engine). Keys of objects are literal.

Values in JSON: decimals as numbers with their exact digits (never through a float); dates as
`YYYY-MM-DD`; datetimes in UTC as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SPECIAL = ("_key", "_object", "_operation", "_idempotency_key")
_MARK = uuid.uuid4().hex  # brackets an exact decimal inside JSON text until it is spliced in as a number
_MARKED = re.compile(f'"{_MARK}([-+0-9.eE]+){_MARK}"')


def placeholders(template: Any) -> set[str]:
    """Every name a template refers to."""
    if isinstance(template, str):
        return set(PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template)) if template else set()
    return set()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return iso(value)
    return str(value)


def render(template: Any, values: dict[str, Any]) -> Any:
    """The template with its placeholders filled from `values` (KeyError names an unknown one)."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: _text(values[m.group(1)]), template)
    if isinstance(template, dict):
        return {k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    return template


def iso(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent as JSON")
        return f"{_MARK}{value}{_MARK}"
    if isinstance(value, dt.date | dt.datetime):
        return iso(value)
    raise TypeError(f"a {type(value).__name__} value cannot be sent as JSON")


def dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; decimals spliced in as exact numbers; NaN and infinity refused."""
    text = json.dumps(body, default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _MARKED.sub(r"\1", text).encode("utf-8")


def canonical(value: Any) -> str:
    """A stable text of a record's content, for its idempotency key."""
    return json.dumps(value, default=_default, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
