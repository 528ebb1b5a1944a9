"""Properties of the running price (ADR 015): the incremental path and the full fold are one
arithmetic, over random tariffs (bands, DST zones, every component) and reading streams."""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.domain.money import PRICING_CONTEXT, Money
from services.billing.domain.pricing import (
    MAX_PRICED_DURATION,
    BandLine,
    PriceBreakdown,
    SessionUsage,
    price_session,
)
from services.billing.codec import accumulator_from_dict, accumulator_from_pb, accumulator_to_dict, accumulator_to_pb
from services.billing.domain.running import (
    PriceAccumulator,
    advance_price,
    finish_price,
    fold_price,
    open_price,
)
from services.billing.domain.tariff import Tariff, band_segments
from services.common.codec import sessions_pb2

from .test_pricing_properties import instants, tariffs

UTC = timezone.utc
MAX = MAX_PRICED_DURATION


@st.composite
def streams(draw: st.DrawFn) -> tuple[SessionUsage, datetime]:
    """A session (active or stopped) with a monotone-ish reading stream: mostly rising,
    sometimes a dip, sometimes a repeat, some readings before the start or after the stop,
    sometimes a stop reading below the last one. Returns (usage, now)."""
    start = draw(instants).replace(fold=0)  # fold means nothing in UTC
    length = timedelta(seconds=draw(st.integers(0, 40 * 3600)))
    meter_start = draw(st.integers(0, 5_000_000))
    n = draw(st.integers(0, 12))
    points: list[tuple[datetime, int]] = []
    wh = meter_start
    for _ in range(n):
        at = start + timedelta(seconds=draw(st.integers(-1800, int(length.total_seconds()) + 3600)))
        step = draw(st.sampled_from(["rise", "rise", "rise", "same", "dip"]))
        if step == "rise":
            wh += draw(st.integers(0, 30_000))
        elif step == "dip":
            wh = max(0, wh - draw(st.integers(1, 5_000)))
        points.append((at, wh))
    points.sort()
    active = draw(st.booleans())
    stopped = None if active else start + length
    charging_end = None if active else draw(st.none() | st.just(start + length * draw(st.floats(0, 1))))
    meter_stop = None if active else draw(st.none() | st.integers(max(0, wh - 3_000), wh + 20_000))
    usage = SessionUsage(
        started_at=start,
        stopped_at=stopped,
        charging_ended_at=charging_end,
        energy_samples=tuple(points),
        meter_start_wh=meter_start,
        meter_stop_wh=meter_stop,
    )
    now = stopped or start + length
    return usage, now


def _same(a: PriceBreakdown, b: PriceBreakdown) -> None:
    """Decimal-exact: every amount and line, down to the exponent."""
    assert repr(a) == repr(b)


def _round_trip(acc: PriceAccumulator, how: str) -> PriceAccumulator:
    if how == "dict":
        back = accumulator_from_dict(accumulator_to_dict(acc))
    else:
        pb = sessions_pb2.Session()
        accumulator_to_pb(acc, pb.price)
        again = sessions_pb2.Session.FromString(pb.SerializeToString())
        back = accumulator_from_pb(again.price)
    assert back == acc
    return back


def _finish(acc: PriceAccumulator, tariff: Tariff, usage: SessionUsage, now: datetime) -> PriceBreakdown:
    return finish_price(
        acc, tariff, now=now, stopped_at=usage.stopped_at, charging_ended_at=usage.charging_ended_at,
        end_wh=usage.meter_stop_wh,
    )


@settings(max_examples=300, deadline=None)
@given(tariffs(), streams(), st.sampled_from(["dict", "pb"]))
def test_one_reading_at_a_time_with_a_round_trip_between_steps_equals_the_full_fold(
    tariff: Tariff, stream: tuple[SessionUsage, datetime], how: str
) -> None:
    usage, now = stream
    acc = open_price(tariff, usage.started_at, usage.meter_start_wh)
    for at, wh in usage.energy_samples:
        nxt = advance_price(acc, tariff, at, wh)
        assert nxt is not None  # in time order: never "fold again"
        acc = _round_trip(nxt, how)
    _same(_finish(acc, tariff, usage, now), price_session(tariff, usage, now))


@settings(max_examples=200, deadline=None)
@given(tariffs(), streams(), st.data())
def test_splitting_the_stream_anywhere_gives_the_same_price(
    tariff: Tariff, stream: tuple[SessionUsage, datetime], data: st.DataObject
) -> None:
    usage, now = stream
    k = data.draw(st.integers(0, len(usage.energy_samples)))
    head = fold_price(tariff, usage.started_at, usage.meter_start_wh, usage.energy_samples[:k])
    acc = _round_trip(head, "pb")
    for at, wh in usage.energy_samples[k:]:
        nxt = advance_price(acc, tariff, at, wh)
        assert nxt is not None
        acc = nxt
    _same(_finish(acc, tariff, usage, now), price_session(tariff, usage, now))


