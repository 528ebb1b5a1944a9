from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.common import events as ev
from services.common.timeutil import to_ocpp
from services.sessions.documents import session_from_doc, session_to_doc
from services.sessions.domain import Session, apply, session_id, session_ref

from .builders import (
    NOW,
    STATION,
    T0,
    TX,
    V16,
    a_16_session,
    a_201_session,
    SampleStore,
    a_register,
    a_started,
    an_ended,
    an_updated,
    at,
    meter_values,
    replay,
    step,
)


def test_a_16_session_start_meter_values_stop_gives_meter_stop_minus_meter_start() -> None:
    s = replay(a_16_session(meter_start=1_000, meter_stop=8_500))

    assert s.energy_wh == 7_500
    assert s.status == "completed"
    assert (s.started_at, s.stopped_at) == (at(0), at(60))
    assert s.charging_ended_at == at(60)
    assert not s.orphan and not s.suspect and not s.seq_gaps
    assert (s.id_token, s.evse_id, s.connector_id, s.ocpp_version) == ("TOKEN-1", 1, 1, "1.6")
    assert s.id == session_id(STATION, TX)


def test_an_active_16_session_counts_energy_from_meter_start_to_the_latest_register() -> None:
    s = replay(a_16_session(meter_start=1_000)[:3])

    assert s.status == "active"
    assert s.stopped_at is None and s.charging_ended_at is None
    assert s.energy_wh == 4_000


def test_a_201_session_gives_energy_from_the_register_samples() -> None:
    store = SampleStore()
    s = replay(a_201_session(), store=store)

    assert s.energy_wh == 6_000
    assert s.status == "completed"
    assert s.stop_reason == "EVDisconnected"
    assert s.meter_start_wh is None and s.meter_stop_wh is None
    assert [(x.timestamp, x.measurand) for x in store.judged(s)] == [
        (at(0), ev.ENERGY_REGISTER),
        (at(15), ev.ENERGY_REGISTER),
        (at(30), ev.ENERGY_REGISTER),
        (at(30), "Power.Active.Import"),
        (at(45), ev.ENERGY_REGISTER),
        (at(60), ev.ENERGY_REGISTER),
    ]
    assert s.seq_ranges == ((0, 4),)
    assert (s.sample_count, s.excluded_count, s.first_sample_at, s.last_sample_at) == (6, 0, at(0), at(60))
    assert (s.first_register, s.last_register, s.peak_power_w) == ((at(0), 10_000), (at(60), 16_000), 7_400)
    assert s.energy_anchor_wh == 10_000 and store.rebuilds == []


def test_charging_ends_when_the_201_charging_state_leaves_charging() -> None:
    assert replay(a_201_session()).charging_ended_at == at(45)


def test_charging_ended_at_is_the_end_of_the_last_charging_period() -> None:
    events = [
        a_started(),
        an_updated(1, at_min=10, charging_state="SuspendedEV"),
        an_updated(2, at_min=20, charging_state="Charging"),
        an_updated(3, at_min=40, charging_state="SuspendedEVSE"),
        an_updated(4, at_min=50, charging_state="EVConnected"),
        an_ended(seq_no=5, at_min=60),
    ]
    assert replay(events).charging_ended_at == at(40)
    assert replay(events[:3]).charging_ended_at is None  # charging again, still active


def test_the_end_closes_charging_when_no_state_left_charging_before() -> None:
    s = replay([a_started(), an_updated(1, at_min=10), an_ended(seq_no=2, at_min=30)])
    assert s.charging_ended_at == at(30)


def test_applying_an_event_twice_changes_nothing() -> None:
    s, store = None, SampleStore()
    for e in a_201_session() + a_16_session():  # the same transaction: the 1.6 events come late
        s = store.apply(s, e) if s is None or session_ref(e)[0] == s.id else s  # type: ignore[index]
        version = s.version
        assert store.apply(s, e, NOW + timedelta(minutes=1)) is s  # (a rebuild, if asked for, changes nothing)
        assert s.version == version
    for session in (a_201_session(), a_16_session()):
        s = replay(session)
        again = apply(s, session[-1], NOW + timedelta(minutes=1))  # the latest event, as such: not even a rebuild
        assert again.session is s and not again.changed
        assert again.new_samples == () and again.rebuild == ""


def test_a_redelivered_record_at_or_below_the_applied_position_is_skipped() -> None:
    started, u1, *_ = a_201_session()
    s = apply(None, started, NOW, position=(3, 100)).session
    assert s.applied == (3, 100)
    assert apply(s, u1, NOW, position=(3, 100)) == apply(s, u1, NOW, position=(3, 99)) == type(apply(s, u1, NOW))(s, False)
    moved = apply(s, u1, NOW, position=(4, 7))  # another partition (a repartition): applied
    assert moved.changed and moved.session.applied == (4, 7) and moved.session.energy_wh == 2_500
    assert apply(s, u1, NOW, position=(3, 101)).session.applied == (3, 101)


