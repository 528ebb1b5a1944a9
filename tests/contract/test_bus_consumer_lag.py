"""Consumer lag is measured on a timer (ADR 019 §6): `csms_bus_consumer_lag_records` grows
while a handler is stuck on a record (retries, the store down), on every bus adapter, for
one-record and batch consumers. The lag alert ("Cassandra down") depends on it: a gauge
refreshed only when records finish would freeze at its last value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.bus.port import Bus, Record

from .conftest import KAFKA_URL, START_TIMEOUT_S
from .test_bus_contract import stop

LAG_INTERVAL_S = 0.2
MORE = 7  # records published while the handler is stuck


@pytest.fixture
async def bus(bus_backend: str) -> AsyncIterator[Bus]:
    """The contract bus with its lag timer at LAG_INTERVAL_S (the setting defaults to 5 s)."""
    if bus_backend == "memory":
        from services.common.bus.memory import MemoryBus

        b: Bus = MemoryBus(consumer_lag_interval_s=LAG_INTERVAL_S)
    else:
        from services.common.bus.kafka import KafkaBus

        b = KafkaBus(KAFKA_URL, consumer_lag_interval_s=LAG_INTERVAL_S)
    await asyncio.wait_for(b.start(), START_TIMEOUT_S[bus_backend])
    yield b
    await asyncio.wait_for(b.close(), START_TIMEOUT_S[bus_backend])


def lag(topic: str, group: str) -> float:
    return REGISTRY.get_sample_value("csms_bus_consumer_lag_records", {"topic": topic, "group": group}) or 0.0


class Stuck:
    """A handler that blocks on its first record until `release` is set (a store that
    does not answer), counting the records it was given."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.seen = 0

    async def one(self, record: Record) -> None:
        self.seen += 1
        self.entered.set()
        await self.release.wait()

    async def batch(self, records: Sequence[Record]) -> None:
        self.seen += len(records)
        self.entered.set()
        await self.release.wait()


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    async def loop() -> None:
        while not check():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what} within {timeout}s") from None


@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
async def test_the_lag_gauge_grows_while_the_handler_is_stuck(
    bus: Bus, new_topic: Any, new_group: Callable[[], str], patience: float, batch: bool
) -> None:
    topic, group = await new_topic(1), new_group()
    stuck = Stuck()
    if batch:
        sub = await bus.subscribe_batch(topic, group, stuck.batch, max_records=1)
    else:
        sub = await bus.subscribe(topic, group, stuck.one)
    try:
        # publish until the consumer holds a record (a Kafka member needs its assignment first)
        async def first() -> None:
            i = 0
            while not stuck.entered.is_set():
                await bus.publish(topic, f"CP-{i}", b"first", partition=0)
                i += 1
                await asyncio.sleep(0.2)

        await asyncio.wait_for(first(), patience)
        for i in range(MORE):
            await bus.publish(topic, f"CP-more-{i}", b"more", partition=0)
        await wait_for(lambda: lag(topic, group) >= MORE, patience, f"lag of {topic}/{group} reached {MORE}")
        assert not stuck.release.is_set() and stuck.seen == 1  # still stuck on its first record
        stuck.release.set()
        await wait_for(lambda: lag(topic, group) == 0, patience, f"lag of {topic}/{group} back to 0")
    finally:
        stuck.release.set()
        await stop(sub, patience)
