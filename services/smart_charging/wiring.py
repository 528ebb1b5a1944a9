"""The smart-charging processor, wired from the `Runtime`: three consumer groups.

1. `Regrouper.handle_event_batch` consumes csms.events.v1 (group
   `csms-smart-charging-repartition`) and regroups the relevant events by site on
   `repartition.BY_SITE` (key = site id);
1b. `Regrouper.handle_sites_record` consumes csms.sites.v1 (group
   `csms-smart-charging-sites`) and forwards each SiteUpdated to `BY_SITE` too, so a
   site change is applied by the site's one writer, in sequence with its station events;
   its dead letters go to `topics.dlq_topic(topics.SITES)` (the bus creates it);
2. `SiteStage.handle_batch` consumes `BY_SITE` (group `csms-smart-charging`): one writer
   per site applies its events to the site's state and sends the charging limits
   through the command router.

Stages 1 and 2 consume batches (ADR 015; up to `CSMS_BATCH_MAX_RECORDS` records, a
poll's worth): stage 1 forwards a batch's relevant records with one `publish_many`,
stage 2 reads and writes each site's state once per batch. A batch that fails with
anything but an outage is replayed one record at a time by the bus, so only a poison
record is dead-lettered. Site changes are few: 1b consumes them one at a time.

Each stage is a `services.common.processor.Processor`; together a `ProcessorGroup`,
started site stage first (nothing regrouped waits for a consumer) and stopped regrouping
first (then the site stage drains). `wire_stages` returns the stages too (tests and the
bench drive them directly); the CLI's "smart-charging" role is `build_smart_charging`. Runs in `csms run`
(memory bus + SQLite) and as `csms smart-charging` (Kafka + Cassandra).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from services.common import topics
from services.common.processor import Periodic, Processor, ProcessorGroup
from services.common.routing import CommandRouter
from services.common.runtime import Runtime
from services.smart_charging.capability import Capabilities
from services.smart_charging.commands import ISSUER, LimitSender
from services.smart_charging.documents import Sites, SiteStates
from services.smart_charging.handlers import CONSUMER_GROUP, SiteStage
from services.smart_charging.repartition import BY_SITE, REPARTITION_GROUP, SITES_GROUP, Regrouper

__all__ = ["NAME", "SmartCharging", "build_smart_charging", "wire_stages"]


NAME = "smart-charging"


@dataclass(frozen=True)
class SmartCharging:
    """The wired processor: its service (`group`) and the stages it runs."""

    group: ProcessorGroup
    regroup: Regrouper
    sites: SiteStage


def wire_stages(rt: Runtime) -> SmartCharging:
    """The stages with their ports, and the processor group that runs them."""
    router = CommandRouter(
        owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions, clock=rt.clock, issuer=ISSUER
    )
    stage = SiteStage(
        states=SiteStates(rt.store),
        sites=Sites(rt.store),
        stations=rt.store,
        sender=LimitSender(router),
        clock=rt.clock,
        capabilities=Capabilities(rt.store),
        voltage_v=Decimal(str(rt.settings.ev_voltage_v)),
        reprobe=timedelta(hours=rt.settings.smart_charging_reprobe_h) if rt.settings.smart_charging_reprobe_h > 0 else None,
    )
    regroup = Regrouper(stations=rt.store, publish=rt.bus.publish, publish_many=rt.bus.publish_many)
    batch = rt.settings.batch_max_records

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    async def forget_unowned() -> None:
        # per-site gauges of sites a rebalance moved away (the over-allocation alert, ADR 019 §6)
        stage.forget_unowned(by_site.assigned())

    by_site = Processor(
        "smart-charging by site", rt.bus, BY_SITE, CONSUMER_GROUP, stage.consume,
        max_records=batch, healthy=[store_healthy],
        periodic=[Periodic("forget unowned sites", rt.settings.consumer_lag_interval_s, forget_unowned)],
    )
    events = Processor(
        "smart-charging regrouping", rt.bus, topics.EVENTS, REPARTITION_GROUP, regroup.consume_events,
        max_records=batch, healthy=[store_healthy],
    )
    sites = Processor(
        "smart-charging site changes", rt.bus, topics.SITES, SITES_GROUP, regroup.consume_site_change,
        batch=False, healthy=[store_healthy],
    )

    async def ensure_by_site() -> None:
        await rt.bus.ensure_topic(BY_SITE, rt.settings.events_partitions)

    group = ProcessorGroup(NAME, [by_site, events, sites], stop_order=[events, sites, by_site], before_start=ensure_by_site)
    return SmartCharging(group=group, regroup=regroup, sites=stage)


def build_smart_charging(rt: Runtime) -> ProcessorGroup:
    """The CLI role "smart-charging": the processor as a service."""
    return wire_stages(rt).group
