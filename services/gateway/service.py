"""GatewayService: the OCPP WebSocket gateway as a `Service` (start/stop/ready).

Serves `ws://host:ocpp_port/ocpp/{station_id}` and, with a TLS context,
`wss://host:ocpp_tls_port/ocpp/{station_id}` (one application on both: docs/security.md
"Station connections"), plus /healthz, /readyz (and /metrics when CSMS_METRICS_ON_OCPP_PORT)
and the log upload endpoint `/uploads/{token}[/{filename}]` (services/gateway/uploads.py) on
them; /healthz /readyz /metrics on CSMS_METRICS_PORT when it is set; and consumes its own
partition of csms.commands.v1. Stop: refuse new upgrades, stop the
command reader, close every socket 1001 (going away) and release ownership. Built from
its parts by `services/gateway/wiring.py`.

Drain (ADR 019 §4, a rolling update): `stop()` reports not ready and stops accepting at
once (`csms_gateway_draining` 1), stops consuming commands, then closes the station
sockets spread over `CSMS_DRAIN_WINDOW_S` (each in its own slot of the window, at a
random point of it: the stations of a pod do not all reconnect in the same second) with
1001 going away; a socket that closed by itself meanwhile is skipped. Each wait counts
from the previous close, so a stalled pod drains slower rather than in a burst. Window 0: every
socket at once (tests; `csms run` stops on Ctrl-C without a drain unless the variable is
set). The health/metrics listener stays up until the end.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Gauge

from services.common.telemetry import add_health_routes
from services.gateway.app import GatewayApp
from services.gateway.commands import CommandRunner
from services.gateway.registry import Registry, StationSocket

__all__ = ["GatewayService", "Listen"]

log = logging.getLogger("csms.gateway")

_CLOSE_GOING_AWAY = 1001

DRAINING = Gauge("csms_gateway_draining", "1 while the gateway drains its station sockets before it stops (SIGTERM), else 0")


def drain_schedule(n: int, window_s: float, rng: random.Random) -> list[float]:
    """When (seconds from the drain's start) to close each of `n` sockets: socket i in its
    own slot [i, i+1) * window / n, at a random point of it, so the closes are spread over
    the whole window and still jittered."""
    if n <= 0 or window_s <= 0:
        return [0.0] * max(n, 0)
    slot = window_s / n
    return [(i + rng.random()) * slot for i in range(n)]


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
    """Where the gateway serves OCPP and its health (CSMS_HOST, CSMS_OCPP_PORT,
    CSMS_OCPP_TLS_PORT, CSMS_METRICS_PORT). `ssl_context` (services/gateway/tls.py) turns on
    the `wss://` listener on `tls_port`. `port` 0: no `ws://` listener when `wss://` is on;
    without TLS, any free port (tests, benchmarks). `tls_port` 0: no `wss://` listener.
    `metrics_port` 0: no separate /healthz /readyz /metrics listener."""

    host: str
    port: int
    tls_port: int = 0
    ssl_context: ssl.SSLContext | None = None
    metrics_port: int = 0
    reuse_port: bool = False      # CSMS_GATEWAY_WORKERS > 1: every worker binds the same ports
    keepalive_timeout_s: float = 10.0

    @property
    def plain(self) -> bool:
        return self.port != 0 or not self.tls

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None and self.tls_port != 0


def _bound_port(site: web.TCPSite, fallback: int) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else fallback


class GatewayService:
    name = "gateway"

    def __init__(self, *, gateway_id: str, web_app: GatewayApp, commands: CommandRunner, registry: Registry,
                 listen: Listen, healthy: Callable[[], bool], drain_window_s: float = 0.0,
                 rng: random.Random | None = None) -> None:
        """`healthy`: the bus is usable and no publish is being retried. `drain_window_s`:
        `stop()` spreads the socket closes over this many seconds (0: all at once)."""
        self.drain_window_s = max(0.0, float(drain_window_s))
        self._rng = rng or random.Random()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # the drain's waits (tests record them)
        self.gateway_id = gateway_id
        self.web = web_app
        self.commands = commands
        self.registry = registry
        self.listen = listen
        self._healthy = healthy
        self.port: int = 0            # the ws:// port (0: none)
        self.tls_port: int = 0        # the wss:// port (0: none)
        self.metrics_port: int = 0    # the health/metrics listener (0: none)
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []
        self._metrics_runner: web.AppRunner | None = None
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
        reuse = listen.reuse_port or None  # CSMS_GATEWAY_WORKERS > 1 (services/gateway/workers.py)
        try:
            # one application, two sites: ws:// and wss:// differ only in what a connection proves
            if listen.plain:
                site = web.TCPSite(self._runner, listen.host, listen.port, backlog=4096, reuse_port=reuse)
                await site.start()
                self._sites.append(site)
                self.port = _bound_port(site, listen.port)
            if listen.tls:
                site = web.TCPSite(self._runner, listen.host, listen.tls_port, ssl_context=listen.ssl_context, backlog=4096,
                                   reuse_port=reuse)
                await site.start()
                self._sites.append(site)
                self.tls_port = _bound_port(site, listen.tls_port)
            if listen.metrics_port:
                self._metrics_runner = await self._serve_metrics(listen, reuse)
        except BaseException:
            await self._cleanup()
            raise
        await self.commands.start()
        self._started = True
        where = ", ".join(f"{scheme}://{listen.host}:{port}" for scheme, port in (("ws", self.port), ("wss", self.tls_port)) if port)
        log.info("gateway %s listening on %s%s", self.gateway_id, where,
                 f" (health and metrics on :{self.metrics_port})" if self.metrics_port else "")

    async def _serve_metrics(self, listen: Listen, reuse: bool | None) -> web.AppRunner:
        """/healthz /readyz /metrics on their own port, as the processors serve them
        (services/common/cli.py): probes and Prometheus never share the station port."""
        app = web.Application()
        add_health_routes(app, self.ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, listen.host, listen.metrics_port, reuse_port=reuse)
        await site.start()
        self.metrics_port = _bound_port(site, listen.metrics_port)
        return runner

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sites = []
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    async def stop(self) -> None:
        self.registry.stopping = True  # not ready, upgrades refused (app.py)
        DRAINING.set(1)
        try:
            await self.commands.stop()
            for site in self._sites:
                server = site._server
                if server is not None:
                    server.close()  # stop accepting; open sockets stay until closed below
            await self._drain(list(self.registry))
            handlers = list(self.web.handlers)
            if handlers:  # let them publish StationDisconnected and release ownership
                await asyncio.wait(handlers, timeout=15.0)
            await self._cleanup()
        finally:
            DRAINING.set(0)
            self._started = False

    async def _drain(self, conns: list[StationSocket]) -> None:
        """Close `conns` 1001, spread over the drain window (module docstring)."""
        if not conns:
            return
        window = self.drain_window_s
        log.info("gateway %s closing %d station sockets (1001)%s", self.gateway_id, len(conns),
                 f" over {window:.0f} s" if window > 0 else "")
        if window <= 0:
            await asyncio.gather(*(c.close(_CLOSE_GOING_AWAY, "gateway shutting down") for c in conns), return_exceptions=True)
            return
        order = list(conns)
        self._rng.shuffle(order)  # not in connection order: who goes first is random
        closing: list[asyncio.Task[None]] = []
        previous = 0.0
        for conn, at in zip(order, drain_schedule(len(order), window, self._rng)):
            # Each wait runs from the previous close, not from the drain's start: a pod
            # starved of CPU for a moment takes longer to drain instead of catching up
            # with a burst of closes (and a burst of reconnects elsewhere).
            await self._sleep(at - previous)
            previous = at
            if conn.alive():  # one that closed by itself meanwhile is skipped
                closing.append(asyncio.create_task(conn.close(_CLOSE_GOING_AWAY, "gateway shutting down")))
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    def ready(self) -> bool:
        return self._started and not self.registry.stopping and self._healthy()
