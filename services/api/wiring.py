"""Wiring of the REST API: the ports its routes use, built once from the `Runtime`.

`build_api(rt)` is the `api` role of `csms` (services/common/cli.py). The store is
handed to the routes as the narrow Protocols they use (stations, tokens, ownership,
documents, samples, the station history), and the runtime's file store as a file reader,
never as the whole store or runtime.
"""

from __future__ import annotations

from services.api.audit import AuditLog
from services.api.commands import CommandWaiter
from services.api.context import ApiContext, ApiSettings
from services.api.keys import KeyRing
from services.api.oidc import OidcVerifier
from services.api.service import ApiService
from services.api.site_events import SiteNotifier
from services.billing.domain.limits import billing_limits
from services.common.config import Settings
from services.common.routing import CommandRouter
from services.common.runtime import Runtime
from services.sessions.domain import Plausibility

__all__ = ["api_settings", "build_api", "oidc_verifier"]


def api_settings(settings: Settings) -> ApiSettings:
    limits = billing_limits(settings.session_max_duration_h, settings.session_max_energy_wh)
    return ApiSettings(
        api_key=settings.api_key,
        command_timeout_s=settings.command_timeout_s,
        ocpi_country_code=settings.ocpi_country_code,
        ocpi_party_id=settings.ocpi_party_id,
        max_priced_duration=limits.max_duration,
        plausibility=Plausibility.from_settings(settings),
        upload_base_url=(settings.upload_base_url or f"http://127.0.0.1:{settings.ocpp_port}").rstrip("/"),
        upload_max_bytes=settings.upload_max_bytes,
        upload_ttl_s=settings.upload_ttl_s,
        default_security_profile=settings.default_security_profile,
        trusted_proxies=tuple(settings.trusted_proxies),
        api_auth_fail_limit=settings.api_auth_fail_limit,
        audit_retention_days=settings.audit_retention_days,
    )


def oidc_verifier(settings: Settings) -> OidcVerifier | None:
    """The OIDC token verifier when CSMS_OIDC_JWKS_URL is set (else API keys only)."""
    if not settings.oidc_jwks_url:
        return None
    return OidcVerifier(settings.oidc_jwks_url, issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                        role_claim=settings.oidc_role_claim)


def build_api(rt: Runtime) -> ApiService:
    store, bus = rt.store, rt.bus
    sites = SiteNotifier(store, bus.publish, rt.clock)
    router = CommandRouter(owners=store, publish=bus.publish, partitions=bus.partitions, clock=rt.clock, issuer="api")
    ctx = ApiContext(
        stations=store,
        tokens=store,
        ownership=store,
        documents=store,
        samples=store,
        pricing=store,
        bus=bus,
        clock=rt.clock,
        pepper=rt.pepper,
        settings=api_settings(rt.settings),
        waiter=CommandWaiter(bus),
        router=router,
        on_site_changed=sites.changed,
        history=store,
        files=rt.files,
        keys=KeyRing(store, rt.pepper, rt.clock),
        audit=AuditLog(store, bus.publish, rt.clock, retention_days=rt.settings.audit_retention_days),
        oidc=oidc_verifier(rt.settings),
        id_allocator=store,
    )
    # /readyz: the last periodic probe of the store and bus (services/common/readiness.py), never
    # a flag left by one failed request (that pod would get no traffic to clear it)
    return ApiService(ctx, host=rt.settings.host, port=rt.settings.api_port, healthy=(rt.readiness.ready,))
