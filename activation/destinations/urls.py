"""A destination database's URL: the driver made explicit, which database it names, and how it may
be shown. Kept free of Dagster, so the engine, the history and the command line share it."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Make the driver choice and the charset explicit, so `mysql://` works and emoji survive."""
    parsed = make_url(url)
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.get_backend_name()}+pymysql")
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    elif parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def destination_identity(url: str) -> str:
    """Which database a URL points at, without user or password: state recorded for one
    destination must not be trusted for another."""
    u = make_url(url)
    return f"{u.get_backend_name()}://{u.host or ''}:{u.port or ''}/{u.database or ''}"


def masked_url(url: str) -> str:
    """The URL as it may appear in logs and metadata: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def dialect_kind(url: str) -> str:
    """The kind of database a URL names (mysql, postgres, sqlite): the Dagster `kinds` tag of its
    tables; it never carries the secret."""
    backend = make_url(url).get_backend_name()
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)
