"""Whether a station takes charging profiles: the `charging_capability` document.

Smart charging writes it (ADR 018 §5), id = station id:
`{station_id, takes_profiles, since, reason, boot_at}`. A station that answered one of
our limits with Rejected or a CALLERROR (NotImplemented, NotSupported, ...) is written
`takes_profiles: false` (and marked in its site's state: it is not sent profiles again,
its sessions are reserved at their measured draw); its next accepted boot writes
`takes_profiles: true` with `boot_at`, and so does a reprobe (reason "reprobe": a session
started on it more than CSMS_SMART_CHARGING_REPROBE_H after the mark). No document means it was never refused: it takes
profiles. The gateway reads `takes_profiles` to answer NotifyEVChargingNeeds
(services/gateway/ev_needs.py); the site stage reads it at boot, so a mark left by a site
the station has since left is cleared too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common import kinds
from services.common.store.port import DocumentStore
from services.common.timeutil import to_ocpp

__all__ = ["Capabilities", "capability_doc", "takes_profiles"]


def capability_doc(
    station_id: str, *, takes: bool, since: datetime, reason: str = "", boot_at: datetime | None = None
) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "takes_profiles": takes,
        "since": to_ocpp(since),
        "reason": reason,
        "boot_at": None if boot_at is None else to_ocpp(boot_at),
    }


def takes_profiles(doc: dict[str, Any] | None) -> bool:
    """False only when the document says so (no document: never refused)."""
    return doc is None or doc.get("takes_profiles") is not False


class Capabilities:
    """The `charging_capability` documents (plain upserts: one writer per station's site)."""

    def __init__(self, docs: DocumentStore) -> None:
        self._docs = docs

    async def get(self, station_id: str) -> dict[str, Any] | None:
        return await self._docs.get_doc(kinds.CHARGING_CAPABILITY, station_id)

    async def mark_rejecting(self, station_id: str, since: datetime, reason: str) -> None:
        await self._docs.put_doc(
            kinds.CHARGING_CAPABILITY, station_id, capability_doc(station_id, takes=False, since=since, reason=reason)
        )

    async def clear_on_boot(self, station_id: str, boot_at: datetime) -> bool:
        """The station booted: it takes profiles again. True when it had been marked."""
        return await self.clear(station_id, boot_at, reason="booted", boot_at=boot_at)

    async def clear(self, station_id: str, at: datetime, *, reason: str, boot_at: datetime | None = None) -> bool:
        """The station is to be sent profiles again (a boot, or a reprobe). True when it
        had been marked."""
        doc = await self.get(station_id)
        if takes_profiles(doc):
            return False
        await self._docs.put_doc(
            kinds.CHARGING_CAPABILITY, station_id,
            capability_doc(station_id, takes=True, since=at, reason=reason, boot_at=boot_at),
        )
        return True
