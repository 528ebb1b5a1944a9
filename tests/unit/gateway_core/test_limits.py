"""Token buckets, lockouts, TTL cache and CALLERROR spelling."""

from __future__ import annotations

import orjson
import pytest
from ocpp.exceptions import FormationViolationError, OccurenceConstraintViolationError, PropertyConstraintViolationError

from services.gateway import errors
from services.gateway.limits import KeyedBuckets, Lockouts, TokenBucket, TTLCache


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    b = TokenBucket(rate=2, burst=3, now=clock)
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    clock.t += 0.5
    assert b.take() and not b.take()


def test_a_token_bucket_reports_how_long_to_wait_when_in_debt() -> None:
    clock = Clock()
    b = TokenBucket(rate=10, burst=1, now=clock)
    assert b.delay() == 0.0
    assert b.delay() == pytest.approx(0.1)
    assert b.delay() == pytest.approx(0.2)


def test_keyed_buckets_are_independent_and_bounded() -> None:
    clock = Clock()
    kb: KeyedBuckets[str] = KeyedBuckets(rate=1, burst=1, max_keys=2, now=clock)
    assert kb.take("a") and not kb.take("a") and kb.take("b") and kb.take("c")
    assert len(kb._buckets) == 2


def test_lockouts_lock_after_the_limit_and_expire() -> None:
    clock = Clock()
    lo: Lockouts[str] = Lockouts(limit=3, window=60, lock_s=30, now=clock)
    assert not lo.fail("k") and not lo.fail("k") and lo.fail("k")
    assert lo.locked_for("k") == 30
    clock.t += 31
    assert lo.locked_for("k") == 0


def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    lo: Lockouts[str] = Lockouts(limit=3, window=60, lock_s=30, now=clock)
    lo.fail("k"), lo.fail("k")
    clock.t += 61
    assert not lo.fail("k") and lo.locked_for("k") == 0


def test_a_ttl_cache_expires_entries_and_evicts_the_oldest() -> None:
    clock = Clock()
    c: TTLCache[str, int] = TTLCache(max_size=2, ttl=10, now=clock)
    c.put("a", 1), c.put("b", 2), c.put("c", 3)
    assert c.get("a") is None and c.get("c") == 3
    clock.t += 11
    assert c.get("c") is None and c.get("c", stale=True) == 3


@pytest.mark.parametrize("code,v16,v2x", [
    ("FormatViolation", "FormationViolation", "FormatViolation"),
    ("FormationViolation", "FormationViolation", "FormatViolation"),
    ("OccurrenceConstraintViolation", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    ("OccurenceConstraintViolation", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    ("RpcFrameworkError", "GenericError", "RpcFrameworkError"),
    ("SecurityError", "SecurityError", "SecurityError"),
    ("MadeUp", "GenericError", "GenericError"),
])
def test_error_codes_are_spelled_as_the_version_defines_them(code: str, v16: str, v2x: str) -> None:
    assert errors.spell("1.6", code) == v16
    assert errors.spell("2.0.1", code) == v2x
    assert errors.spell("2.1", code) == v2x


@pytest.mark.parametrize("exc,v16,v2x", [
    (FormationViolationError(), "FormationViolation", "FormatViolation"),
    (OccurenceConstraintViolationError(), "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    (PropertyConstraintViolationError("bad", {"ocpp_message": object(), "cause": "x"}), "PropertyConstraintViolation", "PropertyConstraintViolation"),
])
def test_handler_exceptions_become_callerrors_of_the_version(exc: Exception, v16: str, v2x: str) -> None:
    assert orjson.loads(errors.from_exception("1.6", "m", exc))[:3] == [4, "m", v16]  # type: ignore[arg-type]
    out = orjson.loads(errors.from_exception("2.0.1", "m", exc))  # type: ignore[arg-type]
    assert out[2] == v2x and "ocpp_message" not in out[4]
