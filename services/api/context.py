"""What route handlers share: the narrow ports they use, built once by services/api/wiring.py.

A route reads and writes through these (stations, tokens, ownership, documents, samples,
the bus for dead letters and command results, the command router, a clock) and the few
settings values it needs; it never sees the `Runtime` or the whole store. Tests replace
a port by changing it on the context (`app[CTX]`) or by building one of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from aiohttp import web

from services.api.commands import CommandWaiter
from services.api.costs import PricingReads
from services.common.bus import Bus
from services.common.routing import CommandRouter
from services.common.store.port import DocumentStore, OwnershipStore, SampleStore, StationStore, TokenStore
from services.common.timeutil import Clock
from services.sessions.domain import Plausibility

__all__ = ["ApiContext", "ApiSettings", "CTX", "ctx_of"]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The settings values the routes use (from `services.common.config.Settings`)."""

    api_key: str | None  # None: every /api/v1 request is refused (fail closed)
    command_timeout_s: float
    ocpi_country_code: str = "DE"
    ocpi_party_id: str = "CSM"
    max_priced_duration: timedelta = timedelta(hours=72)  # CSMS_SESSION_MAX_DURATION_H (billing's bound)
    plausibility: Plausibility = Plausibility()


@dataclass
class ApiContext:
    stations: StationStore
    tokens: TokenStore
    ownership: OwnershipStore
    documents: DocumentStore
    samples: SampleStore
    pricing: PricingReads  # a running session's price: stations, tariff/site/CDR documents, samples
    bus: Bus  # dead letters (list, replay) and command results (the waiter)
    clock: Clock
    pepper: bytes  # password fingerprints (ADR 002)
    settings: ApiSettings
    waiter: CommandWaiter
    router: CommandRouter
    on_site_changed: Callable[[str], Awaitable[None]]


CTX = web.AppKey("csms_api_context", ApiContext)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]
