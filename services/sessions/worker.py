"""SessionsService: consumes csms.events.v1 in group "csms-sessions" and runs
`handlers.handle_record` on each record (per-station order, at-least-once), and sweeps
idle sessions every settings.session_sweep_interval_s (`handlers.sweep_once`).

The sweeper runs in every sessions process: it only publishes SessionAbandoned events
with deterministic ids, which the partition's owner applies idempotently, so several
sweepers at once cost duplicate records, never a wrong session. A failing sweep (store
or bus down) is logged and retried at the next interval; it never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from services.common import topics
from services.common.bus.port import Record, Subscription
from services.sessions.handlers import GROUP, HANDLER_SECONDS, handle_record, rules_for, sweep_once

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
        self._sub = await self.rt.bus.subscribe(topics.EVENTS, group=GROUP, handler=self._handle)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="sessions-sweeper")
        log.info("sessions processor subscribed to %s as %s", topics.EVENTS, GROUP)

    async def _handle(self, record: Record) -> None:
        with HANDLER_SECONDS.time():
            await handle_record(self.rt, record)

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
