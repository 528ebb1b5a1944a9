"""The firmware campaign state machine, pure: waves of at most max_in_flight, success by
Installed + a boot into the target, the failures, offline stations waiting, halting."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.stations.campaign_documents import campaign_from_doc, campaign_to_doc
from services.stations.domain.campaigns import (
    MAX_ATTEMPTS,
    Campaign,
    StationView,
    attempt_ids,
    cancel,
    is_active,
    new_campaign,
    progress,
    tick,
    undispatch,
)

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TIMEOUT = timedelta(hours=1)
STATIONS = [f"CP-{i}" for i in range(6)]


class Fleet:
    """Stations that follow their UpdateFirmware: Downloading, Installed, then boot
    into `boots_into` (default: the target)."""

    def __init__(self, target: str = "2.0") -> None:
        self.target = target
        self.views = {s: StationView(connected=True, boot_version="1.0", boot_at=T0 - timedelta(days=1)) for s in STATIONS}
        self.boots_into: dict[str, str] = {}
        self.fail_with: dict[str, str] = {}

    def step(self, c: Campaign, now: datetime) -> None:
        """Each in-flight station moves one step on."""
        for s in c.stations:
            if s.status != "in_flight":
                continue
            v = self.views[s.station_id]
            ours = v.firmware_command_id == s.command_id
            if s.station_id in self.fail_with:
                v = replace(v, firmware_status=self.fail_with[s.station_id], firmware_command_id=s.command_id, firmware_at=now)
            elif not ours:
                v = replace(v, firmware_status="Downloading", firmware_command_id=s.command_id, firmware_at=now)
            elif v.firmware_status == "Downloading":
                v = replace(v, firmware_status="Installed", firmware_at=now)
            elif v.firmware_status == "Installed":
                v = replace(v, boot_version=self.boots_into.get(s.station_id, self.target), boot_at=now)
            self.views[s.station_id] = v


def _run(c: Campaign, fleet: Fleet, ticks: int = 40) -> tuple[Campaign, list[int], list[str]]:
    in_flight, dispatched = [], []
    now = T0
    for _ in range(ticks):
        now += timedelta(seconds=5)
        c, sends = tick(c, fleet.views, now, station_timeout=TIMEOUT)
        dispatched += [d.station_id for d in sends]
        in_flight.append(progress(c)["in_flight"])
        fleet.step(c, now)
    return c, in_flight, dispatched


def test_six_stations_two_at_a_time_all_succeed() -> None:
    c = new_campaign("fw-1", STATIONS, location="https://fw/2.0.bin", version="2.0", at=T0, max_in_flight=2)
    c, in_flight, dispatched = _run(c, Fleet())
    assert max(in_flight) == 2 and all(n <= 2 for n in in_flight)
    assert dispatched == STATIONS  # each once, in list order
    assert c.status == "completed" and not is_active(c)
    assert progress(c) == {"total": 6, "pending": 0, "in_flight": 0, "succeeded": 6, "failed": 0}
    assert all(s.attempts == 1 and s.firmware_status == "Installed" and s.finished_at for s in c.stations)


def test_a_reboot_into_the_old_version_counts_failed_and_the_rest_go_on() -> None:
    c = new_campaign("fw-1", STATIONS, location="l", version="2.0", at=T0, max_in_flight=2, stop_on_failure_ratio=0.5)
    fleet = Fleet()
    fleet.boots_into["CP-4"] = "1.0"
    c, in_flight, _ = _run(c, fleet)
    assert c.status == "completed" and all(n <= 2 for n in in_flight)
    by_id = {s.station_id: s for s in c.stations}
    assert by_id["CP-4"].status == "failed" and by_id["CP-4"].reason == "old_version"
    assert progress(c)["succeeded"] == 5


def test_without_a_target_version_installed_is_the_stations_word() -> None:
    # ADR 016 §5: with no version to check, a station that reports Installed succeeded,
    # also when it reboots into the same version string (SAP's simulator does) or not at all
    c = new_campaign("fw-1", STATIONS[:2], location="l", at=T0)
    fleet = Fleet(target="1.1-whatever")
    fleet.boots_into["CP-1"] = "1.0"
    c, _, _ = _run(c, fleet)
    assert [(s.status, s.reason) for s in c.stations] == [("succeeded", None), ("succeeded", None)]


def test_with_a_target_version_a_reboot_into_the_old_one_fails() -> None:
    c = new_campaign("fw-1", STATIONS[:2], location="l", version="1.1", at=T0)
    fleet = Fleet(target="1.1")
    fleet.boots_into["CP-1"] = "1.0"
    c, _, _ = _run(c, fleet)
    assert [(s.status, s.reason) for s in c.stations] == [("succeeded", None), ("failed", "old_version")]


def test_the_campaign_halts_at_the_failure_ratio_and_follows_its_in_flight_stations() -> None:
    c = new_campaign("fw-1", STATIONS, location="l", version="2.0", at=T0, max_in_flight=2, stop_on_failure_ratio=0.3)
    fleet = Fleet()
    fleet.fail_with["CP-0"] = "DownloadFailed"
    c, _, dispatched = _run(c, fleet)
    assert c.status == "halted"
    assert dispatched == ["CP-0", "CP-1"]  # halted at 1 failed / 1 finished: nothing more started
    by_id = {s.station_id: s for s in c.stations}
    assert by_id["CP-0"].status == "failed" and by_id["CP-0"].reason == "DownloadFailed"
    assert by_id["CP-1"].status == "succeeded"  # followed to its end after the halt
    assert progress(c)["pending"] == 4 and not is_active(c)


def test_offline_stations_wait_and_are_started_once_connected() -> None:
    c = new_campaign("fw-1", STATIONS[:3], location="l", version="2.0", at=T0, max_in_flight=5)
    fleet = Fleet()
    fleet.views["CP-1"] = replace(fleet.views["CP-1"], connected=False)
    c, _, dispatched = _run(c, fleet, ticks=10)
    assert dispatched == ["CP-0", "CP-2"] and c.status == "running"
    assert {s.station_id: s.status for s in c.stations}["CP-1"] == "pending"
    fleet.views["CP-1"] = replace(fleet.views["CP-1"], connected=True)
    c, _, dispatched = _run(c, fleet, ticks=10)
    assert dispatched == ["CP-1"] and c.status == "completed"


def test_no_progress_for_the_timeout_fails_and_a_refused_command_fails() -> None:
    c = new_campaign("fw-1", ["A", "B", "C"], location="l", at=T0, max_in_flight=3)
    views = {s: StationView(connected=True, boot_version="1") for s in ("A", "B", "C")}
    c, sends = tick(c, views, T0, station_timeout=TIMEOUT)
    assert len(sends) == 3
    views["B"] = replace(views["B"], command_status="Rejected")
    views["C"] = replace(views["C"], command_status="StationOffline")
    c, sends = tick(c, views, T0 + timedelta(minutes=1), station_timeout=TIMEOUT)
    states = {s.station_id: (s.status, s.reason) for s in c.stations}
    assert states["B"] == ("failed", "command_Rejected")
    assert sends == () and states["C"] == ("pending", "command_StationOffline")  # halted: B failed 1/1
    assert c.status == "halted"
    c, _ = tick(c, views, T0 + TIMEOUT, station_timeout=TIMEOUT)
    assert {s.station_id: s.reason for s in c.stations}["A"] == "timeout" and not is_active(c)


def test_attempt_ids_are_stable_and_a_station_fails_after_max_attempts() -> None:
    assert attempt_ids("c", "s", 1) == attempt_ids("c", "s", 1) != attempt_ids("c", "s", 2)
    assert 0 < attempt_ids("c", "s", 1)[1] < 2**31
    c = new_campaign("fw-1", ["A"], location="l", at=T0, stop_on_failure_ratio=1.0)
    views = {"A": StationView(connected=True)}
    for i in range(MAX_ATTEMPTS):
        c, sends = tick(c, views, T0 + timedelta(seconds=i), station_timeout=TIMEOUT)
        assert [d.attempt for d in sends] == [i + 1]
        c = undispatch(c, "A", "command_StationOffline", T0)
    assert c.stations[0].status == "failed" and c.stations[0].reason == "unreachable"


def test_a_cancelled_campaign_is_not_ticked_and_documents_round_trip() -> None:
    c = new_campaign("fw-1", STATIONS, location="l", version="2.0", at=T0, max_in_flight=2,
                     signing_certificate="cert", signature="sig", retrieve_at=T0)
    c, _ = tick(c, Fleet().views, T0, station_timeout=TIMEOUT)
    assert campaign_from_doc(campaign_to_doc(c)) == c
    stopped = cancel(c, T0)
    assert stopped.status == "cancelled" and tick(stopped, Fleet().views, T0, station_timeout=TIMEOUT) == (stopped, ())


def test_statuses_of_another_request_or_command_are_not_the_attempts() -> None:
    c = new_campaign("fw-1", ["A"], location="l", at=T0)
    views = {"A": StationView(connected=True, boot_version="1")}
    c, [d] = tick(c, views, T0, station_timeout=TIMEOUT)
    for other in (
        StationView(connected=True, firmware_status="DownloadFailed", firmware_command_id="someone-else"),
        StationView(connected=True, firmware_status="DownloadFailed", firmware_command_id=d.command_id,
                    firmware_request_id=d.request_id + 1),
    ):
        moved, _ = tick(c, {"A": other}, T0 + timedelta(seconds=5), station_timeout=TIMEOUT)
        assert moved.stations[0].status == "in_flight", other
    ours = StationView(connected=True, firmware_status="DownloadFailed", firmware_command_id=d.command_id)
    moved, _ = tick(c, {"A": ours}, T0 + timedelta(seconds=5), station_timeout=TIMEOUT)
    assert moved.stations[0].status == "failed" and moved.stations[0].firmware_status == "DownloadFailed"


def test_installed_reported_after_the_reboot_is_judged_by_that_boot() -> None:
    c = new_campaign("fw-1", ["NEW", "OLD", "EARLY"], location="l", version="2.0", at=T0, max_in_flight=3,
                     stop_on_failure_ratio=1.0)
    views = {s: StationView(connected=True, boot_version="1.0", boot_at=T0 - timedelta(days=1)) for s in ("NEW", "OLD", "EARLY")}
    c, sends = tick(c, views, T0, station_timeout=TIMEOUT)
    cmd = {d.station_id: d.command_id for d in sends}
    t = T0 + timedelta(minutes=1)
    views["NEW"] = StationView(connected=True, boot_version="2.0", boot_at=t, firmware_status="Installed",
                               firmware_command_id=cmd["NEW"], firmware_at=t + timedelta(seconds=2))
    views["OLD"] = StationView(connected=True, boot_version="1.0", boot_at=t, firmware_status="Installed",
                               firmware_command_id=cmd["OLD"], firmware_at=t + timedelta(seconds=2))
    # a restart long before the install, then Installed (reported before its reboot): wait for the reboot
    views["EARLY"] = StationView(connected=True, boot_version="1.0", boot_at=T0 + timedelta(seconds=1),
                                 firmware_status="Installed", firmware_command_id=cmd["EARLY"],
                                 firmware_at=T0 + timedelta(minutes=30))
    c, _ = tick(c, views, T0 + timedelta(minutes=31), station_timeout=TIMEOUT)
    states = {s.station_id: (s.status, s.reason) for s in c.stations}
    assert states == {"NEW": ("succeeded", None), "OLD": ("failed", "old_version"), "EARLY": ("in_flight", None)}
    views["EARLY"] = replace(views["EARLY"], boot_version="2.0", boot_at=T0 + timedelta(minutes=32))
    c, _ = tick(c, views, T0 + timedelta(minutes=33), station_timeout=TIMEOUT)
    assert {s.station_id: s.status for s in c.stations}["EARLY"] == "succeeded"
