"""Destination type -> the package that implements it, imported only when a config uses it.

An API destination is one package `activation/destinations/<type>/` exposing
- `Settings`: a frozen pydantic model (extra="forbid") of the destination's `settings:` block;
  secrets are NAMES of environment variables (fields ending in `_env`), read at open time;
- `open_client(settings, limiter, log) -> ObjectClient` (destinations/api/client.py);
- optionally `can_count(settings) -> bool` (default True): whether its client counts records;
plus one line in `API_PACKAGES` below. The engine (destinations/api/engine.py) does the rest.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from activation.destinations.api.client import ObjectClient
    from activation.destinations.api.engine import ApiDestination
    from activation.destinations.api.limits import RateLimiter
    from activation.syncs.spec import DestinationSpec

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


def api_destination(name: str, spec: DestinationSpec) -> ApiDestination:
    """The destination object the engine syncs through, for a configured API destination."""
    from activation.destinations.api.engine import ApiDestination

    return ApiDestination(name, spec)
