"""Real destination databases for tests: each test gets its own database, dropped afterwards.

Servers are started when they are down (the commands the machine image uses), so a fresh
machine or CI passes without a manual step. Point at other servers with
ACTIVATION_TEST_MYSQL_URL / ACTIVATION_TEST_POSTGRES_URL (server URLs, no database).
"""

from __future__ import annotations

import fcntl
import glob
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

MYSQL_SERVER_URL = os.environ.get("ACTIVATION_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
POSTGRES_SERVER_URL = os.environ.get("ACTIVATION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _start_mariadb() -> None:
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
        check=False,
        capture_output=True,
    )


def _start_postgres() -> None:
    for version in sorted(glob.glob("/etc/postgresql/*")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", os.path.basename(version), "main", "start"],
            check=False,
            capture_output=True,
        )


def _wait_for(url: str, start, admin_db: str | None = None, timeout: float = 60.0) -> None:
    engine = sa.create_engine(url + (f"/{admin_db}" if admin_db else ""))
    deadline = time.monotonic() + timeout
    started = False
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError:
            if not started:
                start()
                started = True
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            engine.dispose()


def ensure_mariadb() -> None:
    _wait_for(MYSQL_SERVER_URL, _start_mariadb)


def ensure_postgres() -> None:
    _wait_for(POSTGRES_SERVER_URL, _start_postgres, admin_db="postgres")


# The suite runs in parallel workers (pytest-xdist) against one MariaDB server: every test that
# uses it holds a shared lock, and a test that restarts the server takes it alone.
_SERVER_LOCK = os.path.join(tempfile.gettempdir(), "activation-tests-mariadb.lock")


@contextmanager
def mariadb_server(*, exclusive: bool = False) -> Iterator[None]:
    with open(_SERVER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A fresh utf8mb4 database; yields its URL."""
    with mariadb_server():
        yield from _mariadb_database()


def _mariadb_database() -> Iterator[str]:
    ensure_mariadb()
    name = f"activation_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(MYSQL_SERVER_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        yield f"{MYSQL_SERVER_URL}/{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    ensure_postgres()
    name = f"activation_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8'"))
    try:
        yield f"{POSTGRES_SERVER_URL}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database(tmp_path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / f'app_{uuid.uuid4().hex[:6]}.sqlite'}"


def destination_database(kind: str, tmp_path):
    return {
        "mariadb": lambda: mariadb_database(),
        "postgres": lambda: postgres_database(),
        "sqlite": lambda: sqlite_database(tmp_path),
    }[kind]()
