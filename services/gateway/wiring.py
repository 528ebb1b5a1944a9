"""The gateway's wiring: the `Runtime` in, a `GatewayService` out (ADR 010, update).

Every per-process part is created here once and handed to what uses it: the connection
registry, the token cache, boot admission, the event publisher, the command router, the
running-cost pricer and its tariff cache, the action handlers, the log upload endpoint. Nothing below this
function reaches for the `Runtime`; `csms gateway` (services/common/cli.py ROLES) calls
`build_gateway`, and so do the tests and benchmarks that run a gateway in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from services.billing.documents import ResolvedTariff, resolve_tariff
from services.common import kinds
from services.common.routing import CommandRouter
from services.common.runtime import Runtime
from services.common.store.port import Store
from services.gateway import sizes, tls
from services.gateway.actions import ActionPorts, Actions
from services.gateway.actions.common import BootDecider
from services.gateway.actions.ev_needs import EvNeedsDecider
from services.gateway.actions.security import certificate_ports
from services.gateway.admission import Admission, BootAdmission, Thresholds, UpgradeLimits
from services.gateway.app import GatewayApp
from services.gateway.auth import Authenticator
from services.gateway.commands import CommandRunner
from services.gateway.connection import ConnectionShared, SocketPolicy
from services.gateway.limits import AuthLimits, Limits
from services.gateway.ownership import Ownership
from services.gateway.proxies import TrustedProxies
from services.gateway.publisher import Publisher
from services.gateway.registry import Registry
from services.gateway.running_cost import RunningCostPricer
from services.gateway.service import GatewayService, Listen
from services.gateway.tokens import TokenCache
from services.gateway.uploads import DocumentSlots, Uploads
from services.sessions.domain.session import session_id

__all__ = ["build_gateway", "running_cost_pricer"]


def running_cost_pricer(store: Store, *, max_span: timedelta | None = None) -> RunningCostPricer:
    """The 2.0.1 totalCost pricer on a store: billing's tariff resolution, the sessions
    processor's document of a transaction as the seed after a reconnect."""

    async def tariffs(station_id: str) -> ResolvedTariff | None:
        return await resolve_tariff(store, station_id)

    async def seeds(station_id: str, transaction_id: str) -> Mapping[str, Any] | None:
        return await store.get_doc(kinds.SESSION, session_id(station_id, transaction_id))

    return RunningCostPricer(tariffs, seeds, max_span=max_span)


def build_gateway(rt: Runtime) -> GatewayService:
    settings, bus, store, clock = rt.settings, rt.bus, rt.store, rt.clock
    ssl_context = tls.listener_context(settings)  # first: bad TLS files stop the process here
    gateway_id = settings.gateway_id
    limits = Limits.from_settings(settings)
    registry = Registry()
    publisher = Publisher(bus.publish, settings.bus_max_record_bytes)
    admission = Admission(Thresholds.from_settings(settings), lambda: publisher.in_flight)
    tokens = TokenCache(store, clock, size=limits.token_cache_size, ttl_s=limits.token_cache_ttl_s)
    router = CommandRouter(owners=store, publish=bus.publish, partitions=bus.partitions, clock=clock, issuer=gateway_id)
    pricer = None
    if settings.running_cost:
        pricer = running_cost_pricer(store, max_span=timedelta(hours=settings.session_max_duration_h))
    certs = certificate_ports(settings, store, clock)  # SignCertificate, GetCertificateStatus, 15118 (ADR 017 §3)
    actions = Actions(ActionPorts(
        clock=clock,
        boot=BootDecider(store, BootAdmission(admission, settings.boot_rate_per_s), settings.heartbeat_interval),
        tokens=tokens.status,
        tx_ids=store,
        running_cost=pricer,
        datatransfer_vendors=frozenset(v.casefold() for v in settings.datatransfer_vendors),
        signing=certs.signing,
        certificate_status=certs.certificate_status,
        contract_certs=certs.contract_certs,
        ev_needs=EvNeedsDecider(store, store),  # NotifyEVChargingNeeds (ADR 018 §5)
    ))
    shared = ConnectionShared(
        gateway_id=gateway_id,
        limits=limits,
        frame_limit=sizes.frame_limit(settings.bus_max_record_bytes),
        max_json_depth=settings.max_json_depth,
        clock=clock,
        publisher=publisher,
        actions=actions,
        sockets=SocketPolicy.from_settings(settings),
    )

    def healthy() -> bool:
        return bus.healthy and not publisher.failing

    def ready() -> bool:
        return not registry.stopping and healthy()

    # SQLite serves one request at a time: a storm's station reads and claims go as batches
    # (services/gateway/coalesce.py); Cassandra serves them concurrently, one by one
    batched = settings.store_url.startswith("sqlite")
    web_app = GatewayApp(
        registry=registry,
        ownership=Ownership(store=store, registry=registry, router=router, publisher=publisher, gateway_id=gateway_id,
                            clock=clock, batched=batched),
        authenticator=Authenticator(store, pepper=rt.pepper, clock=clock, open_registration=settings.open_registration,
                                    limits=AuthLimits.from_settings(settings), batched=batched),
        admission=admission,
        shared=shared,
        upgrade_limits=UpgradeLimits.from_settings(settings),
        max_frame_bytes=settings.max_frame_bytes,
        ocpp21=settings.ocpp21,
        ready=ready,
        metrics_on_port=settings.metrics_on_ocpp_port,
        trusted_proxies=TrustedProxies.from_cidrs(settings.trusted_proxies),
        client_cert_header=settings.client_cert_header,
        client_trust=tls.client_trust(settings),
    )
    # The log upload endpoint (ADR 016 §4) on the same port: slots are the store's
    # log_upload documents, files go to the runtime's file store.
    Uploads(slots=DocumentSlots(store), files=rt.files, clock=clock,
            source=lambda request: web_app.forwarded(request).remote).register(web_app.app)
    commands = CommandRunner(
        gateway_id=gateway_id,
        reader=bus,
        registry=registry,
        router=router,
        publisher=publisher,
        clock=clock,
        concurrency=limits.command_concurrency,
        command_timeout_s=settings.command_timeout_s,
        call_timeout_s=limits.call_timeout_s,
        on_revoke=web_app.auth.invalidate,  # a revocation: every gateway forgets the station (ADR 017)
    )
    listen = Listen(
        host=settings.host,
        port=settings.ocpp_port,
        tls_port=settings.ocpp_tls_port,
        ssl_context=ssl_context,
        # its own /healthz /readyz /metrics listener, as every role but the embedded
        # `csms run` has (there the API port serves the one process's metrics)
        metrics_port=0 if settings.bus_url.startswith("memory:") else settings.metrics_port,
        reuse_port=settings.gateway_workers > 1,
        keepalive_timeout_s=limits.open_timeout_s,
    )
    return GatewayService(gateway_id=gateway_id, web_app=web_app, commands=commands, registry=registry, listen=listen,
                          healthy=healthy, drain_window_s=settings.drain_window_s)
