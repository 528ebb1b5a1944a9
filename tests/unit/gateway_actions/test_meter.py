from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.events import ENERGY_REGISTER, MeterSample
from services.gateway.meter import first_register_wh, last_register_wh, samples_16, samples_201, station_time

from .builders import NOW, at, ts


def one_16(**sv: object) -> MeterSample:
    samples = samples_16([{"timestamp": ts(), "sampledValue": [sv]}], NOW)
    assert len(samples) == 1
    return samples[0]


def one_201(**sv: object) -> MeterSample:
    samples = samples_201([{"timestamp": ts(), "sampledValue": [sv]}], NOW)
    assert len(samples) == 1
    return samples[0]


def test_a_bare_16_value_is_an_energy_register_in_wh_with_the_spec_defaults() -> None:
    s = one_16(value="1234")
    assert (s.value, s.unit, s.measurand, s.context, s.location, s.phase) == (
        1234.0, "Wh", ENERGY_REGISTER, "Sample.Periodic", "Outlet", "")
    assert s.timestamp == at()


@pytest.mark.parametrize("unit, value, expected, base", [
    ("kWh", "0.1", 100.0, "Wh"),
    ("kW", "7.4", 7400.0, "W"),
    ("kvarh", "2", 2000.0, "varh"),
    ("kvar", "0.5", 500.0, "var"),
    ("kVA", "11", 11000.0, "VA"),
    ("K", "300.15", 27.0, "Celsius"),
    ("Fahrenheit", "212", 100.0, "Celsius"),
    ("Celcius", "21", 21.0, "Celsius"),
    ("Percent", "80", 80.0, "Percent"),
    ("A", "16", 16.0, "A"),
])
def test_16_units_are_normalized_to_base_units(unit: str, value: str, expected: float, base: str) -> None:
    s = one_16(value=value, unit=unit)
    assert (s.value, s.unit) == (expected, base)


@pytest.mark.parametrize("uom, value, expected", [
    ({"unit": "Wh", "multiplier": 3}, 1.5, (1500.0, "Wh")),
    ({"unit": "kWh", "multiplier": -1}, 12, (1200.0, "Wh")),
    ({"unit": "W", "multiplier": -2}, 12345, (123.45, "W")),
    ({}, 7, (7.0, "Wh")),
    ({"unit": "%"}, 55, (55.0, "Percent")),
])
def test_201_multipliers_and_units_are_applied(uom: dict, value: float, expected: tuple[float, str]) -> None:
    s = one_201(value=value, unitOfMeasure=uom)
    assert (s.value, s.unit) == expected


@given(st.decimals(min_value=0, max_value=10**6, places=3))
def test_kwh_strings_scale_to_wh_exactly(kwh: Decimal) -> None:
    assert one_16(value=str(kwh), unit="kWh").value == float(kwh * 1000)


@pytest.mark.parametrize("text, raw", [
    ("abc", "abc"), ("NaN", "NaN"), ("Infinity", "Infinity"), ("1,5", "1,5"), ("1e308", "1e308"),
    ("1e-400", "1e-400"), ("", '""'), ("9" * 300, "9" * 256),
])
def test_unusable_16_values_are_kept_raw_with_value_zero(text: str, raw: str) -> None:
    noted: list[tuple[str, str]] = []
    samples = samples_16([{"timestamp": ts(), "sampledValue": [{"value": text, "unit": "kWh"}, {"value": "1"}]}], NOW, lambda f, d: noted.append((f, d)))
    assert [(s.value, s.raw_value, s.unit) for s in samples] == [(0.0, raw, "kWh"), (1.0, "", "Wh")]
    assert [f for f, _ in noted] == ["meterValue.sampledValue.value"]
    assert first_register_wh(samples) == 1  # a raw value is never a register reading


def test_signed_16_values_are_still_skipped() -> None:
    assert samples_16([{"timestamp": ts(), "sampledValue": [{"value": "3f00", "format": "SignedData"}, {"value": "1"}]}], NOW)[0].value == 1.0
    assert samples_16([{"timestamp": ts(), "sampledValue": [{"value": "3f00", "format": "SignedData"}]}], NOW) == ()


@pytest.mark.parametrize("value, uom, raw", [
    (1e308, {"unit": "Wh"}, "1e+308"),
    (2**70, {"unit": "Wh"}, str(2**70)),
    (1e15, {"unit": "MWh"}, "1000000000000000.0"),        # bounded as sent, not once in Wh
    (5, {"unit": "Wh", "multiplier": 2**40}, "5"),
    ("NaN", {"unit": "Wh"}, "NaN"),
    ({"x": 1}, {"unit": "Wh"}, '{"x":1}'),
])
def test_unusable_201_values_are_kept_raw_with_value_zero(value: object, uom: dict, raw: str) -> None:
    samples = samples_201([{"timestamp": ts(), "sampledValue": [{"value": value, "unitOfMeasure": uom}]}], NOW)
    assert [(s.value, s.raw_value) for s in samples] == [(0.0, raw)]
    assert last_register_wh(samples) is None


@pytest.mark.parametrize("sent, expected", [("kwh", (1500.0, "Wh")), ("KWH", (1500.0, "Wh")), ("wh", (1.5, "Wh")), ("furlong", (1.5, "furlong"))])
def test_201_units_match_case_insensitively_and_unknown_units_are_kept_unscaled(sent: str, expected: tuple) -> None:
    noted: list[str] = []
    s = samples_201([{"timestamp": ts(), "sampledValue": [{"value": 1.5, "unitOfMeasure": {"unit": sent}}]}], NOW, lambda f, d: noted.append(f))[0]
    assert (s.value, s.unit, s.raw_value) == (*expected, "")
    assert noted == ["meterValue.sampledValue.unitOfMeasure.unit"]


def test_a_201_signed_value_keeps_its_numeric_reading() -> None:
    s = one_201(value=10, signedMeterValue={"signedMeterData": "x", "signingMethod": "y", "encodingMethod": "z", "publicKey": "k"})
    assert s.value == 10.0


def test_an_unparsable_timestamp_falls_back_to_the_receive_time() -> None:
    samples = samples_16([{"timestamp": "yesterday", "sampledValue": [{"value": "1"}]}], NOW)
    assert samples[0].timestamp == NOW
    assert station_time("yesterday") is None and station_time(None) is None


def test_station_times_with_offsets_are_converted_to_utc() -> None:
    assert station_time("2026-11-28T06:21:16+02:00") == at()


def test_meter_start_and_stop_use_only_the_total_outlet_register() -> None:
    samples = samples_201([{"timestamp": ts(), "sampledValue": [
        {"value": 5, "phase": "L1"},
        {"value": 6, "location": "EV"},
        {"value": 7, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
        {"value": 1000.5},
        {"value": 2000.4},
    ]}], NOW)
    assert (first_register_wh(samples), last_register_wh(samples)) == (1001, 2000)
    assert first_register_wh(samples[:3]) is None and last_register_wh(()) is None


def test_values_parsed_as_decimal_by_the_core_are_accepted() -> None:
    assert one_201(value=Decimal("0.1"), unitOfMeasure={"unit": "kWh"}).value == 100.0
    assert [s.raw_value for s in samples_201([{"timestamp": ts(), "sampledValue": [{"value": True}]}], NOW)] == ["true"]
