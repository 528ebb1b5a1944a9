"""Readiness that reflects now: a periodic cheap probe of the store and the bus (ADR 019 §5).

A `DependencyProbe` checks its dependencies every `CSMS_READINESS_PROBE_INTERVAL_S` and
keeps the result of the last round; `/readyz` of the API and of the processors reports it.
A probe that fails or takes longer than `CSMS_READINESS_PROBE_TIMEOUT_S` counts as down,
and the next probe that succeeds makes the process ready again, with or without traffic
(the adapters' own `healthy` flags are set by the last request, so an API pod that
Kubernetes stopped sending requests to would stay not ready for ever).

- store: a point read of a station id that never exists (`get_station`), through the
  Store port: one cheap read, no adapter change;
- bus: the bus's `healthy` (the Kafka adapter tracks the broker's metadata; memory is up).

`csms_dependency_up{dependency="store"|"bus"}` is 1 or 0 after each round (exported from
the first round on: the gateway, which does not probe, exports none). One probe per
process (`Runtime.readiness`), started by `csms` (services/common/cli.py) next to the
services. Before it is started, `ready()` reads the adapters' flags directly (tests and
in-process use build services without starting a probe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import Gauge

from services.common.bus.port import Bus
from services.common.store.port import Store
from services.common.tasks import cancel_and_wait

__all__ = ["DEPENDENCY_UP", "PROBE_STATION_ID", "DependencyProbe", "bus_check", "store_check"]

log = logging.getLogger("csms.readiness")

DEPENDENCY_UP = Gauge(
    "csms_dependency_up", "1 when the last readiness probe of the dependency (store, bus) succeeded, else 0", ["dependency"]
)
# A station id no station can have (ids are at most 48 printable characters, OCPP 2.0.1).
PROBE_STATION_ID = "\x00csms-readiness-probe"

Check = Callable[[], Awaitable[bool]]


def store_check(store: Store) -> Check:
    """The store answers a point read (of a station that does not exist)."""

    async def check() -> bool:
        await store.get_station(PROBE_STATION_ID)
        return True

    return check


def bus_check(bus: Bus) -> Check:
    """The bus says it is usable (Kafka: metadata reachable; memory: always)."""

    async def check() -> bool:
        return bool(bus.healthy)

    return check


class DependencyProbe:
    """`checks`: dependency name -> async check (True: up; False, an exception or no answer
    within `timeout_s`: down). `fallback`: name -> the synchronous flag `ready()` reads
    before the probe has started."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        interval_s: float,
        timeout_s: float,
        fallback: Mapping[str, Callable[[], bool]] | None = None,
    ) -> None:
        self._checks = dict(checks)
        self.interval_s = max(0.01, float(interval_s))
        self.timeout_s = max(0.001, float(timeout_s))
        self._fallback = dict(fallback or {})
        self.up: dict[str, bool] = {name: False for name in self._checks}
        # bound at the first probe: a process that never probes (the gateway) exports no 0s
        self._gauges: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._probed = False

    @classmethod
    def of(cls, store: Store, bus: Bus, *, interval_s: float, timeout_s: float) -> "DependencyProbe":
        """The API's and the processors' probe: the store and the bus."""
        return cls(
            {"store": store_check(store), "bus": bus_check(bus)},
            interval_s=interval_s,
            timeout_s=timeout_s,
            fallback={"store": lambda: bool(store.healthy), "bus": lambda: bool(bus.healthy)},
        )

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Probe once now (so a started process reports the truth at once), then every
        `interval_s` in the background."""
        if self._task is not None:
            return
        await self.probe()
        self._task = asyncio.create_task(self._every(), name="readiness-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.probe()

    async def probe(self) -> bool:
        """One round: every check concurrently, each bounded by `timeout_s`."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._one(name) for name in names))
        for name, ok in zip(names, results):
            if ok != self.up.get(name) or not self._probed:
                if not ok:
                    log.warning("readiness: %s is down", name)
                elif self._probed:
                    log.info("readiness: %s is up again", name)
            self.up[name] = ok
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = self._gauges[name] = DEPENDENCY_UP.labels(name)
            gauge.set(1 if ok else 0)
        self._probed = True
        return all(results)

    async def _one(self, name: str) -> bool:
        try:
            return bool(await asyncio.wait_for(self._checks[name](), self.timeout_s))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout, StoreUnavailable, anything: down
            log.debug("readiness: %s probe failed: %r", name, exc)
            return False

    def ready(self) -> bool:
        """The last round's result (before the first round: the adapters' flags)."""
        if not self._probed:
            return all(flag() for flag in self._fallback.values())
        return all(self.up.values())
