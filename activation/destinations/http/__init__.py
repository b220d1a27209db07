"""Any HTTP endpoint as an API destination (type: http): JSON batches, a body template per record,
per-record results, an idempotency key per change. See settings.py for the configuration."""

from __future__ import annotations

import os
from collections.abc import Callable

from activation.destinations.api.limits import RateLimiter
from activation.destinations.http.client import HttpClient
from activation.destinations.http.settings import Settings

__all__ = ["Settings", "open_client", "can_count"]


def _env(name: str, setting: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set (the http destination's {setting})")
    return value


def open_client(settings: Settings, limiter: RateLimiter, log: Callable[[str], None]) -> HttpClient:
    """The client, with its secrets read from the environment now (a missing one is named)."""
    headers = dict(settings.headers)
    for header, name in settings.headers_env.items():
        headers[header] = _env(name, f"headers_env.{header}")
    if settings.bearer_token_env:
        headers["Authorization"] = "Bearer " + _env(settings.bearer_token_env, "bearer_token_env")
    return HttpClient(settings, limiter, log, headers)


def can_count(settings: Settings) -> bool:
    return settings.count_url is not None
