from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.billing.domain.tariff import (
    BASE_LABEL,
    TariffError,
    band_segments,
)
from services.billing.codec import tariff_from_dict, tariff_to_dict

from .builders import a_band, a_tariff, a_tariff_dict, at

UTC = timezone.utc


def test_a_tariff_survives_a_round_trip_through_the_api_shape() -> None:
    d = a_tariff_dict()
    t = tariff_from_dict(d)
    assert t.price_per_kwh == Decimal("0.30")
    assert t.bands[0].days_of_week == (0, 1, 2, 3, 4)
    assert tariff_to_dict(t) == d
    assert tariff_from_dict(tariff_to_dict(t)) == t


def test_money_is_written_with_at_least_the_currency_minor_digits() -> None:
    t = a_tariff(price_per_kwh=Decimal("0.3"), price_per_minute=Decimal("0.0125"), session_fee=Decimal(1))
    d = tariff_to_dict(t)
    assert (d["price_per_kwh"], d["price_per_minute"], d["session_fee"]) == ("0.30", "0.0125", "1.00")
    assert tariff_to_dict(a_tariff(currency="JPY", price_per_kwh=Decimal(30)))["price_per_kwh"] == "30"


def test_missing_optional_fields_default_to_zero_and_utc() -> None:
    t = tariff_from_dict({"id": "t", "currency": "EUR", "price_per_kwh": "0.30"})
    assert (t.session_fee, t.tax_rate, t.timezone, t.bands, t.default) == (Decimal(0), Decimal(0), "UTC", (), False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"price_per_kwh": "-0.01"}, "price_per_kwh must not be negative"),
        ({"session_fee": "-1"}, "session_fee must not be negative"),
        ({"currency": "eur"}, "currency must be a 3-letter"),
        ({"currency": "EURO"}, "currency must be a 3-letter"),
        ({"tax_rate": "1"}, "tax_rate must be in [0, 1)"),
        ({"tax_rate": "-0.1"}, "tax_rate must be in [0, 1)"),
        ({"price_per_kwh": 0.3}, "must be a decimal string"),
        ({"price_per_kwh": "abc"}, "must be a decimal string"),
        ({"min_price": "5", "max_price": "1"}, "min_price 5 is greater than max_price 1"),
        ({"idle_grace_minutes": -5}, "idle_grace_minutes must be a non-negative integer"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA zone"),
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"bands": [{"start": "25:00", "end": "06:00"}]}, "bands[0]: band.start must be a time \"HH:MM\""),
        ({"bands": [{"start": "18:00", "end": "6:00"}]}, "bands[0]: band.end must be a time \"HH:MM\""),
        ({"bands": [{"start": "18:00", "end": "22:00", "days_of_week": [7]}]}, "days_of_week must be integers"),
        ({"bands": [{"start": "18:00", "end": "22:00", "price_per_kwh": "-1"}]},
         "band.price_per_kwh must not be negative"),
        ({"bands": [{"start": "18:00"}]}, "bands[0].end is required"),
    ],
)
def test_invalid_tariffs_are_rejected_with_a_message_naming_the_field(override: dict[str, Any], message: str) -> None:
    with pytest.raises(TariffError) as e:
        tariff_from_dict(a_tariff_dict(**override))
    assert message in str(e.value)


def test_tariff_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        a_tariff(price_per_kwh=Decimal("-1"))


def test_a_band_wrapping_midnight_covers_late_evening_and_early_morning() -> None:
    night = a_band("22:00", "06:00")
    assert night.contains(at("23:30")) and night.contains(at("05:59"))
    assert not night.contains(at("06:00")) and not night.contains(at("12:00"))


def test_a_band_from_midnight_to_midnight_covers_the_whole_day() -> None:
    assert all(a_band("00:00", "00:00").contains(at(f"{h:02d}:00")) for h in range(24))


def test_days_of_week_restrict_a_band_to_the_local_weekday() -> None:
    weekend = a_band("00:00", "00:00", days_of_week=(5, 6))
    saturday, monday = at("12:00"), at("12:00") + timedelta(days=2)
    assert weekend.contains(saturday) and not weekend.contains(monday)


