"""Site current allocation: worked examples and hypothesis properties."""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.smart_charging.domain.allocation import Allocation, Demand, allocate

D = Decimal
STEP = D("0.1")


def ev(key: str, *, max_a: str = "32", min_a: str = "6", priority: int = 0,
       measured: str | None = None, controllable: bool = True, phases: int = 1) -> Demand:
    return Demand(
        session_key=key,
        phases=phases,
        min_a=D(min_a),
        max_a=D(max_a),
        priority=priority,
        measured_a=None if measured is None else D(measured),
        controllable=controllable,
    )


# ------------------------------------------------------------------------ examples


def test_three_single_phase_sessions_share_32_amps_within_one_step() -> None:
    result = allocate(D(32), [ev("CS1/1"), ev("CS2/1"), ev("CS3/1")])

    assert result.limits == {"CS1/1": D("10.7"), "CS2/1": D("10.7"), "CS3/1": D("10.6")}
    assert result.total_a == D(32)
    assert result.paused == ()
    assert not result.over_limit


def test_when_one_of_three_stops_the_two_others_get_16_amps_each() -> None:
    result = allocate(D(32), [ev("CS1/1"), ev("CS3/1")])

    assert result.limits == {"CS1/1": D(16), "CS3/1": D(16)}


def test_a_session_never_gets_more_than_its_max() -> None:
    result = allocate(D(100), [ev("CS1/1", max_a="16"), ev("CS2/1", max_a="32")])

    assert result.limits == {"CS1/1": D(16), "CS2/1": D(32)}
    assert result.total_a == D(48)


def test_a_priority_session_is_served_first_while_others_keep_their_minimum() -> None:
    result = allocate(D(32), [ev("CS1/1"), ev("CS2/1"), ev("VIP/1", priority=10)])

    assert result.limits == {"CS1/1": D(6), "CS2/1": D(6), "VIP/1": D(20)}


def test_a_priority_session_at_its_max_leaves_the_rest_to_the_lower_tier() -> None:
    result = allocate(D(32), [ev("CS1/1"), ev("CS2/1"), ev("VIP/1", max_a="16", priority=10)])

    assert result.limits == {"CS1/1": D(8), "CS2/1": D(8), "VIP/1": D(16)}


def test_a_session_measured_at_5_amps_frees_power_for_the_others() -> None:
    result = allocate(D(32), [ev("CS1/1", measured="5"), ev("CS2/1"), ev("CS3/1")])

    assert result.limits == {"CS1/1": D(6), "CS2/1": D(13), "CS3/1": D(13)}
    assert any("measured 5 A, cap 6 A" in line for line in result.trace)


def test_a_measurement_above_the_share_does_not_change_anything() -> None:
    result = allocate(D(32), [ev("CS1/1", measured="15"), ev("CS2/1")])

    assert result.limits == {"CS1/1": D(16), "CS2/1": D(16)}


def test_a_measured_cap_never_goes_below_the_minimum() -> None:
    result = allocate(D(32), [ev("CS1/1", measured="0"), ev("CS2/1")])

    assert result.limits == {"CS1/1": D(6), "CS2/1": D(26)}


def test_a_12_amp_cap_runs_two_sessions_at_6_amps_and_pauses_the_last_one() -> None:
    result = allocate(D(12), [ev("CS1/1"), ev("CS2/1"), ev("CS3/1")])

    assert result.limits == {"CS1/1": D(6), "CS2/1": D(6), "CS3/1": D(0)}
    assert result.paused == ("CS3/1",)
    assert any(line.startswith("pause CS3/1") for line in result.trace)


def test_the_lowest_priority_is_paused_before_a_higher_one_listed_later() -> None:
    result = allocate(D(12), [ev("A/1", priority=0), ev("B/1", priority=5), ev("C/1", priority=5)])

    assert result.limits == {"A/1": D(0), "B/1": D(6), "C/1": D(6)}
    assert result.paused == ("A/1",)


def test_an_uncontrollable_session_is_reserved_at_its_max() -> None:
    result = allocate(D(32), [ev("OLD/1", max_a="16", controllable=False), ev("CS1/1"), ev("CS2/1")])

    assert result.limits == {"CS1/1": D(8), "CS2/1": D(8), "OLD/1": D(16)}
    assert result.reserved_a == D(16)
    assert result.total_a == D(32)


def test_reservations_above_the_limit_pause_everything_controllable_and_flag_it() -> None:
    result = allocate(D(12), [ev("OLD/1", max_a="16", controllable=False), ev("CS1/1")])

    assert result.over_limit
    assert result.limits == {"CS1/1": D(0), "OLD/1": D(16)}
    assert result.paused == ("CS1/1",)
    assert result.total_a == D(16)
    assert any("OVER LIMIT" in line for line in result.trace)


def test_no_sessions_allocate_nothing() -> None:
    result = allocate(D(32), [])

    assert result.limits == {}
    assert result.total_a == D(0)


