"""The shared test helpers (tests/support) do what their callers rely on: `eventually`
returns the first truthy value or fails naming what it waited for; `FixedClock` moves only
forward when asked; the in-memory store keeps data for as long as its database lives."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from tests.support import FixedClock, SharedMemoryDatabase, T0, a_runtime, a_station, eventually, opened, running


async def test_eventually_returns_the_first_truthy_value_of_a_sync_probe() -> None:
    calls = []

    def probe() -> list[int]:
        calls.append(1)
        return [len(calls)] if len(calls) >= 3 else []

    assert await eventually(probe, 1.0, interval=0.001) == [3]


async def test_eventually_awaits_an_async_probe() -> None:
    box: list[str] = []

    async def probe() -> str | None:
        return box[0] if box else None

    asyncio.get_running_loop().call_later(0.02, box.append, "ready")
    assert await eventually(probe, 1.0, interval=0.005) == "ready"


async def test_eventually_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: 0"):
        await eventually(lambda: 0, 0.05, interval=0.01, what="the answer")


async def test_eventually_retries_a_probe_that_asserts_and_reports_its_last_failure() -> None:
    def probe() -> bool:
        assert False, "still 2 records"

    with pytest.raises(AssertionError, match="still 2 records"):
        await eventually(probe, 0.05, interval=0.01)


async def test_eventually_lets_any_other_error_of_the_probe_through_at_once() -> None:
    def probe() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await eventually(probe, 5.0)


def test_a_fixed_clock_stands_still_until_advanced() -> None:
    clock = FixedClock()
    assert clock() == clock() == T0
    assert clock.advance(30) == T0 + timedelta(seconds=30)
    assert clock.advance(timedelta(minutes=1), seconds=1) == T0 + timedelta(seconds=91)
    assert clock.advance(hours=1) == T0 + timedelta(seconds=3691)
    assert clock().tzinfo == timezone.utc


def test_a_fixed_clock_refuses_to_go_back_and_to_hold_naive_times() -> None:
    clock = FixedClock()
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))
    assert clock.set(T0 - timedelta(days=1)) == T0 - timedelta(days=1)


async def test_the_private_in_memory_store_is_a_working_store() -> None:
    async with opened() as store:
        station = a_station()
        await store.put_station(station)
        assert await store.get_station(station.id) == station


async def test_a_shared_in_memory_database_outlives_a_store_closing() -> None:
    with SharedMemoryDatabase() as db:
        station = a_station()
        async with opened(db.store()) as first:
            await first.put_station(station)
        async with opened(db.store()) as second:
            assert await second.get_station(station.id) == station


async def test_a_test_runtime_runs_on_the_memory_bus_and_store_with_a_fixed_clock() -> None:
    async with running(a_runtime(events_partitions=2)) as rt:
        assert rt.clock() == T0
        assert rt.settings.events_partitions == 2
        await rt.store.put_station(a_station(id="CP-RT"))
        assert await rt.store.get_station("CP-RT") is not None


async def test_eventually_adds_the_detail_it_is_given_to_its_failure() -> None:
    async def state() -> str:
        return "station received: []"

    with pytest.raises(AssertionError, match=r"(?s)waiting for a profile.*station received: \[\]"):
        await eventually(lambda: False, 0.02, interval=0.01, what="a profile", detail=state)
