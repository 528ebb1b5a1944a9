"""GatewayService: the OCPP WebSocket gateway as a `Service` (start/stop/ready).

Serves `ws://host:ocpp_port/ocpp/{station_id}` plus /healthz, /readyz, /metrics, and
consumes its own partition of csms.commands.v1. Stop: refuse new upgrades, stop the
command reader, close every socket 1001 (going away) and release ownership.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.common.runtime import Runtime
from services.gateway.app import GatewayApp
from services.gateway.auth import Authenticator
from services.gateway.commands import CommandRunner
from services.gateway.hub import Hub

__all__ = ["GatewayService"]

log = logging.getLogger("csms.gateway")

_CLOSE_GOING_AWAY = 1001


class _HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp logs every malformed request (too many headers, bad URL) with a traceback
    at ERROR; from the internet that is noise an attacker controls. One INFO line for
    those, full tracebacks for everything else (our own bugs)."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kw: object) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.info("%s: %s", msg % args if args else msg, " ".join(str(exc_info).split())[:200])
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kw)  # type: ignore[arg-type]


class GatewayService:
    name = "gateway"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.hub = Hub(rt)
        self.authenticator = Authenticator(rt)
        self.web = GatewayApp(self.hub, self.authenticator)
        self.commands = CommandRunner(self.hub)
        self.port: int = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._started = False

    async def start(self) -> None:
        settings = self.rt.settings
        lim = self.hub.limits
        # keepalive_timeout also bounds the time to send a complete upgrade request
        # (aiohttp closes a connection that has not delivered one by then): slowloris.
        self._runner = web.AppRunner(
            self.web.app, access_log=None, keepalive_timeout=lim.open_timeout_s, handler_cancellation=False, shutdown_timeout=5.0,
            logger=_HttpLog(logging.getLogger("csms.gateway.http"), {}),
        )
        await self._runner.setup()
        ssl_context = None
        if settings.tls_cert and settings.tls_key:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        # CSMS_GATEWAY_WORKERS > 1: every worker binds the same port (services/gateway/workers.py)
        self._site = web.TCPSite(self._runner, settings.host, settings.ocpp_port, ssl_context=ssl_context, backlog=4096,
                                 reuse_port=settings.gateway_workers > 1 or None)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.ocpp_port
        await self.commands.start()
        self._started = True
        log.info("gateway %s listening on %s:%d (%s)", self.hub.gateway_id, settings.host, self.port, "wss" if ssl_context else "ws")

    async def stop(self) -> None:
        hub = self.hub
        hub.stopping = True
        await self.commands.stop()
        if self._site is not None:
            server = self._site._server
            if server is not None:
                server.close()  # stop accepting; open sockets stay until closed below
        conns = list(hub.connections.values())
        if conns:
            log.info("gateway %s closing %d station sockets (1001)", hub.gateway_id, len(conns))
            await asyncio.gather(*(c.close(_CLOSE_GOING_AWAY, "gateway shutting down") for c in conns), return_exceptions=True)
        handlers = list(self.web.handlers)
        if handlers:  # let them publish StationDisconnected and release ownership
            await asyncio.wait(handlers, timeout=15.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._started = False

    def ready(self) -> bool:
        return self._started and self.hub.ready()
