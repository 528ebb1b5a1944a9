"""Per-site state machine: examples, idempotence and invariants over random event runs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.smart_charging.documents import state_from_doc, state_to_doc
from services.smart_charging.domain.site_state import (
    Event,
    LimitChanged,
    MeterReading,
    ProfileCommand,
    ProfileRejected,
    SessionStarted,
    SessionStopped,
    SiteConfig,
    SiteState,
    apply,
)

D = Decimal
T0 = datetime(2026, 11, 28, 4, 0, 0, tzinfo=timezone.utc)
LATER = T0 + timedelta(minutes=5)


def start(station: str, evse: int = 1, tx: int | str = 1, *, max_a: str = "32",
          priority: int = 0, phases: int = 1) -> SessionStarted:
    return SessionStarted(station, evse, tx, phases=phases, max_a=D(max_a), priority=priority)


def run(state: SiteState, *events: Event, now: datetime = T0) -> tuple[SiteState, list[ProfileCommand]]:
    commands: list[ProfileCommand] = []
    for event in events:
        state, emitted = apply(state, event, now)
        commands.extend(emitted)
    return state, commands


def limits(state: SiteState) -> dict[str, Decimal | None]:
    return {key: s.limit_a for key, s in sorted(state.sessions.items())}


def sent(commands: list[ProfileCommand]) -> dict[str, Decimal]:
    return {f"{c.station_id}/{c.evse_id}": c.limit_a for c in commands}


@pytest.fixture
def site() -> SiteState:
    return SiteState(site_id="depot", limit_a=D(32))


@pytest.fixture
def three(site: SiteState) -> SiteState:
    state, _ = run(site, start("CS1", tx=11), start("CS2", tx=12), start("CS3", tx=13))
    return state


# ------------------------------------------------------------------------ examples


def test_a_first_session_gets_the_whole_site_limit(site: SiteState) -> None:
    state, commands = apply(site, start("CS1", tx=11), T0)

    assert commands == [ProfileCommand("CS1", 1, D(32), 11, previous_a=None)]
    assert state.sessions["CS1/1"].started_at == T0
    assert state.allocation is not None and state.allocation.total_a == D(32)


def test_three_sessions_on_a_32_amp_site_get_about_a_third_each(three: SiteState) -> None:
    assert limits(three) == {"CS1/1": D("10.7"), "CS2/1": D("10.7"), "CS3/1": D("10.6")}


def test_starting_a_session_lowers_the_others_before_raising_anyone(site: SiteState) -> None:
    state, _ = run(site, start("CS1", tx=11), start("CS2", tx=12))

    _, commands = apply(state, start("CS3", tx=13), T0)

    assert [(c.station_id, c.limit_a, c.previous_a) for c in commands] == [
        ("CS1", D("10.7"), D(16)),
        ("CS2", D("10.7"), D(16)),
        ("CS3", D("10.6"), None),
    ]


def test_when_one_session_stops_the_two_others_get_16_amps(three: SiteState) -> None:
    state, commands = apply(three, SessionStopped("CS2", 1, 12), T0)

    assert sent(commands) == {"CS1/1": D(16), "CS3/1": D(16)}
    assert "CS2/1" not in state.sessions


def test_a_priority_session_is_served_first(site: SiteState) -> None:
    state, _ = run(site, start("CS1", tx=11), start("CS2", tx=12), start("VIP", tx=99, priority=5))

    assert limits(state) == {"CS1/1": D(6), "CS2/1": D(6), "VIP/1": D(20)}


def test_a_session_measured_at_5_amps_frees_power_for_the_others(three: SiteState) -> None:
    state, commands = apply(three, MeterReading("CS1", 1, D(5)), LATER)

    assert limits(state) == {"CS1/1": D(6), "CS2/1": D(13), "CS3/1": D(13)}
    assert [c.station_id for c in commands] == ["CS1", "CS2", "CS3"]  # lowered first
    assert state.sessions["CS1/1"].measured_a == D(5)


def test_a_reading_just_below_the_limit_changes_nothing(three: SiteState) -> None:
    state, commands = apply(three, MeterReading("CS1", 1, D("9.5")), LATER)

    assert commands == []
    assert state is three


def test_a_reading_while_the_ev_is_still_ramping_up_is_ignored(three: SiteState) -> None:
    state, commands = apply(three, MeterReading("CS1", 1, D(1)), T0 + timedelta(seconds=10))

    assert commands == []
    assert state is three


def test_a_reading_sampled_before_the_last_limit_change_is_ignored(three: SiteState) -> None:
    stale = MeterReading("CS1", 1, D(1), measured_at=T0 - timedelta(minutes=1))

    assert apply(three, stale, LATER) == (three, [])


def test_a_capped_session_using_its_whole_cap_gets_the_cap_lifted(three: SiteState) -> None:
    capped, _ = apply(three, MeterReading("CS1", 1, D(5)), LATER)

    state, commands = apply(capped, MeterReading("CS1", 1, D("5.8")), LATER + timedelta(minutes=1))

    assert state.sessions["CS1/1"].measured_a is None
    assert limits(state) == {"CS1/1": D("10.7"), "CS2/1": D("10.7"), "CS3/1": D("10.6")}
    assert [c.station_id for c in commands] == ["CS2", "CS3", "CS1"]  # lowered first


def test_a_capped_session_drawing_its_measured_demand_stays_capped(three: SiteState) -> None:
    capped, _ = apply(three, MeterReading("CS1", 1, D(5)), LATER)

    state, commands = apply(capped, MeterReading("CS1", 1, D("5.2")), LATER + timedelta(minutes=1))

    assert commands == []
    assert state is capped


def test_an_external_cap_of_12_amps_pauses_the_last_of_three_sessions(three: SiteState) -> None:
    state, commands = apply(three, LimitChanged(external_cap_a=D(12)), T0)

    assert state.effective_limit_a == D(12)
    assert sent(commands) == {"CS1/1": D(6), "CS2/1": D(6), "CS3/1": D(0)}
    assert state.allocation is not None and state.allocation.paused == ("CS3/1",)


def test_clearing_the_external_cap_restores_the_grid_limit(three: SiteState) -> None:
    capped, _ = apply(three, LimitChanged(external_cap_a=D(12)), T0)

    state, commands = apply(capped, LimitChanged(clear_external_cap=True), T0)

    assert state.external_cap_a is None
    assert sent(commands) == {"CS1/1": D("10.7"), "CS2/1": D("10.7"), "CS3/1": D("10.6")}


def test_an_external_cap_above_the_grid_limit_changes_no_current(three: SiteState) -> None:
    state, commands = apply(three, LimitChanged(external_cap_a=D(100)), T0)

    assert commands == []
    assert state.effective_limit_a == D(32)


def test_a_paused_session_resumes_when_another_stops(three: SiteState) -> None:
    capped, _ = apply(three, LimitChanged(external_cap_a=D(12)), T0)

    _, commands = apply(capped, SessionStopped("CS1", 1, 11), T0)

    assert sent(commands) == {"CS3/1": D(6)}


def test_a_rejected_profile_reserves_the_session_max_for_the_others(site: SiteState) -> None:
    state, _ = run(site, start("CS1", tx=11), start("OLD", tx=12, max_a="16"), start("CS3", tx=13))

    state, commands = apply(state, ProfileRejected("OLD", 1), T0)

    assert sent(commands) == {"CS1/1": D(8), "CS3/1": D(8)}
    assert not state.sessions["OLD/1"].controllable
    assert state.allocation is not None and state.allocation.reserved_a == D(16)


def test_rejected_profiles_above_the_limit_pause_everything_else(site: SiteState) -> None:
    state, _ = run(site, start("OLD1", tx=1, max_a="16"), start("OLD2", tx=2, max_a="20"),
                   start("CS3", tx=3))

    state, commands = run(state, ProfileRejected("OLD1", 1), ProfileRejected("OLD2", 1))

    assert sent(commands)["CS3/1"] == D(0)
    assert state.allocation is not None and state.allocation.over_limit


def test_a_rejection_for_another_transaction_is_ignored(three: SiteState) -> None:
    assert apply(three, ProfileRejected("CS1", 1, transaction_id=999), T0) == (three, [])


@pytest.mark.parametrize(
    "event",
    [
        SessionStopped("GHOST", 1, 1),
        SessionStopped("CS1", 1, 999),  # an older transaction at a known EVSE
        MeterReading("GHOST", 1, D(3)),
        ProfileRejected("GHOST", 2),
    ],
)
def test_events_for_unknown_sessions_are_ignored(three: SiteState, event: Event) -> None:
    assert apply(three, event, LATER) == (three, [])


def test_a_new_transaction_on_a_busy_evse_replaces_the_old_one(three: SiteState) -> None:
    state, commands = apply(three, start("CS1", tx=77), T0)

    assert state.sessions["CS1/1"].transaction_id == 77
    assert commands == [ProfileCommand("CS1", 1, D("10.7"), 77, previous_a=None)]


@pytest.mark.parametrize(
    "event",
    [
        start("CS4", tx=14),
        SessionStopped("CS2", 1, 12),
        LimitChanged(limit_a=D(40)),
        LimitChanged(external_cap_a=D(12)),
        ProfileRejected("CS1", 1),
        MeterReading("CS1", 1, D(3)),
    ],
)
def test_applying_the_same_event_twice_emits_nothing_the_second_time(
    three: SiteState, event: Event
) -> None:
    once, first = apply(three, event, LATER)
    twice, second = apply(once, event, LATER)

    assert first != []
    assert second == []
    assert twice == once


def test_a_site_can_be_built_with_a_cap_and_custom_tuning() -> None:
    site = SiteState("depot", D(63), external_cap_a=D(40), config=SiteConfig(step_a=D(1)))

    state, commands = run(site, start("CS1", tx=1), start("CS2", tx=2), start("CS3", tx=3))

    assert limits(state) == {"CS1/1": D(14), "CS2/1": D(13), "CS3/1": D(13)}


def test_invalid_limits_and_tuning_are_rejected() -> None:
    with pytest.raises(ValueError):
        SiteState("depot", D(-1))
    with pytest.raises(ValueError):
        LimitChanged(external_cap_a=D(10), clear_external_cap=True)
    with pytest.raises(ValueError):
        SiteConfig(saturation_margin_a=D(2))
    with pytest.raises(ValueError):
        MeterReading("CS1", 1, D(-1))


def test_a_site_state_survives_a_trip_through_a_json_store_document(three: SiteState) -> None:
    state, _ = run(three, ProfileRejected("CS2", 1), LimitChanged(D(63), external_cap_a=D(50)))
    state, _ = apply(state, MeterReading("CS1", 1, D(3)), LATER)

    doc = json.loads(json.dumps(state_to_doc(state)))

    assert doc["sessions"][0]["started_at"] == "2026-11-28T04:00:00.000Z"
    assert doc["sessions"][0]["measured_a"] == "3"
    assert doc["external_cap_a"] == "50"
    restored = state_from_doc(doc)
    assert restored == state
    assert restored.allocation is not None and restored.allocation.trace == state.allocation.trace


# ---------------------------------------------------------------------- properties

STATIONS = ["CS1", "CS2", "CS3", "CS4", "CS5"]
station_ids = st.sampled_from(STATIONS)
amps = st.integers(0, 80).map(lambda halves: D(halves) / 2)
events = st.one_of(
    st.builds(
        SessionStarted,
        station_id=station_ids,
        evse_id=st.just(1),
        transaction_id=st.integers(1, 3),
        phases=st.sampled_from([1, 3]),
        max_a=st.sampled_from([D(16), D(32)]),
        priority=st.integers(0, 2),
    ),
    st.builds(SessionStopped, station_id=station_ids, evse_id=st.just(1),
              transaction_id=st.integers(1, 3)),
    st.builds(MeterReading, station_id=station_ids, evse_id=st.just(1), current_a=amps),
    st.builds(LimitChanged, limit_a=st.none() | amps),
    st.builds(LimitChanged, external_cap_a=amps),
    st.builds(LimitChanged, clear_external_cap=st.just(True)),
    st.builds(ProfileRejected, station_id=station_ids, evse_id=st.just(1)),
)


@settings(max_examples=300)
@given(
    limit=amps,
    steps=st.lists(st.tuples(events, st.integers(0, 120)), max_size=25),
)
def test_random_event_runs_keep_commands_consistent_safe_and_idempotent(
    limit: Decimal, steps: list[tuple[Event, int]]
) -> None:
    state = SiteState("depot", limit)
    now = T0
    for event, seconds in steps:
        now += timedelta(seconds=seconds)
        state, _ = apply(state, event, now)

        # Replaying the event changes nothing.
        again, replayed = apply(state, event, now)
        assert replayed == []
        assert again == state

        if state.allocation is None:
            continue
        # The store document gives the same state back.
        assert state_from_doc(json.loads(json.dumps(state_to_doc(state)))) == state
        # What was commanded is exactly the current allocation.
        for key, session in state.sessions.items():
            if session.controllable:
                assert session.limit_a == state.allocation.limits[key]
        # And it fits under the effective limit unless rejected profiles alone exceed it
        # (reserved at their max, or at their measured draw plus headroom: ADR 018 §5).
        reserved = state.allocation.reserved_a
        assert reserved <= sum((s.max_a for s in state.sessions.values() if not s.controllable), D(0))
        commanded = sum((s.limit_a or D(0) for s in state.sessions.values() if s.controllable), D(0))
        if reserved <= state.effective_limit_a:
            assert commanded + reserved <= state.effective_limit_a
        else:
            assert commanded == 0
