"""Firmware campaigns (ADR 016 §5): one firmware for many stations, a few at a time.

A `Campaign` lists its stations, each with its own state: `pending` (not started, or to
be started again), `in_flight` (UpdateFirmware sent), `succeeded`, `failed`. `tick` is
the whole controller rule, pure: given the campaign, a `StationView` per station (what
the station and the CSMS last said) and the time, it returns the campaign moved on and
the stations to send UpdateFirmware to now.

- At most `max_in_flight` stations are in flight; pending stations start in list
  order, and only connected ones (an offline station waits, it is not failed).
- An in-flight station succeeds when it reported Installed and boots into the target
  version (with no target version: when it reports Installed; a campaign that must check
  reboots names its `version`);
  it fails on a failure status (DownloadFailed, InstallationFailed, InvalidSignature,
  ...), on a boot into its previous version after Installed (`reason` "old_version"),
  into another version than the target ("other_version"), on the station refusing the
  command, or when nothing happened for `station_timeout` ("timeout"). Most stations
  reboot first and report Installed after: a boot up to `INSTALLED_AFTER_BOOT` before
  the Installed report counts as the install's reboot.
- The command going nowhere (station offline, the command expired or timed out) puts
  the station back to `pending`; after `MAX_ATTEMPTS` sends it fails ("unreachable").
- The campaign is `halted` (no more starts; in-flight stations still followed) once
  failed / finished >= `stop_on_failure_ratio` with at least one failure, and
  `completed` once every station is finished. `cancelled` is the operator's; a
  cancelled campaign is not ticked.

The command id and request id of an attempt are derived from (campaign, station,
attempt): a repeated send is the same command. Statuses are matched to the attempt by
command id (1.6 FirmwareStatusNotification carries no request id) or request id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

__all__ = [
    "ACTIVE",
    "CAMPAIGN_STATUSES",
    "Campaign",
    "CampaignStation",
    "Dispatch",
    "FAILURE_STATUSES",
    "INSTALLED_AFTER_BOOT",
    "MAX_ATTEMPTS",
    "STATION_STATUSES",
    "StationView",
    "attempt_ids",
    "cancel",
    "is_active",
    "new_campaign",
    "progress",
    "tick",
    "undispatch",
]

CAMPAIGN_STATUSES = ("running", "halted", "completed", "cancelled")
STATION_STATUSES = ("pending", "in_flight", "succeeded", "failed")
ACTIVE = "active"  # the store parent of a campaign the controller still follows
FAILURE_STATUSES = frozenset({
    "DownloadFailed", "InstallationFailed", "InvalidSignature", "InstallVerificationFailed", "RevokedCertificate",
})
# The command did not reach the station: try again later.
RETRY_COMMAND_STATUSES = frozenset({"StationOffline", "Expired", "Timeout"})
# The station (or its gateway) refused the command.
REFUSED_COMMAND_STATUSES = frozenset({"Rejected", "NotSupported", "InvalidCertificate", "RevokedCertificate"})
MAX_ATTEMPTS = 3
# A station reporting Installed after its reboot does so within this of the boot.
INSTALLED_AFTER_BOOT = timedelta(minutes=10)
_IDS = uuid.UUID("7c1f3a52-51f4-4c59-9a55-0f1d6c0b9e21")


@dataclass(frozen=True, slots=True)
class CampaignStation:
    station_id: str
    status: str = "pending"
    attempts: int = 0
    command_id: str = ""
    request_id: int | None = None
    firmware_status: str | None = None
    version_before: str = ""
    installed_at: datetime | None = None
    started_at: datetime | None = None
    progress_at: datetime | None = None   # the latest change seen for the attempt
    finished_at: datetime | None = None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    location: str
    stations: tuple[CampaignStation, ...]
    status: str = "running"
    version: str = ""                  # the target firmware version ("" = none to check)
    retrieve_at: datetime | None = None
    signing_certificate: str = ""
    signature: str = ""
    max_in_flight: int = 10
    stop_on_failure_ratio: float = 0.2
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revision: int = 0                  # the stored document's version (versioned writes)


@dataclass(frozen=True, slots=True)
class StationView:
    """What is known of one station now: its connection, its last boot (sessions
    processor), its latest firmware transfer (stations processor) and the result of the
    campaign's current command for it."""

    connected: bool = False
    boot_version: str = ""
    boot_at: datetime | None = None
    firmware_status: str | None = None
    firmware_request_id: int | None = None
    firmware_command_id: str = ""
    firmware_at: datetime | None = None
    command_status: str | None = None   # the current attempt's command record status (None: no record yet)


