"""The running price of a session: one arithmetic for the incremental and the full path (ADR 015).

A `PriceAccumulator` is what pricing needs to remember of a session's energy register so
that the price can be finished at any moment without the samples:

- the tariff it was opened with (id + `tariff_fingerprint`: a tariff edited since then
  is a different tariff, and the caller re-prices from the stored samples instead);
- the opening point (`opened_at`, `open_wh`): the session's start and the register there;
- the high-water mark (`last_at`, `last_wh`): the latest reading folded in, the register
  made monotone (a reading below `last_wh` is clamped up to it);
- `marks`: the register at each band transition crossed so far (linear interpolation
  between the two readings around it, quantised to 1 µWh like the full path always did,
  so the per-band shares telescope exactly to the metered total). Only transitions up to
  `opened_at + max_duration` are kept: their number is bounded whatever the session's
  length (a few per day and band).

`open_price` starts it, `advance_price` folds in one reading (in time order; an older
reading returns None and the caller folds again from the sorted readings), `finish_price`
turns it into a `PriceBreakdown` in O(bands): time, idle, fees, min/max clamp and tax
exactly as `price_session` computes them, because `price_session` *is*
`open_price` + `advance_price` over the sorted samples + `finish_price` (`fold_price`).

The rules at the end (amending ADR 005, see ADR 015):

- the energy priced is `end_wh - open_wh` (`end_wh`: the stop register, else the
  high-water mark); never negative: an end below the opening prices 0 and is `suspect`,
  an end below the highest reading is `suspect` too (the stop reading wins: band shares
  above it are lowered to it);
- a band transition after the last reading and before the charging end takes the register
  interpolated from the last reading to (charging end, end register) (an active session:
  flat at the last reading); without readings, energy is spread evenly over the charging
  time;
- what the register rose after the charging end, or after the `max_duration` cap, goes to
  the last priced line (readings after the charging end are folded in like any other, they
  only move the marks of transitions they straddle);
- readings at or before `opened_at` never count.

Pure: standard library and the billing domain only. Money is Decimal in
`PRICING_CONTEXT`; no float anywhere. The accumulator's stored (dict) and wire (protobuf)
forms are in services/billing/codec.py; what they read back is checked with
`accumulator_consistent`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any, Iterable, Mapping

from services.common.decimals import parse_decimal
from services.common.timeutil import to_iso_us

from .money import PRICING_CONTEXT, Money
from .tariff import BandSegment, Tariff, band_segments
from .values import (
    _EPOCH,
    _MAX_INSTANT,
    _MIN_INSTANT,
    _US_PER_MINUTE,
    _WH_PER_KWH,
    _WH_RESOLUTION,
    MAX_PRICED_DURATION,
    BandLine,
    EnergySample,
    PriceBreakdown,
    SessionUsage,
    _aware_utc,
    _us,
    _wh,
    _within_range,
)

__all__ = [
    "PriceAccumulator",
    "RunningUsage",
    "StaleAccumulator",
    "tariff_fingerprint",
    "open_price",
    "advance_price",
    "finish_price",
    "fold_price",
    "usage_accumulator",
    "accumulator_matches",
    "accumulator_consistent",
    "metering_digest_input",
]

UTC = timezone.utc
_ONE_US = timedelta(microseconds=1)


class StaleAccumulator(ValueError):
    """The accumulator cannot be finished against this tariff or bound (another tariff,
    or folded with a shorter `max_duration`): re-price from the samples."""


@dataclass(frozen=True, slots=True)
class PriceAccumulator:
    tariff_id: str
    tariff_fingerprint: str
    currency: str
    opened_at: datetime  # aware UTC
    open_wh: int  # register at opened_at
    last_at: datetime  # high-water mark
    last_wh: int  # monotone running register
    marks: tuple[tuple[datetime, Decimal], ...] = ()  # register at each band transition crossed so far


@dataclass(frozen=True, slots=True)
class RunningUsage:
    """A session priced from its accumulator (the sessions processor's) instead of its
    samples; `decide_cdr` takes it where it takes a `SessionUsage`."""

    acc: PriceAccumulator
    started_at: datetime
    stopped_at: datetime | None = None
    charging_ended_at: datetime | None = None
    end_wh: int | None = None  # the register at the end; None: the accumulator's high-water mark


# --- the tariff's identity ---------------------------------------------------------------


def tariff_fingerprint(tariff: Tariff) -> str:
    """The tariff's identity as the accumulator pins it: `Tariff.fingerprint` (sha256 of
    the canonical tariff, decimals normalised, the `default` flag left out: which tariff
    is the default does not change what this one charges; memoized on the tariff)."""
    return tariff.fingerprint


# --- open / advance ----------------------------------------------------------------------


def _instant(value: object, name: str) -> datetime:
    """Aware UTC inside the priced range (fold cleared: it means nothing in UTC, and the
    accumulator must compare equal after a round trip)."""
    return _within_range(_aware_utc(value, name)).replace(fold=0)


def _plus(dt: datetime, delta: timedelta) -> datetime:
    """dt + delta, saturating at the priced range's end (no OverflowError)."""
    return _MAX_INSTANT if dt > _MAX_INSTANT - delta else dt + delta


