"""SmartChargingService: the smart-charging processor, as three consumer groups.

1. `repartition.handle_event_record` consumes csms.events.v1 (group
   `csms-smart-charging-repartition`) and regroups the relevant events by site on
   `repartition.BY_SITE` (key = site id);
1b. `repartition.handle_sites_record` consumes csms.sites.v1 (group
   `csms-smart-charging-sites`) and forwards each SiteUpdated to `BY_SITE` too, so a
   site change is applied by the site's one writer, in sequence with its station events;
   its dead letters go to `topics.dlq_topic(topics.SITES)` (the bus creates it);
2. `handlers.handle_site_record` consumes `BY_SITE` (group `csms-smart-charging`):
   one writer per site applies its events to the site's state and sends the
   SetChargingProfile commands.

Stages 1 and 2 consume batches (`subscribe_batch`, ADR 015; up to
`CSMS_BATCH_MAX_RECORDS` records, a poll's worth): stage 1 forwards a batch's relevant
records with one `publish_many`, stage 2 reads and writes each site's state once per
batch. A batch that fails with anything but an outage is replayed one record at a time
by the bus, so only a poison record is dead-lettered. Site changes are few: 1b
consumes them one at a time.

Runs in `csms run` (memory bus + SQLite) and as `csms smart-charging` (Kafka +
Cassandra); the stages are plain async functions of (runtime, records) (and of
(runtime, record)), so a faust agent could drive them the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common import topics
from services.common.bus.port import Record, Subscription
from services.common.runtime import Runtime
from services.smart_charging.handlers import CONSUMER_GROUP, handle_site_batch
from services.smart_charging.repartition import (
    BY_SITE,
    REPARTITION_GROUP,
    SITES_GROUP,
    handle_event_batch,
    handle_sites_record,
)

__all__ = ["SmartChargingService", "BY_SITE", "CONSUMER_GROUP", "REPARTITION_GROUP", "SITES_GROUP"]

log = logging.getLogger("csms.smart_charging.worker")


class SmartChargingService:
    name = "smart-charging"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._by_site: Subscription | None = None
        self._events: Subscription | None = None
        self._sites: Subscription | None = None

    async def start(self) -> None:
        if self._events is not None:
            return
        await self.rt.bus.ensure_topic(BY_SITE, self.rt.settings.events_partitions)
        # The site stage first, so nothing regrouped waits for a consumer.
        batch = self.rt.settings.batch_max_records
        self._by_site = await self.rt.bus.subscribe_batch(
            BY_SITE, group=CONSUMER_GROUP, handler=self._on_site_records, max_records=batch
        )
        self._events = await self.rt.bus.subscribe_batch(
            topics.EVENTS, group=REPARTITION_GROUP, handler=self._on_event_records, max_records=batch
        )
        self._sites = await self.rt.bus.subscribe(topics.SITES, group=SITES_GROUP, handler=self._on_sites_record)
        log.info(
            "smart charging started: %s (%s), %s (%s) -> %s (%s)",
            topics.EVENTS, REPARTITION_GROUP, topics.SITES, SITES_GROUP, BY_SITE, CONSUMER_GROUP,
        )

    async def _on_event_records(self, records: Sequence[Record]) -> None:
        await handle_event_batch(self.rt, records)

    async def _on_sites_record(self, record: Record) -> None:
        await handle_sites_record(self.rt, record)

    async def _on_site_records(self, records: Sequence[Record]) -> None:
        await handle_site_batch(self.rt, records)

    async def stop(self) -> None:
        events, self._events = self._events, None
        sites, self._sites = self._sites, None
        by_site, self._by_site = self._by_site, None
        for sub in (events, sites, by_site):  # stop regrouping first, then drain the site stage
            if sub is not None:
                await sub.stop()
        if events is not None or sites is not None or by_site is not None:
            log.info("smart charging stopped")

    def ready(self) -> bool:
        return (
            self._events is not None
            and self._sites is not None
            and self._by_site is not None
            and bool(self.rt.bus.healthy)
            and bool(getattr(self.rt.store, "healthy", True))
        )
