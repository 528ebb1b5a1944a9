"""Readiness reflects now (ADR 019 §5): the API's /readyz reports the last periodic probe of
the store and the bus, so a pod that failed one store call is ready again after the next
probe that succeeds, with no request to clear it (Kubernetes sends a not-ready pod none),
and a store that does not answer makes it not ready once the probe times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from services.api.service import ApiService
from services.api.wiring import build_api
from services.common.errors import StoreUnavailable
from services.common.readiness import PROBE_STATION_ID, DependencyProbe
from services.common.runtime import Runtime
from services.common.store.port import Station
from services.common.store.sqlite import SqliteStore
from tests.support import a_runtime, eventually, memory_store, running

INTERVAL_S = 0.05
TIMEOUT_S = 0.2


class Outage:
    """Makes a real store's reads fail (`failing`) or hang (`hanging`) while set."""

    def __init__(self, store: SqliteStore) -> None:
        self.failing = False
        self.hanging = False
        self.calls = 0
        self._read: Callable[[str], Awaitable[Station | None]] = store.get_station
        self._never = asyncio.Event()
        store.get_station = self.get_station  # type: ignore[method-assign]

    async def get_station(self, station_id: str) -> Station | None:
        self.calls += 1
        if self.failing:
            raise StoreUnavailable("sqlite get_station: database is locked")
        if self.hanging:
            await self._never.wait()
        return await self._read(station_id)


def store_up() -> float | None:
    return REGISTRY.get_sample_value("csms_dependency_up", {"dependency": "store"})


@pytest.fixture
async def world() -> AsyncIterator[tuple[Runtime, Outage, ApiService]]:
    store = memory_store()
    outage = Outage(store)
    rt = a_runtime(store=store, readiness_probe_interval_s=INTERVAL_S, readiness_probe_timeout_s=TIMEOUT_S)
    async with running(rt):
        api = build_api(rt)
        await api.start()
        await rt.readiness.start()
        try:
            yield rt, outage, api
        finally:
            await rt.readiness.stop()
            await api.stop()


async def readyz(api: ApiService) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{api.port}/readyz") as r:
            return r.status


async def test_a_store_that_failed_is_ready_again_after_the_next_probe_without_any_request(
    world: tuple[Runtime, Outage, ApiService],
) -> None:
    rt, outage, api = world
    assert api.ready() and store_up() == 1.0
    outage.failing = True
    await eventually(lambda: not api.ready(), 5, what="not ready while the store fails")
    assert await readyz(api) == 503 and store_up() == 0.0
    outage.failing = False
    probes = outage.calls
    # no request reaches the API meanwhile: only the probe reads the store
    await eventually(lambda: api.ready(), 5, what="ready again after the next probe")
    assert outage.calls > probes and store_up() == 1.0
    assert await readyz(api) == 200


async def test_a_store_that_hangs_is_not_ready_once_the_probe_times_out(
    world: tuple[Runtime, Outage, ApiService],
) -> None:
    rt, outage, api = world
    assert api.ready()
    outage.hanging = True
    await eventually(lambda: not api.ready(), 5, what="not ready once a probe timed out")
    assert store_up() == 0.0 and rt.store.healthy  # the adapter's own flag never saw a failure
    outage.hanging = False
    await eventually(lambda: api.ready(), 5, what="ready again once the store answers")


async def test_a_failed_request_does_not_make_the_api_not_ready_until_a_probe_fails(
    world: tuple[Runtime, Outage, ApiService],
) -> None:
    rt, outage, api = world
    outage.failing = True
    with pytest.raises(StoreUnavailable):
        await rt.store.get_station("CP-1")  # a route's read that failed
    outage.failing = False
    for _ in range(5):  # several probe rounds: the failed request left no sticky flag
        await asyncio.sleep(INTERVAL_S)
        assert api.ready()


async def test_the_bus_is_probed_too() -> None:
    rt = a_runtime(readiness_probe_interval_s=INTERVAL_S, readiness_probe_timeout_s=TIMEOUT_S)
    async with running(rt):
        await rt.readiness.start()
        try:
            assert rt.readiness.ready()
            rt.bus.set_available(False)  # type: ignore[attr-defined]
            await eventually(lambda: not rt.readiness.ready(), 5, what="not ready while the bus is down")
            assert REGISTRY.get_sample_value("csms_dependency_up", {"dependency": "bus"}) == 0.0
            rt.bus.set_available(True)  # type: ignore[attr-defined]
            await eventually(lambda: rt.readiness.ready(), 5, what="ready again with the bus back")
        finally:
            await rt.readiness.stop()


async def test_before_it_is_started_the_probe_reads_the_adapters_flags() -> None:
    rt = a_runtime()
    assert not rt.readiness.running and not rt.readiness.ready()  # the store is not started
    async with running(rt):
        assert rt.readiness.ready()


async def test_the_store_probe_is_one_point_read_of_a_station_that_does_not_exist() -> None:
    seen: list[Any] = []
    store = memory_store()
    outage = Outage(store)
    async with running(a_runtime(store=store)) as rt:
        before = outage.calls
        assert await rt.readiness.probe()
        assert outage.calls == before + 1
        seen.append(await store.get_station(PROBE_STATION_ID))
    assert seen == [None]


async def test_a_check_that_raises_counts_as_down() -> None:
    async def broken() -> bool:
        raise RuntimeError("boom")

    async def fine() -> bool:
        return True

    probe = DependencyProbe({"store": broken, "bus": fine}, interval_s=1, timeout_s=1)
    assert not await probe.probe() and probe.up == {"store": False, "bus": True} and not probe.ready()
