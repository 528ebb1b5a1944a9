"""Properties of price_session over random tariffs (bands, time zones with DST) and sessions."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.domain.cdr import decide_cdr
from services.billing.domain.money import PRICING_CONTEXT, Money
from services.billing.domain.pricing import PriceBreakdown, SessionUsage, price_session
from services.billing.domain.tariff import Tariff, TariffBand
from services.billing.codec import tariff_from_dict, tariff_to_dict

UTC = timezone.utc
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]

prices = st.decimals(min_value=0, max_value=2, places=4)
optional_prices = st.none() | prices
hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
days = st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(tuple)
bands = st.builds(TariffBand, start=hhmm, end=hhmm, days_of_week=days,
                  price_per_kwh=optional_prices, price_per_minute=optional_prices)


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    low = draw(st.none() | st.decimals(min_value=0, max_value=5, places=2))
    high = draw(st.none() | st.decimals(min_value=0, max_value=50, places=2))
    if low is not None and high is not None and low > high:
        low, high = high, low
    return Tariff(
        id="t",
        currency=draw(st.sampled_from(["EUR", "JPY", "KWD"])),
        price_per_kwh=draw(prices),
        price_per_minute=draw(prices),
        session_fee=draw(prices),
        idle_fee_per_minute=draw(prices),
        idle_grace_minutes=draw(st.integers(0, 60)),
        tax_rate=draw(st.decimals(min_value=0, max_value="0.27", places=3)),
        min_price=low,
        max_price=high,
        bands=tuple(draw(st.lists(bands, max_size=3))),
        timezone=draw(st.sampled_from(ZONES)),
    )


# around the 2026 DST changes in both hemispheres, and any time of year
instants = st.sampled_from([
    datetime(2026, 3, 28, 20, tzinfo=UTC), datetime(2026, 10, 24, 20, tzinfo=UTC),
    datetime(2026, 4, 4, 10, tzinfo=UTC), datetime(2026, 3, 7, 12, tzinfo=UTC),
]) | st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC))
durations = st.integers(0, 36 * 3600 * 1_000_000).map(lambda us: timedelta(microseconds=us))


@st.composite
def usages(draw: st.DrawFn) -> SessionUsage:
    start = draw(instants)
    length = draw(durations)
    stopped = start + length
    charging_end = start + length * draw(st.floats(0, 1))
    meter_start = draw(st.integers(0, 10_000_000))
    n = draw(st.integers(0, 6))
    offsets = sorted(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    energies = sorted(draw(st.lists(st.integers(0, 100_000), min_size=n, max_size=n)))
    sampled = tuple((start + length * f, meter_start + e) for f, e in zip(offsets, energies))
    active = draw(st.booleans()) and draw(st.booleans())
    return SessionUsage(
        started_at=start,
        stopped_at=None if active else stopped,
        charging_ended_at=draw(st.none() | st.just(charging_end)),
        energy_samples=sampled,
        meter_start_wh=meter_start,
        meter_stop_wh=None if active else meter_start + draw(st.integers(-1_000, 150_000)),
    )


def _price(tariff: Tariff, usage: SessionUsage) -> PriceBreakdown:
    now = usage.stopped_at or usage.started_at + timedelta(hours=2)
    return price_session(tariff, usage, now)


@settings(max_examples=300, deadline=None)
@given(tariffs(), usages())
def test_totals_are_the_clamped_sum_of_unrounded_parts_rounded_once(tariff: Tariff, usage: SessionUsage) -> None:
    b = _price(tariff, usage)
    with localcontext(PRICING_CONTEXT):
        parts = b.energy_cost.amount + b.time_cost.amount + b.idle_cost.amount + b.session_fee.amount
        if tariff.min_price is not None:
            parts = max(parts, tariff.min_price)
        if tariff.max_price is not None:
            parts = min(parts, tariff.max_price)
        assert b.subtotal.amount == parts
        assert b.total_excl_tax == Money(parts, tariff.currency).rounded()
        assert b.total_incl_tax == Money(parts * (1 + tariff.tax_rate), tariff.currency).rounded()


@settings(max_examples=300, deadline=None)
@given(tariffs(), usages())
def test_no_amount_is_ever_negative(tariff: Tariff, usage: SessionUsage) -> None:
    b = _price(tariff, usage)
    amounts = [b.energy_cost, b.time_cost, b.idle_cost, b.session_fee, b.subtotal, b.tax,
               b.total_excl_tax, b.total_incl_tax, b.tax_display]
    amounts += [line.cost for line in b.lines]
    assert all(m.amount >= 0 for m in amounts)
    assert b.energy_wh >= 0 and all(line.energy_wh >= 0 and line.seconds >= 0 for line in b.lines)


@settings(max_examples=300, deadline=None)
@given(tariffs(), usages())
def test_splitting_by_band_conserves_energy_and_time(tariff: Tariff, usage: SessionUsage) -> None:
    b = _price(tariff, usage)
    assert sum(line.energy_wh for line in b.lines) == b.energy_wh
    assert sum(line.seconds for line in b.lines) == b.charging_seconds
    assert b.lines[0].started_at == usage.started_at
    assert b.lines[-1].ended_at == b.charging_ended_at
    assert all(x.ended_at == y.started_at for x, y in zip(b.lines, b.lines[1:]))


@settings(max_examples=300, deadline=None)
@given(tariffs(), usages())
def test_each_line_is_priced_by_the_band_in_force_throughout_it(tariff: Tariff, usage: SessionUsage) -> None:
    b = _price(tariff, usage)
    for line in b.lines:
        assert tariff.band_index_at(line.started_at) == line.band_index
        if line.ended_at > line.started_at:
            assert tariff.band_index_at(line.ended_at - timedelta(microseconds=1)) == line.band_index
    assert all(x.band_index != y.band_index for x, y in zip(b.lines, b.lines[1:]))


@settings(max_examples=200, deadline=None)
@given(tariffs(), usages(), prices)
def test_with_one_price_everywhere_band_energy_costs_sum_to_energy_times_price(
    tariff: Tariff, usage: SessionUsage, price: Decimal
) -> None:
    same = tuple(replace(band, price_per_kwh=price) for band in tariff.bands)
    tariff = replace(tariff, price_per_kwh=price, bands=same)
    b = _price(tariff, usage)
    expected = Decimal(b.energy_wh) * price / 1000
    assert b.energy_cost.amount == expected
    with localcontext(PRICING_CONTEXT):
        assert sum(line.energy_cost.amount for line in b.lines) == expected


@settings(max_examples=100, deadline=None)
@given(tariffs(), usages(), st.randoms())
def test_sample_order_and_duplicates_do_not_change_the_price(
    tariff: Tariff, usage: SessionUsage, rnd: random.Random
) -> None:
    shuffled = list(usage.energy_samples) * 2
    rnd.shuffle(shuffled)
    assert _price(tariff, replace(usage, energy_samples=tuple(shuffled))) == _price(tariff, usage)


@settings(max_examples=100, deadline=None)
@given(tariffs(), usages())
def test_redelivering_a_stopped_session_never_yields_a_second_cdr(tariff: Tariff, usage: SessionUsage) -> None:
    if usage.stopped_at is None:
        return
    first = decide_cdr(None, "s", "cs", tariff, usage, datetime(2027, 1, 1, tzinfo=UTC))
    again = decide_cdr(first, "s", "cs", tariff_from_dict(tariff_to_dict(tariff)), usage,
                       datetime(2027, 1, 2, tzinfo=UTC))
    assert first is not None and again is None


@settings(max_examples=200, deadline=None)
@given(tariffs())
def test_every_valid_tariff_survives_the_api_round_trip(tariff: Tariff) -> None:
    assert tariff_from_dict(tariff_to_dict(tariff)) == tariff