def test_the_version_counts_real_changes_only() -> None:
    events = a_201_session()
    s = replay(events)
    assert s.version == len(events)
    assert apply(s, events[2], NOW + timedelta(hours=1)).session.version == len(events)


def test_an_event_of_another_session_is_refused() -> None:
    s = replay(a_201_session())
    with pytest.raises(ValueError):
        apply(s, a_started(transaction_id="other"), NOW)


def test_ended_before_started_is_an_orphan_that_becomes_whole_when_started_arrives() -> None:
    started, *middle, ended = a_201_session()

    orphan = step(None, ended)
    assert orphan.orphan and orphan.status == "completed"
    assert orphan.started_at is None and orphan.stopped_at == at(60)
    assert orphan.seq_gaps  # seqNo 0..3 not seen yet

    store = SampleStore()
    whole = replay([ended, started, *middle], store=store)
    assert not whole.orphan and not whole.seq_gaps
    assert whole.started_at == at(0) and whole.energy_wh == 6_000
    # the start's reading is earlier than the whole series: judged in O(1); the updates' fall
    # between the start's and the end's: each asks for a rebuild
    assert store.rebuilds == ["out_of_order"] * 3
    assert whole == replace(replay(a_201_session()), version=whole.version, updated_at=whole.updated_at)


def test_meter_stop_below_meter_start_is_suspect_with_zero_energy() -> None:
    s = replay(a_16_session(meter_start=5_000, meter_stop=4_000))

    assert s.energy_wh == 0
    assert s.suspect
    assert "meter_stop_before_start" in s.suspect_reasons


def test_a_falling_register_is_suspect_with_zero_energy() -> None:
    s = replay([a_started(samples=(a_register(0, 9_000),)), an_ended(seq_no=1, samples=(a_register(60, 8_000),))])
    assert (s.energy_wh, s.suspect, s.suspect_reasons) == (0, True, frozenset({"negative_energy"}))


def test_a_three_day_old_start_is_accepted_with_both_times_kept() -> None:
    received = T0 + timedelta(days=3)
    s = step(None, a_started(env={**V16, "received_at": received}, meter_start_wh=100), received)

    assert s.started_at == T0
    assert s.received_at == received
    assert s.status == "active" and not s.suspect


def test_a_station_timestamp_too_far_ahead_is_replaced_by_the_receive_time_and_flagged() -> None:
    received = T0 - timedelta(minutes=10)
    s = step(None, a_started(env={"received_at": received}))
    assert s.suspect and s.clock_suspect and "clock_ahead" in s.suspect_reasons
    assert (s.started_at, s.station_started_at) == (received, T0)
    assert s.hold and "clock_suspect" in s.hold_reasons

    slightly = step(None, a_started(env={"received_at": T0 - timedelta(minutes=4)}))
    assert not slightly.suspect and not slightly.clock_suspect
    assert (slightly.started_at, slightly.station_started_at) == (T0, None)


def test_the_received_at_is_the_earliest_receive_time_seen() -> None:
    started, updated = a_started(env={"received_at": at(3)}), an_updated(1, at_min=10, env={"received_at": at(1)})
    assert replay([started, updated]).received_at == at(1)


def test_a_seq_no_gap_is_flagged_and_clears_when_the_missing_event_arrives() -> None:
    started, u1, u2, u3, ended = a_201_session()

    with_gap = replay([started, u1, u3, ended])
    assert with_gap.seq_gaps

    assert not SampleStore().apply(with_gap, u2).seq_gaps


def test_a_second_event_with_a_seen_seq_no_is_ignored() -> None:
    s = replay(a_201_session()[:2])
    impostor = an_updated(1, at_min=20, samples=(a_register(20, 99_999),))
    assert apply(s, impostor, NOW) == type(apply(s, impostor, NOW))(s, False)  # nothing stored either


def test_an_16_stop_with_transaction_id_minus_one_is_kept_as_an_orphan_of_its_own() -> None:
    first = an_ended(transaction_id="-1", meter_stop_wh=5_000, env=V16, at_min=10)
    second = an_ended(transaction_id="-1", meter_stop_wh=7_000, env=V16, at_min=20)

    a, b = step(None, first), step(None, second)
    assert a.orphan and b.orphan
    assert a.transaction_id == b.transaction_id == "-1"
    assert a.id != b.id
    assert (a.meter_stop_wh, a.status, a.energy_wh) == (5_000, "completed", 0)


