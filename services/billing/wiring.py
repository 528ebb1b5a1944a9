"""Billing's wiring: the ports its handler takes, built once from the `Runtime` (ADR 010).

`build_billing(rt)` is the `billing` role of the CLI: a `Processor` consuming `csms.sessions.v1` in
batches as the `csms-billing` group (ADR 015; a batch that fails for good is replayed one
record at a time under the dead-letter policy, ADR 014), ready while subscribed and the
bus and store are healthy. `billing_handler(rt)` is the handler alone (tests, benches).

What is decided here, once per process:
- the limits (`CSMS_SESSION_MAX_DURATION_H`, `CSMS_SESSION_MAX_ENERGY_WH`); an unusable
  duration is logged here, once, and replaced by the default;
- the sessions processor's plausibility rules from the same settings, so billing judges
  stored samples the way it does when it re-prices from them (unusable: its defaults);
- the set of sessions already reported as unbilled (one log line and count each);
- the cost updates (ADR 018 §6): a `CommandRouter` of issuer "billing" and the interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.billing.cost_updates import ISSUER as COST_ISSUER
from services.billing.cost_updates import CostUpdates
from services.billing.documents import CdrDocuments, SessionReadings, StoreTariffs
from services.billing.domain.limits import BillingLimits, billing_limits
from services.billing.handlers import BillingHandler, ReportedOnce
from services.common import topics
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.processor import Processor
from services.common.routing import CommandRouter
from services.common.runtime import Runtime
from services.sessions.domain import Plausibility

__all__ = ["CONSUMER_GROUP", "billing_handler", "build_billing", "cost_updates_of", "limits_of", "rules_of"]

log = logging.getLogger("csms.billing.wiring")

CONSUMER_GROUP = topics.group("csms-billing")


def limits_of(settings: Settings) -> BillingLimits:
    """The billing limits of the settings (logs an unusable duration)."""
    limits = billing_limits(settings.session_max_duration_h, settings.session_max_energy_wh)
    if not limits.duration_usable:
        log.warning(
            "CSMS_SESSION_MAX_DURATION_H=%r is not usable: billing uses %s",
            settings.session_max_duration_h, limits.max_duration,
        )
    return limits


def rules_of(settings: Settings) -> Plausibility | None:
    """The sessions processor's plausibility rules of the settings; None: its defaults."""
    try:
        return Plausibility.from_settings(settings)
    except (ValueError, TypeError, OverflowError) as exc:
        log.warning("plausibility settings unusable for billing (%s): sessions defaults apply", exc)
        return None


def cost_updates_of(rt: Runtime, readings: SessionReadings, limits: BillingLimits) -> CostUpdates:
    """Cost updates (ADR 018 §6) over the runtime's store, sending through a `CommandRouter`
    of issuer "billing"; running costs every CSMS_COST_UPDATE_INTERVAL_S (0: none)."""
    router = CommandRouter(owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions, clock=rt.clock,
                           issuer=COST_ISSUER)
    return CostUpdates(
        store=rt.store, readings=readings, sender=router, clock=rt.clock,
        interval_s=rt.settings.cost_update_interval_s, max_duration=limits.max_duration,
    )


def billing_handler(rt: Runtime) -> BillingHandler:
    """The billing handler with its ports over the runtime's store, bus and clock."""
    readings = SessionReadings(rt.store, rules_of(rt.settings))
    limits = limits_of(rt.settings)
    return BillingHandler(
        cdrs=CdrDocuments(rt.store),
        tariffs=StoreTariffs(rt.store),
        readings=readings,
        publish=rt.bus.publish,
        clock=rt.clock,
        limits=limits,
        reported=ReportedOnce(),
        cost_updates=cost_updates_of(rt, readings, limits),
    )


def build_billing(rt: Runtime) -> Processor:
    """The billing processor (`csms billing`, and part of `csms run`)."""
    handler = billing_handler(rt)

    async def on_batch(records: Sequence[Record]) -> None:
        await handler.handle_batch(records)

    return Processor(
        "billing",
        rt.bus,
        topics.SESSIONS,
        CONSUMER_GROUP,
        on_batch,
        max_records=max(1, int(rt.settings.batch_max_records)),
        healthy=[lambda: bool(rt.store.healthy)],
    )
