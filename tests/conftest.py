import pytest

from tests.databases import destination_database

DIALECTS = ["sqlite", "mariadb", "postgres"]


@pytest.fixture(params=DIALECTS)
def destination_url(request, tmp_path):
    """A URL to an empty database of each dialect, dropped after the test."""
    with destination_database(request.param, tmp_path) as url:
        yield url
