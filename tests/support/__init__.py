"""What every test directory shares (ADR 010, update): one way to wait (`eventually`), a
clock a test controls (`FixedClock`), the builders several directories used to copy, a
runtime on the in-memory bus and store, and the full in-memory store (the real
`SqliteStore` in memory, held to the store contract suite). No fakes of the ports here:
the in-memory adapters are real adapters.

Import from the modules (`tests.support.waiting`, `.clock`, `.builders`, `.store`,
`.runtime`) or from this package.
"""

from tests.support.builders import (
    a_bare_station,
    a_bare_token,
    a_station,
    a_token,
    at,
    settings_for_tests,
    unique,
)
from tests.support.clock import T0, FixedClock
from tests.support.runtime import PEPPER, a_runtime, running
from tests.support.store import MEMORY_URL, SharedMemoryDatabase, memory_store, opened
from tests.support.waiting import eventually

__all__ = [
    "MEMORY_URL",
    "PEPPER",
    "T0",
    "FixedClock",
    "SharedMemoryDatabase",
    "a_bare_station",
    "a_bare_token",
    "a_runtime",
    "a_station",
    "a_token",
    "at",
    "eventually",
    "memory_store",
    "opened",
    "running",
    "settings_for_tests",
    "unique",
]
