"""Wiring of the sessions processor: its ports, built once from the `Runtime`.

`build_sessions(rt)` is the `sessions` role of `csms` (services/common/cli.py): a
`services.common.processor.Processor` consuming csms.events.v1 in group "csms-sessions"
in batches of up to CSMS_BATCH_MAX_RECORDS, running `SessionsHandler.handle_batch` on each
(per-station order, at-least-once; offsets committed after the batch's writes and
publishes, ADR 015), with the batch metrics as its `observe` and the idle sweeper as a
`Periodic` job every CSMS_SESSION_SWEEP_INTERVAL_S.

The sweeper runs in every sessions process: it only publishes SessionAbandoned events
with deterministic ids, which the partition's owner applies idempotently, so several
sweepers at once cost duplicate records, never a wrong session. A failing sweep (store
or bus down) is logged and retried at the next interval; it never stops the processor.

Everything per process is made here once: the plausibility rules (a bad
CSMS_CLOCK_FLOOR fails the wiring, not every record), the billing limits, the session
cache and the station lookups.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from services.billing.domain.limits import billing_limits
from services.common import topics
from services.common.processor import Periodic, Processor
from services.common.runtime import Runtime
from services.sessions.domain.session import Plausibility
from services.sessions.handlers import GROUP, SessionsHandler, StationLookups, observe_batch
from services.sessions.repository import SessionCache, StoreRepository

__all__ = ["build_handler", "build_sessions", "GROUP"]

log = logging.getLogger("csms.sessions")


def build_handler(rt: Runtime) -> SessionsHandler:
    """The handler with its ports on the runtime's store, bus and clock (tools and tests
    that feed records themselves use it as it is)."""
    settings = rt.settings
    limits = billing_limits(settings.session_max_duration_h, settings.session_max_energy_wh)
    if not limits.duration_usable:
        log.warning("CSMS_SESSION_MAX_DURATION_H=%r is not usable: running prices use %s",
                    settings.session_max_duration_h, limits.max_duration)
    repository = StoreRepository(rt.store, SessionCache(settings.sessions_cache_entries))
    return SessionsHandler(
        sessions=repository,
        stations=repository,
        lifecycle=repository,
        lookups=StationLookups(rt.store, settings.tariff_cache_s),
        publish=rt.bus.publish,
        publish_many=rt.bus.publish_many,
        clock=rt.clock,
        rules=Plausibility.from_settings(settings),
        limits=limits,
        idle_timeout=timedelta(hours=float(settings.session_idle_timeout_h)),
    )


def build_sessions(rt: Runtime) -> Processor:
    handler = build_handler(rt)
    return Processor(
        "sessions",
        rt.bus,
        topics.EVENTS,
        GROUP,
        handler.handle_batch,
        max_records=max(int(rt.settings.batch_max_records), 1),
        periodic=[Periodic("sweeper", max(float(rt.settings.session_sweep_interval_s), 1.0), handler.sweep)],
        observe=observe_batch,
    )
