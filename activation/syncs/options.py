"""The parts a sync's config is built from: names, modes, thresholds (guards, checks, rejects),
durations and freshness, partitions, soft deletes, foreign keys and API rate limits. Each one
validates itself, so spec.py only has to say how they fit together."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# Names we splice into DDL (always quoted by SQLAlchemy) must still be boring enough that
# quoting is safe on every dialect: no quotes, backticks, NUL or control characters.
_IDENTIFIER = re.compile(r"^[^\x00-\x1f`\"'\\]{1,64}$")
SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value) or value != value.strip():
        raise ValueError(
            f"{value!r} is not a usable identifier: 1-64 characters, no quotes, backticks, "
            "control characters or surrounding spaces"
        )
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=64)]


class Mode(StrEnum):
    INSERT = "insert"  # new keys only; existing rows are never touched
    UPDATE = "update"  # existing keys only; new keys are skipped
    UPSERT = "upsert"  # insert new keys, update changed rows, never delete
    MIRROR = "mirror"  # upsert, and delete keys that left the mart (applied as a diff)
    REPLACE = "replace"  # the destination becomes the mart; shadow table + atomic swap where safe
    TRUNCATE_INSERT = "truncate_insert"  # delete everything (in scope), insert everything, one transaction

    @property
    def deletes(self) -> bool:
        return self in (Mode.MIRROR, Mode.REPLACE, Mode.TRUNCATE_INSERT)


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class Limit(BaseModel):
    """A threshold given as a row count (`500`) or a share of the destination table (`"10%"`)."""

    model_config = ConfigDict(frozen=True)
    rows: int | None = None
    percent: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("give a row count (500) or a percentage ('10%')")
        if isinstance(value, int):
            return {"rows": value}
        if isinstance(value, str):
            match = _PERCENT.match(value)
            if not match:
                raise ValueError(f"{value!r} is neither a row count nor a percentage like '10%'")
            return {"percent": float(match.group(1))}
        return value

    def allows(self, count: int, table_rows: int) -> bool:
        if self.rows is not None:
            return count <= self.rows
        if self.percent is not None:
            return table_rows == 0 or count * 100.0 <= self.percent * table_rows
        return True

    def __str__(self) -> str:
        return f"{self.rows} rows" if self.rows is not None else f"{self.percent:g}%"


class Guards(BaseModel):
    """Stop a sync before it writes when its plan looks like an accident upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_deletes: Limit | None = Field(default_factory=lambda: Limit(percent=50.0))
    max_updates: Limit | None = None
    allow_empty_source: bool = False  # an empty mart never wipes a table unless this is set


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(value: object) -> object:
    """`"26h"`, `"90m"`, `"2d"`, ISO 8601 or a number of seconds, as a timedelta."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match and value.strip().upper().startswith("P"):
            return value  # ISO 8601 ("P1DT2H"), as the spec serializes itself to JSON
        if not match:
            raise ValueError(f"{value!r} is not a duration like '30m', '26h' or '2d'")
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Freshness(BaseModel):
    """When a destination table counts as stale: no sync within `fail_after` (warn after
    `warn_after`), or, with `cron`, not synced since `lower_bound` before each cron deadline."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fail_after: Duration | None = timedelta(hours=26)  # a daily pipeline, with two hours' slack
    warn_after: Duration | None = None
    cron: str | None = None
    lower_bound: Duration = timedelta(hours=24)
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_kind(self) -> Freshness:
        if self.warn_after and self.fail_after and self.warn_after >= self.fail_after:
            raise ValueError("warn_after must be shorter than fail_after")
        return self


class Checks(BaseModel):
    """Thresholds of the checks that run after a sync writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_rejected: Limit = Field(default_factory=lambda: Limit(rows=0))  # rows the destination refused
    checksum: bool = True  # compare a checksum of every synced row with the mart's (reads the table)


class Partition(BaseModel):
    """A daily-partitioned sync of a daily-partitioned mart (dbt tag `daily`): each partition
    mirrors exactly that day's rows; the days come from the mart."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: Identifier  # a DATE column of the mart (and of the destination table)


class SoftDelete(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    soft: str  # destination column set to the deletion time instead of deleting the row


class ForeignKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str
    references_table: str
    references_column: str


class RateLimit(BaseModel):
    """The rate an API destination allows: one limiter per destination, shared by all its syncs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    requests: int = Field(ge=1)
    per_seconds: float = Field(default=1.0, gt=0)
    max_concurrent: int = Field(default=1, ge=1)
