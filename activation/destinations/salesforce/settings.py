"""A Salesforce destination's `settings:` block. Secrets are never written here: each `*_env` field
names the environment variable that holds the value, read when the client opens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# sObject Collections takes at most 200 records per call.
COLLECTION_LIMIT = 200
# Bulk API 2.0 takes 150 MB of base64 per upload, about 100 MB of CSV; a job never gets more.
MAX_UPLOAD_BYTES = 100_000_000


class Settings(BaseModel):
    """One org, reached through a connected app (OAuth 2.0 client credentials or JWT bearer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The My Domain URL (https://acme.my.salesforce.com); the client credentials flow needs it.
    # The JWT bearer flow may also use https://login.salesforce.com (test.salesforce.com for sandboxes).
    login_url: str = Field(pattern=r"^https://[^/?#]+/?$")
    auth: Literal["client_credentials", "jwt_bearer"]
    client_id_env: str  # the connected app's consumer key
    client_secret_env: str | None = None  # client_credentials: the consumer secret
    username_env: str | None = None  # jwt_bearer: the user the app acts as (the assertion's subject)
    private_key_env: str | None = None  # jwt_bearer: the PEM private key whose certificate the app holds
    audience: str = "https://login.salesforce.com"  # jwt_bearer: the assertion's `aud`
    api_version: str = Field(default="62.0", pattern=r"^[1-9][0-9]\.0$")

    # Fewer changed records than this go through sObject Collections (200 a call); more through
    # Bulk API 2.0 ingest jobs of `bulk_job_records` each.
    bulk_threshold: int = Field(default=2_000, ge=1)
    bulk_job_records: int = Field(default=10_000, ge=1, le=150_000_000)
    bulk_max_upload_bytes: int = Field(default=MAX_UPLOAD_BYTES, ge=1_000, le=MAX_UPLOAD_BYTES)
    bulk_poll_seconds: float = Field(default=1.0, gt=0)  # the first wait; then 1.5x, up to the max
    bulk_poll_max_seconds: float = Field(default=30.0, gt=0)
    bulk_timeout_seconds: float = Field(default=3_600.0, gt=0)

    # The share of the org's daily API requests (Sforce-Limit-Info) this destination may bring the
    # org's usage up to; calls stop, with an error, before it would be passed.
    max_daily_api_share: float = Field(default=0.5, gt=0, le=1)
    # Deletes for `mirror`: False moves records to the Recycle Bin (Collections, or a Bulk `delete`
    # job); True erases them (a Bulk `hardDelete` job; needs the "Bulk API Hard Delete" permission).
    hard_delete: bool = False
    ca_bundle: str | None = None  # a PEM file of CA certificates to trust instead of the system's
    request_timeout_seconds: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _flow_has_its_secrets(self) -> Settings:
        if self.auth == "client_credentials" and not self.client_secret_env:
            raise ValueError("auth: client_credentials needs client_secret_env")
        if self.auth == "jwt_bearer" and not (self.username_env and self.private_key_env):
            raise ValueError("auth: jwt_bearer needs username_env and private_key_env")
        if self.bulk_job_records < self.bulk_threshold:
            raise ValueError(
                f"bulk_job_records ({self.bulk_job_records}) must be at least bulk_threshold "
                f"({self.bulk_threshold}): smaller chunks would never reach Bulk API 2.0"
            )
        return self
