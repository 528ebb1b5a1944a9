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

from datetime import datetime, timedelta

from .running import finish_price, usage_accumulator
from .tariff import Tariff
from .values import MAX_PRICED_DURATION, BandLine, EnergySample, PriceBreakdown, SessionUsage, _aware_utc

__all__ = [
    "EnergySample",
    "SessionUsage",
    "BandLine",
    "PriceBreakdown",
    "price_session",
    "MAX_PRICED_DURATION",
]


def price_session(
    tariff: Tariff, usage: SessionUsage, now: datetime, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceBreakdown:
    """Price a session; an active one (stopped_at None) is priced up to `now`.

    Time-based components cover at most `max_duration` (> 0) from the start; energy is
    always priced in full. The same arithmetic as the running price (ADR 015):
    `open_price` at (started_at, meter_start_wh), `advance_price` over the sorted samples,
    `finish_price` with the stop register (services/billing/domain/running.py)."""
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
