"""A review of another build (a pull request's) against production, as a value, and its two forms:
a pull-request comment (markdown, read in ten seconds: one line per destination that changes,
the details folded) and JSON (`REVIEW_VERSION`, documented in README "Reviewing a pull request").

Values here are as sent: a masked column's samples are its masked values, never the mart's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from activation.syncs.problems import Problem

REVIEW_VERSION = 1


@dataclass(frozen=True)
class ColumnChange:
    column: str
    rows: int
    samples: tuple[tuple[str, str | None, str | None], ...]  # (key, before, after) as sent


@dataclass(frozen=True)
class Effect:
    """The counts of one sync's next run if the other build were production, and its column detail."""

    insert: int
    update: int | None  # None: the state cannot tell (columns changed and no values kept)
    delete: int
    rows_in_mart: int
    rows_in_state: int
    columns: tuple[ColumnChange, ...] = ()
    samples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # insert/delete -> keys
    detail: str | None = None  # why there is no column detail, when there is none


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    change: str  # added | dropped | retyped
    detail: str  # e.g. "VARCHAR(255) <- int64"
    action: str  # what on_schema_change does with it: refused | added | not synced | left as it is


@dataclass(frozen=True)
class ModelChange:
    model: str
    change: str  # modified | added | removed
    feeds: tuple[str, ...]  # destination columns (app.facilities.city), from the PR build's column lineage


@dataclass
class SyncReview:
    sync: str
    destination: str
    table: str
    mode: str
    on_schema_change: str
    effect: Effect | None = None
    drift: list[ColumnDrift] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # what refuses the sync (drift, values, keys)
    described_at: dt.datetime | None = None  # the destination schema the checks ran against
    schema_note: str | None = None  # why values were not checked against the destination
    models: list[str] = field(default_factory=list)  # changed models this sync reads
    error: str | None = None  # the review could not be made (a missing mart ...): refused
    notes: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.guards or self.problems or self.error)

    @property
    def changes(self) -> bool:
        e = self.effect
        moved = e is not None and (e.insert or e.delete or e.update is None or e.update)
        return bool(moved or self.drift or self.refused)

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        e = self.effect
        age = (now - self.described_at).total_seconds() if self.described_at else None
        return {
            "sync": self.sync,
            "destination": self.destination,
            "table": self.table,
            "mode": self.mode,
            "on_schema_change": self.on_schema_change,
            "refused": self.refused,
            "error": self.error,
            "rows": None
            if e is None
            else {
                "insert": e.insert,
                "update": e.update,
                "delete": e.delete,
                "in_mart": e.rows_in_mart,
                "in_state": e.rows_in_state,
            },
            "sample_keys": {} if e is None else {op: list(keys) for op, keys in e.samples.items()},
            "columns": []
            if e is None
            else [
                {
                    "column": c.column,
                    "rows": c.rows,
                    "samples": [{"key": k, "before": b, "after": a} for k, b, a in c.samples],
                }
                for c in e.columns
            ],
            "column_detail": None if e is None else e.detail,
            "drift": [vars(d) for d in self.drift],
            "guards": list(self.guards),
            "problems": [_problem(p) for p in self.problems],
            "destination_schema": {
                "described_at": self.described_at.isoformat() + "Z" if self.described_at else None,
                "age_seconds": None if age is None else round(age),
                "note": self.schema_note,
            },
            "changed_models": list(self.models),
            "notes": list(self.notes),
        }


def _problem(p: Problem) -> dict[str, Any]:
    return {"column": p.column, "reason": p.reason, "rows": p.rows, "keys": list(p.keys), "fix": p.fix}