@dataclass(frozen=True, slots=True)
class Dispatch:
    station_id: str
    command_id: str
    request_id: int
    attempt: int


def attempt_ids(campaign_id: str, station_id: str, attempt: int) -> tuple[str, int]:
    """(command id, request id) of one attempt: the same every time it is derived."""
    name = f"{campaign_id}/{station_id}/{attempt}"
    request_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") & 0x7FFFFFFF
    return str(uuid.uuid5(_IDS, "firmware-campaign/" + name)), request_id or 1


def new_campaign(
    campaign_id: str, stations: Sequence[str], *, location: str, at: datetime, version: str = "",
    retrieve_at: datetime | None = None, signing_certificate: str = "", signature: str = "",
    max_in_flight: int = 10, stop_on_failure_ratio: float = 0.2,
) -> Campaign:
    return Campaign(
        campaign_id, location, tuple(CampaignStation(s) for s in dict.fromkeys(stations)), version=version,
        retrieve_at=retrieve_at, signing_certificate=signing_certificate, signature=signature,
        max_in_flight=max(1, max_in_flight), stop_on_failure_ratio=stop_on_failure_ratio, created_at=at, updated_at=at,
    )


def is_active(c: Campaign) -> bool:
    """Still followed by the controller: running, or halted with stations in flight."""
    if c.status == "running":
        return True
    return c.status == "halted" and any(s.status == "in_flight" for s in c.stations)


def progress(c: Campaign) -> dict[str, int]:
    out = {"total": len(c.stations), "pending": 0, "in_flight": 0, "succeeded": 0, "failed": 0}
    for s in c.stations:
        out[s.status] += 1
    return out


def cancel(c: Campaign, at: datetime) -> Campaign:
    if c.status in ("completed", "cancelled"):
        return c
    return replace(c, status="cancelled", updated_at=at)


def undispatch(c: Campaign, station_id: str, reason: str, at: datetime) -> Campaign:
    """The send of the current attempt did not go out (station offline): pending again."""
    stations = tuple(
        _retry(s, reason, at) if s.station_id == station_id and s.status == "in_flight" else s for s in c.stations
    )
    return c if stations == c.stations else replace(c, stations=stations, updated_at=at)


def _retry(s: CampaignStation, reason: str, at: datetime) -> CampaignStation:
    if s.attempts >= MAX_ATTEMPTS:
        return _fail(s, "unreachable", at)
    return replace(s, status="pending", reason=reason, progress_at=at)


def _fail(s: CampaignStation, reason: str, at: datetime) -> CampaignStation:
    return replace(s, status="failed", reason=reason, finished_at=at, progress_at=at)


def _ours(s: CampaignStation, v: StationView) -> bool:
    """The view's firmware transfer is this attempt's."""
    if v.firmware_status is None:
        return False
    if v.firmware_request_id is not None and s.request_id is not None and v.firmware_request_id != s.request_id:
        return False  # a status of another request (1.6 sends none: matched by command id)
    if v.firmware_command_id:
        return v.firmware_command_id == s.command_id
    return v.firmware_request_id is not None


