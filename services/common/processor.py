"""One generic processor shell: a consumer group feeding a handler, plus periodic jobs.

Every stream processor (sessions, billing, the smart-charging stages) is the same shell
around a different handler: subscribe `group` to `topic` in batches of up to
`max_records` (or one record at a time), call the handler, let the bus commit after it
returns (ADR 015), and report ready while subscribed and the bus and store are healthy.
`csms` serves a processor's /readyz from the process's periodic store and bus probe
(services/common/readiness.py) and the processors' own checks; the probe's reads also
refresh the store adapter's `healthy` flag, so no failed call leaves it stuck.
The handlers are plain functions of their records with their ports bound in
(`functools.partial` or a small class), wired once by the service's `wire(rt)`.

`Periodic` runs a job every `interval_s` (the sessions sweeper): a failing run is logged
and retried at the next interval; it never stops the processor. `ProcessorGroup` starts
several processors in order and stops them in the order given (smart charging stops
regrouping before it drains the site stage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.bus.port import BatchHandler, Bus, Handler, Record, Subscription
from services.common.tasks import cancel_and_wait

__all__ = ["Periodic", "Processor", "ProcessorGroup", "Health"]

log = logging.getLogger("csms.processor")


class Health(Protocol):
    def healthy(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Periodic:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[object]]


BatchObserver = Callable[[Sequence[Record], float], None]


class Processor:
    """`Processor(name, bus, topic, group, handler)`: one consumer group, one handler.

    `handler` takes a batch (`Sequence[Record]`) unless `batch=False`, then one `Record`;
    `handler=None` is a processor of periodic jobs only (no consumer; `topic` and `group`
    are then only names, e.g. the firmware campaign controller).
    `observe(records, seconds)` is called after each batch the handler finished (metrics).
    `healthy` are extra readiness checks (the store's `healthy`)."""

    def __init__(
        self,
        name: str,
        bus: Bus,
        topic: str,
        group: str,
        handler: BatchHandler | Handler | None,
        *,
        batch: bool = True,
        max_records: int = 500,
        periodic: Sequence[Periodic] = (),
        healthy: Sequence[Callable[[], bool]] = (),
        observe: BatchObserver | None = None,
        before_start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.group = group
        self._bus = bus
        self._handler = handler
        self._batch = batch
        self._max_records = max(1, int(max_records))
        self._periodic = tuple(periodic)
        self._healthy = tuple(healthy)
        self._observe = observe
        self._before_start = before_start
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        if self._sub is not None or self._started:
            return
        if self._before_start is not None:
            await self._before_start()
        if self._handler is None:
            pass  # periodic jobs only
        elif self._batch:
            self._sub = await self._bus.subscribe_batch(
                self.topic, self.group, self._on_batch, max_records=self._max_records
            )
        else:
            self._sub = await self._bus.subscribe(self.topic, self.group, self._on_record)
        self._started = True
        self._tasks = [
            asyncio.create_task(self._every(job), name=f"{self.name}-{job.name}") for job in self._periodic
        ]
        if self._sub is not None:
            log.info("%s consuming %s as %s", self.name, self.topic, self.group)

    async def _on_batch(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        await self._handler(records)  # type: ignore[arg-type, misc]
        if self._observe is not None:
            self._observe(records, time.perf_counter() - started)

    async def _on_record(self, record: Record) -> None:
        await self._handler(record)  # type: ignore[arg-type, misc]

    async def _every(self, job: Periodic) -> None:
        interval = max(float(job.interval_s), 0.01)
        while True:
            await asyncio.sleep(interval)
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s failed; retrying in %.0f s", self.name, job.name, interval)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._started = False
        await cancel_and_wait(*tasks)
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()
            log.info("%s stopped", self.name)

    def assigned(self) -> frozenset[int] | None:
        """The partitions of `topic` this member holds now; None when not consuming."""
        return self._sub.assigned() if self._sub is not None else None

    def ready(self) -> bool:
        running = self._sub is not None or (self._handler is None and self._started)
        return running and bool(self._bus.healthy) and all(check() for check in self._healthy)


class ProcessorGroup:
    """Several processors as one service: started in `start_order`, stopped in `stop_order`
    (both default to the order given)."""

    def __init__(
        self, name: str, processors: Sequence[Processor], *, stop_order: Sequence[Processor] | None = None,
        before_start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.processors = tuple(processors)
        self._stop_order = tuple(stop_order) if stop_order is not None else self.processors
        self._before_start = before_start

    async def start(self) -> None:
        if self._before_start is not None:
            await self._before_start()
        for p in self.processors:
            await p.start()

    async def stop(self) -> None:
        for p in self._stop_order:
            await p.stop()

    def ready(self) -> bool:
        return all(p.ready() for p in self.processors)
