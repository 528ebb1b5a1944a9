"""ApiService: the operators' REST API (aiohttp) on (host, port), with its command waiter.

Built by services/api/wiring.py from the ports in an `ApiContext`. Port 0 picks a free
port (tests); `.port` is the bound one once started.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from aiohttp import web

from services.api.app import create_app
from services.api.context import ApiContext
from services.common.telemetry import add_health_routes

__all__ = ["ApiService"]

log = logging.getLogger("csms.api")


class ApiService:
    name = "api"

    def __init__(self, ctx: ApiContext, *, host: str, port: int, healthy: Sequence[Callable[[], bool]] = ()) -> None:
        self.ctx = ctx
        self.host = host
        self.port = port
        self.waiter = ctx.waiter
        self._healthy = tuple(healthy)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    async def start(self) -> None:
        await self.waiter.start()
        app = create_app(self.ctx)
        add_health_routes(app, self.ready)
        self.app = app
        # In-flight command waits end within a few seconds of a stop (clients retry).
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.waiter.stop()
            raise
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.port = int(addr[1])
                break
        log.info("REST API listening on %s:%d (results group %s)", self.host, self.port, self.waiter.group)

    async def stop(self) -> None:
        self.waiter.release_all()  # answer waiting command requests now (503), then drain
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.waiter.stop()

    def ready(self) -> bool:
        return self._runner is not None and self.waiter.running and all(check() for check in self._healthy)

    async def on_site_changed(self, site_id: str) -> None:
        """The hook routes call after a site change (see services/api/site_events.py)."""
        await self.ctx.on_site_changed(site_id)
