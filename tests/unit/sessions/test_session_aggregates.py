"""Sessions as bounded aggregates (ADR 015): what the session row keeps instead of its
samples, the running price, the bounds, documents of the previous version, and the cost
of an event not growing with the session's length (measured in state, not in time)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

from services.billing.domain.running import fold_price, tariff_fingerprint
from services.billing.domain.tariff import Tariff, TariffBand
from services.common import events as ev
from services.sessions.documents import legacy_samples, sample_from_row, sample_to_row, session_from_doc, session_to_doc
from services.sessions.domain import (
    MAX_IDLE_MARKS,
    MAX_SEQ_RANGES,
    Plausibility,
    Sample,
    apply,
    kept_register_readings,
    rebuild,
)

from .builders import (
    NOW, V16, SampleStore, a_16_session, a_register, a_started, an_ended, an_updated, at, meter_values, replay,
)

TARIFF = Tariff(
    id="t-1", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    bands=(TariffBand(start="10:25", end="11:05", price_per_kwh=Decimal("0.50")),),
)
POWER = "Power.Active.Import"


def a_16_start(meter_start: int = 1_000) -> ev.Envelope:
    return a_started(env=V16, meter_start_wh=meter_start, charging_state="", trigger_reason="")


# -- the running price ------------------------------------------------------------------
def test_the_price_accumulator_opens_at_the_start_and_follows_the_kept_readings() -> None:
    store = SampleStore()
    events = a_16_session(meter_start=1_000, meter_stop=8_500)
    s = replay(events, store=store, tariff=TARIFF)

    assert s.price is not None and store.rebuilds == []
    assert (s.price.tariff_id, s.price.tariff_fingerprint) == ("t-1", tariff_fingerprint(TARIFF))
    assert (s.price.opened_at, s.price.open_wh, s.price.last_at, s.price.last_wh) == (at(0), 1_000, at(30), 5_000)
    assert [t for t, _ in s.price.marks] == [at(25)]  # the band starts 25 minutes in
    readings = kept_register_readings(s, store.samples(s))
    assert readings == [(at(15), 3_000), (at(30), 5_000)]
    assert s.price == fold_price(TARIFF, at(0), 1_000, readings)  # the billing fold: the same arithmetic


def test_without_meter_start_the_price_opens_at_the_start_with_the_first_reading() -> None:
    s = replay([
        a_started(),
        an_updated(1, at_min=10, samples=(a_register(10, 20_000),)),
        an_updated(2, at_min=40, samples=(a_register(40, 26_000),)),
    ], tariff=TARIFF)
    assert s.price is not None and (s.price.opened_at, s.price.open_wh, s.price.last_wh) == (at(0), 20_000, 26_000)
    assert s.energy_anchor_wh == 20_000 and s.energy_wh == 6_000


def test_another_tariff_or_none_drops_the_accumulator_and_a_tariff_reopens_it_by_one_rebuild() -> None:
    start, mv1, mv2, stop = a_16_session()
    store = SampleStore()
    s = replay([start, mv1], store=store, tariff=TARIFF)
    edited = replace(TARIFF, price_per_kwh=Decimal("0.35"))

    out = apply(s, mv2, NOW, tariff=edited)
    assert out.rebuild == "price"  # readings past the opening point: only a fold can price them
    s = store.apply(s, mv2, tariff=edited)
    assert s.price is not None and s.price.tariff_fingerprint == tariff_fingerprint(edited)
    assert s.price == fold_price(edited, at(0), 1_000, kept_register_readings(s, store.samples(s)))

    dropped = apply(s, stop, NOW).session  # no tariff applies any more
    assert dropped.price is None and dropped.energy_wh == 7_500


def test_an_out_of_order_reading_rebuilds_the_price_like_the_fold() -> None:
    start, mv1, mv2, stop = a_16_session()
    store = SampleStore()
    s = replay([start, mv2, mv1, stop], store=store, tariff=TARIFF)
    assert store.rebuilds == ["out_of_order"]
    assert _same(s, replay([start, mv1, mv2, stop], tariff=TARIFF))


# -- aggregates ---------------------------------------------------------------------------
def test_peak_power_is_the_highest_total_or_sum_of_the_phases_at_one_time() -> None:
    s = replay([
        a_16_start(),
        meter_values(a_register(5, 3_000, "L1", POWER), a_register(5, 3_100, "L2", POWER), a_register(5, 2_900, "L3", POWER),
                     at_min=5, env=V16),
        meter_values(a_register(10, 7_000, measurand=POWER), at_min=10, env=V16),
        meter_values(a_register(15, 1_000, "L1", POWER), at_min=15, env=V16),
    ])
    assert s.peak_power_w == 9_000
    store = SampleStore()
    late_phase = replay([a_16_start(), meter_values(a_register(15, 1_000, "L1", POWER), at_min=15, env=V16),
                         meter_values(a_register(5, 1_000, "L2", POWER), at_min=16, env=V16)], store=store)
    assert store.rebuilds == ["out_of_order"] and late_phase.peak_power_w == 1_000


def test_seq_nos_are_kept_as_bounded_ranges() -> None:
    events = [a_started()] + [an_updated(n, at_min=n) for n in range(1, 400)]
    s = replay(events)
    assert s.seq_ranges == ((0, 399),) and not s.seq_gaps
    gappy = replay([a_started()] + [an_updated(2 * n, at_min=n) for n in range(1, 200)])
    assert len(gappy.seq_ranges) == MAX_SEQ_RANGES and gappy.seq_gaps
    assert apply(gappy, an_updated(398, at_min=1), NOW).session is gappy  # the recent ones are still known


def test_idle_marks_are_bounded_without_changing_when_charging_ended() -> None:
    events = [a_started()] + [an_updated(n, at_min=n, charging_state="Charging") for n in range(1, 30)]
    events += [an_updated(n, at_min=n, charging_state="SuspendedEV") for n in range(30, 500)]
    s = replay(events + [an_ended(seq_no=500, at_min=500)])
    assert len(s.idle_keys) <= MAX_IDLE_MARKS and s.charging_ended_at == at(30)


def test_samples_round_trip_through_store_rows() -> None:
    x = Sample(at(1), ev.ENERGY_REGISTER, 0.0, "Wh", "L1", raw_value="NaN", station_time=at(-9_999))
    assert sample_from_row(sample_to_row(x)) == x


# -- documents ----------------------------------------------------------------------------
# Written by the previous version (samples in the document, seen seqNos, thinning level):
# a_16_session()[:3] plus a MeterValues at 10:40 with an unparsable register and 7 kW.
LEGACY = json.loads("""{"id": "a6872786-c5da-5bf5-afb6-7cffc966a90d", "station_id": "CS-1", "transaction_id": "tx-1",
"id_token": "TOKEN-1", "authorization": "", "status": "active", "energy_wh": 4000, "started_at": "2026-11-28T10:00:00.000Z",
"stopped_at": null, "station_started_at": null, "station_stopped_at": null, "received_at": "2026-11-28T10:00:00.000Z",
"charging_ended_at": null, "abandoned_at": null, "abandon_reason": "", "evse_id": 1, "connector_id": 1,
"meter_start_wh": 1000, "meter_stop_wh": null, "stop_reason": "", "ocpp_version": "1.6", "remote_start_id": 0,
"issued_by": "", "meter_samples": [
{"timestamp": "2026-11-28T10:15:00.000Z", "measurand": "Energy.Active.Import.Register", "value": 3000.0, "unit": "Wh", "phase": ""},
{"timestamp": "2026-11-28T10:30:00.000Z", "measurand": "Energy.Active.Import.Register", "value": 5000.0, "unit": "Wh", "phase": ""},
{"timestamp": "2026-11-28T10:40:00.000Z", "measurand": "Energy.Active.Import.Register", "value": 0.0, "unit": "Wh", "phase": "",
 "excluded": true, "raw_value": "x"},
{"timestamp": "2026-11-28T10:40:00.000Z", "measurand": "Power.Active.Import", "value": 7000.0, "unit": "W", "phase": ""}],
"orphan": false, "suspect": true, "suspect_reasons": ["meter_not_a_number"], "clock_suspect": false, "hold": false,
"hold_reasons": [], "seq_gaps": false, "version": 4, "updated_at": "2026-11-28T12:00:00.000Z",
"_state": {"start_key": [0, "2026-11-28T10:00:00.000Z"], "end_key": null, "token_key": [0, "2026-11-28T10:00:00.000Z"],
"event_token": "TOKEN-1", "remote_token": "", "location_key": [0, "2026-11-28T10:00:00.000Z"], "last_charging_key": null,
"idle_keys": [], "sample_level": 0, "seen_seq_nos": [0], "flags": []}}""")


def test_a_document_of_the_previous_version_loads_with_its_samples_folded_in() -> None:
    s = session_from_doc(LEGACY)
    samples = legacy_samples(LEGACY)
    assert [(x.timestamp, x.measurand, x.raw_value) for x in samples] == [
        (at(15), ev.ENERGY_REGISTER, ""), (at(30), ev.ENERGY_REGISTER, ""), (at(40), ev.ENERGY_REGISTER, "x"), (at(40), POWER, ""),
    ]
    assert s.version == 4 and s.energy_wh == 4_000 and s.seq_ranges == ((0, 0),)
    assert (s.sample_count, s.excluded_count, s.peak_power_w, s.last_register) == (4, 1, 7_000, (at(30), 5_000))
    assert rebuild(s, samples) is s
    # what the same events give today
    mv = meter_values(replace(a_register(40, 0), raw_value="x"), a_register(40, 7_000, measurand=POWER), at_min=40, env=V16)
    assert _same(s, replay(a_16_session()[:3] + [mv]))
    # the runtime appends the legacy samples to the store; the next event is O(1) from there
    store = SampleStore()
    store.by_session[s.id] = list(samples)
    done = store.apply(s, a_16_session()[3])
    assert done.version == 5 and done.energy_wh == 7_500 and store.rebuilds == []
    assert "meter_samples" not in session_to_doc(done) and session_from_doc(session_to_doc(done)) == done


def test_the_document_round_trips_with_aggregates_and_price() -> None:
    store = SampleStore()
    s = replay(a_16_session()[:3], store=store, tariff=TARIFF, position=(2, 17))
    doc = json.loads(json.dumps(session_to_doc(s)))
    assert session_from_doc(doc) == s
    assert doc["_state"]["applied"] == [2, 17] and doc["price"]["tariff_id"] == "t-1"


# -- per-event cost flat in the session's length ---------------------------------------------
def _long_201(n: int) -> tuple[list[ev.Envelope], ev.Envelope]:
    """Started, then n Updated at 3-s intervals with a register, per-phase power and a
    current; the next event after them."""
    def upd(i: int) -> ev.Envelope:
        minute = i * 3 / 60
        return an_updated(i, at_min=minute, samples=(
            a_register(minute, 10_000 + i * 9), a_register(minute, 3_700, "L1", POWER), a_register(minute, 3_650, "L2", POWER),
            a_register(minute, 16.1, "L1", "Current.Import"),
        ))
    return [a_started(samples=(a_register(0, 10_000),))] + [upd(i) for i in range(1, n + 1)], upd(n + 1)


def test_an_event_touches_the_same_state_at_sample_10_and_at_sample_10000() -> None:
    sizes = {}
    for n in (3, 2_500):  # 4 samples per event: ~10 and ~10,000 samples
        store = SampleStore()
        events, nxt = _long_201(n)
        s = replay(events, store=store, tariff=TARIFF)
        out = apply(s, nxt, NOW, tariff=TARIFF)
        assert out.rebuild == "" and len(out.new_samples) == 4 and out.changed
        assert store.rebuilds == []
        sizes[n] = (len(json.dumps(session_to_doc(s))), len(json.dumps(session_to_doc(out.session))))
        assert out.session.energy_wh == (n + 1) * 9 and out.session.sample_count == 4 * (n + 1) + 1
        assert rebuild(out.session, store.samples(s) + list(out.new_samples), tariff=TARIFF) == out.session
    assert sizes[2_500][1] <= 1.2 * sizes[3][1]
    assert abs(sizes[2_500][1] - sizes[2_500][0]) <= abs(sizes[3][1] - sizes[3][0]) + 16  # the write does not grow


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return replace(a, version=0, updated_at=NOW, applied=None) == replace(b, version=0, updated_at=NOW, applied=None)


# -- repeats a 1.6 StopTransaction brings -------------------------------------------------------
def test_a_16_stop_repeating_the_begin_and_last_readings_rebuilds_nothing() -> None:
    start = a_16_start(meter_start=1_000)
    begin = meter_values(a_register(0, 1_000), at_min=0, env=V16)
    periodic = [meter_values(a_register(m, 1_000 + 100 * m), at_min=m, env=V16) for m in (15, 30, 45)]
    stop = an_ended(env=V16, at_min=60, meter_stop_wh=7_000,
                    samples=(a_register(0, 1_000), a_register(45, 5_500), a_register(60, 7_000)))
    store = SampleStore()
    s = replay([start, begin, *periodic, stop], store=store, tariff=TARIFF)
    assert store.rebuilds == [] and s.energy_wh == 6_000 and s.sample_count == 5
    assert _same(s, replay([start, begin, *periodic, stop], tariff=TARIFF))


def test_a_reading_earlier_than_its_whole_series_is_judged_without_a_rebuild() -> None:
    start = a_16_start(meter_start=1_000)
    periodic = [meter_values(a_register(m, 1_000 + 100 * m), at_min=m, env=V16) for m in (15, 30)]
    stop = an_ended(env=V16, at_min=60, meter_stop_wh=7_000, samples=(a_register(0, 1_000),))  # Transaction.Begin, new
    store = SampleStore()
    s = replay([start, *periodic, stop], store=store, tariff=TARIFF)
    assert store.rebuilds == [] and s.first_register == (at(0), 1_000) and s.sample_count == 3
    assert rebuild(s, store.samples(s), tariff=TARIFF) is s
    # ... unless it changes how the later readings are judged: at 22 kW the 15-minute reading
    # is no jump from meterStart (+5,000 Wh) but one from a Begin reading of 100 Wh (+5,900 Wh)
    rules = Plausibility(meter_max_power_kw=22)
    low = an_ended(env=V16, at_min=60, meter_stop_wh=7_000, samples=(a_register(0, 100),))
    store = SampleStore()
    s = replay([start, meter_values(a_register(15, 6_000), at_min=15, env=V16), low], store=store, rules=rules)
    assert store.rebuilds == ["out_of_order"] and rebuild(s, store.samples(s), rules) is s
    assert s.excluded_count == 1 and "meter_jump" in s.suspect_reasons