def _check_duration(max_duration: timedelta) -> None:
    if not isinstance(max_duration, timedelta) or max_duration <= timedelta(0):
        raise ValueError(f"max_duration must be a positive timedelta, got {max_duration!r}")


_DAY = timedelta(days=1)


def _transitions(tariff: Tariff, after: datetime, upto: datetime) -> list[datetime]:
    """The instants T with after < T <= upto where the band in force changes."""
    if not tariff.bands or upto <= after:
        return []
    out: list[datetime] = []
    day, last = after.date(), upto.date()
    while day <= last:
        out.extend(t for t in tariff.band_transitions_on(day) if after < t <= upto)
        day += _DAY
    return out


def _segments(tariff: Tariff, start: datetime, end: datetime) -> tuple[BandSegment, ...]:
    """`band_segments(tariff, start, end)`, from the per-day transitions (memoized on the tariff)."""
    if end <= start or not tariff.bands:
        return band_segments(tariff, start, end)
    points = [start, *_transitions(tariff, start, end - _ONE_US), end]
    return tuple(BandSegment(a, b, tariff.band_index_at(a)) for a, b in zip(points, points[1:]))


def open_price(
    tariff: Tariff, opened_at: datetime, open_wh: int, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceAccumulator:
    """A fresh accumulator: the register reads `open_wh` at `opened_at` (the session's start)."""
    _check_duration(max_duration)
    opened = _instant(opened_at, "opened_at")
    _wh(open_wh, "open_wh")
    return PriceAccumulator(
        tariff_id=tariff.id,
        tariff_fingerprint=tariff_fingerprint(tariff),
        currency=tariff.currency,
        opened_at=opened,
        open_wh=open_wh,
        last_at=opened,
        last_wh=open_wh,
    )


def advance_price(
    acc: PriceAccumulator, tariff: Tariff, at: datetime, wh: int, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceAccumulator | None:
    """Fold in one register reading.

    - `at` == `last_at` and `wh` == `last_wh`: a duplicate, `acc` itself;
    - `at` at or before `opened_at`: never counts, `acc` itself;
    - otherwise `at` <= `last_at`: None (out of order: fold again from the sorted readings);
    - `wh` below `last_wh` is clamped up (the register is monotone).
    """
    if tariff.id != acc.tariff_id:
        raise StaleAccumulator(f"accumulator of tariff {acc.tariff_id!r} advanced with tariff {tariff.id!r}")
    at = _instant(at, "at")
    _wh(wh, "wh")
    if at == acc.last_at and wh == acc.last_wh:
        return acc
    if at <= acc.opened_at:
        return acc
    if at <= acc.last_at:
        return None
    wh = max(wh, acc.last_wh)
    upto = min(at, _plus(acc.opened_at, max_duration))
    crossed = _transitions(tariff, acc.last_at, upto)
    if not crossed:
        return replace(acc, last_at=at, last_wh=wh)
    t0, t1 = _us(acc.last_at), _us(at)
    v0 = Decimal(acc.last_wh)
    rise = Decimal(wh - acc.last_wh)
    with localcontext(PRICING_CONTEXT):
        new = tuple((t, (v0 + rise * (_us(t) - t0) / (t1 - t0)).quantize(_WH_RESOLUTION)) for t in crossed)
    return replace(acc, last_at=at, last_wh=wh, marks=acc.marks + new)


def fold_price(
    tariff: Tariff,
    opened_at: datetime,
    open_wh: int,
    readings: Iterable[EnergySample],
    *,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> PriceAccumulator:
    """open_price + advance_price over the readings in time order (any order and duplicates
    in: one reading per instant, the highest, like `SessionUsage`)."""
    by_time: dict[datetime, int] = {}
    for t, v in readings:
        t = _instant(t, "reading time")
        by_time[t] = max(_wh(v, "reading"), by_time.get(t, v))
    acc = open_price(tariff, opened_at, open_wh, max_duration=max_duration)
    for t, v in sorted(by_time.items()):
        nxt = advance_price(acc, tariff, t, v, max_duration=max_duration)
        assert nxt is not None  # strictly increasing instants
        acc = nxt
    return acc


def usage_accumulator(
    tariff: Tariff, usage: SessionUsage, *, max_duration: timedelta = MAX_PRICED_DURATION
) -> PriceAccumulator:
    """The accumulator of a `SessionUsage`: opened at its start with its meter start."""
    return fold_price(tariff, usage.started_at, usage.meter_start_wh, usage.energy_samples, max_duration=max_duration)


def accumulator_matches(acc: PriceAccumulator | None, tariff: Tariff, started_at: datetime, open_wh: int) -> bool:
    """May `acc` be finished for a session that started at `started_at` with the register
    at `open_wh`, priced against `tariff`? (Else: fold the stored samples.)"""
    return (
        acc is not None
        and acc.tariff_id == tariff.id
        and acc.tariff_fingerprint == tariff_fingerprint(tariff)
        and acc.opened_at == _instant(started_at, "started_at")
        and acc.open_wh == open_wh
    )


# --- finish ------------------------------------------------------------------------------


def finish_price(
    acc: PriceAccumulator,
    tariff: Tariff,
    *,
    now: datetime,
    stopped_at: datetime | None = None,
    charging_ended_at: datetime | None = None,
    end_wh: int | None = None,
    max_duration: timedelta = MAX_PRICED_DURATION,
) -> PriceBreakdown:
    """The price of the session as the accumulator knows it; an active one (stopped_at None)
    is priced up to `now`. `end_wh`: the register at the end (None: the high-water mark).
    Raises `StaleAccumulator` when `tariff` is not the accumulator's tariff."""
    now = _aware_utc(now, "now")
    _check_duration(max_duration)
    if acc.tariff_id != tariff.id or acc.tariff_fingerprint != tariff_fingerprint(tariff):
        raise StaleAccumulator(f"accumulator of tariff {acc.tariff_id!r} is not for this version of {tariff.id!r}")
    if stopped_at is not None:
        stopped_at = _aware_utc(stopped_at, "stopped_at")
    if charging_ended_at is not None:
        charging_ended_at = _aware_utc(charging_ended_at, "charging_ended_at")
    if end_wh is not None:
        _wh(end_wh, "end_wh")
    with localcontext(PRICING_CONTEXT):
        return _finish(acc, tariff, now, stopped_at, charging_ended_at, end_wh, max_duration)


def _finish(
    acc: PriceAccumulator,
    tariff: Tariff,
    now: datetime,
    stopped_at: datetime | None,
    charging_ended_at: datetime | None,
    end_wh: int | None,
    max_duration: timedelta,
) -> PriceBreakdown:
    cur = tariff.currency
    start = acc.opened_at
    session_end = max(_within_range(stopped_at if stopped_at is not None else now), start)
    charging_end = charging_ended_at if charging_ended_at is not None else session_end
    charging_end = min(max(_within_range(charging_end), start), session_end)
    # The bound: time is priced up to `priced_until` at most (no overflow: only when it is
    # before session_end).
    capped = session_end - start > max_duration
    priced_until = start + max_duration if capped else session_end
    priced_charging_end = min(charging_end, priced_until)

    end = end_wh if end_wh is not None else acc.last_wh
    suspect = end < acc.open_wh  # the meter went backwards: no energy
    if suspect:
        end = acc.open_wh
    suspect = suspect or end < acc.last_wh  # a counted reading above the end register
    energy_wh = end - acc.open_wh
    end_d = Decimal(end).quantize(_WH_RESOLUTION)

    segments = _segments(tariff, start, priced_charging_end)
    marks = dict(acc.marks) if len(segments) > 1 else {}
    last_us, charging_end_us = _us(acc.last_at), _us(charging_end)
    high = Decimal(max(end, acc.last_wh))

    def register(t: datetime) -> Decimal:
        """The register at a band transition inside the priced charging window."""
        if t <= acc.last_at:
            value = marks.get(t)
            if value is None:
                raise StaleAccumulator(f"no mark at {t.isoformat()}: the accumulator was folded with a shorter bound")
        else:  # after the last reading: towards (charging end, end register)
            us = _us(t)
            value = (acc.last_wh + (high - acc.last_wh) * (us - last_us) / (charging_end_us - last_us)).quantize(
                _WH_RESOLUTION
            )
        return min(value, end_d)

    levels = [Decimal(acc.open_wh).quantize(_WH_RESOLUTION)]
    for seg in segments[:-1]:  # monotone whatever an accumulator from the wire says
        levels.append(max(register(seg.end), levels[-1]))
    levels.append(end_d)

    lines: list[BandLine] = []
    energy_num = time_num = Decimal(0)
    for i, seg in enumerate(segments):
        a, b = _us(seg.start), _us(seg.end)
        # The last line also takes what the register rose after the cap and the charging end.
        wh = levels[i + 1] - levels[i] if b > a else Decimal(energy_wh)  # b == a: the empty window
        p_kwh, p_min = tariff.energy_price(seg.band_index), tariff.time_price(seg.band_index)
        energy_num += wh * p_kwh
        time_num += (b - a) * p_min
        lines.append(
            BandLine(
                label=tariff.band_label(seg.band_index),
                band_index=seg.band_index,
                started_at=seg.start,
                ended_at=seg.end,
                energy_wh=wh,
                seconds=Decimal(b - a) / 1_000_000,
                price_per_kwh=p_kwh,
                price_per_minute=p_min,
                energy_cost=Money(wh * p_kwh / _WH_PER_KWH, cur),
                time_cost=Money((b - a) * p_min / _US_PER_MINUTE, cur),
            )
        )

    parking_us = _us(priced_until) - _us(priced_charging_end)
    idle_us = max(0, parking_us - tariff.idle_grace_minutes * _US_PER_MINUTE)
    energy_cost = Money(energy_num / _WH_PER_KWH, cur)
    time_cost = Money(time_num / _US_PER_MINUTE, cur)
    idle_cost = Money(idle_us * tariff.idle_fee_per_minute / _US_PER_MINUTE, cur)
    session_fee = Money(tariff.session_fee, cur)

    subtotal = energy_cost + time_cost + idle_cost + session_fee
    clamp: str | None = None
    if tariff.min_price is not None and subtotal.amount < tariff.min_price:
        subtotal, clamp = Money(tariff.min_price, cur), "min"
    elif tariff.max_price is not None and subtotal.amount > tariff.max_price:
        subtotal, clamp = Money(tariff.max_price, cur), "max"
    tax = subtotal * tariff.tax_rate

    return PriceBreakdown(
        currency=cur,
        energy_wh=energy_wh,
        energy_cost=energy_cost,
        time_cost=time_cost,
        idle_cost=idle_cost,
        session_fee=session_fee,
        subtotal=subtotal,
        tax=tax,
        total_excl_tax=subtotal.rounded(),
        total_incl_tax=(subtotal + tax).rounded(),
        tax_rate=tariff.tax_rate,
        lines=tuple(lines),
        charging_seconds=Decimal(_us(priced_charging_end) - _us(start)) / 1_000_000,
        parking_seconds=Decimal(parking_us) / 1_000_000,
        idle_seconds=Decimal(idle_us) / 1_000_000,
        charging_ended_at=priced_charging_end,
        priced_until=priced_until,
        suspect=suspect,
        clamp=clamp,
        capped=capped,
    )


# --- the CDR's metering input --------------------------------------------------------------


def metering_digest_input(acc: PriceAccumulator, end_wh: int | None, max_duration: timedelta) -> list[Any]:
    """What the register contributes to a CDR's inputs fingerprint: the same whether the
    accumulator was kept incrementally or folded from the stored samples (marks beyond the
    pricing bound are left out: they never count)."""
    cap = _plus(acc.opened_at, max_duration)
    return [
        acc.open_wh,
        end_wh,
        to_iso_us(acc.last_at),
        acc.last_wh,
        [[to_iso_us(t), f"{v:f}"] for t, v in acc.marks if t <= cap],
    ]


def accumulator_consistent(acc: PriceAccumulator) -> bool:
    """What `open_price` / `advance_price` guarantee, checked on what comes from outside
    (the accumulator's stored and wire forms are read in services/billing/codec.py)."""
    return (
        _MIN_INSTANT <= acc.opened_at <= acc.last_at <= _MAX_INSTANT
        and 0 <= acc.open_wh <= acc.last_wh
        and all(acc.opened_at < t <= acc.last_at for t, _ in acc.marks)
    )
