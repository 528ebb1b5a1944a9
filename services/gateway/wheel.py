"""One timer for every connection's keepalive: a timing wheel (ADR 017).

A timer handle per connection costs ~600 bytes under uvloop (a libuv timer each; ~150 on
the default loop), a noticeable share of the ~18 KiB an idle connection costs, and 10,000
stations make 10,000 handles. Here a connection due at time t goes into the bucket of
tick ceil(t / tick_s) (a dict entry); one loop timer per gateway fires every `tick_s`
while any connection is scheduled and runs the buckets that came due, in order. A
connection is at most in one bucket (`due` says which), so `cancel` is one dict pop, and
a deadline is late by at most one tick (the policy makes the tick a small fraction of the
ping interval and pong timeout: `SocketPolicy.tick_s`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Protocol

__all__ = ["Wheel", "Due"]

log = logging.getLogger("csms.gateway.wheel")


class Due(Protocol):
    """What the wheel schedules: `due` is its bucket (0: none), `on_due` runs when it comes."""

    due: int

    def on_due(self) -> None: ...


_EARLY_S = 0.002  # a loop timer may fire this much before its time (uvloop: milliseconds)


class Wheel:
    __slots__ = ("tick_s", "buckets", "handle", "next", "firing")

    def __init__(self, tick_s: float = 1.0) -> None:
        self.tick_s = tick_s
        self.buckets: dict[int, dict[Due, None]] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.next = 0          # the tick the handle fires at
        self.firing = False

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def schedule(self, item: Due, delay: float) -> None:
        """Run `item.on_due()` `delay` seconds from now (up to one tick later); replaces
        what was scheduled for it."""
        loop = asyncio.get_running_loop()
        if item.due:
            self.cancel(item)
        due = math.ceil((loop.time() + delay) / self.tick_s)
        bucket = self.buckets.get(due)
        if bucket is None:
            bucket = self.buckets[due] = {}
        bucket[item] = None
        item.due = due
        if not self.firing and (self.handle is None or due < self.next):
            self._arm(loop, due)

    def cancel(self, item: Due) -> None:
        bucket = self.buckets.get(item.due)
        if bucket is not None:
            bucket.pop(item, None)
            if not bucket:
                del self.buckets[item.due]
        item.due = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.next = tick
        self.handle = loop.call_at(tick * self.tick_s, self._fire)

    def _fire(self) -> None:
        self.handle = None
        loop = asyncio.get_running_loop()
        now = math.floor((loop.time() + _EARLY_S) / self.tick_s)
        self.firing = True
        try:
            for tick in sorted(t for t in self.buckets if t <= now):
                bucket = self.buckets.pop(tick)
                for item in bucket:
                    item.due = 0
                    try:
                        item.on_due()  # may schedule it again (into a later bucket)
                    except Exception:
                        log.exception("keepalive tick failed")
        finally:
            self.firing = False
        if self.buckets:
            self._arm(loop, min(self.buckets))
