"""The values of pricing: what a session used, what it costs, the range pricing works in. Pure.

`SessionUsage` (the samples of a session) goes in, `PriceBreakdown` (with its `BandLine`s)
comes out of `price_session` (pricing.py) and `finish_price` (running.py). Both modules
build on this one, which imports neither: pricing is the fold of the running price, so
running.py must not depend on pricing.py (no import cycle). The underscored helpers
(instants in UTC, microseconds since the epoch, the priced range) belong to the domain
package: pricing.py and running.py share them, nothing outside the domain uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

from .money import PRICING_CONTEXT, Money

__all__ = [
    "EnergySample",
    "SessionUsage",
    "BandLine",
    "PriceBreakdown",
    "MAX_PRICED_DURATION",
    "MAX_REGISTER_WH",
    "plausible_register_wh",
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
# A terawatt-hour energy register: a reading beyond it is not a reading (services.common.decimals).
MAX_REGISTER_WH = 10**15


def _aware_utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def plausible_register_wh(value: int | None) -> bool:
    """Is `value` a total energy register reading pricing may count (0 .. `MAX_REGISTER_WH` Wh)?"""
    return value is not None and 0 <= value <= MAX_REGISTER_WH


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


# Shared with billing's codec, which reads the accumulator's stored and wire forms.
aware_utc = _aware_utc
wh_value = _wh