@settings(max_examples=200, deadline=None)
@given(tariffs(), streams(), st.randoms())
def test_any_arrival_order_with_refolds_on_out_of_order_readings_equals_the_full_fold(
    tariff: Tariff, stream: tuple[SessionUsage, datetime], rnd: random.Random
) -> None:
    """What the sessions processor does: advance as readings arrive (repeated, shuffled);
    when advance says "older than the mark", fold again from the readings seen so far."""
    usage, now = stream
    arrivals = list(usage.energy_samples) * 2
    rnd.shuffle(arrivals)
    seen: list[tuple[datetime, int]] = []
    acc = open_price(tariff, usage.started_at, usage.meter_start_wh)
    refolds = 0
    for at, wh in arrivals:
        seen.append((at, wh))
        nxt = advance_price(acc, tariff, at, wh)
        if nxt is None:
            refolds += 1
            nxt = fold_price(tariff, usage.started_at, usage.meter_start_wh, seen)
        acc = accumulator_from_dict(accumulator_to_dict(nxt))
    _same(_finish(acc, tariff, usage, now), price_session(tariff, usage, now))
    assert refolds <= len(arrivals)


@st.composite
def rising_streams(draw: st.DrawFn) -> tuple[datetime, int, list[tuple[datetime, int]]]:
    start = draw(instants).replace(fold=0)  # fold means nothing in UTC
    wh = meter_start = draw(st.integers(0, 1_000_000))
    points: list[tuple[datetime, int]] = []
    t = start
    for _ in range(draw(st.integers(1, 10))):
        t += timedelta(seconds=draw(st.integers(1, 6 * 3600)))
        wh += draw(st.integers(0, 40_000))
        points.append((t, wh))
    return start, meter_start, points


@settings(max_examples=300, deadline=None)
@given(tariffs(), rising_streams(), st.data())
def test_the_running_price_of_an_active_session_never_decreases_and_never_exceeds_the_final_price(
    tariff: Tariff, stream: tuple[datetime, int, list[tuple[datetime, int]]], data: st.DataObject
) -> None:
    """Readings arrive in time order and the price is shown at moments between them: with a
    rising register, later is never cheaper (min and max clamps are monotone too), and the
    CDR of the session stopped with its last reading is at least every running price."""
    start, meter_start, points = stream
    acc = open_price(tariff, start, meter_start)
    shown: list[Decimal] = []
    for at, wh in points:
        fractions = sorted(data.draw(st.lists(st.floats(0, 1), max_size=3)))
        for f in fractions:  # displays (in time order) before this reading arrived
            now = acc.last_at + (at - acc.last_at) * f
            shown.append(finish_price(acc, tariff, now=now).total_incl_tax.amount)
        nxt = advance_price(acc, tariff, at, wh)
        assert nxt is not None
        acc = nxt
        shown.append(finish_price(acc, tariff, now=at).total_incl_tax.amount)
    assert shown == sorted(shown)
    final = finish_price(acc, tariff, now=points[-1][0], stopped_at=points[-1][0], end_wh=points[-1][1])
    assert all(amount <= final.total_incl_tax.amount for amount in shown)


# --- where the rules did not change, the numbers are the pre-ADR-015 ones ------------------------


