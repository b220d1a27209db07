"""The `settings:` block of a HubSpot destination in syncs.yml. Secrets are named, never written:
`token_env` is the name of the environment variable holding the private app's access token."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Environment variable names; a private app token (pat-na1-...) does not match, so a token pasted
# into the config by mistake is refused instead of being kept in a file.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# HubSpot's batch endpoints take at most 100 inputs per call.
BATCH_LIMIT = 100


class Settings(BaseModel):
    """Where the portal is and how to call it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_env: str = "HUBSPOT_TOKEN"  # the environment variable holding the private app's token
    base_url: str = "https://api.hubapi.com"  # tests point this at their local server
    batch_size: int = Field(default=BATCH_LIMIT, ge=1, le=BATCH_LIMIT)  # inputs per batch call
    timeout_seconds: float = Field(default=30.0, gt=0)  # per HTTP request

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                "token_env names the environment variable that holds the token (e.g. HUBSPOT_TOKEN), "
                "not the token itself"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"base_url must be an http(s) URL, got {value!r}")
        return value.rstrip("/")
