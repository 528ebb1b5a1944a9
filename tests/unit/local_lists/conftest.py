from tests.unit.api.conftest import api  # noqa: F401  (the REST API on a memory bus and SQLite)
