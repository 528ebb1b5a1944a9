"""SessionsService: consumes csms.events.v1 in group "csms-sessions" and runs
`handlers.handle_record` on each record (per-station order, at-least-once)."""

from __future__ import annotations

import logging
from typing import Any

from services.common import topics
from services.common.bus.port import Record, Subscription
from services.sessions.handlers import GROUP, HANDLER_SECONDS, handle_record

__all__ = ["SessionsService"]

log = logging.getLogger("csms.sessions")


class SessionsService:
    name = "sessions"

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self._sub: Subscription | None = None

    async def start(self) -> None:
        if self._sub is not None:
            return
        self._sub = await self.rt.bus.subscribe(topics.EVENTS, group=GROUP, handler=self._handle)
        log.info("sessions processor subscribed to %s as %s", topics.EVENTS, GROUP)

    async def _handle(self, record: Record) -> None:
        with HANDLER_SECONDS.time():
            await handle_record(self.rt, record)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()
            log.info("sessions processor stopped")

    def ready(self) -> bool:
        return self._sub is not None and bool(self.rt.bus.healthy)
