"""The charging profile documents of the `stations-drivers` stage (ADR 018 §4), its one
writer; the API reads them through this module.

- CHARGING_PROFILES (id: station id; versioned): `StationProfiles`, the profiles the CSMS
  installed on the station (`profiles`, each in the API's shape, `profile_to_dict`) and the
  issuers of profile commands in flight whose source is not the command type's default
  (`issuers`: command id -> source; the last `MAX_ISSUERS`).
- CHARGING_PROFILES_REPORT (id: `<station>/<request id>`, parent: station; versioned): a
  ReportChargingProfiles answer being assembled (`ProfilesReport`): the parts received
  (each with the event id that carried it), the station's answer to GetChargingProfiles
  (`station_status`: Accepted, NoProfiles, ...), `complete` once the last part (tbc false)
  arrived or the station answered NoProfiles.

Instants are `to_ocpp` strings (UTC, Z, milliseconds); a profile's missing optional fields
are null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.charging_profiles import InstalledProfile, Period, Schedule

__all__ = [
    "MAX_ISSUERS",
    "MAX_REPORT_PROFILES",
    "ProfilesReport",
    "ReportPart",
    "StationProfiles",
    "profile_from_dict",
    "profile_to_dict",
    "profiles_from_doc",
    "profiles_to_doc",
    "report_doc_id",
    "report_from_doc",
    "report_profiles",
    "report_to_doc",
]

MAX_ISSUERS = 64           # profile commands in flight with a non-default source, per station
MAX_REPORT_PROFILES = 1000  # profiles kept per report; more are counted, not kept


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _period_dict(p: Period) -> dict[str, Any]:
    return {"start_period": p.start_period, "limit": p.limit, "number_phases": p.number_phases,
            "phase_to_use": p.phase_to_use}


def _schedule_dict(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "charging_rate_unit": s.charging_rate_unit,
        "start_schedule": _iso(s.start_schedule),
        "duration": s.duration,
        "min_charging_rate": s.min_charging_rate,
        "periods": [_period_dict(p) for p in s.periods],
    }


def profile_to_dict(p: InstalledProfile) -> dict[str, Any]:
    """The profile as stored and as the API shows it."""
    return {
        "evse_id": p.evse_id,
        "id": p.id,
        "purpose": p.purpose,
        "stack_level": p.stack_level,
        "kind": p.kind,
        "recurrency_kind": p.recurrency_kind,
        "valid_from": _iso(p.valid_from),
        "valid_to": _iso(p.valid_to),
        "transaction_id": p.transaction_id,
        "schedules": [_schedule_dict(s) for s in p.schedules],
        "source": p.source,
        "installed_at": _iso(p.installed_at),
        "command_id": p.command_id,
    }


def _schedule_of(d: Mapping[str, Any]) -> Schedule:
    return Schedule(
        charging_rate_unit=str(d.get("charging_rate_unit") or ""),
        periods=tuple(
            Period(int(x["start_period"]), float(x["limit"]), _opt_int(x.get("number_phases")),
                   _opt_int(x.get("phase_to_use")))
            for x in d.get("periods") or ()
        ),
        id=_opt_int(d.get("id")),
        start_schedule=_dt(d.get("start_schedule")),
        duration=_opt_int(d.get("duration")),
        min_charging_rate=_opt_float(d.get("min_charging_rate")),
    )


def profile_from_dict(d: Mapping[str, Any]) -> InstalledProfile:
    return InstalledProfile(
        evse_id=int(d.get("evse_id") or 0),
        id=int(d["id"]),
        purpose=str(d.get("purpose") or ""),
        stack_level=int(d.get("stack_level") or 0),
        kind=str(d.get("kind") or ""),
        schedules=tuple(_schedule_of(s) for s in d.get("schedules") or ()),
        recurrency_kind=_opt_str(d.get("recurrency_kind")),
        valid_from=_dt(d.get("valid_from")),
        valid_to=_dt(d.get("valid_to")),
        transaction_id=_opt_str(d.get("transaction_id")),
        source=str(d.get("source") or ""),
        installed_at=_dt(d.get("installed_at")),
        command_id=_opt_str(d.get("command_id")),
    )


@dataclass(frozen=True, slots=True)
class StationProfiles:
    station_id: str
    profiles: tuple[InstalledProfile, ...] = ()
    issuers: Mapping[str, str] = field(default_factory=dict)
    version: int = 0
    updated_at: datetime | None = None


def profiles_to_doc(s: StationProfiles) -> dict[str, Any]:
    return {
        "station_id": s.station_id,
        "profiles": [profile_to_dict(p) for p in s.profiles],
        "issuers": dict(list(s.issuers.items())[-MAX_ISSUERS:]),
        "version": s.version,
        "updated_at": _iso(s.updated_at),
    }


def profiles_from_doc(d: Mapping[str, Any]) -> StationProfiles:
    return StationProfiles(
        station_id=str(d["station_id"]),
        profiles=tuple(profile_from_dict(x) for x in d.get("profiles") or ()),
        issuers={str(k): str(v) for k, v in (d.get("issuers") or {}).items()},
        version=int(d.get("version") or 0),
        updated_at=_dt(d.get("updated_at")),
    )


# -- reports ---------------------------------------------------------------------------

def report_doc_id(station_id: str, request_id: int) -> str:
    return f"{station_id}/{request_id}"


@dataclass(frozen=True, slots=True)
class ReportPart:
    event_id: str
    evse_id: int
    source: str
    tbc: bool
    profiles: tuple[InstalledProfile, ...] = ()


@dataclass(frozen=True, slots=True)
class ProfilesReport:
    station_id: str
    request_id: int
    parts: tuple[ReportPart, ...] = ()
    command_id: str | None = None
    station_status: str | None = None
    complete: bool = False
    dropped: int = 0  # profiles past MAX_REPORT_PROFILES, not kept
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0


def report_profiles(r: ProfilesReport) -> list[InstalledProfile]:
    """Every profile of every part, in the order received."""
    return [p for part in r.parts for p in part.profiles]


def report_to_doc(r: ProfilesReport) -> dict[str, Any]:
    return {
        "station_id": r.station_id,
        "request_id": r.request_id,
        "command_id": r.command_id,
        "station_status": r.station_status,
        "complete": r.complete,
        "dropped": r.dropped,
        "parts": [
            {"event_id": part.event_id, "evse_id": part.evse_id, "source": part.source, "tbc": part.tbc,
             "profiles": [profile_to_dict(p) for p in part.profiles]}
            for part in r.parts
        ],
        "completed_at": _iso(r.completed_at),
        "updated_at": _iso(r.updated_at),
        "version": r.version,
    }


def report_from_doc(d: Mapping[str, Any]) -> ProfilesReport:
    return ProfilesReport(
        station_id=str(d["station_id"]),
        request_id=int(d["request_id"]),
        parts=tuple(
            ReportPart(str(x.get("event_id") or ""), int(x.get("evse_id") or 0), str(x.get("source") or ""),
                       bool(x.get("tbc")), tuple(profile_from_dict(p) for p in x.get("profiles") or ()))
            for x in d.get("parts") or ()
        ),
        command_id=_opt_str(d.get("command_id")),
        station_status=_opt_str(d.get("station_status")),
        complete=bool(d.get("complete")),
        dropped=int(d.get("dropped") or 0),
        completed_at=_dt(d.get("completed_at")),
        updated_at=_dt(d.get("updated_at")),
        version=int(d.get("version") or 0),
    )
