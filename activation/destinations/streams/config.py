"""What a stream destination and a sync into it may be, checked when syncs.yml loads.

A stream has no table to compare with, no transaction and no swap: a sync publishes the diff's
changes as events, so only `upsert` (no deletes published) and `mirror` (deletes published too)
mean something; every other mode is refused here, saying why. Secrets are names of environment
variables (`*_env`), read when the broker connection opens."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from activation.syncs.options import Mode

if TYPE_CHECKING:
    from activation.syncs.spec import DestinationSpec, SyncSpec

STREAM_TYPES = ("nats", "rabbitmq_stream", "redis_stream")
KINDS = {"nats": "nats", "rabbitmq_stream": "rabbitmq", "redis_stream": "redis"}  # the Dagster kinds
# a stream (or subject token) name every broker takes: no dots, spaces, wildcards or slashes
STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class StreamSettings(BaseModel):
    """Settings every broker shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # How long after a failed run a retry may come (Dagster's run retries, the next automation
    # tick): the broker's deduplication must remember an event id at least this long, or a retry
    # could publish an event twice. JetStream streams are created with this duplicate window and an
    # existing stream with a shorter one is refused; Redis keeps its dedup keys this long.
    retry_horizon_seconds: float = Field(default=900.0, gt=0)
    max_in_flight: int = Field(default=4096, ge=1, le=100_000)  # events sent and not yet acknowledged
    batch_size: int = Field(default=10_000, ge=1, le=100_000)  # rows read from the warehouse at a time
    max_payload_bytes: int = Field(default=1_048_576, ge=1024)  # an event larger is refused before publishing
    ack_timeout_seconds: float = Field(default=30.0, gt=0)
    create_streams: bool = True  # create a missing stream (else a missing stream refuses the sync)


class NatsSettings(StreamSettings):
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    subject_prefix: str = Field(default="activation", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    user_env: str | None = Field(default=None, pattern=ENV_NAME)
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    token_env: str | None = Field(default=None, pattern=ENV_NAME)
    storage: Literal["file", "memory"] = "file"


class RabbitStreamSettings(StreamSettings):
    host: str = "127.0.0.1"
    port: int = 5552
    vhost: str = "/"
    user: str = "guest"
    password_env: str | None = Field(default=None, pattern=ENV_NAME)  # unset: RabbitMQ's default `guest`
    # host:port is a load balancer or proxy in front of the nodes: connect through it (else the client
    # connects to the address the stream's leader advertises)
    load_balancer: bool = False
    max_payload_bytes: int = Field(default=1_000_000, ge=1024)  # under the stream protocol's 1 MiB frame


class RedisStreamSettings(StreamSettings):
    url: str = "redis://127.0.0.1:6379/0"  # no password here: password_env
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    maxlen: int | None = Field(default=None, ge=1)  # XADD MAXLEN ~: trim old events (None: keep all)


SETTINGS = {"nats": NatsSettings, "rabbitmq_stream": RabbitStreamSettings, "redis_stream": RedisStreamSettings}


def settings(spec: DestinationSpec) -> StreamSettings:
    return SETTINGS[spec.type].model_validate(spec.settings)


def endpoint(spec: DestinationSpec) -> str:
    """Where the broker is (no credentials): what logs, metadata and the run history show."""
    found = settings(spec)
    if isinstance(found, NatsSettings):
        return found.servers[0].rpartition("@")[2] if "@" in found.servers[0] else found.servers[0]
    if isinstance(found, RabbitStreamSettings):
        return f"rabbitmq-stream://{found.host}:{found.port}{found.vhost}"
    assert isinstance(found, RedisStreamSettings)
    scheme, _, rest = found.url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def identity(name: str, spec: DestinationSpec) -> str:
    """`<type>:<name>@<endpoint>`: a destination pointed at another broker starts with a snapshot."""
    return f"{spec.type}:{name}@{endpoint(spec)}"


_MODE_REASONS = {
    Mode.REPLACE: "a stream has no table to swap: its consumers hold the state, and events are only ever appended",
    Mode.TRUNCATE_INSERT: "a stream cannot be truncated for its consumers; a full resync re-publishes a snapshot",
    Mode.INSERT: "every change of a key is an event; insert-only would hide updates from consumers",
    Mode.UPDATE: "every change of a key is an event; update-only would hide new keys from consumers",
}


def check_stream_sync(sync: SyncSpec, destination: DestinationSpec) -> None:
    """What a sync into a stream cannot do, refused at load with the reason."""
    where, kind = f"syncs.{sync.name}", f"the {destination.type} destination {sync.destination!r}"
    if sync.mode in _MODE_REASONS:
        raise ValueError(
            f"{where}.mode: {sync.mode.value} means nothing for {kind}: {_MODE_REASONS[sync.mode]}; use upsert "
            "(no deletes published) or mirror (deletes published as op d)"
        )
    if not STREAM_NAME.match(sync.table):
        raise ValueError(
            f"{where}.table: {sync.table!r} names the stream of {kind}: use letters, digits, '_' and '-' only"
        )
    if sync.soft_delete_column:
        raise ValueError(f"{where}.delete: a stream publishes a delete as op d; there is no field to stamp")
    if sync.foreign_keys:
        raise ValueError(f"{where}.foreign_keys: a stream has no rows to relate; consumers join events themselves")
    if sync.scope:
        raise ValueError(f"{where}.scope: scopes share a database table; a stream is owned by one sync")
    if sync.partition:
        raise ValueError(f"{where}.partition: a partitioned sync replaces a day's rows, which a stream cannot do")
