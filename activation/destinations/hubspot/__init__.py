"""HubSpot as a destination: CRM objects (contacts, companies, custom objects by objectTypeId)
upserted by a unique property through the batch endpoints, with a private app's token."""

from __future__ import annotations

import os

from activation.destinations.api.limits import Log, RateLimiter
from activation.destinations.hubspot.client import HubSpotClient, HubSpotError
from activation.destinations.hubspot.settings import Settings

# A foreign key (a contact's company) is set as an association (associations.py): syncs may
# declare foreign_keys.
RELATIONSHIPS = True

__all__ = ["RELATIONSHIPS", "HubSpotClient", "HubSpotError", "Settings", "open_client"]


def open_client(settings: Settings, limiter: RateLimiter, log: Log) -> HubSpotClient:
    """A client for the portal; the token is read from the environment now, not at import."""
    token = os.environ.get(settings.token_env, "").strip()
    if not token:
        raise HubSpotError(
            f"environment variable {settings.token_env} is not set: put the HubSpot private app's "
            "access token in it (or name another variable in the destination's token_env)"
        )
    return HubSpotClient(settings, token, limiter, log)
