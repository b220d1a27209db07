"""Destination type -> the package that implements it, imported only when a config uses it.

An API destination is one package `activation/destinations/<type>/` exposing
- `Settings`: a frozen pydantic model (extra="forbid") of the destination's `settings:` block;
  secrets are NAMES of environment variables (fields ending in `_env`), read at open time;
- `open_client(settings, limiter, log) -> ObjectClient` (destinations/api/client.py);
- optionally `can_count(settings) -> bool` (default True): whether its client counts records;
- optionally `RELATIONSHIPS = True`: its client sets relationships between objects (a record's
  foreign-key field arrives as an `api.client.Reference` to the parent's key), so syncs into it
  may declare `foreign_keys`;
plus one line in `API_PACKAGES` below. The engine (destinations/api/engine.py) does the rest.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel

if TYPE_CHECKING:
    from activation.destinations.api.client import ObjectClient
    from activation.destinations.api.engine import ApiDestination
    from activation.destinations.api.limits import RateLimiter
    from activation.syncs.spec import DestinationSpec, SyncSpec

API_PACKAGES = {
    "salesforce": "activation.destinations.salesforce",
    "hubspot": "activation.destinations.hubspot",
    "http": "activation.destinations.http",
}

_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def vendor(kind: str) -> ModuleType:
    """The package of an API destination type."""
    if kind not in API_PACKAGES:
        raise ValueError(f"{kind!r} is not an API destination type; known: {sorted(API_PACKAGES)}")
    try:
        return importlib.import_module(API_PACKAGES[kind])
    except ModuleNotFoundError as exc:
        if exc.name and API_PACKAGES[kind].startswith(exc.name):
            raise ValueError(f"destination type {kind!r} is not part of this installation ({exc.name})") from exc
        raise


def settings_model(kind: str) -> type[BaseModel]:
    return vendor(kind).Settings


def settings(spec: DestinationSpec) -> BaseModel:
    return settings_model(spec.type).model_validate(spec.settings)


def limiter(name: str, spec: DestinationSpec) -> RateLimiter:
    """The one rate limiter of destination `name` in this process, shared by all its syncs (and by
    every run in the process, so two assets of one destination never add up past its rate)."""
    from activation.destinations.api.limits import RateLimiter

    if spec.rate_limit is None:
        raise ValueError(f"destination {name}: an API destination needs rate_limit")
    rate = spec.rate_limit
    key = f"{name}:{rate.requests}/{rate.per_seconds}s/{rate.max_concurrent}"
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = RateLimiter(rate.requests, rate.per_seconds, rate.max_concurrent)
        return _limiters[key]


def open_client(name: str, spec: DestinationSpec, log: Callable[[str], None]) -> ObjectClient:
    """A connected client of the destination (reads the environment: a missing secret is named)."""
    return vendor(spec.type).open_client(settings(spec), limiter(name, spec), log)


def can_count(spec: DestinationSpec) -> bool:
    module: Any = vendor(spec.type)
    check = getattr(module, "can_count", None)
    return True if check is None else bool(check(settings(spec)))


def relationships(kind: str) -> bool:
    """Whether destinations of this type relate records of two objects (Salesforce lookups,
    HubSpot associations): syncs into it may declare `foreign_keys`."""
    return bool(getattr(vendor(kind), "RELATIONSHIPS", False))


def secret_names(spec: DestinationSpec) -> dict[str, str]:
    """The environment variables a destination reads when its client opens, by the setting that
    names each (`client_id_env`, `headers_env.X-Api-Key`): every `*_env` setting that is set."""
    names: dict[str, str] = {}
    for setting, value in settings(spec):
        if not setting.endswith("_env") or not value:
            continue
        if isinstance(value, dict):
            names.update({f"{setting}.{key}": env for key, env in value.items()})
        else:
            names[setting] = str(value)
    return names


def missing_secrets(name: str, spec: DestinationSpec) -> str | None:
    """Why destination `name` cannot open now (its secrets' variables unset, each named), or None."""
    missing = [f"{env} (settings.{setting})" for setting, env in secret_names(spec).items() if not os.environ.get(env)]
    if not missing:
        return None
    return (
        f"destination {name} ({spec.type}): set the environment variable(s) {', '.join(missing)} where the "
        "sync runs; syncs.yml names them, it never holds their values"
    )


_ENDPOINT_SETTINGS = ("login_url", "base_url", "url")  # Salesforce, HubSpot, http: where the API is


def endpoint(spec: DestinationSpec) -> str:
    """Where the destination's API is, as `scheme://host[:port]` (no path, no credentials): what
    logs, metadata and the run history show for it."""
    model = settings(spec)
    for setting in _ENDPOINT_SETTINGS:
        value = getattr(model, setting, None)
        if isinstance(value, str) and value:
            parts = urlsplit(value)
            return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return f"{spec.type}://"


def identity(name: str, spec: DestinationSpec) -> str:
    """`<type>:<name>@<host>`: which API account the sync state of `name` was recorded against, so
    a destination pointed at another org or endpoint starts over with a full sync."""
    return f"{spec.type}:{name}@{urlsplit(endpoint(spec)).netloc}"


def api_destination(name: str, spec: DestinationSpec, syncs: Sequence[SyncSpec] = ()) -> ApiDestination:
    """The destination object the engine syncs through, for a configured API destination; `syncs`
    are the config's (the parents of a run's children may be synced in another run)."""
    from activation.destinations.api.engine import ApiDestination

    return ApiDestination(name, spec, syncs=syncs)
