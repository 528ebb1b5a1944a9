"""Admission by measured overload: the pure decisions (services/gateway/admission.py) and the
runtime shell's bookkeeping, with injected clocks and signals (no wall clock)."""

from __future__ import annotations

import pytest

from services.gateway.admission import (
    Admission, BootAdmission, Signals, Thresholds, UpgradeLimits, boot_overloaded, load, next_capacity, overloaded, retry_after,
)

TH = Thresholds(max_loop_lag_s=0.25, max_publishes=1000, max_store_s=0.5, retry_min_s=1, retry_max_s=120)
HEALTHY = Signals(loop_lag_s=0.01, publishes_in_flight=10, store_latency_s=0.002)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- load / overloaded -------------------------------------------------------------------
def test_healthy_signals_admit() -> None:
    assert load(HEALTHY, TH) < 1.0
    assert not overloaded(HEALTHY, TH)


@pytest.mark.parametrize("sig", [
    Signals(loop_lag_s=0.3, publishes_in_flight=0, store_latency_s=0.0),
    Signals(loop_lag_s=0.0, publishes_in_flight=1000, store_latency_s=0.0),
    Signals(loop_lag_s=0.0, publishes_in_flight=0, store_latency_s=0.6),
])
def test_any_one_signal_past_its_threshold_is_overload(sig: Signals) -> None:
    assert overloaded(sig, TH)


def test_load_is_the_worst_signal_relative_to_its_threshold() -> None:
    sig = Signals(loop_lag_s=0.125, publishes_in_flight=900, store_latency_s=0.1)
    assert load(sig, TH) == pytest.approx(0.9)


def test_a_zero_threshold_switches_its_signal_off() -> None:
    th = Thresholds(max_loop_lag_s=0, max_publishes=0, max_store_s=0)
    assert not overloaded(Signals(loop_lag_s=10.0, publishes_in_flight=10**6, store_latency_s=10.0), th)


# -- retry_after: spread at the measured capacity ------------------------------------------
def test_refused_clients_get_slots_spread_at_the_capacity() -> None:
    now, horizon = 100.0, 0.0
    answers = []
    for _ in range(1000):
        s, horizon = retry_after(now, horizon, backlog=0, capacity_per_s=100.0, th=TH)
        answers.append(s)
    # 100 per second come back in each second: 1000 clients over ~10 s, not all at once
    assert answers[0] == 1
    assert answers == sorted(answers)
    assert max(answers) == pytest.approx(11, abs=1)
    per_second = {s: answers.count(s) for s in set(answers)}
    assert max(per_second.values()) <= 101


def test_the_backlog_in_progress_is_served_first() -> None:
    s, _ = retry_after(100.0, 0.0, backlog=500, capacity_per_s=100.0, th=TH)
    assert s == 5  # 500 in progress at 100/s


def test_retry_after_is_bounded_and_the_horizon_stops_growing() -> None:
    th = Thresholds(retry_min_s=1, retry_max_s=30)
    horizon = 0.0
    for _ in range(10_000):
        s, horizon = retry_after(0.0, horizon, backlog=0, capacity_per_s=50.0, th=th)
        assert 1 <= s <= 30
    assert horizon <= 30 + 1 / 50 + 1e-9


def test_past_the_bound_clients_are_spread_over_the_upper_half() -> None:
    th = Thresholds(retry_min_s=1, retry_max_s=30)
    horizon = 31.0  # the schedule is full past the bound
    answers = {retry_after(0.0, horizon, backlog=0, capacity_per_s=50.0, th=th, u=u / 10)[0] for u in range(10)}
    assert min(answers) == 15 and max(answers) <= 30 and len(answers) >= 5


def test_a_slow_store_refuses_upgrades_but_does_not_send_booting_stations_away() -> None:
    slow_store = Signals(loop_lag_s=0.0, publishes_in_flight=0, store_latency_s=5.0)
    assert overloaded(slow_store, TH) and not boot_overloaded(slow_store, TH)
    assert boot_overloaded(Signals(loop_lag_s=1.0, publishes_in_flight=0, store_latency_s=0.0), TH)
    assert boot_overloaded(Signals(loop_lag_s=0.0, publishes_in_flight=10**6, store_latency_s=0.0), TH)


def test_an_old_horizon_does_not_delay_a_refusal_later_on() -> None:
    _, horizon = retry_after(0.0, 0.0, backlog=0, capacity_per_s=100.0, th=TH)
    s, _ = retry_after(500.0, horizon, backlog=0, capacity_per_s=100.0, th=TH)
    assert s == TH.retry_min_s


# -- capacity estimate --------------------------------------------------------------------
def test_capacity_is_measured_only_in_saturated_windows() -> None:
    assert next_capacity(500.0, completed=10, window_s=0.5, saturated=False) == 500.0   # demand, not capacity
    assert next_capacity(500.0, completed=600, window_s=0.5, saturated=True) == pytest.approx(710.0)
    assert next_capacity(500.0, completed=0, window_s=0.5, saturated=True) == 500.0      # nothing let in: no measure
    assert next_capacity(30.0, completed=1, window_s=0.5, saturated=True) >= 20.0        # floored


# -- the runtime shell --------------------------------------------------------------------
def _admission(publishes: list[int], clock: Clock) -> Admission:
    return Admission(TH, lambda: publishes[0], now=clock)


