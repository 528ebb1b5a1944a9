"""Plausibility in the sessions domain (docs/plausibility.md): implausible station clocks
and meter values are kept, flagged and left out; sessions beyond the maxima are held."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.common import events as ev
from services.common.config import Settings
from services.sessions.documents import session_from_doc, session_to_doc
from services.sessions.domain import Plausibility, RemoteStart, apply

from .builders import (
    NOW, TX, V16, SampleStore, a_16_session, a_register, a_started, an_ended, an_envelope, an_updated, at, meter_values,
    replay, step,
)

UTC = timezone.utc
RX = {"received_at": at(0)}


def a_16_start(**body: object) -> ev.Envelope:
    return a_started(env={**V16, **RX}, charging_state="", trigger_reason="", **{"meter_start_wh": 1_000, **body})


def run(events: list[ev.Envelope], rules: Plausibility = Plausibility(), store: SampleStore | None = None):  # type: ignore[no-untyped-def]
    s = replay(events, store=store, rules=rules)
    assert s is not None
    return s


def test_the_default_rules_are_the_settings_defaults() -> None:
    assert Plausibility.from_settings(Settings()) == Plausibility()
    custom = Plausibility.from_settings(Settings(clock_floor="2020-01-01T00:00:00Z", meter_max_power_kw=22, session_max_energy_wh=5))
    assert custom.clock_floor == datetime(2020, 1, 1, tzinfo=UTC)
    assert (custom.meter_max_power_kw, custom.max_energy_wh) == (22.0, 5)


def test_a_reading_of_1e308_is_kept_excluded_and_left_out_of_energy() -> None:
    start, mv1, mv2, stop = a_16_session(meter_start=1_000, meter_stop=8_500)
    absurd = meter_values(a_register(20, 1e308), at_min=20, env=V16)
    store = SampleStore()
    s = replay([start, mv1, absurd, mv2], store=store)

    bad = [x for x in store.judged(s) if x.timestamp == at(20)]
    assert len(bad) == 1 and bad[0].excluded and bad[0].raw_value == "1e+308" and bad[0].value == 0.0
    assert s.energy_wh == 4_000  # meterStart 1000 -> last kept reading 5000
    assert "meter_not_a_number" in s.suspect_reasons and (s.sample_count, s.excluded_count) == (3, 1)
    assert replay([start, mv1, absurd, mv2, stop]).energy_wh == 7_500


def test_unusable_values_from_the_gateway_and_non_finite_floats_are_kept_as_text() -> None:
    nan_text = replace(a_register(15, 0), raw_value="NaN")
    store = SampleStore()
    s = replay([a_16_start(), meter_values(nan_text, a_register(16, float("inf")), at_min=16, env=V16)], store=store)
    assert [(x.raw_value, x.excluded, x.value) for x in store.judged(s)] == [("NaN", True, 0.0), ("inf", True, 0.0)]
    assert s.energy_wh == 0 and "meter_not_a_number" in s.suspect_reasons


def test_a_negative_energy_reading_is_excluded_but_a_negative_power_is_not() -> None:
    store = SampleStore()
    s = replay([
        a_16_start(),
        meter_values(a_register(10, -50), a_register(10, -300, measurand="Power.Active.Import"), at_min=10, env=V16),
        meter_values(a_register(20, 2_000), at_min=20, env=V16),
    ], store=store)
    by_measurand = {x.measurand: x for x in store.judged(s) if x.timestamp == at(10)}
    assert by_measurand[ev.ENERGY_REGISTER].excluded and not by_measurand["Power.Active.Import"].excluded
    assert s.energy_wh == 1_000 and "meter_negative" in s.suspect_reasons


def test_a_register_jump_beyond_the_power_bound_is_excluded_and_the_next_readings_still_count() -> None:
    rules = Plausibility(meter_max_power_kw=22)  # 22 kW: at most 5.5 kWh in 15 min (+ 1 min slack)
    events = [
        a_16_start(),
        meter_values(a_register(15, 5_000), at_min=15, env=V16),          # +4 kWh in 15 min: fine
        meter_values(a_register(30, 900_000), at_min=30, env=V16),        # +895 kWh in 15 min: a jump
        meter_values(a_register(45, 10_000), at_min=45, env=V16),         # +5 kWh in 30 min from 5000: fine
    ]
    store = SampleStore()
    s = run(events, rules, store)
    assert [(x.value, x.excluded) for x in store.judged(s, rules)] == [(5_000, False), (900_000, True), (10_000, False)]
    assert s.energy_wh == 9_000 and "meter_jump" in s.suspect_reasons and s.excluded_count == 1
    assert store.rebuilds == []  # judged against the marks, in O(1)
    # the same in any order: the 15-minute reading arriving last makes the 45-minute one no jump
    store = SampleStore()
    shuffled = run([events[0], events[2], events[3], events[1]], rules, store)
    assert store.rebuilds == ["out_of_order"]
    assert replace(shuffled, version=s.version, updated_at=s.updated_at) == s


def test_meter_stop_beyond_the_power_bound_falls_back_to_the_samples() -> None:
    rules = Plausibility(meter_max_power_kw=22)
    store = SampleStore()
    s = run([
        a_16_start(meter_start_wh=1_000),
        meter_values(a_register(30, 6_000), at_min=30, env=V16),
        an_ended(env={**V16, "received_at": at(60)}, at_min=60, meter_stop_wh=50_000_000),
    ], rules, store)
    assert s.status == "completed" and "meter_jump" in s.suspect_reasons
    assert s.energy_wh == 0  # one plausible reading only: last − first of the samples
    assert store.rebuilds == ["anchor"]  # meterStart is no longer trusted: the readings are judged again

    s = run([
        a_16_start(meter_start_wh=1_000),
        meter_values(a_register(10, 2_000), at_min=10, env=V16),
        meter_values(a_register(30, 6_000), at_min=30, env=V16),
        an_ended(env={**V16, "received_at": at(60)}, at_min=60, meter_stop_wh=50_000_000),
    ], rules)
    assert s.energy_wh == 4_000


def test_an_unusable_meter_start_is_flagged_and_energy_comes_from_the_samples() -> None:
    s = replay([
        a_16_start(meter_start_wh=-5),
        meter_values(a_register(10, 2_000), at_min=10, env=V16),
        meter_values(a_register(20, 3_500), at_min=20, env=V16),
    ])
    assert s.energy_wh == 1_500 and "meter_negative" in s.suspect_reasons
    huge = replay([a_16_start(meter_start_wh=2**62), an_ended(env=V16, meter_stop_wh=2**62 + 10)])
    assert huge.energy_wh == 0 and "meter_not_a_number" in huge.suspect_reasons


def test_energy_counts_only_wh_registers() -> None:
    kwh = replace(a_register(20, 3.5), unit="kWh")
    store = SampleStore()
    s = replay([a_16_start(), meter_values(a_register(10, 2_000), at_min=10, env=V16), meter_values(kwh, at_min=20, env=V16)], store=store)
    assert s.energy_wh == 1_000
    assert [x.excluded for x in store.judged(s)] == [False, True] and "meter_unit" in s.suspect_reasons


def test_a_start_dated_1970_is_ordered_and_billed_by_the_receive_time_and_held() -> None:
    received = at(0)
    start = a_started(env={**V16, "received_at": received}, station_time=datetime(1970, 1, 1, tzinfo=UTC),
                      meter_start_wh=1_000, charging_state="", trigger_reason="")
    stop = an_ended(env={**V16, "received_at": at(60)}, at_min=60, meter_stop_wh=11_000)
    s = replay([start, stop])

    assert (s.started_at, s.station_started_at) == (received, datetime(1970, 1, 1, tzinfo=UTC))
    assert (s.stopped_at, s.station_stopped_at) == (at(60), None)
    assert s.energy_wh == 10_000 and s.status == "completed"
    assert s.clock_suspect and "clock_before_floor" in s.suspect_reasons
    assert s.hold and s.hold_reasons == frozenset({"clock_suspect"})
    assert session_from_doc(session_to_doc(s)) == s


def test_year_1_and_year_9999_timestamps_do_not_overflow() -> None:
    year1 = datetime(1, 1, 1, tzinfo=UTC)
    year9999 = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    store = SampleStore()
    s = replay([
        a_started(env={**V16, **RX}, station_time=year1, meter_start_wh=0, charging_state="", trigger_reason=""),
        meter_values(replace(a_register(0, 500), timestamp=year9999), at_min=5, env={**V16, "received_at": at(5)}),
        an_ended(env={**V16, "received_at": at(30)}, at_min=30, meter_stop_wh=700),
    ], store=store)
    assert s.started_at == at(0) and s.station_started_at == year1
    sample = store.judged(s)[0]
    assert (sample.timestamp, sample.station_time) == (at(5), year9999)  # the envelope's receive time; as sent kept
    assert {"clock_before_floor", "clock_ahead"} <= s.suspect_reasons and s.energy_wh == 700
    assert session_from_doc(session_to_doc(s)) == s


def test_sessions_beyond_the_maxima_are_held() -> None:
    rules = Plausibility(max_duration=timedelta(hours=72), max_energy_wh=50_000)
    long = run([a_16_start(), an_ended(env={**V16, "received_at": at(73 * 60)}, at_min=73 * 60, meter_stop_wh=2_000)], rules)
    assert long.hold_reasons == frozenset({"duration_exceeds_max"})
    big = run([a_16_start(), an_ended(env={**V16, "received_at": at(600)}, at_min=600, meter_stop_wh=60_000)], rules)
    assert big.hold_reasons == frozenset({"energy_exceeds_max"}) and big.energy_wh == 59_000
    fine = run([a_16_start(), an_ended(env={**V16, "received_at": at(60)}, at_min=60, meter_stop_wh=6_000)], rules)
    assert not fine.hold and fine.hold_reasons == frozenset()


def test_the_authorization_comes_from_the_start() -> None:
    s = replay([a_16_start(id_token_status="Invalid"), an_ended(env=V16, meter_stop_wh=1_000)])
    assert s.authorization == "Invalid"
    assert session_to_doc(s)["authorization"] == "Invalid"


def test_an_abandoned_session_keeps_its_energy_and_a_later_end_completes_it() -> None:
    start, mv1, mv2, stop = a_16_session(meter_start=1_000, meter_stop=8_500)
    sid = replay([start]).id
    abandon = an_envelope(
        ev.SessionAbandoned(transaction_id=TX, session_id=sid, evse_id=1, connector_id=1, reason="boot"),
        station_time=at(40), received_at=at(41), gateway_id="sessions",
    )
    s = replay([start, mv1, mv2, abandon])
    assert (s.status, s.abandon_reason, s.abandoned_at, s.energy_wh) == ("abandoned", "boot", at(40), 4_000)
    assert apply(s, abandon, NOW).session is s

    done = step(s, stop)
    assert (done.status, done.energy_wh, done.abandon_reason) == ("completed", 7_500, "boot")
    assert replay([start, stop, mv2, abandon, mv1]) == replace(done, version=replay([start, stop, mv2, abandon, mv1]).version)
    assert apply(None, abandon, NOW).session is None  # nothing to abandon


def test_the_earliest_abandon_wins_in_any_order() -> None:
    start = a_16_start()
    sid = replay([start]).id

    def abandoned(reason: str, minute: float) -> ev.Envelope:
        return an_envelope(ev.SessionAbandoned(transaction_id=TX, session_id=sid, reason=reason), station_time=at(minute))

    a, b = abandoned("idle_timeout", 90), abandoned("connector_available", 30)
    one, two = replay([start, a, b]), replay([start, b, a])
    assert (one.abandon_reason, one.abandoned_at) == (two.abandon_reason, two.abandoned_at) == ("connector_available", at(30))


def test_a_remote_start_without_a_token_takes_the_commands_token_and_issuer() -> None:
    started = a_started(id_token="", remote_start_id=77, trigger_reason="RemoteStart")
    s = step(None, started, remote=RemoteStart(id_token="RFID-9", issued_by="api"))
    assert (s.id_token, s.issued_by, s.remote_start_id) == ("RFID-9", "api", 77)
    assert session_from_doc(session_to_doc(s)) == s

    # a token the station sends itself wins over the command's
    later = step(s, an_updated(1, at_min=5, id_token="STATION-TOKEN"))
    assert later.id_token == "STATION-TOKEN" and later.issued_by == "api"
    # without a matching command the session has no token (and says which remote start it was)
    bare = step(None, started)
    assert (bare.id_token, bare.remote_start_id, bare.issued_by) == ("", 77, "")


def test_a_location_naming_the_connector_wins_over_one_naming_only_the_evse() -> None:
    started = a_started(evse_id=2, connector_id=0)
    updated = an_updated(1, at_min=5, evse_id=2, connector_id=3)
    assert (replay([started, updated]).evse_id, replay([started, updated]).connector_id) == (2, 3)
    assert (replay([updated, started]).evse_id, replay([updated, started]).connector_id) == (2, 3)


def test_the_document_and_the_snapshot_carry_the_new_fields() -> None:
    from services.sessions import codec as snapshots

    s = replay([a_16_start(id_token_status="Blocked"), meter_values(replace(a_register(5, 0), raw_value="x"), at_min=5, env=V16)])
    doc = session_to_doc(s)
    snap = snapshots.decode_session(snapshots.encode_session(s))
    for key in ("authorization", "clock_suspect", "suspect_reasons", "hold", "hold_reasons", "abandoned_at",
                "abandon_reason", "station_started_at", "station_stopped_at", "remote_start_id", "issued_by", "status"):
        assert key in doc and key in snap, key
        assert doc[key] == snap[key], key
    assert (doc["sample_count"], doc["excluded_count"]) == (1, 1) and "meter_not_a_number" in doc["suspect_reasons"]
    assert "meter_samples" not in doc
