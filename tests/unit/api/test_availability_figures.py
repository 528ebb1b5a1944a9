"""Uptime, outages, MTBF and MTTR of a window (services/stations/domain/availability.py):
clipping, an open outage, no outages, a window before the station existed, several
outages, and the two mean times as ADR 016 §6 defines them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.stations.domain.availability import AvailabilityFigures, OutageSpan, availability, combine, uptime_percent
from services.stations.domain.ops import OpenOutage, Outage

UTC = timezone.utc
T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def figures(outages: list[Outage], open_outage: OpenOutage | None = None, *, frm: float = 0, to: float = 100,
            now: float = 1000, created: float | None = None) -> AvailabilityFigures:
    return availability(outages, open_outage, window_from=at(frm), window_to=at(to), now=at(now),
                        created_at=None if created is None else at(created))


def test_no_outages_is_all_up_and_no_mean_times() -> None:
    f = figures([])
    assert (f.up_s, f.down_s, f.uptime_percent) == (100 * 3600, 0, 100.0)
    assert (f.failures, f.mtbf_s, f.mttr_s, f.outages) == (0, None, None, ())


def test_one_outage_inside_the_window() -> None:
    f = figures([Outage("offline", at(10), at(12))])
    assert f.down_s == 2 * 3600 and f.up_s == 98 * 3600
    assert f.uptime_percent == 98.0
    assert f.failures == 1 and f.mtbf_s == 98 * 3600
    assert f.mttr_s == 2 * 3600
    assert f.outages == (OutageSpan("offline", at(10), at(12), 7200.0),)


def test_outages_are_clipped_to_the_window_but_mttr_counts_the_whole_repair() -> None:
    before = Outage("faulted", at(-5), at(2))   # started before the window, ended in it
    after = Outage("unavailable", at(99), at(110))  # started in it, ended after
    f = figures([before, after])
    assert f.outages == (OutageSpan("faulted", at(0), at(2), 7200.0), OutageSpan("unavailable", at(99), at(100), 3600.0))
    assert f.down_s == 3 * 3600 and f.up_s == 97 * 3600
    # failures: outages that start in the window (only `after`); repairs: that end in it (only `before`)
    assert f.failures == 1 and f.mtbf_s == 97 * 3600
    assert f.repairs == 1 and f.mttr_s == 7 * 3600


def test_an_outage_spanning_the_whole_window_is_all_down_without_failure_or_repair() -> None:
    f = figures([Outage("offline", at(-1), at(200))])
    assert (f.up_s, f.down_s, f.uptime_percent) == (0, 100 * 3600, 0.0)
    assert (f.failures, f.mtbf_s, f.repairs, f.mttr_s) == (0, None, 0, None)
    assert f.outages == (OutageSpan("offline", at(0), at(100), 360000.0),)


def test_outages_outside_the_window_are_left_out() -> None:
    f = figures([Outage("offline", at(-10), at(-5)), Outage("offline", at(100), at(101))])
    assert f.down_s == 0 and f.outages == () and f.failures == 0 and f.repairs == 0


def test_windows_are_half_open_so_consecutive_windows_count_each_outage_once() -> None:
    outage = Outage("faulted", at(7), at(10))  # ends where the second window starts
    first, second = figures([outage], frm=0, to=10), figures([outage], frm=10, to=20)
    assert (first.failures, first.repairs, first.down_s) == (1, 0, 3 * 3600)
    assert (second.failures, second.repairs, second.down_s, second.outages) == (0, 1, 0, ())
    assert second.mttr_s == 3 * 3600


def test_an_open_outage_runs_to_the_end_of_the_observation_and_is_not_a_repair() -> None:
    f = figures([], OpenOutage("faulted", at(90)), to=100, now=95)
    # observation ends at now (95): the future is not observed
    assert f.observed_to == at(95)
    assert f.down_s == 5 * 3600 and f.up_s == 90 * 3600
    assert f.outages == (OutageSpan("faulted", at(90), None, 18000.0),)
    assert f.failures == 1 and f.repairs == 0 and f.mttr_s is None and f.mtbf_s == 90 * 3600


def test_an_open_outage_that_began_before_the_window_starts_at_the_window() -> None:
    f = figures([], OpenOutage("offline", at(-50)), frm=0, to=10, now=20)
    assert f.outages == (OutageSpan("offline", at(0), None, 36000.0),)
    assert f.uptime_percent == 0.0 and f.failures == 0


def test_a_window_that_ended_before_the_open_outage_began_does_not_see_it() -> None:
    f = figures([], OpenOutage("offline", at(50)), frm=0, to=10, now=60)
    assert f.down_s == 0 and f.outages == ()


def test_observation_starts_at_the_stations_creation() -> None:
    f = figures([Outage("offline", at(5), at(6))], created=4, frm=0, to=10)
    assert f.observed_from == at(4) and f.observed_s == 6 * 3600
    assert f.down_s == 3600 and f.uptime_percent == round(500 / 6, 2)


def test_a_window_before_the_station_existed_observes_nothing() -> None:
    f = figures([], OpenOutage("offline", at(1)), frm=0, to=10, created=20, now=30)
    assert (f.up_s, f.down_s, f.failures, f.outages) == (0, 0, 0, ())
    assert f.uptime_percent == 100.0 and f.mtbf_s is None and f.mttr_s is None


def test_a_window_in_the_future_observes_nothing() -> None:
    f = figures([], frm=50, to=60, now=40)
    assert f.observed_s == 0 and f.uptime_percent == 100.0


def test_several_outages_and_an_open_one() -> None:
    outages = [Outage("offline", at(10), at(11)), Outage("faulted", at(20), at(23)), Outage("unavailable", at(30), at(30.5))]
    f = figures(outages[::-1], OpenOutage("offline", at(95)), to=100, now=100)
    assert [s.cause for s in f.outages] == ["offline", "faulted", "unavailable", "offline"]
    assert f.down_s == (1 + 3 + 0.5 + 5) * 3600
    assert f.up_s == 90.5 * 3600
    assert f.failures == 4 and f.mtbf_s == round(90.5 * 3600 / 4, 3)
    assert f.repairs == 3 and f.mttr_s == round((1 + 3 + 0.5) * 3600 / 3, 3)
    assert f.uptime_percent == 90.5


def test_overlapping_outages_never_count_time_twice() -> None:
    f = figures([Outage("offline", at(10), at(20)), Outage("faulted", at(15), at(25))])
    assert f.down_s == 15 * 3600 and f.up_s + f.down_s == f.observed_s == 100 * 3600


def test_an_outage_that_ends_before_it_starts_is_ignored() -> None:
    f = figures([Outage("offline", at(20), at(10))])
    assert f.down_s == 0 and f.failures == 0 and f.repairs == 0


@pytest.mark.parametrize("up, down, expected", [(1, 2, 33.33), (2, 1, 66.67), (0, 0, 100.0), (0, 5, 0.0), (5, 0, 100.0)])
def test_uptime_percent_has_two_decimals(up: float, down: float, expected: float) -> None:
    assert uptime_percent(up, down) == expected


def test_combined_figures_sum_the_stations() -> None:
    a = figures([Outage("offline", at(10), at(12))])              # up 98 h, 1 failure, 1 repair of 2 h
    b = figures([Outage("faulted", at(50), at(54))], OpenOutage("offline", at(90)), to=100, now=100)  # up 86 h
    both = combine([a, b])
    assert both is not None
    assert both.up_s == (98 + 86) * 3600 and both.down_s == (2 + 14) * 3600
    assert both.failures == 3 and both.repairs == 2
    assert both.mtbf_s == round(184 * 3600 / 3, 3) and both.mttr_s == 3 * 3600
    assert both.uptime_percent == 92.0
    assert combine([]) is None


def test_a_cause_changing_while_the_station_stays_down_is_one_failure_and_one_repair() -> None:
    # a firmware update seen from outside: faulted, unavailable, offline for the reboot, unavailable
    chain = [Outage("faulted", at(10), at(11)), Outage("unavailable", at(11), at(12)),
             Outage("offline", at(12), at(13)), Outage("unavailable", at(13), at(14))]
    f = figures(chain + [Outage("offline", at(50), at(52))])
    assert len(f.outages) == 5 and f.down_s == 6 * 3600
    assert (f.failures, f.repairs) == (2, 2)
    assert f.mttr_s == 3 * 3600  # (4 h + 2 h) / 2
    assert f.mtbf_s == 94 * 3600 / 2


def test_a_down_period_still_open_is_a_failure_without_a_repair() -> None:
    f = figures([Outage("faulted", at(10), at(11))], OpenOutage("offline", at(11)), to=20, now=20)
    assert (f.failures, f.repairs, f.mttr_s) == (1, 0, None)
    assert f.down_s == 10 * 3600
