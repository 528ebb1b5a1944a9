"""Running cost for OCPP 2.0.1 TransactionEventResponse.totalCost.

Stations that display a cost show `totalCost` from each TransactionEventResponse
(incl. tax, the price the driver pays). The gateway prices the transaction so far with
the billing domain: the tariff (station -> site -> default, cached briefly), the start
of the session from the sessions processor's document (or this Started event), and the
register reading in the event at hand. It is an estimate for display: the CDR, built
by the billing processor from the complete session, is the bill. Any problem here
omits the field; it never delays or fails the answer.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.billing.adapters import ResolvedTariff, resolve_tariff
from services.billing.domain import SessionUsage, price_session
from services.common.events import MeterSample
from services.common.store.port import Store
from services.common.timeutil import parse_ocpp
from services.gateway.actions.meter import first_register_wh, last_register_wh
from services.sessions.domain.session import session_id

__all__ = ["running_total_cost"]

log = logging.getLogger("csms.gateway.running_cost")

_TTL_S = 30.0
_MAX_CACHED = 50_000
_tariffs: dict[str, tuple[float, ResolvedTariff | None]] = {}


async def _tariff(store: Store, station_id: str) -> ResolvedTariff | None:
    now = time.monotonic()
    hit = _tariffs.get(station_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    resolved = await resolve_tariff(store, station_id)
    if len(_tariffs) >= _MAX_CACHED:
        _tariffs.clear()
    _tariffs[station_id] = (now + _TTL_S, resolved)
    return resolved


def _ts(value: Any) -> datetime | None:
    return parse_ocpp(value) if isinstance(value, str) and value else None


async def running_total_cost(
    store: Store,
    station_id: str,
    transaction_id: str,
    event_type: str,
    samples: tuple[MeterSample, ...],
    station_time: datetime,
    known_start: tuple[datetime, int | None] | None = None,
    max_span: timedelta | None = None,
) -> Decimal | None:
    """`known_start`: (station time, meter start Wh) of the Started event seen on this
    connection; otherwise the sessions processor's document supplies the start.
    `max_span`: no estimate for a session longer than this (a station clock in 1970 would
    otherwise price decades on the event loop; the CDR flags such sessions)."""
    try:
        resolved = await _tariff(store, station_id)
        if resolved is None:
            return None
        if known_start is not None and known_start[1] is not None:
            started_at, meter_start = known_start
        else:
            doc = await store.get_doc("session", session_id(station_id, transaction_id)) or {}
            started_at = _ts(doc.get("started_at")) or station_time
            meter_start = doc.get("meter_start_wh")
        if meter_start is None:
            meter_start = first_register_wh(samples)
        current = last_register_wh(samples)
        if meter_start is None or current is None:
            return None
        if max_span is not None and abs(station_time - started_at) > max_span:
            return None
        usage = SessionUsage(
            started_at=min(started_at, station_time),
            stopped_at=station_time if event_type == "Ended" else None,
            energy_samples=((station_time, max(current, meter_start)),),
            meter_start_wh=int(meter_start),
            meter_stop_wh=max(current, meter_start) if event_type == "Ended" else None,
        )
        breakdown = price_session(resolved.tariff, usage, now=station_time)
        return breakdown.total_incl_tax.amount
    except Exception:  # display only: never let pricing break the OCPP answer
        log.warning("station=%s tx=%s running cost unavailable", station_id, transaction_id, exc_info=True)
        return None
