"""Fixtures for the Salesforce tests: a TLS certificate and a JWT key per session, a fresh local org
per test, and `connect`, which opens the real client on it with secrets set in the environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from activation.destinations.api.limits import RateLimiter
from activation.destinations.salesforce import SalesforceClient, Settings, open_client
from tests.destinations.salesforce_server import (
    OrgConfig,
    SalesforceServer,
    private_pem,
    public_pem,
    rsa_key,
    self_signed_certificate,
)


@dataclass(frozen=True)
class Keys:
    cert: str
    key: str
    jwt_private: str
    jwt_public: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("salesforce-tls"))
    jwt_key = rsa_key()
    return Keys(str(cert), str(key), private_pem(jwt_key), public_pem(jwt_key))


@pytest.fixture
def start_org(keys) -> Iterator[Callable[..., SalesforceServer]]:
    """Starts a local org with OrgConfig overrides; the connected app trusts the session's JWT key."""
    servers: list[SalesforceServer] = []

    def start(**config: Any) -> SalesforceServer:
        server = SalesforceServer(keys.cert, keys.key, OrgConfig(**{"jwt_public_key": keys.jwt_public, **config}))
        servers.append(server.__enter__())
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def org(start_org) -> SalesforceServer:
    return start_org()


@pytest.fixture
def connect(keys, monkeypatch) -> Iterator[Callable[..., SalesforceClient]]:
    """Opens the client on an org: client credentials unless `auth="jwt_bearer"`; fast Bulk polling."""
    clients: list[SalesforceClient] = []

    def open_on(
        server: SalesforceServer, limiter: RateLimiter | None = None, env: dict | None = None, **overrides: Any
    ) -> SalesforceClient:
        secrets = {
            "SF_CLIENT_ID": server.config.client_id,
            "SF_CLIENT_SECRET": server.config.client_secret,
            "SF_USERNAME": server.config.jwt_username,
            "SF_PRIVATE_KEY": keys.jwt_private,
            **(env or {}),
        }
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the client keeps the environment's proxies
        settings = {
            "login_url": server.url,
            "auth": "client_credentials",
            "client_id_env": "SF_CLIENT_ID",
            "client_secret_env": "SF_CLIENT_SECRET",
            "ca_bundle": keys.cert,
            "bulk_poll_seconds": 0.02,
            "bulk_poll_max_seconds": 0.2,
            **overrides,
        }
        if settings["auth"] == "jwt_bearer":
            settings = {"username_env": "SF_USERNAME", "private_key_env": "SF_PRIVATE_KEY", **settings}
            settings.pop("client_secret_env")
        client = open_client(Settings(**settings), limiter or RateLimiter(1_000), log=lambda _: None)
        clients.append(client)
        return client

    yield open_on
    for client in clients:
        client.close()
