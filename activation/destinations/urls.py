"""A destination database's URL as it may be shown and recorded: which database it names, and the URL
with its password hidden. Dialect-free, so the engine, the history and the command line share it
(the driver and charset a dialect needs are set in destinations/sql/engine.py)."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def destination_identity(url: str) -> str:
    """Which database a URL points at, without user or password: state recorded for one
    destination must not be trusted for another."""
    u = make_url(url)
    return f"{u.get_backend_name()}://{u.host or ''}:{u.port or ''}/{u.database or ''}"


def masked_url(url: str) -> str:
    """The URL as it may appear in logs and metadata: password hidden."""
    return make_url(url).render_as_string(hide_password=True)
