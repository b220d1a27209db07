"""HubSpot's property definitions as the properties API returns them, and the check HubSpot
applies to each value written to a property (hubspot_portal.py stores what passes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

STRING_LIMIT = 65_536  # characters in a string property's value
_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
_DAY_MS = 86_400_000


class Invalid(Exception):
    """One property value HubSpot would refuse: (code, message)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Prop:
    name: str
    type: str  # string | number | bool | date | datetime | enumeration
    field_type: str  # text | textarea | number | booleancheckbox | date | select | radio | checkbox
    options: tuple[str, ...] = ()
    unique: bool = False  # hasUniqueValue
    read_only: bool = False  # modificationMetadata.readOnlyValue
    calculated: bool = False

    def as_json(self) -> dict[str, Any]:
        values = ("true", "false") if self.type == "bool" else self.options
        hubspot = self.name.startswith("hs_") or self.name in ("createdate", "email")
        return {
            "name": self.name,
            "label": self.name.replace("_", " ").title(),
            "type": self.type,
            "fieldType": self.field_type,
            "description": "",
            "groupName": "information",
            "options": [
                {"label": v.title(), "value": v, "displayOrder": n, "hidden": False} for n, v in enumerate(values)
            ],
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "hubspotDefined": hubspot,
            "modificationMetadata": {
                "archivable": not hubspot,
                "readOnlyDefinition": hubspot,
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "archived": False,
        }

    def canonical(self, value: str) -> str:
        """The stored form of `value`, or Invalid as HubSpot would refuse it ('' clears)."""
        if value == "":
            return ""
        if self.type == "string":
            if len(value) > STRING_LIMIT:
                message = f"{self.name} is {len(value)} characters long; max {STRING_LIMIT}"
                raise Invalid("INVALID_STRING_LENGTH", message)
            return value
        if self.type == "number":
            if not _NUMBER.match(value):
                raise Invalid("INVALID_DECIMAL", f"{value} was not a valid number.")
            return value
        if self.type == "bool":
            if value not in ("true", "false"):
                raise Invalid("INVALID_BOOLEAN", f"{value} is not a valid boolean; use true or false.")
            return value
        if self.type == "date":
            return _date(value)
        if self.type == "datetime":
            return _datetime(value)
        if self.type == "enumeration":
            chosen = value.split(";") if self.field_type == "checkbox" else [value]
            wrong = [v for v in chosen if v not in self.options]
            if wrong:
                raise Invalid("INVALID_OPTION", f"{wrong[0]} was not one of the allowed options: {list(self.options)}")
            return value
        raise AssertionError(self.type)


def _date(value: str) -> str:
    if value.isdigit():
        ms = int(value)
        if ms % _DAY_MS:
            at = datetime.fromtimestamp(ms / 1000, UTC)
            raise Invalid("INVALID_DATE", f"{value} is at {at:%H:%M:%S} UTC, not midnight!")
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).date().isoformat()
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        message = f"{value} is not a date (YYYY-MM-DD or epoch milliseconds at midnight UTC)"
        raise Invalid("INVALID_DATE", message) from None


def _datetime(value: str) -> str:
    if value.isdigit():
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(value))
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or "T" not in value:
            message = f"{value} is not an ISO 8601 datetime with an offset or epoch milliseconds"
            raise Invalid("INVALID_DATETIME", message)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


BUILT_IN = (
    Prop("hs_object_id", "number", "number", unique=True, read_only=True),
    Prop("createdate", "datetime", "date", read_only=True),
    Prop("hs_lastmodifieddate", "datetime", "date", read_only=True),
)
