"""Pricing a charging session against a tariff. Pure; `now` is passed in.

Every component is computed unrounded (Decimal, `PRICING_CONTEXT`); only the
totals are rounded, once: total_excl_tax = round(clamp(sum of parts)),
total_incl_tax = round(clamped subtotal * (1 + tax_rate)).

Energy is attributed to bands by linear interpolation of the cumulative
energy register between samples (uniformly over the charging time when there
are none); time by exact microseconds spent in each band.

`price_session` is the fold of the running price (ADR 015,
services/billing/domain/running.py): `open_price` at (started_at, meter_start_wh),
`advance_price` with each sample in time order, `finish_price` with the stop
register. A full recomputation and the incremental path (sessions processor, API,
the gateway's 2.0.1 totalCost) are therefore the same arithmetic. The rules at the
edges, since ADR 015:
- the register is the running maximum of the samples after the start (a sample
  below an earlier one is clamped up); samples at or before the start never count;
- the energy is `meter_stop_wh - meter_start_wh`, else the highest sample minus
  the start; an end below the start prices 0 energy, and an end below a sample is
  `suspect` too: the band shares above the end are lowered to it (samples above
  meterStop no longer bend the interpolation below it);
- samples after the charging end are folded in like any other: they place the band
  transitions they straddle; what the register rose after the charging end (or
  after the `max_duration` cap) goes to the last priced line; a band transition
  after the last sample takes the register interpolated from it to (charging end,
  end register).

Pricing work is bounded whatever the timestamps (a station clock in 1970 once
made a 10 kWh charge cost 299,368.82 EUR in a 10.6 MB breakdown): time-based
components (per-minute and idle) are priced over at most `max_duration` from the
start (default `MAX_PRICED_DURATION`, the billing worker passes
CSMS_SESSION_MAX_DURATION_H), so the band split covers a few days at most and the
breakdown has a bounded number of lines. Energy is never cut: what the register
rose after the cap is attributed to the last priced line. Such a breakdown says
`capped`; the CDR built from it is held from export (see docs/billing-holds.md).
Instants are clamped a few days inside datetime's range, so band arithmetic in
any time zone cannot overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from .money import PRICING_CONTEXT, Money
from .tariff import Tariff

__all__ = [
    "EnergySample",
    "SessionUsage",
    "BandLine",
    "PriceBreakdown",
    "price_session",
    "breakdown_to_dict",
    "MAX_PRICED_DURATION",
    "iso_utc_ms",
]

UTC = timezone.utc
EnergySample = tuple[datetime, int]  # (timestamp, cumulative energy register in Wh)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_MINUTE = 60_000_000
_WH_PER_KWH = 1000
_WH_RESOLUTION = Decimal("0.000001")  # attribution resolution (1 µWh): keeps band splits exactly additive
# Time-based components are priced over at most this long (the default of
# CSMS_SESSION_MAX_DURATION_H); longer sessions are implausible and held anyway.
MAX_PRICED_DURATION = timedelta(hours=72)
# Priced instants stay this far inside datetime's range: local dates +- 1 day in
# any zone (offsets < 1 day) must still be representable.
_MIN_INSTANT = datetime(1, 1, 5, tzinfo=UTC)
_MAX_INSTANT = datetime(9999, 12, 25, tzinfo=UTC)


def iso_utc_ms(dt: datetime) -> str:
    """`2026-11-28T04:21:16.004Z` (UTC, milliseconds, truncated). Always a 4-digit year
    (strftime writes year 1 as "1", which nothing parses back)."""
    dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
        f"{dt.microsecond // 1000:03d}Z"
    )


def _aware_utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _wh(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer number of Wh, got {value!r}")
    return value


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _within_range(dt: datetime) -> datetime:
    return min(max(dt, _MIN_INSTANT), _MAX_INSTANT)


@dataclass(frozen=True)
class SessionUsage:
    """What was consumed. Samples are normalised on construction: sorted by time,
    one per timestamp (the highest reading wins, the register is cumulative)."""

    started_at: datetime
    stopped_at: datetime | None = None
    charging_ended_at: datetime | None = None  # when energy delivery stopped; None = stopped_at
    energy_samples: tuple[EnergySample, ...] = ()
    meter_start_wh: int = 0
    meter_stop_wh: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", _aware_utc(self.started_at, "started_at"))
        for name in ("stopped_at", "charging_ended_at"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _aware_utc(getattr(self, name), name))
        _wh(self.meter_start_wh, "meter_start_wh")
        if self.meter_stop_wh is not None:
            _wh(self.meter_stop_wh, "meter_stop_wh")
        by_time: dict[datetime, int] = {}
        for sample in self.energy_samples:
            t, v = _aware_utc(sample[0], "energy sample time"), _wh(sample[1], "energy sample value")
            by_time[t] = max(v, by_time.get(t, v))
        object.__setattr__(self, "energy_samples", tuple(sorted(by_time.items())))


@dataclass(frozen=True)
class BandLine:
    """A consecutive stretch of charging time under one band (or the base prices)."""

    label: str
    band_index: int | None
    started_at: datetime
    ended_at: datetime
    energy_wh: Decimal  # attributed share, fractional
    seconds: Decimal
    price_per_kwh: Decimal
    price_per_minute: Decimal
    energy_cost: Money  # unrounded
    time_cost: Money  # unrounded

    @property
    def kwh(self) -> Decimal:
        return self.energy_wh / _WH_PER_KWH

    @property
    def minutes(self) -> Decimal:
        with localcontext(PRICING_CONTEXT):
            return self.seconds / 60

    @property
    def cost(self) -> Money:
        return self.energy_cost + self.time_cost


@dataclass(frozen=True)
class PriceBreakdown:
    currency: str
    energy_wh: int
    energy_cost: Money  # unrounded components ...
    time_cost: Money
    idle_cost: Money
    session_fee: Money
    subtotal: Money  # ... their sum clamped by min/max price, still unrounded, pre-tax
    tax: Money  # subtotal * tax_rate, unrounded
    total_excl_tax: Money  # round(subtotal)
    total_incl_tax: Money  # round(subtotal * (1 + tax_rate))
    tax_rate: Decimal
    lines: tuple[BandLine, ...]
    charging_seconds: Decimal
    parking_seconds: Decimal  # charging end -> session end
    idle_seconds: Decimal  # billable parking, after the grace period
    charging_ended_at: datetime
    priced_until: datetime  # stopped_at, or `now` for an active session; at most start + max_duration
    suspect: bool = False  # meter went backwards / samples inconsistent
    clamp: str | None = None  # "min" | "max" when the tariff's bounds applied
    capped: bool = False  # time was priced up to start + max_duration only (the session lasted longer)

    @property
    def unclamped_subtotal(self) -> Money:
        return self.energy_cost + self.time_cost + self.idle_cost + self.session_fee

    @property
    def tax_display(self) -> Money:
        """The tax line of an invoice: so that excl + tax == incl exactly."""
        return self.total_incl_tax - self.total_excl_tax


def price_session(
    tariff: Tariff, usage: SessionUsage, now: datetime, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceBreakdown:
    """Price a session; an active one (stopped_at None) is priced up to `now`.

    Time-based components cover at most `max_duration` (> 0) from the start; energy is
    always priced in full. The same arithmetic as the running price (ADR 015):
    `open_price` at (started_at, meter_start_wh), `advance_price` over the sorted samples,
    `finish_price` with the stop register (services/billing/domain/running.py)."""
    from .running import finish_price, usage_accumulator  # running builds on this module

    now = _aware_utc(now, "now")
    if not isinstance(max_duration, timedelta) or max_duration <= timedelta(0):
        raise ValueError(f"max_duration must be a positive timedelta, got {max_duration!r}")
    acc = usage_accumulator(tariff, usage, max_duration=max_duration)
    return finish_price(
        acc,
        tariff,
        now=now,
        stopped_at=usage.stopped_at,
        charging_ended_at=usage.charging_ended_at,
        end_wh=usage.meter_stop_wh,
        max_duration=max_duration,
    )


def _fixed(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=PRICING_CONTEXT):f}"


def breakdown_to_dict(b: PriceBreakdown) -> dict[str, Any]:
    """API shape. Amounts are display-rounded strings; the per-component amounts
    may not add up to the totals (the totals are rounded once from exact parts)."""
    with localcontext(PRICING_CONTEXT):
        return {
            "currency": b.currency,
            "energy_wh": b.energy_wh,
            "energy_kwh": _fixed(Decimal(b.energy_wh) / _WH_PER_KWH, 3),
            "charging_minutes": _fixed(b.charging_seconds / 60, 2),
            "parking_minutes": _fixed(b.parking_seconds / 60, 2),
            "idle_minutes": _fixed(b.idle_seconds / 60, 2),
            "energy_cost": b.energy_cost.display(),
            "time_cost": b.time_cost.display(),
            "idle_cost": b.idle_cost.display(),
            "session_fee": b.session_fee.display(),
            "subtotal": b.total_excl_tax.display(),
            "tax_rate": f"{b.tax_rate:f}",
            "tax": b.tax_display.display(),
            "total_excl_tax": b.total_excl_tax.display(),
            "total_incl_tax": b.total_incl_tax.display(),
            "clamp": b.clamp,
            "suspect": b.suspect,
            "capped": b.capped,
            "lines": [
                {
                    "label": line.label,
                    "started_at": iso_utc_ms(line.started_at),
                    "ended_at": iso_utc_ms(line.ended_at),
                    "kwh": _fixed(line.kwh, 3),
                    "minutes": _fixed(line.minutes, 2),
                    "price_per_kwh": f"{line.price_per_kwh:f}",
                    "price_per_minute": f"{line.price_per_minute:f}",
                    "energy_cost": line.energy_cost.display(),
                    "time_cost": line.time_cost.display(),
                    "cost": line.cost.display(),
                }
                for line in b.lines
            ],
        }
