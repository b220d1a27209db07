"""Python values as HubSpot property values. HubSpot takes every property as a string; how a
value is spelled depends on the property's type, as its properties documentation says:

- date: `YYYY-MM-DD` (a date property holds a day at midnight UTC; any other time is refused)
- datetime: ISO 8601 in UTC with milliseconds, `2024-05-01T12:34:56.789Z` (HubSpot keeps
  milliseconds, so microseconds are cut)
- bool: `true` / `false`; numbers in plain decimal notation (no exponent), Decimals exactly as
  written, never through a float
- an empty string clears the property, so None and "" both clear it (HubSpot has no null)
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any


class UnsendableValue(ValueError):
    """A value HubSpot cannot take as it is; the message says why (the caller names the record)."""


def property_value(value: Any, property_type: str | None) -> str:
    """`value` spelled for a property of HubSpot type `property_type` (None: not described)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnsendableValue(f"{value} is not a number HubSpot can store")
        return format(value, "f")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsendableValue(f"{value} is not a number HubSpot can store")
        # repr is the shortest text that reads back as the same float; Decimal drops the exponent
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):
        return _datetime_value(value, property_type)
    if isinstance(value, date):
        if property_type == "datetime":
            return _iso_utc(datetime.combine(value, time(0), UTC))
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise UnsendableValue(f"a {type(value).__name__} cannot be sent as a HubSpot property value")


def _datetime_value(value: datetime, property_type: str | None) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnsendableValue(f"{value.isoformat()} has no time zone; HubSpot stores instants in UTC")
    utc = value.astimezone(UTC)
    if property_type == "date":
        if utc.time() != time(0):
            raise UnsendableValue(f"{utc.isoformat()} is not midnight UTC; a HubSpot date property holds a day only")
        return utc.date().isoformat()
    return _iso_utc(utc)


def _iso_utc(utc: datetime) -> str:
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
