"""The key property: a session is a function of the *set* of its events.

Any permutation and duplication of a session's events (with some of them
missing, late, or stamped with skewed clocks) ends in the same session as the
in-order run; only `version` and `updated_at` (which count and date the real
changes) may differ. And applying any of its events again changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import events as ev
from services.sessions.domain import Session, apply

from .builders import NOW, T0, V16, a_register, a_started, an_ended, an_updated, meter_values

STATES = ("Charging", "SuspendedEV", "SuspendedEVSE", "EVConnected", "")


def _received(draw: st.DrawFn, minutes: float) -> dict[str, object]:
    # receive time = station time + skew/lateness, from 10 min early to 3 days late
    delta = draw(st.integers(min_value=-600, max_value=3 * 86_400))
    return {"received_at": T0 + timedelta(minutes=minutes, seconds=delta)}


@st.composite
def a_201_session(draw: st.DrawFn) -> list[ev.Envelope]:
    n = draw(st.integers(min_value=0, max_value=6))
    register = draw(st.integers(min_value=0, max_value=100_000))
    events = [
        a_started(
            env=_received(draw, 0),
            charging_state=draw(st.sampled_from(STATES)),
            id_token=draw(st.sampled_from(("", "TOKEN-A"))),
            meter_start_wh=draw(st.none() | st.just(register)),
            samples=(a_register(0, register),) if draw(st.booleans()) else (),
        )
    ]
    for seq in range(1, n + 1):
        register += draw(st.integers(min_value=-100, max_value=5_000))
        minute = seq * 10
        samples = (a_register(minute, register),) if draw(st.booleans()) else ()
        if draw(st.booleans()):
            samples += (a_register(minute, register / 3, "L1"), a_register(minute, 7_000.5, measurand="Power.Active.Import"))
        events.append(an_updated(
            seq, at_min=minute, env=_received(draw, minute),
            charging_state=draw(st.sampled_from(STATES)),
            id_token=draw(st.sampled_from(("", "TOKEN-B"))),
            samples=samples,
        ))
    end_min = (n + 1) * 10
    events.append(an_ended(
        seq_no=n + 1, at_min=end_min, env=_received(draw, end_min),
        meter_stop_wh=draw(st.none() | st.just(register + 10)),
        offline=draw(st.booleans()),
        samples=(a_register(end_min, register + 10),) if draw(st.booleans()) else (),
    ))
    return events


@st.composite
def a_16_session(draw: st.DrawFn) -> list[ev.Envelope]:
    start = draw(st.integers(min_value=0, max_value=100_000))
    events = [a_started(env={**V16, **_received(draw, 0)}, meter_start_wh=start, charging_state="", trigger_reason="")]
    register = start
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        register += draw(st.integers(min_value=0, max_value=3_000))
        minute = 5 + i * 10 + draw(st.integers(min_value=0, max_value=4))
        events.append(meter_values(
            a_register(minute, register), a_register(minute, register / 2, "L2"),
            at_min=minute, env={**V16, **_received(draw, minute)},
            connector_id=draw(st.sampled_from((1, 2))),
        ))
    # a re-sent reading with another value for a timestamp already seen
    if len(events) > 1 and draw(st.booleans()):
        seen = events[-1].body.samples[0]
        events.append(meter_values(replace(seen, value=seen.value + 1), at_min=60, env=V16))
    # a late reading outside the window, and a stop that may be below the start
    if draw(st.booleans()):
        events.append(meter_values(a_register(500, register + 99_999), at_min=500, env=V16))
    stop = register + draw(st.integers(min_value=-2_000, max_value=500))
    events.append(an_ended(env={**V16, **_received(draw, 100)}, at_min=100, meter_stop_wh=stop))
    return events


def _some_of(events: list[ev.Envelope], keep: list[bool]) -> list[ev.Envelope]:
    kept = [e for e, k in zip(events, keep) if k]
    return kept or events[-1:]


def _run(events: list[ev.Envelope]) -> Session:
    s = None
    for i, e in enumerate(events):
        s = apply(s, e, NOW + timedelta(seconds=i))
    assert s is not None
    return s


def _facts(s: Session) -> Session:
    return replace(s, version=0, updated_at=T0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), session=st.one_of(a_201_session(), a_16_session()))
def test_any_permutation_and_duplication_of_a_sessions_events_ends_in_the_same_session(
    data: st.DataObject, session: list[ev.Envelope]
) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(session), max_size=len(session)).map(
        lambda ks: ks if data.draw(st.booleans()) else [True] * len(ks)
    ))
    events = _some_of(session, keep)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    shuffled = data.draw(st.permutations(events + duplicates))

    in_order = _run(events)
    any_order = _run(shuffled)

    assert (any_order.energy_wh, any_order.status, any_order.stopped_at) == (
        in_order.energy_wh, in_order.status, in_order.stopped_at
    )
    assert _facts(any_order) == _facts(in_order)
    assert in_order.energy_wh >= 0 and isinstance(in_order.energy_wh, int)


@settings(max_examples=150, deadline=None)
@given(session=st.one_of(a_201_session(), a_16_session()))
def test_applying_any_of_a_sessions_events_again_changes_nothing(session: list[ev.Envelope]) -> None:
    final = _run(session)
    for e in session:
        assert apply(final, e, NOW + timedelta(days=1)) is final
