"""BillingService: consumes csms.sessions.v1, stores and publishes CDRs (csms.cdrs.v1).

Runs in `csms run` (memory bus + SQLite) and as `csms billing` (Kafka + Cassandra);
the logic is `services.billing.handlers.handle_session_record`, the same in both.
"""

from __future__ import annotations

import logging

from services.billing.handlers import handle_session_record
from services.common import topics
from services.common.bus.port import Record, Subscription
from services.common.runtime import Runtime

__all__ = ["BillingService", "CONSUMER_GROUP"]

log = logging.getLogger("csms.billing.worker")

CONSUMER_GROUP = topics.group("csms-billing")


class BillingService:
    name = "billing"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._sub: Subscription | None = None

    async def start(self) -> None:
        if self._sub is not None:
            return
        self._sub = await self.rt.bus.subscribe(topics.SESSIONS, group=CONSUMER_GROUP, handler=self._on_record)
        log.info("billing started: consuming %s as %s", topics.SESSIONS, CONSUMER_GROUP)

    async def _on_record(self, record: Record) -> None:
        await handle_session_record(self.rt, record)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()
            log.info("billing stopped")

    def ready(self) -> bool:
        return (
            self._sub is not None
            and bool(self.rt.bus.healthy)
            and bool(getattr(self.rt.store, "healthy", True))
        )
