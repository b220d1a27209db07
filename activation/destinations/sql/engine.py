"""SQLAlchemy engines for destination URLs, set up as the writer relies on (driver, charset,
per-connection settings: each dialect says which)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from activation.destinations.sql.dialect import sql_dialect


def normalize_url(url: str) -> str:
    """Make the driver choice and the charset explicit, so `mysql://` works and emoji survive."""
    parsed = make_url(url)
    return sql_dialect(parsed).normalize_url(parsed).render_as_string(hide_password=False)


def create_engine(url: str) -> sa.Engine:
    dialect = sql_dialect(url)
    engine = sa.create_engine(
        normalize_url(url),
        pool_pre_ping=True,
        hide_parameters=True,  # row values (PII) stay out of error messages and logs
        connect_args=dialect.connect_args(),
    )
    dialect.prepare_engine(engine)
    return engine


def dry_run_engine(url: str) -> sa.Engine:
    """An engine for a dry run: an empty stand-in where the database does not exist yet (a SQLite
    file), so that planning creates nothing."""
    return sql_dialect(url).stand_in_engine(make_url(url)) or create_engine(url)


def resolve_path(url: str, base_dir: Path) -> str:
    """The URL with a relative database file taken from `base_dir`."""
    parsed = make_url(url)
    return sql_dialect(parsed).resolve_path(parsed, base_dir).render_as_string(hide_password=False)


def kind(url: str) -> str:
    """The Dagster `kinds` tag for a destination URL."""
    return sql_dialect(url).kind
