"""Event-loop lag (`csms_event_loop_lag_seconds`): a timer that fires late says how long
every request of the process waited; a blocked loop shows as one large sample."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from services.common.looplag import LoopLagMonitor
from tests.support import eventually


def lag_count() -> float:
    return REGISTRY.get_sample_value("csms_event_loop_lag_seconds_count") or 0.0


async def test_a_blocked_loop_shows_as_a_late_sample() -> None:
    samples: list[float] = []
    monitor = LoopLagMonitor(0.02, observe=samples.append)
    monitor.start()
    try:
        await eventually(lambda: len(samples) >= 2, 5, what="samples on an idle loop")
        time.sleep(0.3)  # a synchronous call blocks the loop
        blocked_at = len(samples)
        await eventually(lambda: len(samples) > blocked_at, 5, what="a sample after the block")
        assert max(samples[blocked_at:]) >= 0.2
    finally:
        monitor.stop()
    assert not monitor.running


async def test_the_monitor_feeds_the_process_histogram_and_stops() -> None:
    before = lag_count()
    monitor = LoopLagMonitor(0.01)
    monitor.start()
    await eventually(lambda: lag_count() >= before + 3, 5, what="observations in csms_event_loop_lag_seconds")
    monitor.stop()
    stopped = monitor.samples
    await asyncio.sleep(0.05)
    assert monitor.samples == stopped