@dataclass
class Review:
    against: str  # the other build (its dbt target)
    base: str  # the production manifest the SQL changes are read against
    syncs: list[SyncReview]
    models: list[ModelChange]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))

    @property
    def refused(self) -> list[SyncReview]:
        return [s for s in self.syncs if s.refused]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": REVIEW_VERSION,
            "generated_at": self.generated_at.isoformat() + "Z",
            "against": self.against,
            "base": self.base,
            "refused": [s.sync for s in self.refused],
            "changed_models": [{"model": m.model, "change": m.change, "feeds": list(m.feeds)} for m in self.models],
            "syncs": [s.as_json(self.generated_at) for s in self.syncs],
        }

    def markdown(self) -> str:
        changing = [s for s in self.syncs if s.changes]
        head = "### activation: what this change does to the destinations"
        if not changing:
            return f"{head}\n\nNo destination changes: every sync would send nothing new.\n"
        lines = [head, ""]
        for s in changing:
            lines.append(f"- {summary_line(s)}")
        if self.models:
            lines += ["", "Models whose SQL changed: " + ", ".join(f"`{m.model}` ({m.change})" for m in self.models)]
        lines.append("")
        for s in changing:
            lines += [f"<details><summary>{s.destination}.{s.table}</summary>", "", *sync_details(s, self.generated_at)]
            lines += ["", "</details>", ""]
        return "\n".join(lines)


def sync_markdown(s: SyncReview, now: dt.datetime) -> str:
    """One sync's part of the comment: its summary line, then its details (Dagster's asset page)."""
    return "\n".join([summary_line(s), "", *sync_details(s, now)]) + "\n"


def summary_line(s: SyncReview) -> str:
    e = s.effect
    mark = "**refused**" if s.refused else "changes"
    counts = ""
    if e is not None:
        update = "?" if e.update is None else f"{e.update:,}"
        counts = f" +{e.insert:,} ~{update} -{e.delete:,}"
    columns = f"; columns: {', '.join(c.column for c in e.columns)}" if e and e.columns else ""
    drift = f"; drift: {', '.join(f'{d.column} {d.change}' for d in s.drift)}" if s.drift else ""
    return f"`{s.destination}.{s.table}` {mark}{counts}{columns}{drift}"


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return (
        f"{hours * 60:.0f} minutes" if hours < 1 else (f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days")
    )


def sync_details(s: SyncReview, now: dt.datetime) -> list[str]:
    out: list[str] = []
    e = s.effect
    if s.error:
        out.append(f"Cannot be planned: {s.error}")
    if e is not None:
        update = "unknown" if e.update is None else f"{e.update:,}"
        out.append(
            f"{s.mode}: {e.insert:,} inserted, {update} updated, {e.delete:,} deleted "
            f"({e.rows_in_mart:,} rows in this build's mart, {e.rows_in_state:,} as last synced)"
        )
        for op in ("insert", "delete"):
            if e.samples.get(op):
                out.append(f"- {op}: " + ", ".join(f"`{k}`" for k in e.samples[op]))
        if e.columns:
            out += ["", "| column | rows changed | samples `key: before -> after` |", "|---|---:|---|"]
            for c in e.columns:
                shown = "<br>".join(f"`{k}: {_v(b)} -> {_v(a)}`" for k, b, a in c.samples)
                out.append(f"| {c.column} | {c.rows:,} | {shown} |")
        if e.detail:
            out += ["", f"No column detail: {e.detail}."]
    if s.drift:
        out += ["", f"Schema drift (on_schema_change: {s.on_schema_change}):"]
        out += [f"- `{d.column}` {d.change} ({d.detail}): {d.action}" for d in s.drift]
    if s.guards:
        out += ["", "Guards that would trip:", *(f"- {g}" for g in s.guards)]
    if s.problems:
        out += ["", "Would be refused:", *(f"- {p}" for p in s.problems)]
    if s.described_at:
        out += ["", f"Checked against the destination schema as described {_age(now - s.described_at)} ago."]
    elif s.schema_note:
        out += ["", s.schema_note]
    out += [f"Note: {n}" for n in s.notes]
    if s.models:
        out += ["", "Reads changed models: " + ", ".join(f"`{m}`" for m in s.models)]
    return out


def _v(value: str | None) -> str:
    return "NULL" if value is None else repr(value) if len(value) <= 60 else repr(value[:57] + "...")
