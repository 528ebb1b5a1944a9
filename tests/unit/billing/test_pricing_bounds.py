"""Pricing is bounded whatever the timestamps (issue 7: a station clock in 1970 billed decades).

For arbitrary usage (any instants datetime can hold, durations up to decades, samples
out of order, out of the window, going backwards) and arbitrary tariffs:
- pricing never raises;
- subtotal (before tax) <= energy_kWh x highest price_per_kwh + session_fee
  + capped minutes x (highest per-minute + idle per-minute), or the tariff's min_price
  when it is higher (a floor the operator set);
- the breakdown has a bounded number of lines, which does not grow with the duration.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.documents import cdr_to_dict
from services.billing.domain.cdr import decide_cdr
from services.billing.domain.money import PRICING_CONTEXT
from services.billing.domain.pricing import MAX_PRICED_DURATION, PriceBreakdown, SessionUsage, price_session
from services.billing.domain.tariff import Tariff

from .builders import a_band, a_tariff
from .test_pricing_properties import tariffs

UTC = timezone.utc
YEAR = timedelta(days=365)
_MIN = datetime(1, 1, 1, tzinfo=UTC)
_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

anywhen = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))
plausible = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
durations = st.one_of(
    st.integers(0, 3 * 86_400).map(lambda s: timedelta(seconds=s)),
    st.integers(0, 60 * 365 * 86_400).map(lambda s: timedelta(seconds=s)),  # up to 60 years
)
caps = st.sampled_from([timedelta(minutes=1), timedelta(hours=1), MAX_PRICED_DURATION, timedelta(days=30)])


def _shift(t: datetime, d: timedelta) -> datetime:
    """t + d, kept inside datetime's range."""
    try:
        return min(max(t + d, _MIN), _MAX)
    except OverflowError:
        return _MAX if d > timedelta(0) else _MIN


@st.composite
def absurd_usages(draw: st.DrawFn) -> tuple[SessionUsage, datetime]:
    start = draw(st.one_of(plausible, anywhen))
    stopped = _shift(start, draw(durations))
    samples = draw(st.lists(
        st.tuples(
            st.one_of(anywhen, st.floats(-0.5, 1.5).map(lambda f: _shift(start, (stopped - start) * f))),
            st.integers(0, 10**12),
        ),
        max_size=12,
    ))
    active = draw(st.booleans()) and draw(st.booleans())
    usage = SessionUsage(
        started_at=start,
        stopped_at=None if active else stopped,
        charging_ended_at=draw(st.none() | anywhen | st.just(_shift(start, (stopped - start) / 2))),
        energy_samples=tuple(samples),
        meter_start_wh=draw(st.integers(0, 10**12)),
        meter_stop_wh=None if active else draw(st.none() | st.integers(0, 10**12)),
    )
    return usage, stopped


def _highest_energy_price(t: Tariff) -> Decimal:
    return max([t.price_per_kwh] + [b.price_per_kwh for b in t.bands if b.price_per_kwh is not None])


def _highest_minute_price(t: Tariff) -> Decimal:
    return max([t.price_per_minute] + [b.price_per_minute for b in t.bands if b.price_per_minute is not None])


