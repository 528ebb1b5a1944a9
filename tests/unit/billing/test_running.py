"""The running price accumulator (ADR 015): examples of each rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from services.billing.domain.pricing import price_session
from services.billing.codec import accumulator_from_dict, accumulator_from_pb, accumulator_to_dict
from services.billing.domain.running import (
    StaleAccumulator,
    accumulator_matches,
    advance_price,
    finish_price,
    fold_price,
    open_price,
    tariff_fingerprint,
)
from services.common.codec import sessions_pb2

from .builders import NOW, a_band, a_session, a_tariff, at, samples

D = Decimal
EVENING = a_band("18:00", "22:00", price_per_kwh=D("0.50"))
TARIFF = a_tariff(price_per_kwh=D("0.30"), bands=(EVENING,))


def test_crossing_a_band_transition_marks_the_register_interpolated_there() -> None:
    acc = open_price(TARIFF, at("17:30"), 0)
    acc = advance_price(acc, TARIFF, at("17:45"), 2_000)
    assert acc is not None and acc.marks == ()
    acc = advance_price(acc, TARIFF, at("18:15"), 8_000)
    assert acc is not None
    assert acc.marks == ((at("18:00"), D("5000.000000")),)  # halfway between 2000 and 8000
    assert (acc.last_at, acc.last_wh) == (at("18:15"), 8_000)


def test_a_repeated_reading_is_a_no_op_an_older_one_asks_for_a_refold() -> None:
    acc = advance_price(open_price(TARIFF, at("17:30"), 0), TARIFF, at("17:45"), 2_000)
    assert acc is not None
    assert advance_price(acc, TARIFF, at("17:45"), 2_000) is acc
    assert advance_price(acc, TARIFF, at("17:40"), 1_000) is None
    assert advance_price(acc, TARIFF, at("17:45"), 2_500) is None  # same instant, other value


def test_readings_at_or_before_the_opening_never_count() -> None:
    acc = open_price(TARIFF, at("17:30"), 1_000)
    assert advance_price(acc, TARIFF, at("17:00"), 50_000) is acc
    assert advance_price(acc, TARIFF, at("17:30"), 3_000) is acc


def test_the_register_is_monotone_a_lower_reading_is_clamped_up() -> None:
    acc = fold_price(TARIFF, at("17:30"), 0, samples(("17:40", 3_000), ("17:50", 2_000)))
    assert (acc.last_at, acc.last_wh) == (at("17:50"), 3_000)


def test_finish_at_now_prices_an_active_session_like_price_session() -> None:
    usage = a_session(stopped_at=None, meter_stop_wh=None, energy_samples=samples(("17:45", 2_000), ("18:15", 8_000)))
    acc = fold_price(TARIFF, usage.started_at, 0, usage.energy_samples)
    running = finish_price(acc, TARIFF, now=at("18:20"))
    assert running == price_session(TARIFF, usage, at("18:20"))
    # 5 kWh before 18:00 at 0.30, 3 kWh after at 0.50
    assert [line.kwh for line in running.lines] == [D(5), D(3)]
    assert running.total_excl_tax.display() == "3.00"


def test_what_the_register_rose_after_the_charging_end_goes_to_the_last_priced_line() -> None:
    # charging ended 18:10 (in the evening band); a reading at 18:20 says 9000: all of it
    # after 18:00 is the evening line's, nothing is lost, nothing is priced twice
    usage = a_session(
        charging_ended_at=at("18:10"),
        energy_samples=samples(("17:45", 2_000), ("18:15", 8_000), ("18:20", 9_000)),
        meter_stop_wh=9_000,
    )
    b = price_session(TARIFF, usage, NOW)
    assert [line.kwh for line in b.lines] == [D(5), D(4)]
    assert b.lines[-1].ended_at == at("18:10") and b.energy_wh == 9_000


def test_a_stop_reading_below_a_sample_wins_and_the_breakdown_is_suspect() -> None:
    usage = a_session(energy_samples=samples(("17:45", 6_000), ("18:15", 12_000)), meter_stop_wh=7_000)
    b = price_session(TARIFF, usage, NOW)
    # the 18:00 transition interpolates to 9000, lowered to the stop register 7000
    assert [line.kwh for line in b.lines] == [D(7), D(0)]
    assert b.energy_wh == 7_000 and b.suspect


def test_a_transition_after_the_last_reading_interpolates_towards_the_stop() -> None:
    usage = a_session(energy_samples=samples(("17:40", 1_000),), meter_stop_wh=6_000)  # 17:40 .. 18:30: 5 kWh
    b = price_session(TARIFF, usage, NOW)
    # 1 kWh by 17:40, then 2 of the 5 kWh left in the 20 of 50 minutes before 18:00
    assert [line.kwh for line in b.lines] == [D(3), D(3)]


def test_finishing_with_another_tariff_or_another_version_of_it_is_refused() -> None:
    acc = fold_price(TARIFF, at("17:30"), 0, samples(("17:45", 2_000)))
    with pytest.raises(StaleAccumulator):
        finish_price(acc, replace(TARIFF, price_per_kwh=D("0.31")), now=NOW)
    with pytest.raises(StaleAccumulator):
        finish_price(acc, replace(TARIFF, id="other"), now=NOW)
    finish_price(acc, replace(TARIFF, default=True), now=NOW)  # the default flag is not the price


def test_the_fingerprint_ignores_how_a_price_is_written_and_the_default_flag() -> None:
    assert tariff_fingerprint(a_tariff(price_per_kwh=D("0.3"))) == tariff_fingerprint(
        a_tariff(price_per_kwh=D("0.300"), default=True)
    )
    assert tariff_fingerprint(a_tariff(price_per_kwh=D("0.3"))) != tariff_fingerprint(a_tariff(price_per_kwh=D("0.31")))
    assert tariff_fingerprint(TARIFF) != tariff_fingerprint(replace(TARIFF, timezone="Europe/Berlin"))


def test_an_accumulator_folded_with_a_shorter_bound_cannot_be_finished_with_a_longer_one() -> None:
    daily = a_tariff(bands=(a_band("00:00", "12:00", price_per_kwh=D("0.10")),))
    readings = [(at("17:30") + timedelta(hours=h), 1_000 * h) for h in range(1, 60)]
    short = fold_price(daily, at("17:30"), 0, readings, max_duration=timedelta(hours=10))
    finish_price(short, daily, now=at("17:30") + timedelta(hours=60), max_duration=timedelta(hours=10))
    with pytest.raises(StaleAccumulator):
        finish_price(short, daily, now=at("17:30") + timedelta(hours=60), max_duration=timedelta(hours=48))


def test_the_number_of_marks_is_bounded_by_the_pricing_bound() -> None:
    daily = a_tariff(bands=(a_band("00:00", "12:00", price_per_kwh=D("0.10")),))
    readings = [(at("17:30") + timedelta(hours=h), 1_000 * h) for h in range(1, 24 * 30)]
    acc = fold_price(daily, at("17:30"), 0, readings, max_duration=timedelta(hours=72))
    assert len(acc.marks) == 6  # two transitions a day, three days


def test_matching_checks_tariff_start_and_opening_register() -> None:
    acc = open_price(TARIFF, at("17:30"), 100)
    assert accumulator_matches(acc, TARIFF, at("17:30"), 100)
    assert not accumulator_matches(acc, TARIFF, at("17:31"), 100)
    assert not accumulator_matches(acc, TARIFF, at("17:30"), 0)
    assert not accumulator_matches(acc, replace(TARIFF, session_fee=D(1)), at("17:30"), 100)
    assert not accumulator_matches(None, TARIFF, at("17:30"), 100)


def test_no_accumulator_in_the_message_reads_as_none_and_garbage_dicts_are_refused() -> None:
    assert accumulator_from_pb(sessions_pb2.Session().price) is None
    good = accumulator_to_dict(fold_price(TARIFF, at("17:30"), 0, samples(("18:15", 8_000))))
    assert accumulator_from_dict(good).marks == ((at("18:00"), D("5333.333333")),)
    for bad in ({**good, "open_wh": 1.5}, {**good, "marks": [["2026-11-28T18:00:00Z", "1e999999"]]},
                {**good, "last_wh": -1}, {**good, "opened_at": "yesterday"}):
        with pytest.raises((ValueError, TypeError, KeyError)):
            accumulator_from_dict(bad)
