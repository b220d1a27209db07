from tests.integration.conftest import lake, prepared_project, settings, warehouse  # noqa: F401  (shared session lake)