def _old_price(tariff: Tariff, usage: SessionUsage, now: datetime) -> PriceBreakdown:
    """The pricing arithmetic as it was before ADR 015 (register points over the samples
    inside the charging window, anchored at (start, meter start) and (charging end, stop)),
    kept here as the reference for sessions where the new edge rules do not apply."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def us(dt: datetime) -> int:
        return (dt - epoch) // timedelta(microseconds=1)

    q = Decimal("0.000001")
    with localcontext(PRICING_CONTEXT):
        cur, start = tariff.currency, usage.started_at
        session_end = max(usage.stopped_at or now, start)
        charging_end = min(max(usage.charging_ended_at or session_end, start), session_end)
        capped = session_end - start > MAX
        priced_until = start + MAX if capped else session_end
        pce = min(charging_end, priced_until)
        end_wh = usage.meter_stop_wh if usage.meter_stop_wh is not None else (
            usage.energy_samples[-1][1] if usage.energy_samples else usage.meter_start_wh)
        energy_wh = end_wh - usage.meter_start_wh
        pts = [(us(start), Decimal(usage.meter_start_wh))]
        pts += [(us(t), Decimal(v)) for t, v in usage.energy_samples if start < t < charging_end]
        pts.append((us(charging_end), Decimal(end_wh)))
        ts, vs = [p[0] for p in pts], [p[1] for p in pts]

        def reg(x: int) -> Decimal:
            if x <= ts[0]:
                return vs[0].quantize(q)
            if x >= ts[-1]:
                return vs[-1].quantize(q)
            i = bisect_right(ts, x)
            return (vs[i - 1] + (vs[i] - vs[i - 1]) * (x - ts[i - 1]) / (ts[i] - ts[i - 1])).quantize(q)

        lines, e_num, t_num = [], Decimal(0), Decimal(0)
        segs = band_segments(tariff, start, pce)
        for i, seg in enumerate(segs):
            a, b = us(seg.start), us(seg.end)
            b_wh = us(charging_end) if i == len(segs) - 1 else b
            wh = reg(b_wh) - reg(a) if b_wh > a else Decimal(energy_wh)
            pk, pm = tariff.energy_price(seg.band_index), tariff.time_price(seg.band_index)
            e_num += wh * pk
            t_num += (b - a) * pm
            lines.append(BandLine(tariff.band_label(seg.band_index), seg.band_index, seg.start, seg.end, wh,
                                  Decimal(b - a) / 1_000_000, pk, pm, Money(wh * pk / 1000, cur),
                                  Money((b - a) * pm / 60_000_000, cur)))
        parking = us(priced_until) - us(pce)
        idle = max(0, parking - tariff.idle_grace_minutes * 60_000_000)
        parts = [Money(e_num / 1000, cur), Money(t_num / 60_000_000, cur),
                 Money(idle * tariff.idle_fee_per_minute / 60_000_000, cur), Money(tariff.session_fee, cur)]
        subtotal, clamp = parts[0] + parts[1] + parts[2] + parts[3], None
        if tariff.min_price is not None and subtotal.amount < tariff.min_price:
            subtotal, clamp = Money(tariff.min_price, cur), "min"
        elif tariff.max_price is not None and subtotal.amount > tariff.max_price:
            subtotal, clamp = Money(tariff.max_price, cur), "max"
        tax = subtotal * tariff.tax_rate
        return PriceBreakdown(cur, energy_wh, *parts, subtotal, tax, subtotal.rounded(), (subtotal + tax).rounded(),
                              tariff.tax_rate, tuple(lines), Decimal(us(pce) - us(start)) / 1_000_000,
                              Decimal(parking) / 1_000_000, Decimal(idle) / 1_000_000, pce, priced_until,
                              False, clamp, capped)


@st.composite
def ordinary_sessions(draw: st.DrawFn) -> tuple[SessionUsage, datetime]:
    """Rising readings strictly inside the charging window, a stop reading at or above the
    last one (or none): the cases whose price ADR 015 did not change."""
    start = draw(instants).replace(fold=0)  # fold means nothing in UTC
    length = timedelta(seconds=draw(st.integers(1, 30 * 3600)))
    active = draw(st.booleans())
    charging_end = start + length if active else start + length * draw(st.floats(0.05, 1))
    wh = meter_start = draw(st.integers(0, 1_000_000))
    offsets = sorted(set(draw(st.lists(st.floats(0.01, 0.99), max_size=8))))
    points = []
    for f in offsets:
        wh += draw(st.integers(0, 30_000))
        points.append((start + (charging_end - start) * f, wh))
    usage = SessionUsage(
        started_at=start,
        stopped_at=None if active else start + length,
        charging_ended_at=None if active or charging_end == start + length else charging_end,
        energy_samples=tuple(points),
        meter_start_wh=meter_start,
        meter_stop_wh=None if active else wh + draw(st.integers(0, 10_000)),
    )
    return usage, start + length


@settings(max_examples=300, deadline=None)
@given(tariffs(), ordinary_sessions())
def test_ordinary_sessions_price_exactly_as_before_adr_015(tariff: Tariff, session: tuple[SessionUsage, datetime]) -> None:
    usage, now = session
    _same(price_session(tariff, usage, now), _old_price(tariff, usage, now))


@settings(max_examples=100, deadline=None)
@given(tariffs(), streams())
def test_finishing_twice_or_after_a_round_trip_is_the_same_price(
    tariff: Tariff, stream: tuple[SessionUsage, datetime]
) -> None:
    usage, now = stream
    acc = fold_price(tariff, usage.started_at, usage.meter_start_wh, usage.energy_samples)
    first = _finish(acc, tariff, usage, now)
    _same(first, _finish(_round_trip(acc, "pb"), tariff, usage, now))
    _same(first, _finish(replace(acc), tariff, usage, now))


@settings(max_examples=300, deadline=None)
@given(tariffs(), instants, st.integers(0, 4 * 86_400 * 1_000_000))
def test_the_transitions_advance_looks_up_per_day_are_the_band_splits_boundaries(
    tariff: Tariff, after: datetime, span_us: int
) -> None:
    from services.billing.domain.running import _transitions

    upto = after + timedelta(microseconds=span_us)
    expected = [seg.start for seg in band_segments(tariff, after, upto + timedelta(microseconds=1))[1:]]
    assert _transitions(tariff, after, upto) == (expected if tariff.bands else [])


@settings(max_examples=300, deadline=None)
@given(tariffs(), instants, st.integers(0, 4 * 86_400 * 1_000_000))
def test_finish_splits_the_window_exactly_like_band_segments(tariff: Tariff, start: datetime, span_us: int) -> None:
    from services.billing.domain.running import _segments

    end = start + timedelta(microseconds=span_us)
    assert _segments(tariff, start, end) == band_segments(tariff, start, end)
