"""Admission control that follows measured overload, not a fixed rate (ADR 002, amended; issue 8).

A reconnect storm is not refused because it is fast but because the process cannot keep
up. So the gateway measures, cheaply, the three ways it falls behind:

- **event-loop lag**: a timer due every `PROBE_S` notes how late it fires (and, while
  it is overdue, how overdue it is: a blocked loop cannot report its own lag);
- **bus back-pressure**: publishes in flight (sent, not yet acknowledged by the bus);
- **store latency**: an EWMA of the handshake's store round trips (the ownership claim),
  decaying while there are none so that a past blip cannot keep the door shut.

While all three are under their thresholds every upgrade is admitted and every
BootNotification Accepted. When one is over (`load` >= 1), an upgrade is answered 503, and
while the loop or the bus is over (`boot_overloaded`: a boot does not use the store) a
BootNotification is answered `Pending`, both with a wait computed from the backlog: each refused
client is given the next free slot of a schedule drained at the measured capacity
(handshakes completed per second while handshakes were queued), after the handshakes
already in progress. Refused clients therefore come back spread out at the rate they
can be served instead of as the next wave.

The decisions are pure functions of the signals (`load`, `overloaded`, `retry_after`),
tested without a clock; `Admission` is the thin runtime shell that keeps the signals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from prometheus_client import Counter, Gauge

from services.gateway.limits import TokenBucket
from services.gateway.metrics import BOOT_PENDING

if TYPE_CHECKING:
    from services.common.config import Settings

__all__ = [
    "Signals", "Thresholds", "UpgradeLimits", "load", "overloaded", "boot_overloaded", "retry_after", "ewma", "next_capacity", "Admission", "PROBE_S",
    "BootAdmission",
]

log = logging.getLogger("csms.gateway.admission")

PROBE_S = 0.05                   # event-loop lag probe period
_CAPACITY_WINDOW_S = 0.5         # completions are counted per window to estimate capacity
_INITIAL_CAPACITY_PER_S = 500.0  # until a saturated window has been measured
_MIN_CAPACITY_PER_S = 20.0
_LAG_DECAY = 0.5                 # per probe: the lag estimate halves while the loop is on time
_STORE_ALPHA = 0.2               # EWMA weight of one store observation
_STORE_DECAY = 0.8               # per probe without a store observation
_IDLE_STOP_S = 30.0              # the probe stops after this long without an admission decision

REFUSED = Counter("csms_gateway_admission_refused_total", "Upgrades (503) and boots (Pending) refused for overload", ["what"])
SIGNAL = Gauge("csms_gateway_admission_signal", "Admission signals: loop_lag_s, publishes_in_flight, store_latency_s, load", ["signal"])


@dataclass(frozen=True, slots=True)
class Signals:
    loop_lag_s: float
    publishes_in_flight: int
    store_latency_s: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_loop_lag_s: float = 0.25
    max_publishes: int = 5000
    max_store_s: float = 2.0
    retry_min_s: int = 1
    retry_max_s: int = 120

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Thresholds":
        """From the CSMS_ADMIT_* settings (docs/configuration.md, "Admission")."""
        return cls(
            max_loop_lag_s=settings.admit_max_loop_lag_s,
            max_publishes=settings.admit_max_publishes,
            max_store_s=settings.admit_max_store_s,
            retry_max_s=settings.admit_retry_max_s,
        )


# -- pure decisions ----------------------------------------------------------------------
def load(sig: Signals, th: Thresholds) -> float:
    """The worst signal as a fraction of its threshold (>= 1: overloaded). A threshold <= 0
    switches its signal off."""
    parts = [
        sig.loop_lag_s / th.max_loop_lag_s if th.max_loop_lag_s > 0 else 0.0,
        sig.publishes_in_flight / th.max_publishes if th.max_publishes > 0 else 0.0,
        sig.store_latency_s / th.max_store_s if th.max_store_s > 0 else 0.0,
    ]
    return max(parts)


def overloaded(sig: Signals, th: Thresholds) -> bool:
    return load(sig, th) >= 1.0


def boot_overloaded(sig: Signals, th: Thresholds) -> bool:
    """Overload as far as a BootNotification is concerned: the loop and the bus. The boot of
    a station that has just authenticated does not touch the store (decide_boot skips the
    re-read), so a slow store, which makes handshakes queue, is no reason to send the
    already-connected station away for an interval and have it boot a second time."""
    return overloaded(Signals(sig.loop_lag_s, sig.publishes_in_flight, 0.0), th)


def retry_after(now: float, horizon: float, backlog: int, capacity_per_s: float, th: Thresholds,
                u: float = 0.5) -> tuple[int, float]:
    """(whole seconds to tell a refused client, the schedule's new horizon).

    The client gets the next free slot: after the `backlog` already in progress has been
    served at `capacity_per_s`, and after every slot handed out before (`horizon`); slots
    are 1/capacity apart. Bounded by [retry_min_s, retry_max_s]; past the upper bound the
    horizon stops growing and the client gets a point of the upper half of the range
    chosen by `u` in [0, 1) (the caller's random number), so that those clients do not all
    come back in the same second either."""
    cap = max(capacity_per_s, _MIN_CAPACITY_PER_S)
    slot = max(horizon, now + backlog / cap, now + th.retry_min_s)
    if slot - now > th.retry_max_s:
        half = th.retry_max_s / 2.0
        return max(th.retry_min_s, int(half + u * half)), horizon
    seconds = min(th.retry_max_s, max(th.retry_min_s, math.ceil(slot - now)))
    return int(seconds), slot + 1.0 / cap


def ewma(prev: float, sample: float, alpha: float) -> float:
    return prev + alpha * (sample - prev)


def next_capacity(prev: float, completed: int, window_s: float, saturated: bool) -> float:
    """Capacity estimate (handshakes completed per second) after a window. Only a window
    in which handshakes were queued throughout (`saturated`) and some completed measures
    capacity (otherwise completions measure demand); the estimate follows it with weight
    0.3 and never drops below a floor."""
    if not saturated or window_s <= 0 or completed <= 0:
        return prev
    return max(_MIN_CAPACITY_PER_S, ewma(prev, completed / window_s, 0.3))


# -- runtime shell ------------------------------------------------------------------------
class Admission:
    """Keeps the signals of one gateway and answers admit/refuse. The lag probe starts on
    first use inside a running loop and stops with `stop()` or after _IDLE_STOP_S without
    a decision (an idle gateway does not tick; the next decision restarts it)."""

    def __init__(self, th: Thresholds, publishes_in_flight: Callable[[], int] = lambda: 0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.th = th
        self._publishes = publishes_in_flight
        self._now = now
        self.lag = 0.0
        self.store_latency = 0.0
        self._store_seen = False
        self.in_flight = 0               # handshakes admitted, not yet finished
        self.capacity = _INITIAL_CAPACITY_PER_S
        self._completed = 0              # handshakes completed in the current window
        self._min_in_flight = 0          # fewest handshakes in progress at a probe of the window
        self._saturated = False          # overloaded at some point of the window (logged)
        self._window_start = now()
        self._upgrade_horizon = 0.0
        self._boot_horizon = 0.0
        self._rng = random.Random()
        self._due = 0.0
        self._used = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- signals -------------------------------------------------------------------------
    def _ensure_probe(self) -> None:
        self._used = self._now()
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        self._due = loop.time() + PROBE_S
        self._timer = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        t = loop.time()
        late = max(0.0, t - self._due)
        self.lag = max(late, self.lag * _LAG_DECAY)
        if not self._store_seen:
            self.store_latency *= _STORE_DECAY
        self._store_seen = False
        sig = self.signals()
        if overloaded(sig, self.th):
            self._saturated = True
        self._min_in_flight = min(self._min_in_flight, self.in_flight)
        now = self._now()
        if now - self._window_start >= _CAPACITY_WINDOW_S:
            if self._saturated:
                log.info("admission: overloaded (loop lag %.3f s, %d publishes in flight, store %.3f s; %d handshakes in "
                         "progress, %d completed in %.2f s, capacity estimate %.0f/s)", sig.loop_lag_s, sig.publishes_in_flight,
                         sig.store_latency_s, self.in_flight, self._completed, now - self._window_start, self.capacity)
            # handshakes were queued at every probe of the window: completions measure capacity
            busy = self._min_in_flight > 0
            self.capacity = next_capacity(self.capacity, self._completed, now - self._window_start, busy)
            self._completed, self._saturated, self._window_start = 0, False, now
            self._min_in_flight = self.in_flight
            SIGNAL.labels("loop_lag_s").set(sig.loop_lag_s)
            SIGNAL.labels("publishes_in_flight").set(sig.publishes_in_flight)
            SIGNAL.labels("store_latency_s").set(sig.store_latency_s)
            SIGNAL.labels("load").set(load(sig, self.th))
        if now - self._used > _IDLE_STOP_S:  # nobody asked for a while: stop probing until asked again
            self.stop()
            return
        self._due = t + PROBE_S
        self._timer = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None  # no overdue probe to read until it runs again
        self.lag = 0.0

    def signals(self) -> Signals:
        lag = self.lag
        if self._loop is not None:  # an overdue probe: the loop is at least this late
            lag = max(lag, self._loop.time() - self._due)
        return Signals(lag, self._publishes(), self.store_latency)

    def observe_store(self, seconds: float) -> None:
        self.store_latency = ewma(self.store_latency, seconds, _STORE_ALPHA)
        self._store_seen = True

    def track(self, *, store: bool = False, completes: bool = False) -> "_Track":
        """`with admission.track(...)` around a handshake step: counts it in the backlog
        while it runs; `store=True` feeds its duration to the store-latency EWMA (even when
        it fails: a timing-out store is the slow store); `completes=True` counts a
        finished handshake for the capacity estimate when it succeeds."""
        return _Track(self, store, completes)

    # -- decisions -----------------------------------------------------------------------
    def upgrade_retry_after(self) -> int:
        """0: admit the upgrade; else answer 503 with this Retry-After (seconds)."""
        self._ensure_probe()
        if not overloaded(self.signals(), self.th):
            return 0
        self._saturated = True
        seconds, self._upgrade_horizon = retry_after(self._now(), self._upgrade_horizon, self.in_flight, self.capacity, self.th,
                                                     self._rng.random())
        REFUSED.labels("upgrade").inc()
        return seconds

    def boot_pending_interval(self) -> int:
        """0: Accept the BootNotification; else answer Pending with this interval (seconds),
        the next free slot of the boots' own schedule (see boot_overloaded)."""
        self._ensure_probe()
        if not boot_overloaded(self.signals(), self.th):
            return 0
        self._saturated = True
        seconds, self._boot_horizon = retry_after(self._now(), self._boot_horizon, 0, self.capacity, self.th, self._rng.random())
        REFUSED.labels("boot").inc()
        return seconds


class BootAdmission:
    """The BootNotification decision: Pending while `Admission` measures overload, or past
    an optional fixed cap (CSMS_BOOT_RATE, boots per second; 0 = none)."""

    __slots__ = ("_admission", "_boots", "_pending_s")

    def __init__(self, admission: Admission, boot_rate_per_s: float = 0.0) -> None:
        self._admission = admission
        self._boots = TokenBucket(boot_rate_per_s, max(1.0, boot_rate_per_s)) if boot_rate_per_s > 0 else None
        self._pending_s = 0

    def admit_boot(self) -> bool:
        """False: answer Pending with a back-off."""
        self._pending_s = self._admission.boot_pending_interval()
        ok = self._pending_s == 0 and (self._boots is None or self._boots.take())
        if not ok:
            BOOT_PENDING.inc()
        return ok

    def pending_interval(self) -> int | None:
        """The Pending interval of the boot `admit_boot` just refused for overload (None:
        refused by the fixed cap; the caller picks a jittered interval)."""
        return self._pending_s or None


class _Track:
    __slots__ = ("adm", "store", "completes", "t0")

    def __init__(self, adm: Admission, store: bool, completes: bool) -> None:
        self.adm, self.store, self.completes, self.t0 = adm, store, completes, 0.0

    def __enter__(self) -> None:
        self.adm.in_flight += 1
        if self.store:
            self.t0 = self.adm._now()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        adm = self.adm
        adm.in_flight -= 1
        if self.store:
            adm.observe_store(adm._now() - self.t0)
        if self.completes and exc_type is None:
            adm._completed += 1


@dataclass(frozen=True, slots=True)
class UpgradeLimits:
    """Per remote address: `rate` upgrades/s, `burst` saved up, and past the burst waits of
    at most `max_wait_s` before 429 (limits.TokenBucket.reserve)."""

    rate: float = 200.0
    burst: float = 1000.0
    max_wait_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: "Settings") -> "UpgradeLimits":
        """From the CSMS_UPGRADE_* settings (docs/configuration.md, "Admission")."""
        return cls(settings.upgrade_rate_per_ip, settings.upgrade_burst_per_ip, settings.upgrade_max_wait_s)
