"""The station-authentication failure policy (limits.AuthLockout) on a fake clock."""

from __future__ import annotations

import pytest

from services.gateway.limits import AuthLimits, AuthLockout, Gate, backoff_s
from tests.unit.gateway_core.auth_support import Clock


def policy(clock: Clock, **kw: object) -> AuthLockout:
    base: dict[str, object] = dict(fail_limit=5, fail_window_s=60.0, lock_s=60.0, station_fail_limit=50,
                                   ip_fail_limit=30, slow_max_s=60.0)
    base.update(kw)
    return AuthLockout(AuthLimits(**base), now=clock)  # type: ignore[arg-type]


def test_a_pair_is_locked_after_the_limit_for_lock_s() -> None:
    clock = Clock()
    p = policy(clock)
    assert [p.fail("CP1", "a") for _ in range(5)] == [False] * 4 + [True]
    assert p.gate("CP1", "a") == Gate(401, "locked", 60)
    assert p.gate("CP1", "b") == Gate() and p.gate("CP2", "a") == Gate()
    clock.t += 30.5
    assert p.gate("CP1", "a") == Gate(401, "locked", 30)
    clock.t += 30
    assert p.gate("CP1", "a") == Gate()


def test_pair_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    p = policy(clock)
    for _ in range(4):
        p.fail("CP1", "a")
    clock.t += 61
    assert not p.fail("CP1", "a") and p.gate("CP1", "a").status == 0


def test_a_success_clears_the_pair() -> None:
    clock = Clock()
    p = policy(clock)
    for _ in range(4):
        p.fail("CP1", "a")
    p.succeed("CP1", "a")
    assert not p.fail("CP1", "a")
    assert p.sizes()[0] == 1


def test_past_the_station_limit_failing_sources_are_slowed_with_a_growing_capped_back_off() -> None:
    clock = Clock()
    p = policy(clock, station_fail_limit=10, slow_max_s=8.0, fail_limit=100)
    for i in range(10):
        p.fail("CP1", f"s{i}")
    assert p.gate("CP1", "s0") == Gate(429, "station_slowed", 1)  # at the limit: 1 s
    assert p.gate("CP1", "fresh") == Gate()  # a source that never failed for CP1
    waits = []
    for _ in range(5):
        p.fail("CP1", "s1")
        waits.append(p.gate("CP1", "s1").retry_after)
    assert waits == [2, 4, 8, 8, 8]
    assert p.gate("CP2", "s1") == Gate()


def test_the_station_count_decays_so_the_slowing_ends() -> None:
    clock = Clock()
    p = policy(clock, station_fail_limit=10, fail_limit=100)
    for i in range(20):
        p.fail("CP1", "s")
    assert p.gate("CP1", "s").status == 429
    clock.t += 60  # the back-off (at most slow_max_s) has passed
    assert p.gate("CP1", "s") == Gate()
    p.fail("CP1", "s")  # 20/e + 1 = 8.4 < 10: below the limit, no new back-off
    assert p.gate("CP1", "s") == Gate()


def test_a_slowed_address_is_slowed_only_for_the_stations_it_failed_on() -> None:
    clock = Clock()
    p = policy(clock, ip_fail_limit=30)
    for i in range(31):
        p.fail(f"CP{i}", "nat")
    assert p.gate("CP0", "nat") == Gate(429, "source_slowed", 2)
    assert p.gate("CP99", "nat") == Gate()  # a charger behind the same address that never failed
    assert p.gate("CP0", "elsewhere") == Gate()


def test_a_pair_whose_last_failure_left_the_window_is_no_longer_slowed() -> None:
    clock = Clock()
    p = policy(clock, ip_fail_limit=3, slow_max_s=600.0, fail_limit=100)
    for _ in range(12):
        p.fail("CP1", "x")
    assert p.gate("CP1", "x").status == 429
    clock.t += 61
    assert p.gate("CP1", "x") == Gate()


def test_every_table_is_bounded_and_evicts_the_least_recently_failed() -> None:
    clock = Clock()
    p = policy(clock, max_tracked=3, fail_limit=2)
    p.fail("CP0", "a")
    p.fail("CP0", "a")  # locked
    for i in range(1, 3):
        p.fail(f"CP{i}", f"s{i}")
    p.fail("CP0", "a")  # CP0/a failed most recently: kept
    p.fail("CP9", "s9")
    assert p.sizes() == (3, 3, 3)
    assert p.gate("CP0", "a").status == 401
    assert p.gate("CP1", "s1") == Gate()  # evicted


@pytest.mark.parametrize("excess,expected", [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0), (1e9, 60.0), (-5, 1.0)])
def test_backoff_doubles_per_failure_past_the_limit_up_to_the_cap(excess: float, expected: float) -> None:
    assert backoff_s(excess, 60.0) == expected