def test_16_meter_values_for_an_unknown_transaction_create_an_orphan_session() -> None:
    mv = meter_values(a_register(5, 1_000), a_register(10, 1_600), at_min=10, env=V16, transaction_id="77")
    out = apply(None, mv, NOW)
    s = out.session

    assert s is not None and s.orphan and s.status == "active"
    assert s.transaction_id == "77" and len(out.new_samples) == 2 and s.sample_count == 2
    assert s.energy_wh == 600


def test_meter_values_outside_a_transaction_are_not_about_a_session() -> None:
    assert apply(None, meter_values(a_register(5, 1_000), transaction_id=""), NOW).session is None
    assert apply(None, an_updated(1, at_min=1, transaction_id=""), NOW).session is None


def test_a_late_meter_value_counts_only_inside_the_session_window() -> None:
    events = [
        a_started(samples=(a_register(0, 10_000),)),
        an_updated(1, at_min=30, samples=(a_register(30, 13_000),)),
        an_ended(seq_no=2, at_min=60),
    ]
    store = SampleStore()
    s = replay(events, store=store)
    assert s.energy_wh == 3_000

    inside = store.apply(s, meter_values(a_register(55, 15_000), at_min=70))
    assert inside.energy_wh == 5_000

    outside = store.apply(inside, meter_values(a_register(180, 40_000), at_min=180))
    assert outside.energy_wh == 5_000
    assert store.judged(outside)[-1].timestamp == at(180)  # kept for reconciliation
    assert (outside.last_sample_at, outside.last_register) == (at(180), (at(55), 15_000))
    assert store.rebuilds == []  # later than the marks: judged in O(1)


def test_an_ended_after_offline_queued_updates_is_processed_and_the_late_updates_still_count() -> None:
    started, u1, u2, u3, ended = a_201_session()
    offline_end = replace(ended, body=replace(ended.body, offline=True, samples=()))
    late = [replace(u, body=replace(u.body, offline=True)) for u in (u1, u2, u3)]

    s = replay([started, offline_end])
    assert s.status == "completed" and s.seq_gaps

    s = replay([started, offline_end, *late])
    assert s.status == "completed" and not s.seq_gaps
    assert s.energy_wh == 6_000


def test_the_id_token_comes_from_the_first_event_that_carries_one() -> None:
    events = [
        a_started(id_token="", trigger_reason="CablePluggedIn", charging_state="EVConnected"),
        an_updated(1, at_min=1, id_token="TOKEN-A", trigger_reason="Authorized"),
        an_ended(seq_no=2, id_token="MASTER"),
    ]
    assert replay(events).id_token == "TOKEN-A"
    assert replay(events[::-1]).id_token == "TOKEN-A"


def test_per_phase_registers_sum_when_there_is_no_total() -> None:
    phases = ("L1", "L2", "L3")
    s = replay([
        a_started(samples=tuple(a_register(0, 1_000, p) for p in phases)),
        an_ended(seq_no=1, samples=tuple(a_register(60, 1_000 + 100 * (i + 1), p) for i, p in enumerate(phases))),
    ])
    assert s.energy_wh == 600


def test_the_total_register_wins_over_per_phase_registers() -> None:
    s = replay([
        a_started(samples=(a_register(0, 1_000), a_register(0, 0, "L1"))),
        an_ended(seq_no=1, samples=(a_register(60, 2_000), a_register(60, 5_000, "L1"))),
    ])
    assert s.energy_wh == 1_000


def test_energy_rounds_half_up_to_a_whole_wh() -> None:
    s = replay([a_started(samples=(a_register(0, 1_000.0),)), an_ended(seq_no=1, samples=(a_register(60, 1_500.5),))])
    assert s.energy_wh == 501 and isinstance(s.energy_wh, int)


def test_samples_are_deduplicated_by_timestamp_measurand_and_phase_and_kept_sorted() -> None:
    store = SampleStore()
    s = replay([
        a_started(),
        meter_values(a_register(20, 3_000), a_register(10, 2_000), at_min=20),
        meter_values(a_register(10, 2_000), a_register(10, 50, "L1"), at_min=21),
    ], store=store)
    assert [(x.timestamp, x.phase, x.value) for x in store.judged(s)] == [(at(10), "", 2_000), (at(10), "L1", 50), (at(20), "", 3_000)]
    assert s.sample_count == 3


def test_a_station_resending_its_last_meter_values_is_a_no_op() -> None:
    mv = meter_values(a_register(20, 3_000), a_register(20, 7_000, measurand="Power.Active.Import"), at_min=20, env=V16)
    s = replay([a_16_session()[0], meter_values(a_register(10, 2_000), at_min=10, env=V16), mv])
    again = apply(s, replace(mv, event_id="resent", received_at=at(25)), NOW)
    assert again.session is s and not again.changed and again.new_samples == () and again.rebuild == ""


