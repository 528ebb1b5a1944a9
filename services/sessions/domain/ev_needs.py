"""What an ISO 15118 EV said about its charge (OCPP 2.0.1 K15-K17), kept on its session.

A NotifyEVChargingNeeds (`events.EvChargingNeeds`) and a NotifyEVChargingSchedule
(`events.EvChargingSchedule`) name an EVSE, not a transaction: the sessions processor
finds the EVSE's active session (services/sessions/handlers.py) and
`session.apply_ev_event` keeps the latest of each on it:

- `EvNeeds`: departure time, requested energy transfer, energy amount, the EV's current
  and voltage limits (AC or DC), the DC extras when given (power, state of charge,
  capacity, full/bulk state of charge), the status the CSMS answered, received_at.
- `EvSchedule`: time base, charging rate unit, the periods (at most
  `MAX_EV_SCHEDULE_PERIODS`, `truncated` when there were more), received_at.

"Latest" is by (CSMS receive time, event id): commutative and idempotent, so a
redelivered or reordered event ends in the same state. Strings are clipped, numbers that
are not finite are left out: nothing a station sends makes these raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from services.common import events as ev

__all__ = [
    "EvNeeds",
    "EvSchedule",
    "EvPeriod",
    "MAX_EV_SCHEDULE_PERIODS",
    "ev_needs_of",
    "ev_schedule_of",
    "EV_BODIES",
]

UTC = timezone.utc
MAX_EV_SCHEDULE_PERIODS = 48  # periods kept on the session (the document is written with every reading)
_MAX_TEXT = 64
EV_BODIES = (ev.EvChargingNeeds, ev.EvChargingSchedule)



@dataclass(frozen=True, slots=True)
class EvNeeds:
    received_at: datetime
    event_id: str = ""  # with received_at, the order of the notifications (the latest wins)
    requested_energy_transfer: str = ""
    departure_time: datetime | None = None
    energy_amount_wh: int | None = None
    ev_min_current_a: int | None = None
    ev_max_current_a: int | None = None
    ev_max_voltage_v: int | None = None
    status: str = ""
    dc: bool = False  # DC parameters were given (the DC extras below)
    ev_max_power_w: int | None = None
    state_of_charge: int | None = None
    ev_energy_capacity_wh: int | None = None
    full_soc: int | None = None
    bulk_soc: int | None = None


@dataclass(frozen=True, slots=True)
class EvPeriod:
    start_period: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class EvSchedule:
    received_at: datetime
    event_id: str = ""
    time_base: datetime | None = None
    charging_rate_unit: str = ""
    periods: tuple[EvPeriod, ...] = ()
    truncated: bool = False


def _text(value: str) -> str:
    return str(value or "")[:_MAX_TEXT]


def _opt(value: int) -> int | None:
    """An optional OCPP number the event carries as 0 when absent."""
    return int(value) if value else None


def _ms(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:
        return None
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def ev_needs_of(body: ev.EvChargingNeeds, received_at: datetime, event_id: str = "") -> EvNeeds:
    """The needs an event states (AC parameters first; DC when given instead)."""
    at = _ms(received_at)
    assert at is not None
    out = EvNeeds(
        received_at=at,
        event_id=event_id,
        requested_energy_transfer=_text(body.requested_energy_transfer),
        departure_time=_ms(body.departure_time),
        status=_text(body.status),
    )
    ac, dc = body.ac, body.dc
    if ac is not None:
        return replace(
            out, energy_amount_wh=int(ac.energy_amount), ev_min_current_a=int(ac.ev_min_current),
            ev_max_current_a=int(ac.ev_max_current), ev_max_voltage_v=int(ac.ev_max_voltage),
        )
    if dc is not None:
        return replace(
            out, energy_amount_wh=_opt(dc.energy_amount), ev_max_current_a=int(dc.ev_max_current),
            ev_max_voltage_v=int(dc.ev_max_voltage), dc=True, ev_max_power_w=_opt(dc.ev_max_power),
            state_of_charge=_opt(dc.state_of_charge), ev_energy_capacity_wh=_opt(dc.ev_energy_capacity),
            full_soc=_opt(dc.full_soc), bulk_soc=_opt(dc.bulk_soc),
        )
    return out


def ev_schedule_of(body: ev.EvChargingSchedule, received_at: datetime, event_id: str = "") -> EvSchedule:
    """The schedule an event states, its periods bounded (non-finite limits left out)."""
    at = _ms(received_at)
    assert at is not None
    sched = body.schedule
    raw = sched.periods if sched is not None else ()
    usable = [p for p in raw if math.isfinite(p.limit)]
    periods = tuple(
        EvPeriod(int(p.start_period), float(p.limit) + 0.0, _opt(p.number_phases))
        for p in usable[:MAX_EV_SCHEDULE_PERIODS]
    )
    return EvSchedule(
        received_at=at,
        event_id=event_id,
        time_base=_ms(body.time_base),
        charging_rate_unit=_text(sched.charging_rate_unit) if sched is not None else "",
        periods=periods,
        truncated=len(raw) > len(periods),
    )
