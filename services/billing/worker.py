"""BillingService: consumes csms.sessions.v1, stores and publishes CDRs (csms.cdrs.v1).

Runs in `csms run` (memory bus + SQLite) and as `csms billing` (Kafka + Cassandra);
the logic is `services.billing.handlers.handle_session_batch`, the same in both. It
consumes batches (ADR 015, `subscribe_batch`): a poll's records, offsets committed after
the batch is handled; a batch that fails for good is replayed one record at a time under
the dead-letter policy (ADR 014).
"""

from __future__ import annotations

import logging
from typing import Sequence

from services.billing.handlers import handle_session_batch
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
        self._sub = await self.rt.bus.subscribe_batch(
            topics.SESSIONS,
            group=CONSUMER_GROUP,
            handler=self._on_batch,
            max_records=max(1, int(self.rt.settings.batch_max_records)),
        )
        log.info("billing started: consuming %s as %s", topics.SESSIONS, CONSUMER_GROUP)

    async def _on_batch(self, records: Sequence[Record]) -> None:
        await handle_session_batch(self.rt, records)

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
