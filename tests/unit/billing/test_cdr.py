from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.billing.domain.cdr import Cdr, decide_cdr

from .builders import NOW, a_session, a_tariff, at, samples

D = Decimal
TARIFF = a_tariff(price_per_kwh=D("0.30"), session_fee=D("1.00"), tax_rate=D("0.19"))
LATER = NOW + timedelta(hours=1)


def first_cdr() -> Cdr:
    cdr = decide_cdr(None, "sess-1", "CS-1", TARIFF, a_session(meter_stop_wh=12_500), NOW)
    assert cdr is not None
    return cdr


def test_the_first_cdr_of_a_session_is_version_1_with_reason_initial() -> None:
    cdr = first_cdr()
    assert (cdr.id, cdr.version, cdr.reason, cdr.energy_wh) == ("sess-1-v1", 1, "initial", 12_500)
    assert (cdr.total_cost.display(), cdr.total_cost_incl_tax.display()) == ("4.75", "5.65")
    assert cdr.tariff_id == "tariff-1" and cdr.created_at == NOW


def test_replaying_the_same_inputs_produces_no_second_cdr() -> None:
    assert decide_cdr(first_cdr(), "sess-1", "CS-1", TARIFF, a_session(meter_stop_wh=12_500), LATER) is None


def test_the_same_inputs_in_a_different_shape_are_still_a_replay() -> None:
    clean = samples(("17:45", 2_000), ("18:00", 5_000))
    v1 = decide_cdr(None, "s", "CS-1", TARIFF, a_session(energy_samples=clean), NOW)
    shuffled = a_session(energy_samples=(clean[1], clean[0], clean[1]), charging_ended_at=at("18:30"))
    same_prices_new_spelling = replace(TARIFF, price_per_kwh=D("0.3000"), default=True)
    assert decide_cdr(v1, "s", "CS-1", same_prices_new_spelling, shuffled, LATER) is None


def test_a_late_stop_produces_version_2_with_reason_late_stop() -> None:
    v1 = first_cdr()
    late = a_session(stopped_at=at("19:00"), meter_stop_wh=14_000)
    v2 = decide_cdr(v1, "sess-1", "CS-1", TARIFF, late, LATER)
    assert v2 is not None
    assert (v2.id, v2.version, v2.reason, v2.energy_wh) == ("sess-1-v2", 2, "late_stop", 14_000)
    assert v2.total_cost.display() == "5.20"
    assert decide_cdr(v2, "sess-1", "CS-1", TARIFF, late, LATER) is None


def test_a_late_meter_value_produces_a_new_version_with_reason_late_meter_value() -> None:
    v1 = first_cdr()
    corrected = a_session(meter_stop_wh=12_500, energy_samples=samples(("18:00", 6_000)))
    v2 = decide_cdr(v1, "sess-1", "CS-1", TARIFF, corrected, LATER)
    assert v2 is not None and (v2.version, v2.reason) == (2, "late_meter_value")


def test_re_rating_with_another_tariff_produces_a_new_version_with_reason_tariff_change() -> None:
    cheaper = replace(TARIFF, id="tariff-2", price_per_kwh=D("0.20"))
    v2 = decide_cdr(first_cdr(), "sess-1", "CS-1", cheaper, a_session(meter_stop_wh=12_500), LATER)
    assert v2 is not None
    assert (v2.reason, v2.tariff_id, v2.total_cost.display()) == ("tariff_change", "tariff-2", "3.50")


def test_an_other_change_takes_the_reason_hint_or_correction() -> None:
    changed = a_session(meter_stop_wh=12_500, charging_ended_at=at("18:10"))
    hinted = decide_cdr(first_cdr(), "sess-1", "CS-1", TARIFF, changed, LATER, reason_hint="dispute")
    plain = decide_cdr(first_cdr(), "sess-1", "CS-1", TARIFF, changed, LATER)
    assert hinted is not None and hinted.reason == "dispute"
    assert plain is not None and plain.reason == "correction"


@dataclass(frozen=True)
class StoredHead:
    session_id: str
    version: int
    stopped_at: datetime
    inputs_fingerprint: str


def test_the_stored_head_of_the_previous_cdr_is_enough_to_decide() -> None:
    v1 = first_cdr()
    head = StoredHead(v1.session_id, v1.version, v1.stopped_at, v1.inputs_fingerprint)
    assert decide_cdr(head, "sess-1", "CS-1", TARIFF, a_session(meter_stop_wh=12_500), LATER) is None
    corrected = a_session(meter_stop_wh=13_000)
    v2 = decide_cdr(head, "sess-1", "CS-1", TARIFF, corrected, LATER)
    assert v2 is not None and (v2.version, v2.reason) == (2, "late_meter_value")


def test_the_fingerprint_is_stable_and_names_its_format() -> None:
    assert first_cdr().inputs_fingerprint == first_cdr().inputs_fingerprint
    assert first_cdr().inputs_fingerprint.startswith("cdrfp2-")


def test_a_cdr_needs_a_stopped_session() -> None:
    with pytest.raises(ValueError, match="stopped"):
        decide_cdr(None, "s", "CS-1", TARIFF, a_session(stopped_at=None), NOW)


def test_the_previous_cdr_must_belong_to_the_same_session() -> None:
    with pytest.raises(ValueError, match="belongs to session"):
        decide_cdr(first_cdr(), "other", "CS-1", TARIFF, a_session(), NOW)
