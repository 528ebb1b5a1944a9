"""What billing's wiring decides once per process: the limits, the rules, the sessions
already reported as unbilled."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from services.billing.handlers import ReportedOnce
from services.billing.wiring import limits_of, rules_of
from services.common.config import Settings
from services.sessions.domain import Plausibility


def test_a_session_is_reported_once_however_often_it_comes_back() -> None:
    reported = ReportedOnce()

    assert reported.first_time("CS1-1") is True
    assert [reported.first_time("CS1-1") for _ in range(3)] == [False, False, False]
    assert reported.first_time("CS1-2") is True


def test_the_reported_sessions_are_bounded_and_the_least_recently_seen_is_forgotten_first() -> None:
    reported = ReportedOnce(max_keys=2)
    reported.first_time("a")
    reported.first_time("b")
    reported.first_time("a")  # seen again: now the most recent

    assert reported.first_time("c") is True  # forgets "b"

    assert reported.first_time("a") is False
    assert reported.first_time("b") is True


def test_the_limits_come_from_the_settings() -> None:
    limits = limits_of(Settings().with_overrides(session_max_duration_h=2, session_max_energy_wh=5000))

    assert (limits.max_duration, limits.max_energy_wh, limits.duration_usable) == (timedelta(hours=2), 5000, True)


def test_an_unusable_maximum_duration_is_logged_when_wired_and_replaced_by_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="csms.billing.wiring"):
        limits = limits_of(Settings().with_overrides(session_max_duration_h=-1))

    assert limits.max_duration == timedelta(hours=72) and not limits.duration_usable
    assert [r.getMessage() for r in caplog.records] == [
        "CSMS_SESSION_MAX_DURATION_H=-1 is not usable: billing uses 3 days, 0:00:00"
    ]


def test_billing_judges_stored_samples_with_the_sessions_processors_rules_from_the_same_settings() -> None:
    settings = Settings().with_overrides(meter_max_power_kw=50.0)

    assert rules_of(settings) == Plausibility.from_settings(settings)
