from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.billing.domain.pricing import SessionUsage, price_session

from .builders import NOW, a_band, a_session, a_tariff, at, samples

D = Decimal
EVENING = a_band("18:00", "22:00", price_per_kwh=D("0.50"))


def test_energy_price_plus_session_fee_plus_tax_gives_exact_totals() -> None:
    tariff = a_tariff(price_per_kwh=D("0.30"), session_fee=D("1.00"), tax_rate=D("0.19"))
    b = price_session(tariff, a_session(meter_start_wh=1_000, meter_stop_wh=13_500), NOW)
    # 12.5 kWh * 0.30 = 3.75; + 1.00 = 4.75; * 1.19 = 5.6525
    assert b.energy_wh == 12_500
    assert b.total_excl_tax.display() == "4.75"
    assert b.total_incl_tax.display() == "5.65"
    assert b.tax_display.display() == "0.90"
    assert b.total_excl_tax.currency == "EUR"


def test_a_session_spanning_a_band_change_pays_each_kwh_at_the_price_of_its_time() -> None:
    # register: 0 at 17:30, 2000 at 17:45, 8000 at 18:15, 12000 at 18:30 -> 5000 Wh at 18:00
    usage = a_session(energy_samples=samples(("17:45", 2_000), ("18:15", 8_000)), meter_stop_wh=12_000)
    b = price_session(a_tariff(price_per_kwh=D("0.30"), bands=(EVENING,)), usage, NOW)
    assert [(line.label, line.kwh, line.minutes) for line in b.lines] == [
        ("base", D(5), D(30)),
        ("18:00-22:00", D(7), D(30)),
    ]
    assert [line.cost.display() for line in b.lines] == ["1.50", "3.50"]
    assert b.total_excl_tax.display() == "5.00"


def test_band_changes_are_evaluated_in_the_tariffs_timezone() -> None:
    # 16:30-17:30 UTC is 17:30-18:30 in Berlin (CET)
    usage = a_session(started_at=at("16:30"), stopped_at=at("17:30"), meter_stop_wh=12_000)
    tariff = a_tariff(price_per_kwh=D("0.30"), bands=(EVENING,), timezone="Europe/Berlin")
    b = price_session(tariff, usage, NOW)
    assert [line.kwh for line in b.lines] == [D(6), D(6)]  # no samples: uniform over time
    assert b.total_excl_tax.display() == "4.80"


def test_time_is_charged_per_minute_with_band_overrides() -> None:
    tariff = a_tariff(price_per_minute=D("0.05"), bands=(a_band("18:00", "22:00", price_per_minute=D("0.10")),))
    b = price_session(tariff, a_session(), NOW)
    assert b.time_cost.display() == "4.50"  # 30 min * 0.05 + 30 min * 0.10
    assert b.energy_cost.display() == "0.00"


def test_time_is_measured_to_the_second() -> None:
    usage = a_session(stopped_at=at("17:30") + timedelta(minutes=10, seconds=30))
    b = price_session(a_tariff(price_per_minute=D("0.10")), usage, NOW)
    assert b.time_cost.amount == D("1.05")


def test_parking_after_charging_pays_the_idle_fee_beyond_the_grace_period() -> None:
    tariff = a_tariff(idle_fee_per_minute=D("0.20"), idle_grace_minutes=15)
    usage = a_session(charging_ended_at=at("18:00"), stopped_at=at("18:40"))
    b = price_session(tariff, usage, NOW)
    assert b.idle_cost.display() == "5.00"  # (40 - 15) min * 0.20
    assert b.parking_seconds == 40 * 60 and b.idle_seconds == 25 * 60
    assert b.charging_seconds == 30 * 60


def test_parking_within_the_grace_period_is_free() -> None:
    tariff = a_tariff(idle_fee_per_minute=D("0.20"), idle_grace_minutes=15)
    b = price_session(tariff, a_session(charging_ended_at=at("18:20"), stopped_at=at("18:30")), NOW)
    assert b.idle_cost.amount == 0


def test_time_price_covers_charging_time_only_not_parking() -> None:
    tariff = a_tariff(price_per_minute=D("0.10"))
    b = price_session(tariff, a_session(charging_ended_at=at("18:00"), stopped_at=at("18:30")), NOW)
    assert b.time_cost.display() == "3.00"


