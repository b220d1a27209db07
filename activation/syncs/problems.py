"""What stops a sync, as a value the dry run, the checks, the writer and the command line share.

A refusal used to reach a person as one summary line inside a traceback. A `Problem` names the
table, the column, the reason, how many rows and their first keys, and what to do about it, so
`activation plan`, `sync` and `run` print the same lines, and a Dagster step failure carries
them (as JSON metadata) to whoever reads the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

METADATA_KEY = "activation/problems"
FIX_VALUE = "fix the values in the mart, or change the destination column"


@dataclass(frozen=True)
class Problem:
    table: str
    reason: str  # reads after the count: "1 row <reason>", e.g. "longer than VARCHAR(30)"
    column: str | None = None  # None: the whole table (schema drift, a guard)
    rows: int | None = None  # None: not a count of rows
    keys: tuple[str, ...] = ()  # first keys as text (a composite key joined by '/'), maybe with a detail
    key_columns: tuple[str, ...] = ()
    fix: str = ""
    destination: str = ""

    @property
    def where(self) -> str:
        return ".".join(p for p in (self.destination, self.table, self.column) if p)

    def __str__(self) -> str:
        if self.rows is None:
            text = f"{self.where}: {self.reason}"
        else:
            text = f"{self.where}: {self.rows:,} row{'' if self.rows == 1 else 's'} {_agree(self.reason, self.rows)}"
        if self.keys:
            text += f": {'/'.join(self.key_columns) or 'key'}={', '.join(self.keys)}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("keys", "key_columns"):
            known[name] = tuple(known.get(name) or ())
        return cls(**known)


# Reasons are written for several rows ("hold NaN"); one row takes the singular verb.
_SINGULAR = {
    "are": "is",
    "have": "has",
    "hold": "holds",
    "exceed": "exceeds",
    "contain": "contains",
    "share": "shares",
    "fall": "falls",
}


def _agree(reason: str, rows: int) -> str:
    verb, _, rest = reason.partition(" ")
    return f"{_SINGULAR[verb]} {rest}" if rows == 1 and verb in _SINGULAR else reason


def merged(found: Iterable[Problem], more: Iterable[Problem]) -> list[Problem]:
    """`found`, then those of `more` about a table and column `found` does not name already (a
    pre-write check and the writer often report the same value in their own words)."""
    out = list(found)
    seen = {(p.table, p.column) for p in out}
    tables = {p.table for p in out}
    for p in more:
        if (p.table, p.column) in seen or (p.column is None and p.table in tables):
            continue
        out.append(p)
        seen.add((p.table, p.column))
    return out


def as_json(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in problems]


def from_json(data: Any) -> list[Problem]:
    return [Problem.from_dict(d) for d in data or [] if isinstance(d, dict)]


def message(problems: Sequence[Problem], head: str) -> str:
    """A SyncError's text: the head, then one line per problem."""
    return head + "".join(f"\n- {p}" for p in problems)
