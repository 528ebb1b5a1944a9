"""Event-loop lag of a process: `csms_event_loop_lag_seconds` (Histogram, no labels).

A `LoopLagMonitor` sets a timer due every `CSMS_LOOP_LAG_INTERVAL_S` and records how late
it fired: a loop busy with CPU work (or blocked by a synchronous call) fires its timers
late, and every request of the process waits that long too. One timer per process, so it
costs one wakeup per interval. Started by `csms` for every role (services/common/cli.py);
the gateway's admission control has its own 50 ms probe only while handshakes arrive
(services/gateway/admission.py), for its decisions, not for this metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import Histogram

__all__ = ["LOOP_LAG", "LoopLagMonitor"]

LOOP_LAG = Histogram(
    "csms_event_loop_lag_seconds",
    "How late a timer of the event loop fired (sampled every CSMS_LOOP_LAG_INTERVAL_S)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class LoopLagMonitor:
    """`start()` inside a running loop; `stop()` cancels the timer. `last` is the last
    sample (seconds), `samples` how many were taken."""

    def __init__(self, interval_s: float, *, observe: Callable[[float], None] | None = None) -> None:
        self.interval_s = max(0.001, float(interval_s))
        self._observe = observe if observe is not None else LOOP_LAG.observe
        self.last = 0.0
        self.samples = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        if self._timer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval_s
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        late = max(0.0, now - self._due)
        self.last = late
        self.samples += 1
        self._observe(late)
        self._schedule(now)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
