"""NotifyEVChargingNeeds' answer (2.0.1 K15-K17, ADR 018 §5).

`Accepted` promises the EV a schedule, so it is answered only when smart charging will
send one: the station belongs to a site (`Station.site_id`) and its `charging_capability`
document (written by smart charging, services/smart_charging/capability.py) does not say
it rejects profiles. Otherwise `Rejected`, so the station does not wait for a
SetChargingProfile that never comes. The `EvChargingNeeds` event records what was
answered (`status`); smart charging acts only on the Accepted ones. The message is rare
(once per ISO 15118 session): two store reads per message, no cache. A store failure
answers Rejected (no promise we may not keep).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import services.gateway.actions.operations as ops
from services.common import kinds
from services.common.errors import StoreError
from services.gateway.actions.common import EvNeedsStatus, Handler, StationLookup
from services.gateway.context import CallContext

__all__ = ["EvNeedsDecider", "ev_charging_needs"]

log = logging.getLogger("csms.gateway.ev_needs")


class _Docs(Protocol):
    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...


class EvNeedsDecider:
    """"Accepted" when smart charging controls the station, else "Rejected"."""

    def __init__(self, stations: StationLookup, docs: _Docs) -> None:
        self._stations = stations
        self._docs = docs

    async def status(self, station_id: str) -> str:
        try:
            station = await self._stations.get_station(station_id)
            if station is None or not station.site_id:
                return "Rejected"
            capability = await self._docs.get_doc(kinds.CHARGING_CAPABILITY, station_id)
        except (StoreError, TimeoutError, OSError) as exc:
            log.warning("station=%s EV charging needs: lookup failed (%s); answering Rejected", station_id, exc)
            return "Rejected"
        if capability is not None and capability.get("takes_profiles") is False:
            return "Rejected"
        return "Accepted"


def ev_charging_needs(decider: EvNeedsStatus | None) -> Handler:
    """The NotifyEVChargingNeeds handler: the answer from `decider` (None: Rejected)."""

    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        status = "Rejected" if decider is None else await decider.status(ctx.station_id)
        await ctx.publish(ops.ev_charging_needs(p, status), None)
        return {"status": status}

    return handle