def test_a_zero_limit_pauses_every_session() -> None:
    result = allocate(D(0), [ev("CS1/1"), ev("CS2/1")])

    assert result.paused == ("CS1/1", "CS2/1")
    assert result.total_a == D(0)
    assert not result.over_limit


def test_allocations_are_rounded_down_to_the_step() -> None:
    result = allocate(D("20.09"), [ev("CS1/1"), ev("CS2/1"), ev("CS3/1")], step_a=D(1))

    assert result.limits == {"CS1/1": D(7), "CS2/1": D(7), "CS3/1": D(6)}


def test_the_order_of_the_input_does_not_matter() -> None:
    sessions = [ev("CS1/1"), ev("CS2/1", priority=1), ev("CS3/1", measured="3"), ev("CS4/1")]

    assert allocate(D(40), sessions) == allocate(D(40), list(reversed(sessions)))


def test_duplicate_session_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        allocate(D(32), [ev("CS1/1"), ev("CS1/1")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phases": 2}, "phases"),
        ({"min_a": "10", "max_a": "8"}, "max_a"),
        ({"min_a": "-1"}, "min_a"),
        ({"min_a": "0", "max_a": "0"}, "max_a"),
        ({"measured": "-1"}, "measured_a"),
    ],
)
def test_an_impossible_demand_is_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev("CS1/1", **kwargs)  # type: ignore[arg-type]


def test_a_negative_limit_or_a_non_positive_step_is_rejected() -> None:
    with pytest.raises(ValueError):
        allocate(D(-1), [])
    with pytest.raises(ValueError):
        allocate(D(32), [], step_a=D(0))


def test_the_trace_explains_every_decision() -> None:
    result = allocate(
        D(40),
        [ev("VIP/1", priority=10), ev("CS2/1", measured="5"), ev("CS3/1", max_a="16"),
         ev("OLD/1", max_a="16", controllable=False), ev("CS5/1")],
    )

    assert result.trace == (
        "limit 40 A per phase, step 0.1 A: 4 controllable, 1 uncontrollable session(s)",
        "reserve 16 A for OLD/1 (uncontrollable)",
        "24 A left for controllable sessions",
        "CS2/1: measured 5 A, cap 6 A (headroom 1 A)",
        "tier priority 10: 1 session(s), 6 A available, 18 A kept for lower minimums, "
        "share 6 A, 6 A used",
        "  VIP/1 -> 6 A",
        "tier priority 0: 3 session(s), 18 A available, share 6 A, 18 A used",
        "  CS2/1 -> 6 A (measured cap)",
        "  CS3/1 -> 6 A",
        "  CS5/1 -> 6 A",
        "total 40 A of 40 A (16 A reserved)",
    )


# ---------------------------------------------------------------------- properties

STEPS = st.sampled_from([D("0.1"), D("0.5"), D("1")])
AMPS = st.integers(min_value=0, max_value=400).map(lambda tenths: D(tenths) / 10)


@st.composite
def demands(draw: st.DrawFn) -> list[Demand]:
    count = draw(st.integers(min_value=0, max_value=8))
    keys = draw(st.lists(st.integers(0, 99), min_size=count, max_size=count, unique=True))
    result = []
    for number in keys:
        min_a = draw(st.sampled_from([D(0), D(6), D("6.5"), D(8), D(10)]))
        max_a = min_a + draw(st.sampled_from([D(0), D("0.5"), D(4), D(10), D(26)]))
        if max_a == 0:
            max_a = D("0.5")
        result.append(
            Demand(
                session_key=f"CS{number:02d}/1",
                phases=draw(st.sampled_from([1, 3])),
                min_a=min_a,
                max_a=max_a,
                priority=draw(st.integers(0, 2)),
                measured_a=draw(st.none() | AMPS),
                controllable=draw(st.booleans() | st.just(True)),
            )
        )
    return result


def _units(value: Decimal, step: Decimal, rounding: str) -> int:
    return int((value / step).to_integral_value(rounding=rounding))


def _bounds(demand: Demand, step: Decimal) -> tuple[Decimal, Decimal, bool]:
    """(lowest, highest) current the session may get, and whether a measurement caps it."""
    lo = max(1, _units(demand.min_a, step, ROUND_CEILING)) * step
    hi = _units(demand.max_a, step, ROUND_FLOOR) * step
    if demand.measured_a is not None:
        measured = max(lo, _units(max(demand.min_a, demand.measured_a + 1), step, ROUND_FLOOR) * step)
        if measured < hi:
            return lo, measured, True
    return lo, hi, False


def _reservation(demand: Demand, step: Decimal) -> Decimal:
    """What an uncontrollable session keeps (ADR 018 §5): its max, or its measured draw
    plus the 1 A headroom rounded up to a step, never above its max."""
    if demand.measured_a is None:
        return demand.max_a
    return min(demand.max_a, _units(demand.measured_a + 1, step, ROUND_CEILING) * step)


