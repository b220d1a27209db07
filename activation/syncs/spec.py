"""The sync config file: one place where a team declares what goes where.

Everything else (assets, lineage, table DDL, load order) is derived from it, so a mistake
here must fail loudly at load time with the file and the field named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from activation.syncs.options import (
    SIMPLE_NAME,
    Checks,
    ForeignKey,
    Freshness,
    Guards,
    Identifier,
    Limit,
    Mode,
    Partition,
    RateLimit,
    SoftDelete,
    check_identifier,
)

DestinationType = Literal["sql", "salesforce", "hubspot", "http", "nats", "rabbitmq_stream", "redis_stream"]
STREAM_TYPES = ("nats", "rabbitmq_stream", "redis_stream")


class DestinationSpec(BaseModel):
    """A place the syncs write to: a database (`type: sql`, its URL with its password in the
    environment) or an API (`settings:` of its type, secrets named by environment variables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: DestinationType = "sql"
    url_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    default_url: str | None = None
    description: str | None = None
    # an API destination's settings, checked at load by its type's `Settings` (destinations/registry.py)
    settings: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    # a database: connections a large initial or replace load uses at once (1: one stream; unset:
    # chosen from the server's free connections and the cores, destinations/sql/parallel_load.py)
    load_streams: int | None = Field(default=None, ge=1, le=16)

    @property
    def is_api(self) -> bool:
        return self.type != "sql" and not self.is_stream

    @property
    def is_stream(self) -> bool:
        """A broker's streams (NATS JetStream, RabbitMQ Streams, Redis Streams): changes as events."""
        return self.type in STREAM_TYPES

    @field_validator("default_url")
    @classmethod
    def _no_password_in_file(cls, value: str | None) -> str | None:
        if value and re.search(r"://[^/@]*:[^/@]+@", value):
            raise ValueError("default_url must not carry a password; put the URL in the environment")
        return value

    @field_validator("settings")
    @classmethod
    def _settings_of_its_type(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type", "sql")
        if kind == "sql":
            if value:
                raise ValueError(
                    "settings are for API and stream destinations (type: salesforce, hubspot, http, nats, ...)"
                )
            return value
        if kind in STREAM_TYPES:
            from activation.destinations.streams import config as streams

            streams.SETTINGS[kind].model_validate(value)
            return value
        from activation.destinations import registry  # the vendor's package, imported only when used

        registry.settings_model(kind).model_validate(value)  # its errors carry the field's path
        return value

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> DestinationSpec:
        if self.type == "sql":
            if not self.url_env:
                raise ValueError("a sql destination needs url_env (the environment variable holding its URL)")
            if self.rate_limit:
                raise ValueError("rate_limit is for API destinations; a database has no request rate")
            return self
        if self.load_streams is not None:
            raise ValueError("load_streams is for database destinations (type: sql)")
        if self.url_env or self.default_url:
            raise ValueError(f"a {self.type} destination is reached through its settings, not url_env/default_url")
        if self.is_stream:
            if self.rate_limit:
                raise ValueError("rate_limit is for API destinations; a broker is paced by its acknowledgements")
            return self
        if self.rate_limit is None:
            raise ValueError(
                f"a {self.type} destination needs rate_limit: {{requests: N, per_seconds: S}}, the rate its API "
                "allows (every sync of the destination shares it)"
            )
        return self


class SyncSpec(BaseModel):
    """One destination table fed from one dbt mart."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""  # filled from the mapping key
    source: str = Field(description="dbt model name of the mart")
    destination: str
    table: Identifier
    primary_key: list[Identifier]
    mode: Mode = Mode.UPSERT
    description: str | None = None
    owners: list[str] | None = None
    group: str | None = None
    # destination column -> mart column; empty means every mart column under its own name
    columns: dict[Identifier, Identifier] = Field(default_factory=dict)
    # destination column -> "table.column" in the same destination
    foreign_keys: dict[Identifier, str] = Field(default_factory=dict)
    batch_size: int = Field(default=50_000, ge=100, le=1_000_000)
    # `hard` deletes rows; `{soft: deleted_at}` stamps that column instead (NULL again if the row returns)
    delete: Literal["hard"] | SoftDelete = "hard"
    # destination column -> value: the rows this sync owns in a shared table; it never touches others
    scope: dict[Identifier, str | int | bool] = Field(default_factory=dict)
    guards: Guards = Field(default_factory=Guards)
    # When the mart and the destination table disagree on columns: `fail` (stop, say what differs),
    # `evolve` (add the mart's new columns to the table), `ignore` (sync the columns both have).
    on_schema_change: Literal["fail", "evolve", "ignore"] = "fail"
    checks: Checks = Field(default_factory=Checks)
    freshness: Freshness = Field(default_factory=Freshness)
    partition: Partition | None = None
    # rows the destination cannot take (too long, NULL in NOT NULL) set aside, up to this many or
    # this share of the mart; unset: any such row refuses the sync (see warehouses/rejects.py)
    max_rejects: Limit | None = None
    # mart column -> hash | redact | drop | none: PII masked in the warehouse (see syncs/masking.py)
    mask: dict[Identifier, Literal["hash", "redact", "drop", "none"]] = Field(default_factory=dict)
    # keep, beside the state, the values the destination last accepted (warehouses/kept_values.py)
    keep_values: bool = True
    # a stream's first sync: every row as a snapshot event (op r), or nothing (the state is recorded)
    initial: Literal["snapshot", "skip"] = "snapshot"

    @field_validator("primary_key", mode="before")
    @classmethod
    def _key_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("primary_key")
    @classmethod
    def _key_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a sync needs a primary key: keys come from the mart, never the destination")
        if len(set(value)) != len(value):
            raise ValueError("primary key columns repeat")
        return [check_identifier(v) for v in value]

    @field_validator("table")
    @classmethod
    def _table_identifier(cls, value: str) -> str:
        return check_identifier(value)

    @field_validator("columns")
    @classmethod
    def _column_identifiers(cls, value: dict[str, str]) -> dict[str, str]:
        for dest, src in value.items():
            check_identifier(dest)
            check_identifier(src)
        return value

    @field_validator("foreign_keys")
    @classmethod
    def _fk_format(cls, value: dict[str, str]) -> dict[str, str]:
        for column, target in value.items():
            check_identifier(column)
            table, sep, ref_column = target.partition(".")
            if not sep:
                raise ValueError(f"foreign key {column}: {target!r} must be 'table.column'")
            check_identifier(table)
            check_identifier(ref_column)
        return value

    @field_validator("scope")
    @classmethod
    def _scope_identifiers(cls, value: dict[str, object]) -> dict[str, object]:
        for column in value:
            check_identifier(column)
        return value

    @property
    def soft_delete_column(self) -> str | None:
        return self.delete.soft if isinstance(self.delete, SoftDelete) else None

    @model_validator(mode="after")
    def _key_is_mapped(self) -> SyncSpec:
        if self.soft_delete_column:
            check_identifier(self.soft_delete_column)
            if not self.mode.deletes:
                raise ValueError(f"delete: soft needs a mode that deletes (mirror, replace), not {self.mode.value}")
            if self.soft_delete_column in self.columns or self.soft_delete_column in self.primary_key:
                raise ValueError(f"the soft-delete column {self.soft_delete_column!r} must not come from the mart")
        if self.partition:
            check_identifier(self.partition.column)
            if self.mode is not Mode.MIRROR or self.scope:
                raise ValueError("a partitioned sync mirrors each day's rows: use mode: mirror and no scope")
        if self.columns:
            missing = [k for k in self.primary_key if k not in self.columns]
            if missing:
                raise ValueError(f"primary key column(s) {missing} are not in `columns`")
        return self

    @property
    def parsed_foreign_keys(self) -> list[ForeignKey]:
        out = []
        for column, target in self.foreign_keys.items():
            table, _, ref_column = target.partition(".")
            out.append(ForeignKey(column=column, references_table=table, references_column=ref_column))
        return out


class HistorySpec(BaseModel):
    """Run history kept beside the sync state (`sync_runs`, `sync_changes`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    retention_days: int = Field(default=90, ge=1)


class SyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    destinations: dict[str, DestinationSpec]
    owners: list[str] = Field(default_factory=list)
    history: HistorySpec = Field(default_factory=HistorySpec)
    syncs: dict[str, SyncSpec]

    @field_validator("destinations", "syncs")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not SIMPLE_NAME.match(name):
                raise ValueError(f"{name!r} must be a simple name (letters, digits, underscore)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_sync_names(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("syncs"), dict):
            data = dict(data)
            data["syncs"] = {
                name: {**body, "name": name} if isinstance(body, dict) else body for name, body in data["syncs"].items()
            }
        return data

    @model_validator(mode="after")
    def _cross_references(self) -> SyncConfig:
        tables: dict[tuple[str, str], SyncSpec] = {}
        for sync in self.syncs.values():
            if sync.destination not in self.destinations:
                raise ValueError(
                    f"syncs.{sync.name}.destination: {sync.destination!r} is not one of {sorted(self.destinations)}"
                )
            destination = self.destinations[sync.destination]
            if destination.is_stream:
                from activation.destinations.streams.config import check_stream_sync

                check_stream_sync(sync, destination)
            elif sync.initial != "snapshot":
                raise ValueError(f"syncs.{sync.name}.initial: only a sync into a stream can skip its first snapshot")
            if destination.is_api:
                from activation.destinations.api.config import check_api_sync

                check_api_sync(sync, destination)
            key = (sync.destination, sync.table)
            if key in tables:
                raise ValueError(
                    f"syncs.{sync.name}.table: {sync.table!r} is already written by sync "
                    f"{tables[key].name!r}; one table has one owner"
                )
            tables[key] = sync
        for sync in self.syncs.values():
            for fk in sync.parsed_foreign_keys:
                parent = tables.get((sync.destination, fk.references_table))
                if parent is None:
                    raise ValueError(
                        f"syncs.{sync.name}.foreign_keys.{fk.column}: no sync writes table "
                        f"{fk.references_table!r} in destination {sync.destination!r}"
                    )
                if self.destinations[sync.destination].is_api:
                    from activation.destinations.api.config import check_api_relationship

                    check_api_relationship(sync, fk.column, parent)
        self.load_order()  # raises on cycles
        return self

    def parents(self, sync: SyncSpec) -> list[SyncSpec]:
        """Syncs whose tables this sync's foreign keys point at (self-references excluded)."""
        by_table = {(s.destination, s.table): s for s in self.syncs.values()}
        names = []
        for fk in sync.parsed_foreign_keys:
            parent = by_table[(sync.destination, fk.references_table)]
            if parent.name != sync.name and parent not in names:
                names.append(parent)
        return names

    def load_order(self) -> list[SyncSpec]:
        """Parents before children, so inserts never point at a missing row."""
        ordered: list[SyncSpec] = []
        state: dict[str, str] = {}

        def visit(sync: SyncSpec, path: list[str]) -> None:
            if state.get(sync.name) == "done":
                return
            if state.get(sync.name) == "visiting":
                raise ValueError(f"foreign keys form a cycle: {' -> '.join([*path, sync.name])}")
            state[sync.name] = "visiting"
            for parent in self.parents(sync):
                visit(parent, [*path, sync.name])
            state[sync.name] = "done"
            ordered.append(sync)

        for sync in sorted(self.syncs.values(), key=lambda s: s.name):
            visit(sync, [])
        return ordered


class SyncConfigError(ValueError):
    """The sync config file is unreadable or invalid; the message names the file and the field."""


def load_sync_config(path: str | Path) -> SyncConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SyncConfigError(f"{path}: sync config file not found (set ACTIVATION_SYNCS_FILE)") from exc
    except yaml.YAMLError as exc:
        raise SyncConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_sync_config(raw, str(path))


def parse_sync_config(raw: Any, where: str) -> SyncConfig:
    """A sync config from its parsed YAML (a file's, or a component's inline `syncs`); errors
    name `where` and the field."""
    try:
        return SyncConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {field}: {err['msg']}")
        raise SyncConfigError(f"{where}: invalid sync config\n" + "\n".join(problems)) from None
