"""Snapshot -> usage, CDR <-> stored document (exact round trip, OCPI rendering)."""

from __future__ import annotations

import json
from decimal import Decimal

from services.billing.adapters import cdr_from_doc, cdr_to_doc, head_from_doc, usage_from_snapshot
from services.billing.codec import SnapshotSample, decode_cdr, encode_cdr
from services.billing.domain import Tariff, TariffBand, cdr_to_dict, cdr_to_ocpi, decide_cdr

from .builders import NOW, a_completed_session, at, energy


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


def test_energy_register_samples_become_integer_wh_and_other_samples_are_ignored() -> None:
    snap = a_completed_session(samples=(
        SnapshotSample(at(10), "Energy.Active.Import.Register", 3.0004, "kWh"),
        SnapshotSample(at(20), "Energy.Active.Import.Register", 5000.5, "Wh"),
        SnapshotSample(at(25), "Energy.Active.Import.Register", 2000.0, "Wh", phase="L1"),
        SnapshotSample(at(26), "Power.Active.Import", 11000.0, "W"),
        SnapshotSample(at(27), "", 6000.0, ""),
    ))

    usage = usage_from_snapshot(snap)

    assert usage is not None
    assert usage.energy_samples == ((at(10), 3000), (at(20), 5001), (at(27), 6000))
    assert (usage.meter_start_wh, usage.meter_stop_wh) == (1000, 8500)
    assert (usage.started_at, usage.stopped_at) == (at(0), at(40))


def test_a_missing_stop_reading_ends_the_register_at_the_last_sample() -> None:
    usage = usage_from_snapshot(a_completed_session(meter_stop_wh=0))
    assert usage is not None and usage.meter_stop_wh is None


def test_a_session_without_register_readings_is_priced_with_its_reported_energy() -> None:
    usage = usage_from_snapshot(a_completed_session(meter_start_wh=0, meter_stop_wh=0, samples=(), energy_wh=4200))
    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (0, 4200)


def test_an_unreported_start_reading_is_anchored_on_the_sessions_energy() -> None:
    snap = a_completed_session(meter_start_wh=0, meter_stop_wh=0, energy_wh=3000, samples=(
        energy(0, 41_000), energy(10, 42_000), energy(20, 43_000), energy(30, 44_000),
    ))

    usage = usage_from_snapshot(snap)

    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (41_000, None)


def test_a_register_that_really_starts_at_zero_is_kept() -> None:
    snap = a_completed_session(meter_start_wh=0, meter_stop_wh=3000, energy_wh=3000, samples=(energy(10, 1000),))
    usage = usage_from_snapshot(snap)
    assert usage is not None and (usage.meter_start_wh, usage.meter_stop_wh) == (0, 3000)


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
