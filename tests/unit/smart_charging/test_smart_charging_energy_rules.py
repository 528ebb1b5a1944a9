"""The allocator's rules of ADR 018 §5 (issue 10): outside limits (NotifyChargingLimit),
stations that reject profiles (marked until their next boot, reserved at their measured
draw) and EV charging needs (a schedule shaped by the departure time and energy).
Examples, then properties over random event runs (hypothesis)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.smart_charging.commands import merge_commands, tx_limit_command
from services.smart_charging.documents import state_from_doc, state_to_doc
from services.smart_charging.domain import (
    PENDING_NEEDS_TTL,
    ChargingNeeds,
    Event,
    ExternalLimitCleared,
    ExternalLimitSet,
    MeterReading,
    ProfileCommand,
    SessionStarted,
    SessionStopped,
    SiteState,
    StationRebooted,
    StationRejectsProfiles,
    apply,
)

D = Decimal
T0 = datetime(2026, 11, 28, 4, 0, 0, tzinfo=timezone.utc)
V = D(230)


def start(station: str, evse: int = 1, tx: int | str = 1, *, max_a: str = "32", phases: int = 1) -> SessionStarted:
    return SessionStarted(station, evse, tx, phases=phases, max_a=D(max_a))


def run(state: SiteState, *events: Event, now: datetime = T0) -> tuple[SiteState, list[ProfileCommand]]:
    commands: list[ProfileCommand] = []
    for event in events:
        state, emitted = apply(state, event, now)
        commands.extend(emitted)
    return state, commands


def sent(commands: list[ProfileCommand]) -> dict[str, Decimal]:
    return {f"{c.station_id}/{c.evse_id}": c.limit_a for c in commands}


def allocated(state: SiteState) -> dict[str, Decimal]:
    assert state.allocation is not None
    return dict(state.allocation.limits)


def roundtrip(state: SiteState) -> SiteState:
    return state_from_doc(json.loads(json.dumps(state_to_doc(state))))


# ----------------------------------------------------------------- outside limits


def test_an_evse_limit_lowers_its_session_and_clearing_it_restores_the_share() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=11))

    state, commands = run(state, ExternalLimitSet("CS1", 1, "EMS", D(10)))
    assert sent(commands) == {"CS1/1": D(10)}
    assert state.allocation is not None and state.allocation.total_a == D(10)

    state, commands = run(state, ExternalLimitCleared("CS1", 1, "EMS"))
    assert sent(commands) == {"CS1/1": D(32)}


def test_what_a_limited_session_cannot_use_goes_to_the_other_sessions() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=11), start("CS2", tx=12))
    assert allocated(state) == {"CS1/1": D(16), "CS2/1": D(16)}

    state, commands = run(state, ExternalLimitSet("CS1", 1, "SO", D(10)))

    assert allocated(state) == {"CS1/1": D(10), "CS2/1": D(22)}
    assert [c.limit_a for c in commands] == [D(10), D(22)]  # lowering first


def test_a_station_limit_is_shared_by_its_sessions_and_the_rest_goes_to_the_site() -> None:
    state, _ = run(SiteState("s", D(48)), start("CS1", 1, tx=1), start("CS1", 2, tx=2), start("CS2", tx=3))

    state, _ = run(state, ExternalLimitSet("CS1", 0, "EMS", D(20)))

    assert allocated(state) == {"CS1/1": D(10), "CS1/2": D(10), "CS2/1": D(28)}


def test_a_station_limit_gives_what_one_session_does_not_use_to_its_other_session() -> None:
    state, _ = run(SiteState("s", D(64)), start("CS1", 1, tx=1, max_a="6"), start("CS1", 2, tx=2))

    state, _ = run(state, ExternalLimitSet("CS1", 0, "EMS", D(20)))

    assert allocated(state) == {"CS1/1": D(6), "CS1/2": D(14)}


def test_the_lowest_of_several_sources_holds_and_a_station_wide_clear_clears_every_evse() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", 1, tx=1), start("CS1", 2, tx=2))
    state, _ = run(
        state, ExternalLimitSet("CS1", 1, "EMS", D(12)), ExternalLimitSet("CS1", 1, "SO", D(8)),
        ExternalLimitSet("CS1", 2, "SO", D(9)),
    )
    assert allocated(state) == {"CS1/1": D(8), "CS1/2": D(9)}

    state, _ = run(state, ExternalLimitCleared("CS1", 0, "SO"))
    assert allocated(state) == {"CS1/1": D(12), "CS1/2": D(20)}


def test_an_outside_limit_of_0_a_pauses_the_session_and_frees_its_share() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=1), start("CS2", tx=2))

    state, commands = run(state, ExternalLimitSet("CS1", 1, "SO", D(0)))

    assert sent(commands) == {"CS1/1": D(0), "CS2/1": D(32)}
    assert state.allocation is not None and "CS1/1" in state.allocation.paused


def test_an_outside_limit_set_twice_emits_nothing_the_second_time() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=1), ExternalLimitSet("CS1", 1, "EMS", D(10)))
    again, commands = apply(state, ExternalLimitSet("CS1", 1, "EMS", D(10)), T0)
    assert commands == [] and again == state


# ------------------------------------------------------ stations that reject profiles


def test_a_rejecting_station_is_reserved_at_its_max_then_at_its_measured_draw() -> None:
    state, _ = run(SiteState("s", D(40)), start("R", tx=1), start("C", tx=2))
    state, commands = run(state, StationRejectsProfiles("R", "Rejected (NotImplemented)"))

    assert "R" in state.no_profiles
    assert sent(commands) == {"C/1": D(8)}  # 32 A reserved for R, not commanded
    assert allocated(state)["R/1"] == D(32)

    state, commands = run(state, MeterReading("R", 1, D(16)), now=T0 + timedelta(seconds=5))

    assert allocated(state) == {"C/1": D(23), "R/1": D(17)}
    assert sent(commands) == {"C/1": D(23)}
    assert state.allocation is not None and state.allocation.total_a <= D(40)


def test_a_reserved_draw_follows_a_rise_at_once_and_ignores_noise_and_old_readings() -> None:
    state, _ = run(SiteState("s", D(40)), start("R", tx=1), start("C", tx=2), StationRejectsProfiles("R"))
    t = T0 + timedelta(seconds=5)
    state, _ = run(state, MeterReading("R", 1, D(16), measured_at=t), now=t)

    for noise in ("15.5", "16.4", "16.5"):
        same, commands = run(state, MeterReading("R", 1, D(noise), measured_at=t + timedelta(seconds=1)), now=t)
        assert commands == [] and same == state
    older, commands = run(state, MeterReading("R", 1, D(30), measured_at=t - timedelta(seconds=1)), now=t)
    assert commands == [] and older == state

    state, commands = run(state, MeterReading("R", 1, D(20), measured_at=t + timedelta(seconds=2)), now=t)
    assert allocated(state) == {"C/1": D(19), "R/1": D(21)}
    assert sent(commands) == {"C/1": D(19)}


def test_a_rejecting_station_gets_no_profile_for_a_later_session_until_it_boots() -> None:
    state, _ = run(SiteState("s", D(40)), start("R", tx=1), start("C", tx=2), StationRejectsProfiles("R"))

    state, commands = run(state, start("R", 2, tx=3))
    assert "R/2" not in sent(commands)
    assert not state.sessions["R/2"].controllable

    state, commands = run(state, StationRebooted("R"))
    assert "R" not in state.no_profiles
    assert {"R/1", "R/2"} <= set(sent(commands))
    assert all(s.controllable for s in state.sessions.values())

    # A boot of a station that was not marked changes nothing.
    again, commands = run(state, StationRebooted("R"), StationRebooted("C"))
    assert commands == [] and again == state


def test_the_mark_survives_the_store_document_and_a_stop_does_not_clear_it() -> None:
    state, _ = run(SiteState("s", D(40)), start("R", tx=1), StationRejectsProfiles("R", "Rejected"))
    state, _ = run(state, SessionStopped("R", 1, 1))

    restored = roundtrip(state)
    assert restored == state
    assert restored.no_profiles["R"].reason == "Rejected"
    _, commands = run(restored, start("R", tx=2))
    assert commands == []


# ---------------------------------------------------------------- EV charging needs


def test_needs_cap_the_session_at_the_ev_max_and_always_send_a_profile_until_departure() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx="tx-1"), start("CS2", tx="tx-2"))
    departure = T0 + timedelta(hours=3)

    state, commands = run(state, ChargingNeeds("CS1", 1, V, ev_min_a=D(6), ev_max_a=D(10), departure_at=departure))

    assert sent(commands) == {"CS1/1": D(10), "CS2/1": D(22)}
    assert [c.until for c in commands if c.station_id == "CS1"] == [departure]


def test_needs_with_energy_and_departure_cap_at_the_current_that_delivers_it() -> None:
    # 11040 Wh in 4 h on 3 phases at 230 V: 11040 / (4 x 230 x 3) = 4 A, raised to the 6 A minimum.
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=1, phases=3), start("CS2", tx=2))
    needs = ChargingNeeds("CS1", 1, V, energy_wh=11040, departure_at=T0 + timedelta(hours=4))
    state, _ = run(state, needs)
    assert allocated(state) == {"CS1/1": D(6), "CS2/1": D(26)}

    # 22080 Wh in 4 h on 1 phase: 24 A (a cap, not a claim: the rest of the site is shared).
    state, _ = run(SiteState("s", D(64)), start("CS1", tx=1), start("CS2", tx=2))
    state, _ = run(state, ChargingNeeds("CS1", 1, V, energy_wh=22080, departure_at=T0 + timedelta(hours=4)))
    assert allocated(state) == {"CS1/1": D(24), "CS2/1": D(32)}


def test_needs_that_change_no_limit_still_send_the_session_its_profile_once() -> None:
    state, _ = run(SiteState("s", D(32)), start("CS1", tx=1))
    needs = ChargingNeeds("CS1", 1, V, ev_max_a=D(40), departure_at=T0 + timedelta(hours=1))

    state, commands = run(state, needs)
    assert sent(commands) == {"CS1/1": D(32)} and commands[0].forced
    merged = merge_commands(commands)
    assert len(merged) == 1  # not dropped as "back where it was"
    planned = tx_limit_command(merged[0], T0)
    assert planned.params["duration_s"] == 3600

    again, commands = run(state, needs)
    assert commands == [] and again == state


def test_needs_before_their_session_wait_for_it_and_expire() -> None:
    state = SiteState("s", D(32))
    needs = ChargingNeeds("CS1", 1, V, ev_max_a=D(16))
    state, commands = run(state, needs)
    assert commands == [] and "CS1/1" in state.pending_needs
    assert roundtrip(state).pending_needs == state.pending_needs

    started, commands = run(state, start("CS1", tx=1))
    assert sent(commands) == {"CS1/1": D(16)} and started.pending_needs == {}

    late = T0 + PENDING_NEEDS_TTL + timedelta(seconds=1)
    expired, commands = run(state, start("CS1", tx=1), now=late)
    assert sent(commands) == {"CS1/1": D(32)} and expired.pending_needs == {}


def test_needs_are_validated() -> None:
    with pytest.raises(ValueError):
        ChargingNeeds("CS1", 1, D(0))
    with pytest.raises(ValueError):
        ChargingNeeds("CS1", 1, V, ev_max_a=D(-1))


# ---------------------------------------------------------------------- properties

STATIONS = ["R1", "R2", "C1", "C2"]
station_ids = st.sampled_from(STATIONS)
evses = st.integers(1, 2)
amps = st.integers(0, 80).map(lambda halves: D(halves) / 2)
events = st.one_of(
    st.builds(
        SessionStarted, station_id=station_ids, evse_id=evses, transaction_id=st.integers(1, 3),
        phases=st.sampled_from([1, 3]), max_a=st.sampled_from([D(16), D(32)]), priority=st.integers(0, 1),
    ),
    st.builds(SessionStopped, station_id=station_ids, evse_id=evses, transaction_id=st.integers(1, 3)),
    st.builds(MeterReading, station_id=station_ids, evse_id=evses, current_a=amps),
    st.builds(ExternalLimitSet, station_id=station_ids, evse_id=st.integers(0, 2),
              source=st.sampled_from(["EMS", "SO"]), limit_a=amps),
    st.builds(ExternalLimitCleared, station_id=station_ids, evse_id=st.integers(0, 2),
              source=st.sampled_from(["EMS", "SO"])),
    st.builds(StationRejectsProfiles, station_id=station_ids),
    st.builds(StationRebooted, station_id=station_ids),
    st.builds(
        ChargingNeeds, station_id=station_ids, evse_id=evses, voltage_v=st.just(V),
        ev_min_a=st.none() | st.sampled_from([D(6), D(8)]), ev_max_a=st.none() | st.sampled_from([D(10), D(40)]),
        energy_wh=st.none() | st.integers(0, 60_000),
        departure_at=st.none() | st.integers(-600, 36_000).map(lambda s: T0 + timedelta(seconds=s)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(limit=amps, steps=st.lists(st.tuples(events, st.integers(0, 60)), max_size=30))
def test_random_runs_keep_the_limit_the_marks_and_the_outside_limits(
    limit: Decimal, steps: list[tuple[Event, int]]
) -> None:
    state = SiteState("depot", limit)
    now = T0
    for event, seconds in steps:
        now += timedelta(seconds=seconds)
        before = state
        state, commands = apply(state, event, now)

        # A rejecting station is never commanded.
        for c in commands:
            assert c.station_id not in state.no_profiles
        # The mark is set only by a rejection and cleared only by a boot.
        for station_id in set(before.no_profiles) - set(state.no_profiles):
            assert event == StationRebooted(station_id)
        for station_id in set(state.no_profiles) - set(before.no_profiles):
            assert event == StationRejectsProfiles(station_id)
        for s in state.sessions.values():
            assert s.controllable == (s.station_id not in state.no_profiles)

        # Replaying the event changes nothing.
        again, replayed = apply(state, event, now)
        assert replayed == [] and again == state

        if state.allocation is None:
            continue
        assert roundtrip(state) == state
        alloc = state.allocation
        # Controllable allocations plus uncontrollable reservations (at their max, or at
        # their measured draw plus headroom) stay under the limit when the reservations fit.
        reserved = sum((alloc.limits[k] for k, s in state.sessions.items() if not s.controllable), D(0))
        commanded = sum((s.limit_a or D(0) for s in state.sessions.values() if s.controllable), D(0))
        assert reserved == alloc.reserved_a
        if reserved <= state.effective_limit_a:
            assert commanded + reserved <= state.effective_limit_a
        else:
            assert commanded == 0
        # Outside limits hold: an EVSE's on its session, a station's on the sum of its sessions.
        for (station_id, evse_id, _), cap in state.external_limits.items():
            mine = [k for k, s in state.sessions.items()
                    if s.station_id == station_id and (evse_id == 0 or s.evse_id == evse_id)]
            assert sum((alloc.limits[k] for k in mine), D(0)) <= cap
        # What was commanded is exactly the allocation.
        for key, s in state.sessions.items():
            if s.controllable:
                assert s.limit_a == alloc.limits[key]
