"""ApiService: the operators' REST API (aiohttp) on (settings.host, settings.api_port).

Port 0 picks a free port (tests); `.port` is the bound one once started.
"""

from __future__ import annotations

import logging

from aiohttp import web

from services.api.app import create_app
from services.api.commands import CommandWaiter
from services.api.context import ApiContext
from services.api.metrics import SITE_NOTIFY_FAILURES
from services.common import topics
from services.common.errors import BusError
from services.common.runtime import Runtime
from services.common.sites_codec import encode_site_updated, next_site_version, site_change, site_headers
from services.common.telemetry import add_health_routes

__all__ = ["ApiService"]

log = logging.getLogger("csms.api")


class ApiService:
    name = "api"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.port: int = rt.settings.api_port
        self.waiter = CommandWaiter(rt.bus)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self._site_version = 0  # the last SiteUpdated version published (kept increasing)

    async def start(self) -> None:
        await self.waiter.start()
        app = create_app(ApiContext(rt=self.rt, waiter=self.waiter, on_site_changed=self.on_site_changed))
        add_health_routes(app, self.ready)
        self.app = app
        # In-flight command waits end within a few seconds of a stop (clients retry).
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.rt.settings.host, self.rt.settings.api_port, reuse_address=True)
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
        log.info("REST API listening on %s:%d (results group %s)", self.rt.settings.host, self.port, self.waiter.group)

    async def stop(self) -> None:
        self.waiter.release_all()  # answer waiting command requests now (503), then drain
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.waiter.stop()

    def ready(self) -> bool:
        return (
            self._runner is not None
            and self.waiter.running
            and bool(self.rt.bus.healthy)
            and bool(self.rt.store.healthy)
        )

    async def on_site_changed(self, site_id: str) -> None:
        """Publish a `SiteUpdated` on csms.sites.v1 (key = site id) once the site document
        is stored or deleted (ADR 015: station events are about stations only). Best
        effort: the smart-charging processor also re-reads sites from the store, so a
        failed publish delays the reaction, loses nothing; it is counted and logged."""
        doc = await self.rt.store.get_doc("site", site_id)
        now = self.rt.clock()
        version = next_site_version(doc, now, self._site_version)
        self._site_version = max(self._site_version, version)
        change = site_change(site_id, doc, now, version=version)
        try:
            await self.rt.bus.publish(topics.SITES, site_id, encode_site_updated(change), site_headers(change))
        except BusError as exc:
            SITE_NOTIFY_FAILURES.inc()
            log.warning("SiteUpdated for site %s not published: %s", site_id, exc)