def _follow(s: CampaignStation, v: StationView | None, target: str, now: datetime, timeout: timedelta) -> CampaignStation:
    """One in-flight station moved on by what its view says."""
    if v is None:
        v = StationView()
    if v.command_status in REFUSED_COMMAND_STATUSES:
        return replace(_fail(s, f"command_{v.command_status}", now), firmware_status=s.firmware_status)
    reported = _ours(s, v) and v.firmware_status not in ("Requested", None)  # the station said something of it
    if v.command_status in RETRY_COMMAND_STATUSES and not reported:
        return _retry(s, f"command_{v.command_status}", now)
    if reported and (
        v.firmware_status != s.firmware_status or (v.firmware_at and (s.progress_at is None or v.firmware_at > s.progress_at))
    ):
        status = v.firmware_status
        s = replace(s, firmware_status=status, progress_at=_latest(s.progress_at, v.firmware_at, s.started_at, default=now))
        if status in FAILURE_STATUSES:
            return _fail(s, status or "failed", now)
        if status == "Installed" and s.installed_at is None:
            s = replace(s, installed_at=v.firmware_at or now)
    if s.installed_at is not None and not target:
        # No version to check (ADR 016 §5): Installed is the station's word. Some stations
        # do not reboot, some reboot into the same version string; neither is a failure.
        return replace(s, status="succeeded", reason=None, finished_at=now, progress_at=now)
    booted = v.boot_at is not None and s.started_at is not None and v.boot_at > s.started_at
    if s.installed_at is not None and booted:
        assert v.boot_at is not None
        version = v.boot_version
        if version == target:
            return replace(s, status="succeeded", reason=None, finished_at=now, progress_at=now)
        # Not into the target: a boot after Installed, or one just before it (most stations
        # reboot, then report Installed); an older boot may be a restart before the install.
        if v.boot_at >= s.installed_at or s.installed_at - v.boot_at <= INSTALLED_AFTER_BOOT:
            return _fail(s, "old_version" if version == s.version_before else "other_version", now)
    if booted and v.boot_at is not None and (s.progress_at is None or v.boot_at > s.progress_at):
        s = replace(s, progress_at=v.boot_at)
    last = s.progress_at or s.started_at or now
    if now - last >= timeout:
        return _fail(s, "timeout", now)
    return s


def _latest(*values: datetime | None, default: datetime) -> datetime:
    return max((t for t in values if t is not None), default=default)


def tick(
    campaign: Campaign, views: Mapping[str, StationView], now: datetime, *, station_timeout: timedelta,
) -> tuple[Campaign, tuple[Dispatch, ...]]:
    """The campaign moved on, and the stations to send UpdateFirmware to (already marked
    in flight in the returned campaign: store it before sending)."""
    if not is_active(campaign):
        return campaign, ()
    stations = [
        _follow(s, views.get(s.station_id), campaign.version, now, station_timeout) if s.status == "in_flight" else s
        for s in campaign.stations
    ]
    status = campaign.status
    failed = sum(1 for s in stations if s.status == "failed")
    finished = sum(1 for s in stations if s.finished)
    if status == "running" and failed and failed / finished >= campaign.stop_on_failure_ratio:
        status = "halted"
    dispatches: list[Dispatch] = []
    if status == "running":
        slots = campaign.max_in_flight - sum(1 for s in stations if s.status == "in_flight")
        for i, s in enumerate(stations):
            if slots <= 0:
                break
            if s.status != "pending":
                continue
            view = views.get(s.station_id)
            if view is None or not view.connected:
                continue  # offline stations wait
            if s.attempts >= MAX_ATTEMPTS:
                stations[i] = _fail(s, "unreachable", now)
                continue
            attempt = s.attempts + 1
            command_id, request_id = attempt_ids(campaign.id, s.station_id, attempt)
            stations[i] = replace(
                s, status="in_flight", attempts=attempt, command_id=command_id, request_id=request_id,
                firmware_status=None, version_before=view.boot_version, installed_at=None, started_at=now,
                progress_at=now, finished_at=None, reason=None,
            )
            dispatches.append(Dispatch(s.station_id, command_id, request_id, attempt))
            slots -= 1
        if all(s.finished for s in stations):
            status = "completed"
    new = tuple(stations)
    if new == campaign.stations and status == campaign.status:
        return campaign, ()
    return replace(campaign, stations=new, status=status, updated_at=now), tuple(dispatches)
