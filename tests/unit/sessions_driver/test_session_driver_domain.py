"""A session carries the reservation it started with and what an ISO 15118 EV said
(ADR 018): merged order-independently, idempotent, bounded, kept through the document and
the csms.sessions.v1 snapshot."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta

import orjson

from services.common import events as ev
from services.sessions import codec as snapshots
from services.sessions.documents import ev_needs_view, ev_schedule_view, session_from_doc, session_to_doc
from services.sessions.domain import MAX_EV_SCHEDULE_PERIODS, Session, apply_ev_event
from tests.unit.sessions.builders import NOW, T0, SampleStore, a_201_session, a_started, an_envelope, an_updated, at

AC = ev.AcChargingParameters(energy_amount=22_000, ev_min_current=6, ev_max_current=32, ev_max_voltage=400)


def _replay(events: list[ev.Envelope]) -> Session:
    store = SampleStore()
    s = None
    for e in events:
        s = store.apply(s, e)
    assert s is not None
    return s


def a_needs(minute: float = 1, **body: object) -> ev.Envelope:
    b: dict[str, object] = {"evse_id": 1, "requested_energy_transfer": "AC_three_phase", "departure_time": at(240),
                            "ac": AC, "status": "Accepted"}
    b.update(body)
    return an_envelope(ev.EvChargingNeeds(**b), station_time=None, received_at=at(minute))  # type: ignore[arg-type]


def a_schedule(minute: float = 2, periods: int = 2, **body: object) -> ev.Envelope:
    schedule = ev.ChargingSchedule(
        charging_rate_unit="A", id=1,
        periods=tuple(ev.SchedulePeriod(start_period=600 * i, limit=16.0 + i, number_phases=3) for i in range(periods)),
    )
    b: dict[str, object] = {"evse_id": 1, "time_base": at(0), "schedule": schedule, "status": "Accepted"}
    b.update(body)
    return an_envelope(ev.EvChargingSchedule(**b), station_time=None, received_at=at(minute))  # type: ignore[arg-type]


def test_the_reservation_of_the_start_is_kept_and_the_lowest_id_wins_in_any_order() -> None:
    events = a_201_session()
    events[0] = replace(events[0], body=replace(events[0].body, reservation_id=7))
    s = _replay(events)
    assert s.reservation_id == 7
    assert _replay(list(reversed(events))).reservation_id == 7
    assert _replay([a_started()]).reservation_id == 0
    two = [a_started(reservation_id=9), a_started(reservation_id=7, seq_no=1, at_min=1)]
    assert _replay(two).reservation_id == _replay(list(reversed(two))).reservation_id == 7


def test_the_latest_needs_win_whatever_the_order_and_a_repeat_changes_nothing() -> None:
    s = _replay([a_started()])
    first, second = a_needs(1, departure_time=at(120)), a_needs(5, departure_time=at(300))
    a = apply_ev_event(apply_ev_event(s, first, NOW), second, NOW)
    b = apply_ev_event(apply_ev_event(s, second, NOW), first, NOW)
    assert a.ev_needs == b.ev_needs and a.ev_needs is not None
    assert a.ev_needs.departure_time == at(300) and a.ev_needs.energy_amount_wh == 22_000
    assert (a.ev_needs.ev_min_current_a, a.ev_needs.ev_max_current_a, a.ev_needs.ev_max_voltage_v) == (6, 32, 400)
    assert a.version == s.version + 2
    assert apply_ev_event(a, second, NOW) is a  # the same notification again
    assert apply_ev_event(a, first, NOW) is a   # an older one


def test_a_redelivered_notification_below_the_applied_mark_changes_nothing() -> None:
    s = replace(_replay([a_started()]), applied=(0, 10))
    assert apply_ev_event(s, a_needs(), NOW, position=(0, 9)) is s
    moved = apply_ev_event(s, a_needs(), NOW, position=(0, 11))
    assert moved.applied == (0, 11) and moved.ev_needs is not None and moved.updated_at == NOW


def test_dc_needs_keep_the_dc_extras_and_leave_out_what_was_not_given() -> None:
    dc = ev.DcChargingParameters(ev_max_current=200, ev_max_voltage=800, ev_max_power=150_000, state_of_charge=40)
    s = apply_ev_event(_replay([a_started()]), a_needs(ac=None, dc=dc, requested_energy_transfer="DC"), NOW)
    view = ev_needs_view(s.ev_needs)
    assert view is not None
    assert view["energy_amount_wh"] is None and view["ev_min_current_a"] is None
    assert (view["ev_max_current_a"], view["ev_max_voltage_v"]) == (200, 800)
    assert view["dc"] == {"ev_max_power_w": 150_000, "state_of_charge": 40, "ev_energy_capacity_wh": None,
                          "full_soc": None, "bulk_soc": None}
    ac_view = ev_needs_view(apply_ev_event(_replay([a_started()]), a_needs(), NOW).ev_needs)
    assert ac_view is not None and ac_view["dc"] is None


def test_a_schedule_is_bounded_and_non_finite_limits_are_left_out() -> None:
    s = _replay([a_started()])
    long = apply_ev_event(s, a_schedule(periods=MAX_EV_SCHEDULE_PERIODS + 10), NOW)
    assert long.ev_schedule is not None
    assert len(long.ev_schedule.periods) == MAX_EV_SCHEDULE_PERIODS and long.ev_schedule.truncated
    odd = ev.ChargingSchedule(charging_rate_unit="W", periods=(
        ev.SchedulePeriod(0, math.nan), ev.SchedulePeriod(60, math.inf), ev.SchedulePeriod(120, 7_400.0)))
    x = apply_ev_event(s, a_schedule(schedule=odd), NOW).ev_schedule
    assert x is not None and [p.start_period for p in x.periods] == [120] and x.truncated
    view = ev_schedule_view(x)
    assert view == {"time_base": "2026-11-28T10:00:00.000Z", "charging_rate_unit": "W",
                    "periods": [{"start_period": 120, "limit": 7400.0, "number_phases": None}],
                    "truncated": True, "received_at": "2026-11-28T10:02:00.000Z"}
    json.dumps(view, allow_nan=False)


def test_an_ev_notification_survives_the_events_that_follow_and_a_rebuild() -> None:
    store = SampleStore()
    s = store.apply(None, a_started())
    s = apply_ev_event(s, a_needs(), NOW)
    s = apply_ev_event(s, a_schedule(), NOW)
    s = store.apply(s, an_updated(1, at_min=15))
    assert s.ev_needs is not None and s.ev_schedule is not None
    from services.sessions.domain import rebuild

    again = rebuild(s, store.samples(s))
    assert again.ev_needs == s.ev_needs and again.ev_schedule == s.ev_schedule


def test_the_document_round_trips_the_new_facts_and_leaves_old_documents_as_they_were() -> None:
    plain = _replay([a_started()])
    doc = session_to_doc(plain)
    assert not {"reservation_id", "ev_charging_needs", "ev_charging_schedule"} & set(doc)
    assert "ev" not in doc["_state"]
    rich = apply_ev_event(apply_ev_event(_replay([a_started(reservation_id=7)]), a_needs(), NOW), a_schedule(), NOW)
    doc = json.loads(orjson.dumps(session_to_doc(rich)))
    assert doc["reservation_id"] == 7
    assert doc["ev_charging_needs"]["departure_time"] == "2026-11-28T14:00:00.000Z"
    assert [p["limit"] for p in doc["ev_charging_schedule"]["periods"]] == [16.0, 17.0]
    back = session_from_doc(doc)
    assert back == rich
    assert session_to_doc(back) == doc


def test_the_snapshot_carries_the_reservation() -> None:
    with_one = snapshots.decode_session(snapshots.encode_session(_replay([a_started(reservation_id=7)])))
    without = snapshots.decode_session(snapshots.encode_session(_replay([a_started()])))
    assert (with_one["reservation_id"], without["reservation_id"]) == (7, None)


def test_other_bodies_are_not_ev_notifications() -> None:
    s = _replay([a_started()])
    assert apply_ev_event(s, a_started(at_min=3), NOW) is s
    assert T0 + timedelta(0) == at(0)
