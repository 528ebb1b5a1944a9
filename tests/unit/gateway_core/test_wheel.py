"""The keepalive timing wheel (services/gateway/wheel.py): one loop timer for every
connection, deadlines kept to within one tick, cancel and reschedule by bucket."""

from __future__ import annotations

import asyncio
from typing import Callable

from services.gateway.wheel import Wheel

TICK = 0.02


class Item:
    def __init__(self, name: str, log: list[tuple[str, float]], then: Callable[["Item"], None] | None = None) -> None:
        self.name, self.log, self.then, self.due = name, log, then, 0

    def on_due(self) -> None:
        self.log.append((self.name, asyncio.get_running_loop().time()))
        if self.then is not None:
            self.then(self)


async def test_items_run_at_their_time_within_a_tick_in_order() -> None:
    wheel, log = Wheel(TICK), []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for name, delay in (("c", 0.15), ("a", 0.05), ("b", 0.10)):
        wheel.schedule(Item(name, log), delay)
    assert len(wheel) == 3
    await asyncio.sleep(0.3)
    assert [n for n, _ in log] == ["a", "b", "c"]
    for (name, at), delay in zip(log, (0.05, 0.10, 0.15)):
        assert delay - 0.003 <= at - t0 <= delay + TICK + 0.05, (name, at - t0)
    assert len(wheel) == 0 and wheel.handle is None  # idle: no timer left


async def test_cancel_and_reschedule() -> None:
    wheel, log = Wheel(TICK), []
    gone, moved = Item("gone", log), Item("moved", log)
    wheel.schedule(gone, 0.05)
    wheel.schedule(moved, 0.05)
    wheel.cancel(gone)
    wheel.schedule(moved, 0.15)  # replaces its earlier deadline
    assert gone.due == 0 and len(wheel) == 1
    await asyncio.sleep(0.1)
    assert log == []
    await asyncio.sleep(0.15)
    assert [n for n, _ in log] == ["moved"]


async def test_an_item_may_reschedule_itself_and_one_timer_serves_all() -> None:
    wheel, log = Wheel(TICK), []
    count = {"n": 0}

    def again(item: Item) -> None:
        count["n"] += 1
        if count["n"] < 4:
            wheel.schedule(item, 0.03)

    wheel.schedule(Item("loop", log, again), 0.03)
    for i in range(50):
        wheel.schedule(Item(f"x{i}", log), 1.0)
    handle = wheel.handle
    assert handle is not None
    await asyncio.sleep(0.3)
    assert count["n"] == 4
    assert len(wheel) == 50 and wheel.handle is not None and wheel.next == min(wheel.buckets)
    for item in [i for b in list(wheel.buckets.values()) for i in list(b)]:
        wheel.cancel(item)
    assert len(wheel) == 0


async def test_a_failing_item_does_not_stop_the_others() -> None:
    wheel, log = Wheel(TICK), []

    def boom(item: Item) -> None:
        raise RuntimeError("bug")

    wheel.schedule(Item("bad", log, boom), 0.03)
    wheel.schedule(Item("good", log), 0.03)
    await asyncio.sleep(0.1)
    assert sorted(n for n, _ in log) == ["bad", "good"]
