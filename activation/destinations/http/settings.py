"""The `settings:` of a generic HTTP destination (type: http), checked when syncs.yml loads.

```yaml
destinations:
  scoring_api:
    type: http
    rate_limit: {requests: 10, per_seconds: 1}
    settings:
      url: https://api.example.com/v1/{object}/batch   # {object}: the sync's `table`
      batch_size: 200
      bearer_token_env: SCORING_API_TOKEN              # the secret's environment variable
      body_template: {id: "{{ _key }}", attributes: {ltv: "{{ ltv }}"}}
      delete_url: https://api.example.com/v1/{object}/batch-delete
      fields:                                          # rules checked in the warehouse first
        ltv: {type: number, precision: 12, scale: 2}
        segment: {type: picklist, picklist: [gold, silver]}
```
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activation.destinations.http.template import PLACEHOLDER, SPECIAL, placeholders

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}


def _url(value: str | None) -> str | None:
    if value is None:
        return value
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    if re.match(r"^https?://[^/@\s]*:[^/@\s]*@", value):
        raise ValueError("a URL must not carry a password; give secrets as environment variables (*_env)")
    return value


class FieldRule(BaseModel):
    """What the endpoint accepts in one field, where it publishes no schema: checked in the
    warehouse before any call, as a vendor's describe would be."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["string", "textarea", "integer", "number", "boolean", "date", "datetime", "picklist", "id", "other"]
    length: int | None = Field(default=None, ge=1)
    required: bool = False
    picklist: tuple[str, ...] | None = None
    writable: bool = True
    precision: int | None = Field(default=None, ge=1)
    scale: int | None = Field(default=None, ge=0)


class ResponseMap(BaseModel):
    """Where a 2xx answer tells how each record went: dotted paths into its JSON. Default:
    `{"results": [{"index": 0, "ok": true, "id": "...", "created": true}, {"index": 1, "ok": false,
    "error": "..."}]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    results: str | None = "results"  # the array of per-record results; None: a 2xx accepts the whole batch
    index: str | None = "index"  # a result's position in the batch; None: results come in batch order
    ok: str | None = "ok"  # a boolean; None: a result with an error is a refusal, any other is a success
    error: str = "error"
    id: str | None = "id"
    created: str | None = "created"  # true: inserted, false: updated (absent: the plan's operation counts)


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    attempts: int = Field(default=6, ge=1, le=20)
    first_pause_seconds: float = Field(default=0.5, ge=0)
    max_pause_seconds: float = Field(default=30.0, ge=0)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str  # where batches of records are sent; `{object}` stands for the sync's table
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    batch_size: int = Field(default=100, ge=1, le=10_000)
    records_field: str | None = "records"  # the body is {records_field: [...]}; None: a bare JSON array
    body_template: dict[str, Any] | None = None  # one record's body (template.py); None: its fields as they are
    headers: dict[str, str] = Field(default_factory=dict)  # headers that are no secret
    headers_env: dict[str, str] = Field(default_factory=dict)  # header -> environment variable with its value
    bearer_token_env: str | None = None  # `Authorization: Bearer <value of this variable>`
    idempotency_header: str | None = "Idempotency-Key"  # per request: the same batch, the same key
    idempotency_field: str | None = "idempotency_key"  # per record, in its body
    response: ResponseMap = Field(default_factory=ResponseMap)
    delete_url: str | None = None  # deletes go here as {records_field: [{<key field>: key}]}; None: no deletes
    delete_method: Literal["POST", "DELETE"] = "POST"
    schema_url: str | None = None  # GET -> {"fields": [{name, type, length, required, picklist, ...}]}
    fields: dict[str, FieldRule] | None = None  # declared rules instead of a schema endpoint
    count_url: str | None = None  # GET -> {"count": n}: a read-back count for the checks
    count_path: str = "count"
    # how the endpoint compares the sync's key: case_insensitive makes keys differing only in case
    # twins (api/twins.py), refused before any call or set aside under max_rejects
    key_comparison: Literal["exact", "case_insensitive"] = "exact"
    timeout_seconds: float = Field(default=30.0, gt=0)
    retry: Retry = Field(default_factory=Retry)

    @field_validator("url", "delete_url", "schema_url", "count_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _url(value)

    @field_validator("bearer_token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name (A-Z, 0-9, _)")
        return value

    @field_validator("headers_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header, name in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"headers_env.{header}: {name!r} is not an environment variable name")
        return value

    @field_validator("headers")
    @classmethod
    def _no_secret_in_file(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value:
            if header.lower() in _SECRET_HEADERS:
                raise ValueError(f"{header} carries a secret: give it in headers_env (its environment variable)")
        return value

    @field_validator("body_template")
    @classmethod
    def _template_syntax(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        text = repr(value)
        if "{{" in PLACEHOLDER.sub("", text):
            raise ValueError("a placeholder is written {{ name }}: letters, digits and _ only, nothing else inside")
        unknown = {n for n in placeholders(value) if n.startswith("_") and n not in SPECIAL}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; the special names are {list(SPECIAL)}")
        return value

    @model_validator(mode="after")
    def _one_schema(self) -> Settings:
        if self.schema_url and self.fields:
            raise ValueError("give either schema_url (the endpoint's schema) or fields (declared rules), not both")
        return self

    def secrets(self) -> list[str]:
        """The environment variables this destination reads when it opens."""
        return [n for n in (self.bearer_token_env, *self.headers_env.values()) if n]
