"""SessionsService: consumes csms.events.v1 in group "csms-sessions" in batches of up to
settings.batch_max_records (CSMS_BATCH_MAX_RECORDS) and runs `handlers.handle_batch` on
each (per-station order, at-least-once; offsets committed after the batch's writes and
publishes, ADR 015), and sweeps idle sessions every settings.session_sweep_interval_s
(`handlers.sweep_once`).

The sweeper runs in every sessions process: it only publishes SessionAbandoned events
with deterministic ids, which the partition's owner applies idempotently, so several
sweepers at once cost duplicate records, never a wrong session. A failing sweep (store
or bus down) is logged and retried at the next interval; it never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Sequence

from services.common import topics
from services.common.bus.port import Record, Subscription
from services.sessions.handlers import (
    BATCH_RECORDS,
    BATCH_SECONDS,
    GROUP,
    HANDLER_SECONDS,
    handle_batch,
    rules_for,
    sweep_once,
)

__all__ = ["SessionsService"]

log = logging.getLogger("csms.sessions")


class SessionsService:
    name = "sessions"

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sub is not None:
            return
        rules_for(self.rt)  # a bad CSMS_CLOCK_FLOOR fails the start, not every record
        max_records = int(getattr(self.rt.settings, "batch_max_records", 500))
        self._sub = await self.rt.bus.subscribe_batch(
            topics.EVENTS, GROUP, self._handle, max_records=max(max_records, 1)
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="sessions-sweeper")
        log.info("sessions processor subscribed to %s as %s", topics.EVENTS, GROUP)

    async def _handle(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        await handle_batch(self.rt, records)
        elapsed = time.perf_counter() - started
        BATCH_SECONDS.observe(elapsed)
        BATCH_RECORDS.observe(len(records))
        if records:
            share = elapsed / len(records)
            for _ in records:
                HANDLER_SECONDS.observe(share)

    async def sweep_once(self, now: datetime | None = None) -> int:
        """One sweep (tests call it directly); returns the sessions it abandoned."""
        return await sweep_once(self.rt, now if now is not None else self.rt.clock())

    async def _sweep_forever(self) -> None:
        interval = max(float(self.rt.settings.session_sweep_interval_s), 1.0)
        while True:
            await asyncio.sleep(interval)
            try:
                n = await self.sweep_once()
                if n:
                    log.info("sweeper abandoned %d idle session(s)", n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session sweep failed; retrying in %.0f s", interval)

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            try:
                await sweeper
            except asyncio.CancelledError:
                pass
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()
            log.info("sessions processor stopped")

    def ready(self) -> bool:
        return self._sub is not None and bool(self.rt.bus.healthy)
