"""The one HTTP path to an org. simple-salesforce and the Bulk 2.0 job runner both send through this
requests.Session, so every call, whoever makes it, goes through the destination's Transport (rate
limit, Retry-After, backoff on 5xx and dropped connections), carries the current token, is refused
before it would take the org's API usage past the configured share, and reports the usage that
Salesforce returns in `Sforce-Limit-Info`. An expired session (401 INVALID_SESSION_ID) is logged in
again once and the call repeated."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any

import requests

from activation.destinations.api.client import DestinationDown
from activation.destinations.api.limits import RetriesExhausted, Transport
from activation.destinations.salesforce.auth import (
    Credentials,
    SalesforceError,
    Token,
    parse_token,
    token_form,
    token_url,
)
from activation.destinations.salesforce.settings import Settings

Log = Callable[[str], None]
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


class ApiShareExceeded(SalesforceError, DestinationDown):
    """The next call would take the org past the share of its daily API requests it allows us."""


class ApiUsage:
    """The org's daily API requests as Salesforce last reported them, counted up between reports."""

    def __init__(self, share: float):
        self.share = share
        self.used: int | None = None
        self.limit: int | None = None
        self._lock = threading.Lock()

    @property
    def allowed(self) -> int | None:
        return None if self.limit is None else math.floor(self.limit * self.share)

    def note(self, header: str | None) -> None:
        match = _USAGE.search(header or "")
        if match:
            with self._lock:
                self.used, self.limit = int(match.group(1)), int(match.group(2))

    def take(self) -> None:
        """Count one call about to be sent, or refuse it: nothing is sent past the share."""
        with self._lock:
            allowed = self.allowed
            if self.used is None or allowed is None:
                return  # unknown until the first answer of this client reports it
            if self.used + 1 > allowed:
                raise ApiShareExceeded(
                    f"Salesforce API usage is {self.used:,} of the org's {self.limit:,} daily requests; "
                    f"max_daily_api_share {self.share:g} allows {allowed:,}, so no more calls are made "
                    f"today (raise the share, or wait for the rolling 24-hour window)"
                )
            self.used += 1


def session_expired(response: requests.Response) -> bool:
    if response.status_code != 401:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, list) and any(e.get("errorCode") == "INVALID_SESSION_ID" for e in body)


class OrgSession(requests.Session):
    """requests.Session whose every request goes through the Transport with the org's token."""

    def __init__(self, settings: Settings, credentials: Credentials, transport: Transport, log: Log):
        super().__init__()
        self.settings, self.transport, self.log = settings, transport, log
        self._credentials = credentials
        # Passed per request: a session-wide `verify` loses to REQUESTS_CA_BUNDLE from the environment.
        self._verify: str | bool = settings.ca_bundle or True
        self.usage = ApiUsage(settings.max_daily_api_share)
        self.token: Token | None = None
        self._login_lock = threading.Lock()

    def _once(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        """One HTTP exchange, no retry (the Transport decides on those)."""
        call = {**kwargs, "verify": self._verify}
        call["timeout"] = kwargs.get("timeout") or self.settings.request_timeout_seconds
        try:
            return requests.Session.request(self, method, url, **call)
        except requests.exceptions.SSLError as exc:  # not worth a retry: the certificate stays wrong
            raise SalesforceError(f"Salesforce at {url}: TLS failed ({exc}); see ca_bundle") from None

    def _through_transport(self, method: str, url: str, send: Callable[[], requests.Response]) -> requests.Response:
        try:
            return self.transport.call(send, lambda r: r.status_code, lambda r, name: r.headers.get(name))
        except RetriesExhausted as exc:
            raise RetriesExhausted(f"Salesforce {method} {url.split('?')[0]}: {exc}") from None

    def login(self, stale: Token | None = None) -> Token:
        """A fresh token (once, when several callers find the same token expired)."""
        with self._login_lock:
            if self.token is None or self.token is stale:
                form = token_form(self.settings, self._credentials)
                url = token_url(self.settings)
                response = self._through_transport("POST", url, lambda: self._once("POST", url, {"data": form}))
                try:
                    body = response.json()
                except ValueError:
                    body = None
                self.token = parse_token(self.settings, response.status_code, body)
            return self.token

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if args:
            raise TypeError("OrgSession.request takes keyword arguments only")
        token = self.token or self.login()
        response = self._authorized(method, url, token, kwargs)
        if session_expired(response):
            self.log("Salesforce: the session expired; logging in again and repeating the call once")
            token = self.login(stale=token)
            response = self._authorized(method, url, token, kwargs)
        return response

    def _authorized(self, method: str, url: str, token: Token, kwargs: dict[str, Any]) -> requests.Response:
        bearer = {"Authorization": f"Bearer {token.access_token}"}
        call = {**kwargs, "headers": {**(kwargs.get("headers") or {}), **bearer}}
        self.usage.take()  # refused before the limiter is asked: a refused call is no call
        attempts = 0

        def send() -> requests.Response:
            nonlocal attempts
            if attempts:  # a retry is one more call against the daily limit
                self.usage.take()
            attempts += 1
            return self._once(method, url, call)

        response = self._through_transport(method, url, send)
        self.usage.note(response.headers.get("Sforce-Limit-Info"))
        return response
