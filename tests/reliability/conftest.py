"""Fault, concurrency and security tests against the real destination servers."""

import pytest

from tests.databases import mariadb_database, postgres_database


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "server_restart: shuts the shared MariaDB server down and starts it again mid-test "
        "(deselect with -m 'not server_restart' while others use the server)",
    )


@pytest.fixture
def mariadb_url():
    with mariadb_database() as url:
        yield url


@pytest.fixture
def postgres_url():
    with postgres_database() as url:
        yield url
