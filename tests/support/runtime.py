"""A runtime on the in-memory bus and the in-memory store, for tests that wire a service.

`a_runtime()` builds one through the real composition root (`bootstrap`) with a
`MemoryBus`, a `SqliteStore` in memory, a `FixedClock` and a fixed pepper;
`running(rt)` starts it (topics created, schema migrated) and closes it afterwards.
Pass your own bus, store or clock to keep a handle on them.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from services.common.bus.memory import MemoryBus
from services.common.bus.port import Bus
from services.common.config import Settings
from services.common.runtime import Runtime, bootstrap
from services.common.store.port import Store
from services.common.timeutil import Clock
from tests.support.builders import settings_for_tests
from tests.support.clock import FixedClock
from tests.support.store import memory_store

__all__ = ["PEPPER", "a_runtime", "running"]

PEPPER = b"test-pepper"


def a_runtime(
    *,
    settings: Settings | None = None,
    bus: Bus | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    pepper: bytes = PEPPER,
    **setting_overrides: Any,
) -> Runtime:
    """A runtime (not started); `setting_overrides` go to `settings_for_tests`."""
    if settings is None:
        settings = settings_for_tests(**setting_overrides)
    elif setting_overrides:
        raise TypeError("pass settings= or setting overrides, not both")
    return bootstrap(
        settings,
        bus=bus if bus is not None else MemoryBus(default_partitions=settings.events_partitions),
        store=store if store is not None else memory_store(),
        clock=clock if clock is not None else FixedClock(),
        pepper=pepper,
    )


@asynccontextmanager
async def running(rt: Runtime | None = None) -> AsyncIterator[Runtime]:
    """`async with running(a_runtime()) as rt:` started and migrated; closed after."""
    runtime = rt if rt is not None else a_runtime()
    await runtime.start()
    try:
        await runtime.store.migrate()
        yield runtime
    finally:
        await runtime.close()
