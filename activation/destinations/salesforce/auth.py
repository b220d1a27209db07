"""OAuth 2.0 for a connected app: the client credentials flow or the JWT bearer flow, both answered
by `/services/oauth2/token` on the configured login URL. Secrets come from the environment when the
client opens and never appear in an error or a log line."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import jwt

from activation.destinations.api.client import DestinationDown
from activation.destinations.salesforce.settings import Settings

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce refuses an assertion that expires more than 3 minutes ahead.
ASSERTION_SECONDS = 170


class SalesforceError(RuntimeError):
    """Salesforce answered something a sync cannot go on from; the message says what and where."""


class SalesforceLoginError(SalesforceError, DestinationDown):
    """The token endpoint refused the connected app's credentials."""


class SalesforceDown(SalesforceError, DestinationDown):
    """The org refused the destination as a whole: HTTP 401 (a session that a new login did not
    mend) or 403 REQUEST_LIMIT_EXCEEDED (the org's daily API requests are used up)."""


def refusal(message: str, status: int, reason: str) -> SalesforceError:
    """An HTTP error as the error it is: one object's (a SalesforceError) or the whole org's."""
    if status == 401 or (status == 403 and "REQUEST_LIMIT_EXCEEDED" in reason):
        return SalesforceDown(message)
    return SalesforceError(message)


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str | None = None
    username: str | None = None
    private_key: str | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(client_id={self.client_id!r}, ...)"


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str  # where this org's REST API lives (https://acme.my.salesforce.com)


def read_credentials(settings: Settings) -> Credentials:
    """The secrets named by `*_env`, read now; one error names every variable that is missing."""
    names = {"client_id": settings.client_id_env}
    if settings.auth == "client_credentials":
        names["client_secret"] = settings.client_secret_env or ""
    else:
        names["username"] = settings.username_env or ""
        names["private_key"] = settings.private_key_env or ""
    values = {field: os.environ.get(env, "") for field, env in names.items()}
    missing = [names[field] for field, value in values.items() if not value]
    if missing:
        raise SalesforceLoginError(
            f"Salesforce ({settings.login_url}, auth {settings.auth}): set the environment variable(s) "
            f"{', '.join(missing)}"
        )
    return Credentials(**values)


def token_url(settings: Settings) -> str:
    return settings.login_url.rstrip("/") + "/services/oauth2/token"


def token_form(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """The body of a token request (form-encoded), built fresh for each login."""
    if settings.auth == "client_credentials":
        return {
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret or "",
        }
    claims = {
        "iss": credentials.client_id,
        "sub": credentials.username,
        "aud": settings.audience,
        "exp": int(time.time()) + ASSERTION_SECONDS,
    }
    try:
        assertion = jwt.encode(claims, credentials.private_key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise SalesforceLoginError(
            f"Salesforce JWT bearer flow: the key in {settings.private_key_env} is not a PEM RSA "
            f"private key ({type(exc).__name__})"
        ) from None
    return {"grant_type": JWT_GRANT, "assertion": assertion}


def parse_token(settings: Settings, status: int, body: Any) -> Token:
    """A token response, or the endpoint's own error (`error`, `error_description`)."""
    if status == 200 and isinstance(body, dict) and body.get("access_token") and body.get("instance_url"):
        return Token(access_token=body["access_token"], instance_url=body["instance_url"].rstrip("/"))
    if isinstance(body, dict) and "error" in body:
        reason = f"{body['error']}: {body.get('error_description', '')}"
    else:
        reason = f"HTTP {status}, not a token response"
    raise SalesforceLoginError(f"Salesforce login at {token_url(settings)} ({settings.auth}) failed: {reason}")
