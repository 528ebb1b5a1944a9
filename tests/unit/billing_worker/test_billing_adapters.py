"""Snapshot -> usage (snapshots.py), CDR <-> stored document (documents.py: exact round trip),
OCPI rendering (codec.py)."""

from __future__ import annotations

import json
from decimal import Decimal

from services.billing.codec import cdr_to_ocpi, decode_cdr, encode_cdr
from services.billing.documents import cdr_from_doc, cdr_to_dict, cdr_to_doc, head_from_doc, register_readings
from services.billing.domain import Tariff, TariffBand, decide_cdr
from services.billing.snapshots import running_usage_from_snapshot, session_timing, usage_from_snapshot

from services.common.events import ENERGY_REGISTER
from services.common.store.port import MeterRow

from .builders import NOW, a_completed_session, at, changed, energy


def a_cdr(**tariff_overrides: object):
    tariff = Tariff(
        id="T1", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.05"),
        session_fee=Decimal("1.00"), idle_fee_per_minute=Decimal("0.10"), idle_grace_minutes=5,
        tax_rate=Decimal("0.19"),
        bands=(TariffBand(start="10:20", end="10:30", price_per_kwh=Decimal("0.4567")),),
        **tariff_overrides,  # type: ignore[arg-type]
    )
    snap = a_completed_session(charging_ended_at=at(30).replace(microsecond=500), stopped_at=at(45))
    usage = usage_from_snapshot(snap)
    assert usage is not None
    cdr = decide_cdr(None, snap.id, snap.station_id, tariff, usage, now=NOW)
    assert cdr is not None
    return cdr, snap, tariff


def test_stored_register_readings_become_integer_wh_and_other_samples_are_ignored() -> None:
    stored = [
        MeterRow(at(10), ENERGY_REGISTER, "", 3.0004, "kWh"),
        MeterRow(at(20), ENERGY_REGISTER, "", 5000.5, "Wh"),
        MeterRow(at(25), ENERGY_REGISTER, "L1", 2000.0, "Wh"),
        MeterRow(at(26), "Power.Active.Import", "", 11000.0, "W"),
        MeterRow(at(27), "", "", 6000.0, ""),
        MeterRow(at(28), ENERGY_REGISTER, "", 0.0, "Wh", raw_value="1e308"),
        MeterRow(at(29), ENERGY_REGISTER, "", 9.99e15, "Wh"),
    ]

    assert register_readings(stored) == [(at(10), 3000), (at(20), 5001), (at(27), 6000)]


def test_the_register_ends_at_the_energy_anchor_plus_the_sessions_energy() -> None:
    timing = session_timing(a_completed_session())
    assert timing is not None and (timing.open_wh, timing.end_wh) == (1000, 8500)
    assert (timing.started_at, timing.stopped_at) == (at(0), at(40))

    no_stop = session_timing(a_completed_session(meter_stop_wh=None, energy_wh=6000))
    assert no_stop is not None and (no_stop.open_wh, no_stop.end_wh) == (1000, 7000)


def test_a_session_without_register_readings_is_priced_with_its_reported_energy() -> None:
    snap = a_completed_session(meter_start_wh=None, meter_stop_wh=None, samples=(), energy_wh=4200)
    usage = usage_from_snapshot(snap)
    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (0, 4200)


def test_without_a_trusted_start_reading_energy_counts_from_the_first_kept_reading() -> None:
    snap = a_completed_session(meter_start_wh=None, meter_stop_wh=None, energy_wh=3000, samples=(
        energy(0, 41_000), energy(10, 42_000), energy(20, 43_000), energy(30, 44_000),
    ))
    assert snap.energy_anchor_wh == 41_000

    usage = usage_from_snapshot(snap, [(at(10), 42_000), (at(20), 43_000), (at(30), 44_000)])

    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (41_000, 44_000)
    assert usage.energy_samples == ((at(10), 42_000), (at(20), 43_000), (at(30), 44_000))


def test_a_register_that_really_starts_at_zero_is_kept() -> None:
    snap = a_completed_session(meter_start_wh=0, meter_stop_wh=3000, energy_wh=3000, samples=(energy(10, 1000),))
    usage = usage_from_snapshot(snap)
    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (0, 3000)


def test_the_snapshots_accumulator_is_used_only_for_the_tariff_it_was_opened_with() -> None:
    tariff = Tariff(id="T1", currency="EUR", price_per_kwh=Decimal("0.30"))
    snap = a_completed_session(priced_with=tariff)

    running = running_usage_from_snapshot(snap, tariff)

    assert running is not None and running.acc == snap.price and running.end_wh == 8500
    assert running_usage_from_snapshot(snap, Tariff(id="T1", currency="EUR", price_per_kwh=Decimal("0.31"))) is None
    assert running_usage_from_snapshot(snap, Tariff(id="T2", currency="EUR", price_per_kwh=Decimal("0.30"))) is None
    assert running_usage_from_snapshot(a_completed_session(), tariff) is None  # no accumulator
    # opened elsewhere than the session's start or anchor (e.g. the start arrived late)
    assert running_usage_from_snapshot(changed(snap, started_at=at(-5)), tariff) is None
    assert running_usage_from_snapshot(changed(snap, energy_anchor_wh=900), tariff) is None