def _bound(t: Tariff, b: PriceBreakdown, cap: timedelta) -> Decimal:
    with localcontext(PRICING_CONTEXT):
        cap_minutes = Decimal(cap // timedelta(microseconds=1)) / 60_000_000
        bound = (
            Decimal(b.energy_wh) / 1000 * _highest_energy_price(t)
            + t.session_fee
            + cap_minutes * (_highest_minute_price(t) + t.idle_fee_per_minute)
        )
        return max(bound, t.min_price) if t.min_price is not None else bound


def _max_lines(t: Tariff, cap: timedelta) -> int:
    """Cuts are band walls and local midnight (both folds) on each local day the priced
    window touches, plus offset changes: lines <= cuts + 1, whatever the session's length."""
    walls = 1 + 2 * len(t.bands)
    days = math.ceil(cap / timedelta(days=1)) + 2
    return 2 * walls * days + 4


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(tariffs(), absurd_usages(), caps)
def test_pricing_never_raises_and_costs_at_most_energy_times_the_highest_price_plus_fees(
    tariff: Tariff, usage_and_end: tuple[SessionUsage, datetime], cap: timedelta
) -> None:
    usage, end = usage_and_end
    b = price_session(tariff, usage, end, max_duration=cap)

    assert b.energy_wh >= 0
    assert b.subtotal.amount <= _bound(tariff, b, cap)
    assert b.total_excl_tax.amount <= b.subtotal.rounded().amount
    assert sum(line.energy_wh for line in b.lines) == b.energy_wh
    assert b.charging_seconds + b.parking_seconds <= Decimal(cap // timedelta(microseconds=1)) / 1_000_000
    assert 1 <= len(b.lines) <= _max_lines(tariff, cap)


@settings(max_examples=150, deadline=timedelta(seconds=2))
@given(tariffs(), absurd_usages())
def test_a_cdr_of_any_session_is_small(tariff: Tariff, usage_and_end: tuple[SessionUsage, datetime]) -> None:
    usage, end = usage_and_end
    if usage.stopped_at is None:
        usage = SessionUsage(
            started_at=usage.started_at, stopped_at=end, charging_ended_at=usage.charging_ended_at,
            energy_samples=usage.energy_samples, meter_start_wh=usage.meter_start_wh, meter_stop_wh=usage.meter_stop_wh,
        )
    cdr = decide_cdr(None, "s", "cs", tariff, usage, datetime(2027, 1, 1, tzinfo=UTC))

    assert cdr is not None
    assert len(json.dumps(cdr_to_dict(cdr))) < 100_000


def test_the_breakdown_does_not_grow_with_the_duration() -> None:
    tariff = a_tariff(
        price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"), timezone="Europe/Berlin",
        bands=(a_band("18:00", "22:00", price_per_kwh=Decimal("0.45")), a_band("02:00", "05:00", days_of_week=(5, 6))),
    )
    stop = datetime(2026, 11, 28, 10, 40, tzinfo=UTC)
    for years in (1, 10, 56, 2000):
        usage = SessionUsage(started_at=stop - years * YEAR, stopped_at=stop, meter_start_wh=0, meter_stop_wh=10_000)
        t0 = time.perf_counter()
        b = price_session(tariff, usage, stop)
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.2, (years, elapsed)
        assert b.capped and b.energy_wh == 10_000
        assert b.charging_seconds == Decimal(72 * 3600)  # only the first 72 h are priced as time
        assert len(b.lines) <= _max_lines(tariff, MAX_PRICED_DURATION) == 54


def test_a_1970_start_prices_72_hours_of_time_and_all_the_energy() -> None:
    """Issue 7 repro: 10 kWh from 1970-01-01 was 299,368.82 EUR."""
    tariff = a_tariff(price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"), session_fee=Decimal("1.00"))
    stop = datetime(2026, 11, 28, 10, 40, tzinfo=UTC)
    usage = SessionUsage(
        started_at=datetime(1970, 1, 1, tzinfo=UTC), stopped_at=stop, meter_start_wh=0, meter_stop_wh=10_000,
        energy_samples=((stop - timedelta(minutes=30), 4_000),),
    )

    b = price_session(tariff, usage, stop)

    assert b.energy_cost.amount == Decimal("3.000")  # every kWh, although it flowed after the cap
    assert b.time_cost.amount == Decimal("43.20")  # 72 h x 60 x 0.01
    assert b.total_excl_tax.display() == "47.20"
    assert b.capped and len(b.lines) == 1 and b.priced_until == datetime(1970, 1, 4, tzinfo=UTC)


def test_a_session_within_the_bound_is_priced_exactly_as_before() -> None:
    tariff = a_tariff(price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"))
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    usage = SessionUsage(started_at=start, stopped_at=start + timedelta(hours=72), meter_start_wh=0, meter_stop_wh=1_000)

    b = price_session(tariff, usage, start)

    assert not b.capped and b.time_cost.amount == Decimal("43.20") and b.priced_until == usage.stopped_at


def test_instants_at_the_edges_of_datetime_do_not_overflow_in_any_zone() -> None:
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin"):
        tariff = a_tariff(price_per_minute=Decimal("0.01"), timezone=zone, bands=(a_band("00:30", "23:30"),))
        for start, stop in ((_MIN, _MIN + timedelta(hours=5)), (_MAX - timedelta(hours=5), _MAX), (_MIN, _MAX)):
            b = price_session(tariff, SessionUsage(started_at=start, stopped_at=stop, meter_stop_wh=5), stop)
            assert b.energy_wh == 5 and b.total_excl_tax.amount >= 0
