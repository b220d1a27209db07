"""PyMySQL connections that share one TLS context per process.

With no TLS option in the URL, PyMySQL 2.2 runs in PREFERRED mode: TLS if the server offers it,
plain otherwise, without checking the certificate. It builds that context anew for every
connection (`ssl.create_default_context()` loads the system CA store, ~0.3 s per connection on
a loaded host), and a sync opens several connections. The context is the same every time
(no CA, no hostname check), so it is built once and shared; SSL contexts are thread-safe.
Any explicit TLS option (`ssl_ca`, `ssl_verify_cert`, ...) keeps PyMySQL's own handling.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import pymysql.connections
import sqlalchemy as sa


@functools.cache
def _preferred_context() -> ssl.SSLContext:
    return pymysql.connections.Connection._create_ssl_ctx(None, {})  # type: ignore[arg-type]


class _SharedTlsConnection(pymysql.connections.Connection):
    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if isinstance(sslp, dict) and not sslp:  # PREFERRED mode: nothing asked for
            return _preferred_context()
        return super()._create_ssl_ctx(sslp)


def share_tls_context(engine: sa.Engine) -> None:
    """Open the engine's connections with the shared PREFERRED-mode context."""

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: tuple, cparams: dict) -> Any:
        return _SharedTlsConnection(*cargs, **cparams)