def test_the_first_matching_band_wins() -> None:
    t = a_tariff(bands=(a_band("18:00", "20:00"), a_band("00:00", "00:00")))
    assert t.band_index_at(at("19:00")) == 0
    assert t.band_index_at(at("21:00")) == 1


def test_bands_are_evaluated_in_the_tariffs_local_time() -> None:
    t = a_tariff(bands=(a_band("18:00", "22:00"),), timezone="Europe/Berlin")  # CET, UTC+1 in November
    assert t.band_index_at(at("16:59")) is None
    assert t.band_index_at(at("17:00")) == 0


def test_a_window_is_split_at_band_boundaries_into_consecutive_segments() -> None:
    t = a_tariff(bands=(a_band("18:00", "22:00"),))
    segs = band_segments(t, at("17:30"), at("22:30"))
    assert [(s.start, s.end, s.band_index) for s in segs] == [
        (at("17:30"), at("18:00"), None),
        (at("18:00"), at("22:00"), 0),
        (at("22:00"), at("22:30"), None),
    ]
    assert t.band_label(None) == BASE_LABEL and t.band_label(0) == "18:00-22:00"


def _utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_band_split_is_exact_when_clocks_spring_forward_over_the_band_start() -> None:
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 local never happens,
    # so the 02:30-04:00 band starts at the jump and lasts one real hour.
    t = a_tariff(bands=(a_band("02:30", "04:00"),), timezone="Europe/Berlin")
    segs = band_segments(t, _utc(2026, 3, 29, 0), _utc(2026, 3, 29, 3))
    assert [(s.start, s.end, s.band_index) for s in segs] == [
        (_utc(2026, 3, 29, 0), _utc(2026, 3, 29, 1), None),
        (_utc(2026, 3, 29, 1), _utc(2026, 3, 29, 2), 0),
        (_utc(2026, 3, 29, 2), _utc(2026, 3, 29, 3), None),
    ]


def test_band_split_visits_the_band_twice_when_clocks_fall_back() -> None:
    # Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:30-03:00 happens twice.
    t = a_tariff(bands=(a_band("02:30", "03:00"),), timezone="Europe/Berlin")
    segs = band_segments(t, _utc(2026, 10, 25, 0), _utc(2026, 10, 25, 3))
    in_band = [(s.start, s.end) for s in segs if s.band_index == 0]
    assert in_band == [
        (_utc(2026, 10, 25, 0, 30), _utc(2026, 10, 25, 1)),
        (_utc(2026, 10, 25, 1, 30), _utc(2026, 10, 25, 2)),
    ]


def test_what_a_tariff_memoizes_is_not_part_of_its_identity() -> None:
    used = a_tariff(bands=(a_band("18:00", "22:00", price_per_kwh=Decimal("0.50")),), timezone="Europe/Berlin")
    fresh = tariff_from_dict(tariff_to_dict(used))
    before = (repr(used), hash(used), tariff_to_dict(used))

    day = at("12:00").date()
    transitions = used.band_transitions_on(day)
    assert used.fingerprint  # both memos filled on `used`, none on `fresh`

    assert transitions == (datetime(2026, 11, 28, 17, tzinfo=UTC), datetime(2026, 11, 28, 21, tzinfo=UTC))
    assert used.band_transitions_on(day) is transitions  # memoized
    assert used == fresh and hash(used) == hash(fresh) == before[1]
    assert (repr(used), tariff_to_dict(used)) == (before[0], before[2])
    assert used.fingerprint == fresh.fingerprint


def test_the_band_transitions_of_a_day_are_the_boundaries_of_its_band_split() -> None:
    tariff = a_tariff(bands=(a_band("22:00", "06:00", price_per_kwh=Decimal("0.20")),), timezone="Europe/Berlin")
    # 2026-10-25: Berlin leaves summer time at 03:00 CEST (01:00 UTC)
    day = datetime(2026, 10, 25, tzinfo=UTC)

    found = tariff.band_transitions_on(day.date())

    split = band_segments(tariff, day - timedelta(microseconds=1), day + timedelta(days=1))
    assert found == tuple(seg.start for seg in split[1:])
    assert found == (datetime(2026, 10, 25, 5, tzinfo=UTC), datetime(2026, 10, 25, 21, tzinfo=UTC))