def test_the_minimum_price_lifts_a_cheap_session_and_tax_is_applied_after() -> None:
    tariff = a_tariff(price_per_kwh=D("0.30"), min_price=D("2.00"), tax_rate=D("0.19"))
    b = price_session(tariff, a_session(meter_stop_wh=3_000), NOW)  # 0.90
    assert (b.total_excl_tax.display(), b.total_incl_tax.display(), b.clamp) == ("2.00", "2.38", "min")
    assert b.unclamped_subtotal.display() == "0.90"


def test_the_maximum_price_caps_an_expensive_session() -> None:
    tariff = a_tariff(price_per_kwh=D("0.30"), max_price=D("10.00"), tax_rate=D("0.19"))
    b = price_session(tariff, a_session(meter_stop_wh=50_000), NOW)  # 15.00
    assert (b.total_excl_tax.display(), b.total_incl_tax.display(), b.clamp) == ("10.00", "11.90", "max")


def test_yen_totals_have_no_decimals_and_round_half_up() -> None:
    tariff = a_tariff(currency="JPY", price_per_kwh=D(30), tax_rate=D("0.10"))
    b = price_session(tariff, a_session(meter_stop_wh=12_350), NOW)
    # 12.35 kWh * 30 = 370.5 -> 371 ; 370.5 * 1.1 = 407.55 -> 408
    assert (b.total_excl_tax.display(), b.total_incl_tax.display()) == ("371", "408")


def test_the_total_is_rounded_once_from_unrounded_components() -> None:
    tariff = a_tariff(price_per_kwh=D("0.3333"), price_per_minute=D("0.0125"))
    b = price_session(tariff, a_session(stopped_at=at("18:15"), meter_stop_wh=12_345), NOW)
    # energy 12.345 * 0.3333 = 4.1145885 (shows 4.11); time 45 * 0.0125 = 0.5625 (shows 0.56)
    assert (b.energy_cost.display(), b.time_cost.display()) == ("4.11", "0.56")
    assert b.total_excl_tax.display() == "4.68"  # round(4.6770885), not 4.11 + 0.56 = 4.67


def test_an_active_session_is_priced_up_to_now_with_the_latest_meter_value() -> None:
    usage = a_session(stopped_at=None, meter_stop_wh=None, energy_samples=samples(("17:40", 1_000), ("17:50", 3_000)))
    b = price_session(a_tariff(price_per_kwh=D("0.30"), price_per_minute=D("0.01")), usage, at("18:00"))
    assert b.energy_wh == 3_000 and b.priced_until == at("18:00")
    assert b.total_excl_tax.display() == "1.20"  # 3 kWh * 0.30 + 30 min * 0.01


def test_an_active_session_without_samples_has_no_energy_yet() -> None:
    usage = a_session(stopped_at=None, meter_stop_wh=None)
    b = price_session(a_tariff(price_per_kwh=D("0.30"), session_fee=D("0.50")), usage, at("17:45"))
    assert b.energy_wh == 0 and b.total_excl_tax.display() == "0.50"


def test_a_meter_that_went_backwards_bills_no_energy_and_is_flagged_suspect() -> None:
    tariff = a_tariff(price_per_kwh=D("0.30"), session_fee=D("1.00"))
    b = price_session(tariff, a_session(meter_start_wh=5_000, meter_stop_wh=4_000), NOW)
    assert b.energy_wh == 0 and b.suspect
    assert b.total_excl_tax.display() == "1.00"


def test_a_regular_session_is_not_suspect() -> None:
    assert not price_session(a_tariff(), a_session(), NOW).suspect


def test_unsorted_and_duplicated_samples_give_the_same_price_as_clean_ones() -> None:
    clean = samples(("17:45", 2_000), ("18:15", 8_000))
    messy = (clean[1], clean[0], (clean[0][0], 1_500), clean[1])
    tariff = a_tariff(price_per_kwh=D("0.30"), bands=(EVENING,))
    assert a_session(energy_samples=messy) == a_session(energy_samples=clean)
    assert price_session(tariff, a_session(energy_samples=messy), NOW) == price_session(
        tariff, a_session(energy_samples=clean), NOW
    )


def test_a_zero_length_session_still_bills_its_energy_and_fee() -> None:
    usage = a_session(stopped_at=at("17:30"), meter_stop_wh=100)
    b = price_session(a_tariff(price_per_kwh=D("1.00"), session_fee=D("0.25")), usage, NOW)
    assert b.total_excl_tax.display() == "0.35" and len(b.lines) == 1


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SessionUsage(started_at=at("17:30").replace(tzinfo=None))
