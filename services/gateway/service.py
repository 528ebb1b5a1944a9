"""GatewayService: the OCPP WebSocket gateway as a `Service` (start/stop/ready).

Serves `ws://host:ocpp_port/ocpp/{station_id}` plus /healthz, /readyz, /metrics and the
log upload endpoint `/uploads/{token}[/{filename}]` (services/gateway/uploads.py), and
consumes its own partition of csms.commands.v1. Stop: refuse new upgrades, stop the
command reader, close every socket 1001 (going away) and release ownership. Built from
its parts by `services/gateway/wiring.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.gateway.app import GatewayApp
from services.gateway.commands import CommandRunner
from services.gateway.registry import Registry

__all__ = ["GatewayService", "Listen"]

log = logging.getLogger("csms.gateway")

_CLOSE_GOING_AWAY = 1001


class _HttpLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp logs every malformed request (too many headers, bad URL) with a traceback
    at ERROR; from the internet that is noise an attacker controls. One INFO line for
    those, full tracebacks for everything else (our own bugs)."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kw: object) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.info("%s: %s", str(msg) % args if args else msg, " ".join(str(exc_info).split())[:200])
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kw)  # type: ignore[arg-type]  # aiohttp passes logging's own keywords


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the gateway serves OCPP (CSMS_HOST, CSMS_OCPP_PORT, CSMS_TLS_*)."""

    host: str
    port: int
    tls_cert: str = ""
    tls_key: str = ""
    reuse_port: bool = False      # CSMS_GATEWAY_WORKERS > 1: every worker binds the same port
    keepalive_timeout_s: float = 10.0


class GatewayService:
    name = "gateway"

    def __init__(self, *, gateway_id: str, web_app: GatewayApp, commands: CommandRunner, registry: Registry,
                 listen: Listen, healthy: Callable[[], bool]) -> None:
        """`healthy`: the bus is usable and no publish is being retried."""
        self.gateway_id = gateway_id
        self.web = web_app
        self.commands = commands
        self.registry = registry
        self.listen = listen
        self._healthy = healthy
        self.port: int = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._started = False

    async def start(self) -> None:
        listen = self.listen
        # keepalive_timeout also bounds the time to send a complete upgrade request
        # (aiohttp closes a connection that has not delivered one by then): slowloris.
        self._runner = web.AppRunner(
            self.web.app, access_log=None, keepalive_timeout=listen.keepalive_timeout_s, handler_cancellation=False, shutdown_timeout=5.0,
            logger=_HttpLog(logging.getLogger("csms.gateway.http"), {}),
        )
        await self._runner.setup()
        ssl_context = None
        if listen.tls_cert and listen.tls_key:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_context.load_cert_chain(listen.tls_cert, listen.tls_key)
        # CSMS_GATEWAY_WORKERS > 1: every worker binds the same port (services/gateway/workers.py)
        self._site = web.TCPSite(self._runner, listen.host, listen.port, ssl_context=ssl_context, backlog=4096,
                                 reuse_port=listen.reuse_port or None)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else listen.port
        await self.commands.start()
        self._started = True
        log.info("gateway %s listening on %s:%d (%s)", self.gateway_id, listen.host, self.port, "wss" if ssl_context else "ws")

    async def stop(self) -> None:
        self.registry.stopping = True
        await self.commands.stop()
        if self._site is not None:
            server = self._site._server
            if server is not None:
                server.close()  # stop accepting; open sockets stay until closed below
        conns = list(self.registry)
        if conns:
            log.info("gateway %s closing %d station sockets (1001)", self.gateway_id, len(conns))
            await asyncio.gather(*(c.close(_CLOSE_GOING_AWAY, "gateway shutting down") for c in conns), return_exceptions=True)
        handlers = list(self.web.handlers)
        if handlers:  # let them publish StationDisconnected and release ownership
            await asyncio.wait(handlers, timeout=15.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._started = False

    def ready(self) -> bool:
        return self._started and not self.registry.stopping and self._healthy()
