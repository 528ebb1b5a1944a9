from tests.unit.api.conftest import api  # noqa: F401  (the API on memory bus + SQLite)
