"""The shapes a priced CDR is shown in: the REST shape (`services.billing.documents`:
`cdr_to_dict`, `breakdown_to_dict`) and OCPI 2.2.1 (`services.billing.codec`: `cdr_to_ocpi`)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from services.billing.codec import cdr_to_ocpi
from services.billing.documents import breakdown_to_dict, cdr_to_dict
from services.billing.domain.cdr import decide_cdr
from services.billing.domain.pricing import price_session

from .builders import NOW, a_band, a_session, a_tariff, at, samples

D = Decimal
TARIFF = a_tariff(price_per_kwh=D("0.30"), session_fee=D("1.00"), tax_rate=D("0.19"))
EVENING = a_band("18:00", "22:00", price_per_kwh=D("0.50"))


def test_the_cdr_dict_has_utc_millisecond_timestamps_and_money_objects() -> None:
    usage = a_session(started_at=at("17:30") + timedelta(microseconds=4_321), meter_stop_wh=12_500)
    cdr = decide_cdr(None, "sess-1", "CS-1", TARIFF, usage, NOW)
    assert cdr is not None
    d = cdr_to_dict(cdr)
    assert d["started_at"] == "2026-11-28T17:30:00.004Z"
    assert d["stopped_at"] == "2026-11-28T18:30:00.000Z"
    assert d["total_cost"] == {"amount": "4.75", "currency": "EUR"}
    assert d["total_cost_incl_tax"] == {"amount": "5.65", "currency": "EUR"}
    assert {"id", "session_id", "station_id", "version", "reason", "energy_wh", "tariff_id", "breakdown",
            "created_at"} <= d.keys()
    json.dumps(d)


def test_the_ocpi_cdr_has_one_charging_period_per_band_line_plus_parking() -> None:
    tariff = replace(TARIFF, bands=(a_band("18:00", "22:00", price_per_kwh=D("0.50")),), idle_fee_per_minute=D("0.10"))
    usage = a_session(stopped_at=at("19:00"), charging_ended_at=at("18:30"), meter_stop_wh=12_000)
    cdr = decide_cdr(None, "sess-1", "CS-1", tariff, usage, NOW)
    assert cdr is not None
    o = cdr_to_ocpi(cdr, country_code="DE", party_id="CSM", token_uid="04A1B2", tariff=tariff)
    json.dumps(o)
    assert (o["country_code"], o["party_id"], o["id"], o["auth_method"]) == ("DE", "CSM", "sess-1-v1", "AUTH_REQUEST")
    assert o["cdr_location"]["id"] == "CS-1" and o["cdr_token"]["uid"] == "04A1B2"
    assert o["start_date_time"] == "2026-11-28T17:30:00.000Z" and o["end_date_time"] == "2026-11-28T19:00:00.000Z"
    assert [p["dimensions"] for p in o["charging_periods"]] == [
        [{"type": "ENERGY", "volume": 6.0}, {"type": "TIME", "volume": 0.5}],
        [{"type": "ENERGY", "volume": 6.0}, {"type": "TIME", "volume": 0.5}],
        [{"type": "PARKING_TIME", "volume": 0.5}],
    ]
    # 6 * 0.30 + 6 * 0.50 + 1.00 + 30 min * 0.10 = 8.80 ; * 1.19 = 10.472
    assert o["total_cost"] == {"excl_vat": 8.8, "incl_vat": 10.47}
    assert (o["total_energy"], o["total_time"], o["total_parking_time"]) == (12.0, 1.5, 0.5)
    assert o["currency"] == "EUR" and o["tariffs"][0]["id"] == "tariff-1"
    assert o["tariffs"][0]["elements"][0]["restrictions"] == {"start_time": "18:00", "end_time": "22:00"}


def test_the_breakdown_dict_shows_display_amounts_and_lines() -> None:
    usage = a_session(energy_samples=samples(("17:45", 2_000), ("18:15", 8_000)), meter_stop_wh=12_000)
    tariff = a_tariff(price_per_kwh=D("0.30"), session_fee=D("1.00"), tax_rate=D("0.19"), bands=(EVENING,))
    d = breakdown_to_dict(price_session(tariff, usage, NOW))
    assert (d["energy_kwh"], d["subtotal"], d["tax"], d["total_incl_tax"]) == ("12.000", "6.00", "1.14", "7.14")
    assert d["lines"][1] == {
        "label": "18:00-22:00",
        "started_at": "2026-11-28T18:00:00.000Z",
        "ended_at": "2026-11-28T18:30:00.000Z",
        "kwh": "7.000",
        "minutes": "30.00",
        "price_per_kwh": "0.50",
        "price_per_minute": "0",
        "energy_cost": "3.50",
        "time_cost": "0.00",
        "cost": "3.50",
    }
