"""The per-address upgrade limiter slows a site's chargers and refuses a flood
(limits.TokenBucket.reserve / KeyedBuckets.reserve), on an injected clock."""

from __future__ import annotations

import pytest

from services.gateway.limits import KeyedBuckets, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_within_the_burst_upgrades_go_at_once() -> None:
    b = TokenBucket(rate=10, burst=5, now=Clock())
    assert [b.reserve(max_wait=2.0) for _ in range(5)] == [(True, 0.0)] * 5


def test_past_the_burst_upgrades_wait_their_turn_at_the_rate() -> None:
    b = TokenBucket(rate=10, burst=2, now=Clock())
    b.reserve(2.0), b.reserve(2.0)
    waits = [b.reserve(max_wait=2.0) for _ in range(5)]
    assert all(ok for ok, _ in waits)
    assert [w for _, w in waits] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_beyond_the_bound_the_upgrade_is_refused_with_a_retry_after_and_nothing_is_taken() -> None:
    clock = Clock()
    b = TokenBucket(rate=10, burst=1, now=clock)
    results = [b.reserve(max_wait=1.0) for _ in range(20)]
    admitted = [r for r in results if r[0]]
    refused = [r for r in results if not r[0]]
    assert len(admitted) == 1 + 10  # the burst, then 1 s worth at 10/s
    assert refused and all(w > 1.0 for _, w in refused)
    # refusals took nothing: after the queued ones are served, new ones are admitted again
    clock.t += 1.1
    assert b.reserve(max_wait=1.0)[0]


def test_a_site_of_hundreds_of_chargers_behind_one_address_is_slowed_not_refused() -> None:
    kb: KeyedBuckets[str] = KeyedBuckets(rate=200, burst=1000, now=Clock())
    site = [kb.reserve("203.0.113.7", max_wait=10.0) for _ in range(2500)]
    assert all(ok for ok, _ in site)
    assert max(w for _, w in site) == pytest.approx(1500 / 200)


def test_a_flood_from_one_address_is_bounded_and_other_addresses_are_unaffected() -> None:
    kb: KeyedBuckets[str] = KeyedBuckets(rate=200, burst=1000, now=Clock())
    flood = [kb.reserve("198.51.100.1", max_wait=10.0) for _ in range(100_000)]
    admitted = sum(1 for ok, _ in flood if ok)
    assert admitted == 1000 + 200 * 10  # at most burst + rate x max_wait ever admitted or waiting
    assert all(w <= 10.0 for ok, w in flood if ok)
    assert kb.reserve("198.51.100.2", max_wait=10.0) == (True, 0.0)


def test_max_wait_zero_is_the_old_refuse_at_once_limiter() -> None:
    kb: KeyedBuckets[str] = KeyedBuckets(rate=1, burst=3, now=Clock())
    assert [kb.reserve("a", max_wait=0.0)[0] for _ in range(5)] == [True, True, True, False, False]


def test_refused_upgrades_are_told_to_come_back_spread_at_the_rate() -> None:
    b = TokenBucket(rate=100, burst=10, now=Clock())
    results = [b.reserve(max_wait=1.0) for _ in range(1110)]
    retry_afters = [w for ok, w in results if not ok]
    assert len(retry_afters) == 1000
    assert retry_afters == sorted(retry_afters)
    assert retry_afters[0] == pytest.approx(1.0, abs=0.02)           # after the queue
    assert retry_afters[-1] == pytest.approx(1.0 + 999 / 100, abs=0.05)  # 1000 more at 100/s