def _servable(demand: Demand, step: Decimal) -> bool:
    lo, hi, _ = _bounds(demand, step)
    return lo <= hi


def _controllable(result: Allocation, sessions: list[Demand]) -> list[tuple[Demand, Decimal]]:
    return [(d, result.limits[d.session_key]) for d in sessions if d.controllable]


@settings(max_examples=400)
@given(limit=AMPS, sessions=demands(), step=STEPS)
def test_the_site_limit_is_never_exceeded_while_reservations_fit(
    limit: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    result = allocate(limit, sessions, step_a=step)

    assert set(result.limits) == {d.session_key for d in sessions}
    assert result.total_a == sum(result.limits.values(), D(0))
    reserved = sum((_reservation(d, step) for d in sessions if not d.controllable), D(0))
    assert result.reserved_a == reserved
    assert result.over_limit == (reserved > limit)
    if reserved <= limit:
        assert result.total_a <= limit


@settings(max_examples=400)
@given(limit=AMPS, sessions=demands(), step=STEPS)
def test_every_session_is_paused_or_between_its_min_and_max(
    limit: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    result = allocate(limit, sessions, step_a=step)

    for demand in sessions:
        amps = result.limits[demand.session_key]
        if not demand.controllable:
            assert amps == _reservation(demand, step)
            assert amps <= demand.max_a
        elif amps == 0:
            assert demand.session_key in result.paused
        else:
            assert demand.min_a <= amps <= demand.max_a
            assert amps % step == 0
            assert demand.session_key not in result.paused


@settings(max_examples=400)
@given(limit=AMPS, sessions=demands(), step=STEPS)
def test_no_session_is_paused_while_a_lower_ranked_one_runs(
    limit: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    result = allocate(limit, sessions, step_a=step)
    candidates = [(d, a) for d, a in _controllable(result, sessions) if _servable(d, step)]

    for paused, paused_amps in candidates:
        if paused_amps != 0:
            continue
        for running, running_amps in candidates:
            if running_amps == 0:
                continue
            assert running.priority >= paused.priority
            if running.priority == paused.priority:
                assert running.session_key < paused.session_key


@settings(max_examples=400)
@given(limit=AMPS, sessions=demands(), step=STEPS)
def test_sessions_of_a_tier_share_fairly(
    limit: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    """A session may only get more than one step above another of its tier when the
    other is held by its own cap, or the first one is held up by its minimum."""
    result = allocate(limit, sessions, step_a=step)
    running = [(d, a) for d, a in _controllable(result, sessions) if a > 0]

    for small, small_amps in running:
        for big, big_amps in running:
            if small.priority != big.priority or big_amps - small_amps <= step:
                continue
            small_at_cap = small_amps == _bounds(small, step)[1]
            big_at_min = big_amps == _bounds(big, step)[0]
            assert small_at_cap or big_at_min


@settings(max_examples=300)
@given(
    limit=AMPS,
    count=st.integers(1, 8),
    min_a=st.sampled_from([D(6), D(8)]),
    max_a=st.sampled_from([D(16), D(32)]),
    step=STEPS,
)
def test_identical_uncapped_sessions_differ_by_at_most_one_step(
    limit: Decimal, count: int, min_a: Decimal, max_a: Decimal, step: Decimal
) -> None:
    sessions = [Demand(f"CS{i}/1", 1, min_a, max_a) for i in range(count)]

    running = [a for a in allocate(limit, sessions, step_a=step).limits.values() if a > 0]

    if running:
        assert max(running) - min(running) <= step


@settings(max_examples=300)
@given(limit=AMPS, sessions=demands(), step=STEPS, seed=st.integers(0, 2**16))
def test_the_same_input_always_gives_the_same_output(
    limit: Decimal, sessions: list[Demand], step: Decimal, seed: int
) -> None:
    shuffled = list(sessions)
    random.Random(seed).shuffle(shuffled)

    first = allocate(limit, sessions, step_a=step)
    again = allocate(limit, shuffled, step_a=step)

    assert first == again
    assert first.trace == again.trace


@settings(max_examples=400)
@given(limit=AMPS, extra=AMPS, sessions=demands(), step=STEPS)
def test_more_limit_never_reduces_the_total_allocated(
    limit: Decimal, extra: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    smaller = allocate(limit, sessions, step_a=step)
    larger = allocate(limit + extra, sessions, step_a=step)

    assert larger.total_a >= smaller.total_a


@settings(max_examples=400)
@given(limit=AMPS, sessions=demands(), step=STEPS)
def test_no_current_is_left_unused_while_a_running_session_could_take_more(
    limit: Decimal, sessions: list[Demand], step: Decimal
) -> None:
    result = allocate(limit, sessions, step_a=step)
    if result.over_limit:
        return
    below_cap = [d for d, a in _controllable(result, sessions) if 0 < a < _bounds(d, step)[1]]

    if below_cap:
        assert limit - result.total_a < step
