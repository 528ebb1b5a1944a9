"""What the stations processor knows of a station beyond its connection, boot and connector
statuses (those stay the sessions processor's `StationStatus`): firmware and log transfers,
requested availability, the open outage, meters outside transactions, external charging
limits, security profile. One frozen `StationOps` per station (kind STATION_OPS), built by
pure folds of the station's events (idempotent, order-tolerant as `apply_status` is).

Instants are aware UTC to the millisecond. "at" fields are receive times unless named
`station_time`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "ChargingLimit",
    "Connectivity",
    "FirmwareState",
    "LogState",
    "MeterReading",
    "OpenOutage",
    "Outage",
    "OUTAGE_CAUSES",
    "StationOps",
]

# An outage's cause, in precedence order (a station offline and faulted is "offline").
OUTAGE_CAUSES = ("offline", "faulted", "unavailable")


@dataclass(frozen=True, slots=True)
class FirmwareState:
    """The latest firmware transfer: what was asked (UpdateFirmware) and what the station said."""

    status: str                    # "Requested" until the station reports; then as sent (Downloading, Installed, ...)
    request_id: int | None = None
    location: str = ""
    signed: bool = False
    requested_at: datetime | None = None   # when the CSMS sent UpdateFirmware (receive time of CommandIssued)
    command_id: str = ""
    version_before: str = ""       # the boot firmware version when the update was requested
    updated_at: datetime | None = None     # receive time of the latest status
    station_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogState:
    """The latest log / diagnostics transfer."""

    status: str                    # "Requested" until the station reports; then Uploading, Uploaded, UploadFailed, ...
    request_id: int | None = None
    log_type: str = ""             # DiagnosticsLog, SecurityLog; 1.6 GetDiagnostics counts as DiagnosticsLog
    requested_at: datetime | None = None
    command_id: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MeterReading:
    value: float
    unit: str
    at: datetime                   # the sample's time


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """An external limit (NotifyChargingLimit) in force on an EVSE (0 = the station)."""

    source: str
    is_grid_critical: bool | None = None
    limit: float | None = None     # the first period's limit of the first schedule, for display
    unit: str = ""
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenOutage:
    cause: str                     # one of OUTAGE_CAUSES
    since: datetime


@dataclass(frozen=True, slots=True)
class Outage:
    """A closed outage (logged as an `Outage` history row when it ends)."""

    cause: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Connectivity:
    """The stations processor's own view of connection and connector statuses, which its
    outage rule needs (the sessions processor's `StationStatus` is another consumer's
    document, possibly behind). Same merge rules as `apply_status`."""

    epoch: int = 0
    disconnected_epoch: int = 0
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    remote_addr: str = ""
    security_profile: int = 0
    gateway_id: str = ""
    connectors: Mapping[str, tuple[str, datetime]] = field(default_factory=dict)  # "evse/connector" -> (status, station time)

    @property
    def connected(self) -> bool:
        return self.epoch > self.disconnected_epoch


@dataclass(frozen=True, slots=True)
class StationOps:
    station_id: str
    connectivity: Connectivity = field(default_factory=Connectivity)
    # requested availability from accepted ChangeAvailability: "0" (station) or "<evse>" -> Operative | Inoperative
    availability: Mapping[str, str] = field(default_factory=dict)
    firmware: FirmwareState | None = None
    log: LogState | None = None
    outage: OpenOutage | None = None
    meters: Mapping[str, MeterReading] = field(default_factory=dict)   # "<evse>/<measurand>/<phase>" -> latest
    charging_limits: Mapping[str, ChargingLimit] = field(default_factory=dict)  # "<evse>" -> limit
    # "<evse>/<source>" -> receive time of the latest ChargingLimitCleared (EVSE 0: every EVSE),
    # so a limit set before it and delivered again is not brought back (added by the stations processor)
    limits_cleared: Mapping[str, datetime] = field(default_factory=dict)
    last_security_event: str = ""
    last_security_event_at: datetime | None = None
    # the firmware version of the latest StationBooted (by receive time) and when: what an
    # UpdateFirmware's `version_before` is taken from (added by the stations processor)
    boot_firmware_version: str = ""
    booted_at: datetime | None = None
    version: int = 0
    updated_at: datetime | None = None