def test_admission_admits_while_healthy_and_refuses_with_a_wait_when_overloaded() -> None:
    clock, publishes = Clock(), [0]
    adm = _admission(publishes, clock)
    assert adm.upgrade_retry_after() == 0
    assert adm.boot_pending_interval() == 0
    publishes[0] = 5000  # the bus is not keeping up
    waits = [adm.upgrade_retry_after() for _ in range(2000)]
    assert all(w >= 1 for w in waits) and waits == sorted(waits) and waits[-1] > waits[0]
    assert adm.boot_pending_interval() >= 1
    publishes[0] = 0
    assert adm.upgrade_retry_after() == 0


def test_store_latency_is_an_ewma_of_tracked_store_steps() -> None:
    clock = Clock()
    adm = _admission([0], clock)
    for _ in range(30):
        with adm.track(store=True):
            clock.t += 2.0  # a store round trip of 2 s
    assert adm.store_latency == pytest.approx(2.0, rel=0.01)
    assert adm.upgrade_retry_after() >= 1
    assert adm.boot_pending_interval() == 0


def test_tracked_steps_count_as_backlog_and_completions() -> None:
    clock = Clock()
    adm = _admission([0], clock)
    with adm.track():
        with adm.track(store=True, completes=True):
            assert adm.in_flight == 2
    assert adm.in_flight == 0 and adm._completed == 1
    with pytest.raises(RuntimeError):
        with adm.track(store=True, completes=True):
            raise RuntimeError("store down")
    assert adm.in_flight == 0 and adm._completed == 1  # a failed claim is not a completion


async def test_the_lag_probe_reports_an_overdue_loop() -> None:
    adm = Admission(TH)
    assert adm.upgrade_retry_after() == 0  # starts the probe in this loop
    loop = adm._loop
    assert loop is not None
    adm._due = loop.time() - 1.0  # as if the loop had been blocked for a second past the probe
    assert adm.signals().loop_lag_s >= 1.0
    assert adm.upgrade_retry_after() >= 1
    adm.stop()


# -- settings ------------------------------------------------------------------------------
def test_thresholds_and_upgrade_limits_come_from_the_typed_settings() -> None:
    from services.common.config import Settings, load_settings

    settings = Settings(admit_max_loop_lag_s=0.5, admit_max_publishes=99, admit_max_store_s=1.0, admit_retry_max_s=60,
                        upgrade_rate_per_ip=5.0, upgrade_burst_per_ip=50.0, upgrade_max_wait_s=0.0)
    th = Thresholds.from_settings(settings)
    assert (th.max_loop_lag_s, th.max_publishes, th.max_store_s, th.retry_max_s) == (0.5, 99, 1.0, 60)
    up = UpgradeLimits.from_settings(settings)
    assert (up.rate, up.burst, up.max_wait_s) == (5.0, 50.0, 0.0)
    # ... and from their CSMS_* variables
    env = load_settings({"CSMS_ADMIT_MAX_PUBLISHES": "7", "CSMS_ADMIT_MAX_LOOP_LAG_S": "0", "CSMS_UPGRADE_BURST_PER_IP": "3"})
    assert (Thresholds.from_settings(env).max_publishes, Thresholds.from_settings(env).max_loop_lag_s) == (7, 0.0)
    assert UpgradeLimits.from_settings(env) == UpgradeLimits(200.0, 3.0, 10.0)


async def test_the_probe_stops_when_nobody_asks_and_restarts_on_the_next_decision() -> None:
    clock = Clock()
    adm = Admission(TH, now=clock)
    adm.upgrade_retry_after()
    assert adm._timer is not None
    clock.t += 31.0
    adm._tick()  # the next probe finds no decision for 30 s
    assert adm._timer is None and adm.signals().loop_lag_s == 0.0
    assert adm.upgrade_retry_after() == 0 and adm._timer is not None
    adm.stop()


# -- the BootNotification decision (boot admission + boot action) --------------------------
class _InFlight:
    n = 0


def _boots(in_flight: _InFlight | None = None, boot_rate_per_s: float = 0.0, **settings: object) -> BootAdmission:
    from services.common.config import Settings

    counter = in_flight or _InFlight()
    admission = Admission(Thresholds.from_settings(Settings(**settings)), lambda: counter.n)  # type: ignore[arg-type]
    return BootAdmission(admission, boot_rate_per_s)


def test_boots_are_accepted_while_healthy_with_no_fixed_cap_by_default() -> None:
    boots = _boots()
    assert all(boots.admit_boot() for _ in range(10_000))


def test_boots_are_pending_with_the_admission_interval_while_the_bus_is_backed_up() -> None:
    in_flight = _InFlight()
    boots = _boots(in_flight, admit_max_publishes=10)
    in_flight.n = 50
    assert not boots.admit_boot()
    first = boots.pending_interval()
    assert first is not None and first >= 1
    in_flight.n = 0
    assert boots.admit_boot() and boots.pending_interval() is None


def test_a_fixed_boot_cap_still_works_and_leaves_the_interval_to_the_action() -> None:
    boots = _boots(boot_rate_per_s=3.0)
    assert [boots.admit_boot() for _ in range(5)] == [True, True, True, False, False]
    assert boots.pending_interval() is None  # not overload: the action picks its jittered interval


async def test_the_boot_action_answers_pending_with_the_interval_admission_chose() -> None:
    from tests.unit.gateway_actions.builders import a_harness

    h = a_harness(admit=False, pending=7)
    answer = await h.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert answer["status"] == "Pending" and answer["interval"] == 7
    assert h.events.body.interval == 7
