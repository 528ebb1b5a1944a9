"""What route handlers share: the narrow ports they use, built once by services/api/wiring.py.

A route reads and writes through these (stations, tokens, ownership, documents, samples,
a station's history, uploaded files, the bus for dead letters and command results, the
command router, a clock) and the few settings values it needs; it never sees the `Runtime`
or the whole store. Tests replace a port by changing it on the context (`app[CTX]`) or by
building one of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import AsyncIterator, Awaitable, Callable, Collection, Protocol

from aiohttp import web

from services.api.audit import AuditLog
from services.api.commands import CommandWaiter
from services.api.costs import PricingReads
from services.api.keys import KeyRing
from services.api.oidc import OidcVerifier
from services.common.bus import Bus
from services.common.routing import CommandRouter
from services.common.store.port import (
    DocumentStore,
    FileInfo,
    OwnershipStore,
    SampleStore,
    StationEventRow,
    StationStore,
    TokenStore,
    TransactionIdAllocator,
)
from services.common.timeutil import Clock
from services.sessions.domain import Plausibility

__all__ = ["ApiContext", "ApiSettings", "CTX", "FileReader", "HistoryReader", "ctx_of"]


class HistoryReader(Protocol):
    """Reads a station's history (the store's `StationEventLog`, ADR 016 §3)."""

    async def read_station_events(
        self,
        station_id: str,
        *,
        types: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[StationEventRow]: ...


class FileReader(Protocol):
    """Reads uploaded files (the runtime's `FileStore`, ADR 016 §4)."""

    async def file_info(self, file_id: str) -> FileInfo | None: ...

    def read_file(self, file_id: str) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The settings values the routes use (from `services.common.config.Settings`)."""

    api_key: str | None = field(repr=False)  # the bootstrap admin key (None: stored keys/OIDC only); never in a repr
    command_timeout_s: float
    ocpi_country_code: str = "DE"
    ocpi_party_id: str = "CSM"
    max_priced_duration: timedelta = timedelta(hours=72)  # CSMS_SESSION_MAX_DURATION_H (billing's bound)
    plausibility: Plausibility = Plausibility()
    # log uploads (ADR 016 §4): where stations upload, how much, for how long
    upload_base_url: str = "http://127.0.0.1:9000"  # CSMS_UPLOAD_BASE_URL, else the gateway's port
    upload_max_bytes: int = 50 << 20
    upload_ttl_s: float = 3600.0
    # operator access (ADR 017 §8, docs/security.md)
    trusted_proxies: tuple[str, ...] = ()  # CSMS_TRUSTED_PROXIES: whose X-Forwarded-For is believed
    api_auth_fail_limit: int = 20          # CSMS_API_AUTH_FAIL_LIMIT per source per minute
    audit_retention_days: float = 365.0    # CSMS_AUDIT_RETENTION_DAYS (0 = for ever)
    default_security_profile: int = 2  # CSMS_DEFAULT_SECURITY_PROFILE: of a station created without one


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
    history: HistoryReader  # a station's events, commands and outages
    files: FileReader  # uploaded log files
    # operator access: stored keys, the audit log, OIDC tokens (None: create_app builds the
    # first two from documents/bus/pepper/clock; no OIDC verifier = API keys only)
    keys: KeyRing | None = None
    audit: AuditLog | None = None
    oidc: OidcVerifier | None = None
    # the store's integer allocator: reservation ids (ADR 018 §3; None: reservations cannot be made)
    id_allocator: TransactionIdAllocator | None = None


CTX = web.AppKey("csms_api_context", ApiContext)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]
