"""The key property: a session is a function of the *set* of its events (ADR 007, ADR 015).

Any permutation and duplication of a session's events (with some of them
missing, late, or stamped with skewed clocks), applied one by one — appending each
step's `new_samples` to a list standing for the sample store and rebuilding whenever
a step asks — ends in the same session as the in-order run, and equal to applying
all the facts and rebuilding over all the samples once; only `version`, `updated_at`
and `applied` (which count, date and locate the real changes) may differ. Applying
any of its events again changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.billing.domain.tariff import Tariff, TariffBand
from services.common import events as ev
from services.sessions.domain import Session, apply, rebuild

from .builders import NOW, T0, V16, SampleStore, a_register, a_started, an_ended, an_updated, meter_values

# A band starting 25 minutes into the test sessions: the price accumulator crosses it.
TARIFF = Tariff(
    id="t-1", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    bands=(TariffBand(start="10:25", end="11:05", price_per_kwh=Decimal("0.50")),),
)
tariffs = st.sampled_from([None, TARIFF])

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


def _run(events: list[ev.Envelope], tariff: Tariff | None = None, store: SampleStore | None = None) -> Session:
    store = store if store is not None else SampleStore()
    s = None
    for i, e in enumerate(events):
        s = store.apply(s, e, NOW + timedelta(seconds=i), tariff=tariff)
    assert s is not None
    return s


def _facts_then_one_rebuild(events: list[ev.Envelope], tariff: Tariff | None) -> Session:
    """Apply every event, storing samples but never rebuilding; then one rebuild."""
    s, samples = None, []
    for i, e in enumerate(events):
        step = apply(s, e, NOW + timedelta(seconds=i), tariff=tariff)
        s = step.session
        samples.extend(step.new_samples)
    assert s is not None
    return rebuild(s, samples, tariff=tariff)


def _facts(s: Session) -> Session:
    return replace(s, version=0, updated_at=T0, applied=None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), session=st.one_of(a_201_session(), a_16_session()), tariff=tariffs)
def test_any_permutation_and_duplication_of_a_sessions_events_ends_in_the_same_session(
    data: st.DataObject, session: list[ev.Envelope], tariff: Tariff | None
) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(session), max_size=len(session)).map(
        lambda ks: ks if data.draw(st.booleans()) else [True] * len(ks)
    ))
    events = _some_of(session, keep)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    shuffled = data.draw(st.permutations(events + duplicates))

    in_order = _run(events, tariff)
    store = SampleStore()
    any_order = _run(shuffled, tariff, store)

    assert (any_order.energy_wh, any_order.status, any_order.stopped_at) == (
        in_order.energy_wh, in_order.status, in_order.stopped_at
    )
    assert _facts(any_order) == _facts(in_order)
    assert _facts(_facts_then_one_rebuild(shuffled, tariff)) == _facts(any_order)
    # the incremental aggregates are those of one fold over the stored samples
    assert rebuild(any_order, store.samples(any_order), tariff=tariff) is any_order
    assert in_order.energy_wh >= 0 and isinstance(in_order.energy_wh, int)
    assert (in_order.price is not None) == (tariff is not None and in_order.price_basis is not None)


@settings(max_examples=150, deadline=None)
@given(session=st.one_of(a_201_session(), a_16_session()), tariff=tariffs)
def test_applying_any_of_a_sessions_events_again_changes_nothing(session: list[ev.Envelope], tariff: Tariff | None) -> None:
    store = SampleStore()
    final = _run(session, tariff, store)
    for e in session:
        assert store.apply(final, e, NOW + timedelta(days=1), tariff=tariff) is final


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), session=st.one_of(a_201_session(), a_16_session()), tariff=tariffs)
def test_a_rebuild_may_wait_for_the_end_of_a_batch(
    data: st.DataObject, session: list[ev.Envelope], tariff: Tariff | None
) -> None:
    """What the runtime does: apply a batch's events, and fold once at its end when any of
    them asked for it (the aggregates in between are provisional, the samples complete)."""
    shuffled = data.draw(st.permutations(session + data.draw(st.lists(st.sampled_from(session), max_size=3))))
    sizes = data.draw(st.lists(st.integers(min_value=1, max_value=4), min_size=len(shuffled), max_size=len(shuffled)))
    s, samples, i = None, [], 0
    for size in sizes:
        pending = ""
        for e in shuffled[i:i + size]:
            step = apply(s, e, NOW, tariff=tariff)
            s = step.session
            samples.extend(step.new_samples)
            pending = pending or step.rebuild
        if pending:
            assert s is not None
            s = rebuild(s, samples, tariff=tariff)
        i += size
    assert s is not None
    assert _facts(s) == _facts(_run(session, tariff))