def test_both_paths_give_the_same_cdr() -> None:
    tariff = Tariff(id="T1", currency="EUR", price_per_kwh=Decimal("0.30"),
                    bands=(TariffBand(start="10:15", end="10:25", price_per_kwh=Decimal("0.50")),))
    snap = a_completed_session(priced_with=tariff)
    running = running_usage_from_snapshot(snap, tariff)
    folded = usage_from_snapshot(snap, [(at(10), 3000), (at(20), 5000), (at(30), 7000)])
    assert running is not None and folded is not None

    a = decide_cdr(None, snap.id, snap.station_id, tariff, running, now=NOW)
    b = decide_cdr(None, snap.id, snap.station_id, tariff, folded, now=NOW)

    # register 4000 at 10:15, 6000 at 10:25: 2 kWh x 0.50 + 5.5 kWh x 0.30 = 2.65
    assert a == b and a is not None and a.total_cost.amount == Decimal("2.65")


def test_a_session_without_any_start_time_cannot_be_priced() -> None:
    assert usage_from_snapshot(a_completed_session(started_at=None, received_at=None)) is None


def test_the_stored_document_is_the_rest_shape_plus_what_republishing_and_ocpi_need() -> None:
    cdr, snap, _ = a_cdr()

    doc = cdr_to_doc(cdr, snap)

    assert {k: doc[k] for k in cdr_to_dict(cdr)} == cdr_to_dict(cdr)
    assert doc["session_version"] == snap.version and doc["currency"] == "EUR"
    assert doc["id_token"] == "TOKEN1" and doc["connector_id"] == 1
    assert doc["published"] is False
    json.dumps(doc)  # JSON-serializable, no Decimal or datetime left


def test_cdr_from_doc_rebuilds_the_exact_cdr_that_was_priced() -> None:
    cdr, snap, _ = a_cdr()

    doc = json.loads(json.dumps(cdr_to_doc(cdr, snap)))  # as the store gives it back

    assert cdr_from_doc(doc) == cdr


def test_cdr_from_doc_renders_the_same_ocpi_cdr_as_the_original() -> None:
    cdr, snap, tariff = a_cdr()
    doc = json.loads(json.dumps(cdr_to_doc(cdr, snap)))

    kw = {"country_code": "DE", "party_id": "CSM", "tariff": tariff}
    assert cdr_to_ocpi(cdr_from_doc(doc), **kw) == cdr_to_ocpi(cdr, **kw)
    ocpi = cdr_to_ocpi(cdr_from_doc(doc), country_code="DE", party_id="CSM")
    assert ocpi["id"] == cdr.id and ocpi["currency"] == "EUR"
    assert ocpi["total_cost"] == {"excl_vat": float(cdr.total_cost.amount), "incl_vat": float(cdr.total_cost_incl_tax.amount)}
    assert any(p["dimensions"][0]["type"] == "PARKING_TIME" for p in ocpi["charging_periods"])


def test_a_document_with_only_the_rest_shape_is_rebuilt_from_its_display_values() -> None:
    cdr, _, _ = a_cdr()
    doc = json.loads(json.dumps(cdr_to_dict(cdr)))

    rebuilt = cdr_from_doc(doc)

    assert rebuilt.total_cost == cdr.total_cost and rebuilt.total_cost_incl_tax == cdr.total_cost_incl_tax
    assert rebuilt.energy_wh == cdr.energy_wh and rebuilt.inputs_fingerprint == cdr.inputs_fingerprint
    assert cdr_to_ocpi(rebuilt, country_code="DE", party_id="CSM")["total_energy"] == 7.5


def test_the_head_of_a_stored_cdr_keeps_the_exact_stop_time_and_the_priced_session_version() -> None:
    cdr, snap, _ = a_cdr()
    head = head_from_doc(json.loads(json.dumps(cdr_to_doc(cdr, snap))))
    assert head.stopped_at == cdr.stopped_at and head.session_version == snap.version
    assert head.inputs_fingerprint == cdr.inputs_fingerprint and head.published is False


def test_the_published_record_carries_the_documents_values() -> None:
    cdr, snap, _ = a_cdr()
    doc = cdr_to_doc(cdr, snap)

    out = decode_cdr(encode_cdr(doc))

    for key in ("id", "session_id", "station_id", "version", "reason", "energy_wh", "tariff_id", "total_cost",
                "total_cost_incl_tax", "breakdown", "created_at", "inputs_fingerprint", "currency", "session_version"):
        assert out[key] == doc[key], key