def test_an_older_or_conflicting_sample_asks_for_a_rebuild_that_equals_the_sorted_fold() -> None:
    store = SampleStore()
    events = [a_started(), meter_values(a_register(10, 2_000), at_min=10), meter_values(a_register(30, 4_000), at_min=30)]
    s = replay(events, store=store)
    late = meter_values(a_register(20, 3_000), at_min=31)
    out = apply(s, late, NOW)
    assert out.rebuild == "out_of_order" and [x.timestamp for x in out.new_samples] == [at(20)]
    conflict = apply(s, meter_values(a_register(30, 4_100), at_min=31), NOW)
    assert conflict.rebuild == "conflict"  # the larger value wins the key: fold again
    loser = apply(s, meter_values(a_register(30, 3_900), at_min=31), NOW)
    assert loser.session is s and loser.new_samples == () and loser.rebuild == ""  # the stored value wins
    from services.sessions.domain import sample_winners
    assert sample_winners(store.samples(s), conflict.new_samples + loser.new_samples) == list(conflict.new_samples)
    assert sample_winners(conflict.new_samples, store.samples(s)) == store.samples(s)[:1]  # 4,000 loses to 4,100

    rebuilt = store.apply(s, late)
    assert rebuilt == replace(replay([events[0], events[1], late, events[2]]), version=rebuilt.version, updated_at=rebuilt.updated_at)
    assert rebuilt.sample_count == 3 and rebuilt.energy_wh == 2_000


def test_a_long_in_order_session_never_rebuilds_and_its_document_does_not_grow() -> None:
    """8 hours at 3 s: 9,600 MeterValues (register and power), 1.6 style."""
    from services.sessions.domain import rebuild

    store = SampleStore()
    start = a_started(env=V16, meter_start_wh=50_000, charging_state="", trigger_reason="")
    s = store.apply(None, start)
    sizes = {}
    n = 8 * 3600 // 3
    for i in range(1, n + 1):
        minute = i * 3 / 60
        mv = meter_values(a_register(minute, 50_000 + i * 9.25), a_register(minute, 11_100, measurand="Power.Active.Import"),
                          at_min=minute, env=V16)
        s = store.apply(s, mv)
        if i in (10, n):
            sizes[i] = len(repr(session_to_doc(s)))
    s = store.apply(s, an_ended(env=V16, at_min=n * 3 / 60, meter_stop_wh=50_000 + round(n * 9.25)))

    assert store.rebuilds == []
    assert s.energy_wh == round(n * 9.25) and s.sample_count == 2 * n and s.excluded_count == 0
    assert s.status == "completed" and s.peak_power_w == 11_100
    assert sizes[n] <= 1.2 * sizes[10]
    assert rebuild(s, store.samples(s)) is s  # the incremental aggregates are the full fold's


def test_a_session_survives_the_round_trip_through_its_document() -> None:
    for s in (replay(a_201_session()), replay(a_16_session()), step(None, an_ended())):
        doc = session_to_doc(s)
        assert session_from_doc(doc) == s
        assert doc["energy_wh"] == s.energy_wh and isinstance(doc["energy_wh"], int)
        assert doc["stopped_at"] == (to_ocpp(s.stopped_at) if s.stopped_at else None)


def test_the_document_has_the_api_fields_in_iso_8601_utc() -> None:
    doc = session_to_doc(replay(a_16_session()))
    for key in ("id", "station_id", "transaction_id", "id_token", "status", "energy_wh", "started_at", "stopped_at",
                "received_at", "meter_start_wh", "meter_stop_wh", "stop_reason", "evse_id",
                "connector_id", "orphan", "suspect", "version", "updated_at", "ocpp_version", "charging_ended_at",
                "sample_count", "excluded_count", "first_sample_at", "last_sample_at", "first_register",
                "last_register", "peak_power_w", "energy_anchor_wh", "price"):
        assert key in doc, key
    assert "meter_samples" not in doc
    assert doc["started_at"] == "2026-11-28T10:00:00.000Z"
    assert doc["first_register"] == {"at": "2026-11-28T10:15:00.000Z", "wh": 3_000.0}
    assert doc["last_register"] == {"at": "2026-11-28T10:30:00.000Z", "wh": 5_000.0}
    assert (doc["sample_count"], doc["energy_anchor_wh"], doc["peak_power_w"], doc["price"]) == (2, 1_000, None, None)


def test_microseconds_are_truncated_so_redelivery_after_a_store_round_trip_is_a_no_op() -> None:
    e = a_started(station_time=T0 + timedelta(microseconds=123_456))
    s = session_from_doc(session_to_doc(step(None, e, NOW + timedelta(microseconds=7))))
    assert apply(s, e, NOW).session is s
    assert s.started_at == T0 + timedelta(milliseconds=123)


def test_non_session_events_are_ignored() -> None:
    from .builders import an_envelope

    assert apply(None, an_envelope(ev.Heartbeat()), NOW).session is None
    assert isinstance(replay(a_201_session()), Session)
