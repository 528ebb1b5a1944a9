"""`SiteUpdated` on csms.sites.v1 after every stored site change (ADR 015).

Station events are about stations only: the smart-charging processor learns of a site
change from this topic (key = site id). Best effort: it also re-reads sites from the
store, so a failed publish delays its reaction and loses nothing; it is counted and
logged, never an error for the operator whose change is already stored.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Sequence

from services.api.metrics import SITE_NOTIFY_FAILURES
from services.common import kinds, topics
from services.common.bus.port import Header
from services.common.errors import BusError
from services.common.sites_codec import encode_site_updated, next_site_version, site_change, site_headers
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock

__all__ = ["Publish", "SiteNotifier"]

log = logging.getLogger("csms.api")

Publish = Callable[[str, str, bytes, Sequence[Header]], Awaitable[None]]


class SiteNotifier:
    def __init__(self, documents: DocumentStore, publish: Publish, clock: Clock) -> None:
        self._documents = documents
        self._publish = publish
        self._clock = clock
        self._version = 0  # the last SiteUpdated version published (kept increasing)

    async def changed(self, site_id: str) -> None:
        """Publish the site's stored document (None once deleted) as a `SiteUpdated`."""
        doc = await self._documents.get_doc(kinds.SITE, site_id)
        now = self._clock()
        version = next_site_version(doc, now, self._version)
        self._version = max(self._version, version)
        change = site_change(site_id, doc, now, version=version)
        try:
            await self._publish(topics.SITES, site_id, encode_site_updated(change), site_headers(change))
        except BusError as exc:
            SITE_NOTIFY_FAILURES.inc()
            log.warning("SiteUpdated for site %s not published: %s", site_id, exc)
