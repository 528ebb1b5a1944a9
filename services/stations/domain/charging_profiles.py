"""Charging profiles both ways (ADR 018 §4): what the CSMS installed on a station, and what a
station reports, as values, with every rule that changes the record (pure functions).

- `profile_of_set_request`: the profile an Accepted SetChargingProfile put on the station,
  read from the OCPP request that was sent (1.6 `{connectorId, csChargingProfiles}`, 2.0.1
  `{evseId, chargingProfile}`, camelCase). Raises ValueError for a request it cannot read.
- `install`: OCPP's replacement rules: a profile with the same id replaces the old one
  (whatever its EVSE), and so does one with the same purpose and stack level on the same
  EVSE (1.6 and 2.0.1 alike). At most `MAX_PROFILES` are kept: the oldest installed go first.
- `clear`: an Accepted (or, 1.6, `Unknown`: nothing matched on the station) ClearChargingProfile
  removes what its request matched: the profile of that id when an id was given; otherwise
  every profile matching all the criteria given (EVSE, purpose, stack level); no criteria
  at all: every profile.
- `end_transaction`: TxProfiles belong to a transaction: when it ends, those of its id (and
  those without a transaction id on its EVSE) go.
- `unexpired`: a profile whose `valid_to` has passed is dropped (on fold and on read).
- `profile_of_report`: a profile a station listed in ReportChargingProfiles (2.0.1).

Purposes are kept as the station's version spells them (1.6 `ChargePointMaxProfile`,
2.0.1 `ChargingStationMaxProfile`); `same_purpose` treats the two names as one.

`source` says who put the profile there: `operator` (the REST API's SetChargingProfile),
`smart_charging` (the allocator's SetChargingLimit), another issuer's name as it issued
the command; for a station-reported profile, the station's chargingLimitSource (EMS, CSO,
SO, Other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.common import events as ev
from services.common.timeutil import parse_ocpp

__all__ = [
    "MAX_PROFILES",
    "OPERATOR",
    "TX_PROFILE",
    "ClearRequest",
    "clear_request",
    "with_source",
    "PURPOSES",
    "SMART_CHARGING",
    "InstalledProfile",
    "Period",
    "Schedule",
    "clear",
    "default_source",
    "end_transaction",
    "install",
    "profile_of_report",
    "profile_of_set_request",
    "same_purpose",
    "source_of_issuer",
    "unexpired",
]

MAX_PROFILES = 100  # per station: a station holds a few; more means profiles are never cleared
OPERATOR = "operator"
SMART_CHARGING = "smart_charging"
TX_PROFILE = "TxProfile"
# Every purpose of 1.6 and 2.0.1, in either version's name.
PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile",
            "ChargingStationExternalConstraints")
_SAME = {"ChargePointMaxProfile": "ChargingStationMaxProfile"}

# The command types whose Accepted result installs a profile, and the source each one
# implies when the issuer is not known.
_DEFAULT_SOURCE = {"SetChargingProfile": OPERATOR, "SetChargingLimit": SMART_CHARGING}
_ISSUER_SOURCE = {"api": OPERATOR, "smart_charging": SMART_CHARGING}


@dataclass(frozen=True, slots=True)
class Period:
    start_period: int
    limit: float
    number_phases: int | None = None
    phase_to_use: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    charging_rate_unit: str
    periods: tuple[Period, ...] = ()
    id: int | None = None
    start_schedule: datetime | None = None
    duration: int | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    """One profile on one EVSE (1.6: connector; 0 = the whole station)."""

    evse_id: int
    id: int
    purpose: str
    stack_level: int
    kind: str
    schedules: tuple[Schedule, ...] = ()
    recurrency_kind: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None
    source: str = OPERATOR
    installed_at: datetime | None = None
    command_id: str | None = None


def same_purpose(a: str, b: str) -> bool:
    return _SAME.get(a, a) == _SAME.get(b, b)


def default_source(command_type: str) -> str | None:
    """The source a profile-installing command type implies; None: not such a command."""
    return _DEFAULT_SOURCE.get(command_type)


def source_of_issuer(issuer: str) -> str:
    """The source name of a CommandIssued's issuer ("api" is the operator)."""
    return _ISSUER_SOURCE.get(issuer, issuer)


# -- reading OCPP payloads (camelCase) ----------------------------------------------------

def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _opt_float(value: Any, what: str) -> float | None:
    return None if value is None else _float(value, what)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _instant(value: Any, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_ocpp(str(value))
    except ValueError:
        raise ValueError(f"{what} is not a time: {value!r}") from None


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return value


def _schedule(s: Any) -> Schedule:
    s = _obj(s, "chargingSchedule")
    periods = s.get("chargingSchedulePeriod")
    if not isinstance(periods, list):
        raise ValueError("chargingSchedulePeriod must be a list")
    return Schedule(
        charging_rate_unit=_str(s.get("chargingRateUnit"), "chargingRateUnit"),
        periods=tuple(
            Period(
                start_period=_int(_obj(p, "chargingSchedulePeriod").get("startPeriod"), "startPeriod"),
                limit=_float(p.get("limit"), "limit"),
                number_phases=_opt_int(p.get("numberPhases"), "numberPhases"),
                phase_to_use=_opt_int(p.get("phaseToUse"), "phaseToUse"),
            )
            for p in periods
        ),
        id=_opt_int(s.get("id"), "chargingSchedule.id"),
        start_schedule=_instant(s.get("startSchedule"), "startSchedule"),
        duration=_opt_int(s.get("duration"), "duration"),
        min_charging_rate=_opt_float(s.get("minChargingRate"), "minChargingRate"),
    )


def profile_of_set_request(
    request: Mapping[str, Any], *, source: str, installed_at: datetime, command_id: str,
) -> InstalledProfile:
    """The profile a SetChargingProfile request (as sent, camelCase) installs."""
    if "csChargingProfiles" in request:  # 1.6
        evse = _int(request.get("connectorId", 0), "connectorId")
        p = _obj(request["csChargingProfiles"], "csChargingProfiles")
        profile_id = _int(p.get("chargingProfileId"), "chargingProfileId")
        raw_schedules: list[Any] = [p.get("chargingSchedule")]
    else:  # 2.0.1 / 2.1
        evse = _int(request.get("evseId", 0), "evseId")
        p = _obj(request.get("chargingProfile"), "chargingProfile")
        profile_id = _int(p.get("id"), "chargingProfile.id")
        raw = p.get("chargingSchedule")
        raw_schedules = raw if isinstance(raw, list) else [raw]
    if evse < 0:
        raise ValueError(f"EVSE / connector must be >= 0, got {evse}")
    tx = p.get("transactionId")
    return InstalledProfile(
        evse_id=evse,
        id=profile_id,
        purpose=_str(p.get("chargingProfilePurpose"), "chargingProfilePurpose"),
        stack_level=_int(p.get("stackLevel"), "stackLevel"),
        kind=_str(p.get("chargingProfileKind"), "chargingProfileKind"),
        schedules=tuple(_schedule(s) for s in raw_schedules),
        recurrency_kind=_opt_str(p.get("recurrencyKind")),
        valid_from=_instant(p.get("validFrom"), "validFrom"),
        valid_to=_instant(p.get("validTo"), "validTo"),
        transaction_id=None if tx is None or tx == "" else str(tx),
        source=source,
        installed_at=installed_at,
        command_id=command_id,
    )


def profile_of_report(p: ev.ChargingProfile, *, evse_id: int, source: str) -> InstalledProfile:
    """A profile a station listed in a ReportChargingProfiles part."""
    return InstalledProfile(
        evse_id=evse_id,
        id=p.id,
        purpose=p.purpose,
        stack_level=p.stack_level,
        kind=p.kind,
        schedules=tuple(
            Schedule(
                charging_rate_unit=s.charging_rate_unit,
                periods=tuple(Period(x.start_period, x.limit, x.number_phases or None, x.phase_to_use or None)
                              for x in s.periods),
                id=s.id,
                start_schedule=s.start_schedule,
                duration=s.duration or None,
                min_charging_rate=s.min_charging_rate,
            )
            for s in p.schedules
        ),
        recurrency_kind=p.recurrency_kind or None,
        valid_from=p.valid_from,
        valid_to=p.valid_to,
        transaction_id=p.transaction_id or None,
        source=source,
    )


# -- the rules ------------------------------------------------------------------------------

def install(profiles: Sequence[InstalledProfile], new: InstalledProfile,
            *, limit: int = MAX_PROFILES) -> tuple[InstalledProfile, ...]:
    """`profiles` with `new` installed (see the module docstring); the oldest installed go
    first past `limit`."""
    kept = [
        p for p in profiles
        if p.id != new.id and not (
            p.evse_id == new.evse_id and p.stack_level == new.stack_level and same_purpose(p.purpose, new.purpose)
        )
    ]
    kept.append(new)
    if len(kept) > limit:
        kept = sorted(kept, key=lambda p: (p.installed_at is not None, p.installed_at or datetime.min))[-limit:]
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """What a ClearChargingProfile request matched: an id, or criteria (None: any)."""

    profile_id: int | None = None
    evse_id: int | None = None
    purpose: str | None = None
    stack_level: int | None = None


def clear_request(request: Mapping[str, Any]) -> ClearRequest:
    """The ClearChargingProfile request as sent (1.6 `{id?, connectorId?,
    chargingProfilePurpose?, stackLevel?}`, 2.0.1 `{chargingProfileId?,
    chargingProfileCriteria?: {evseId?, chargingProfilePurpose?, stackLevel?}}`)."""
    if "chargingProfileId" in request or "chargingProfileCriteria" in request:
        criteria = request.get("chargingProfileCriteria") or {}
        criteria = _obj(criteria, "chargingProfileCriteria")
        return ClearRequest(
            profile_id=_opt_int(request.get("chargingProfileId"), "chargingProfileId"),
            evse_id=_opt_int(criteria.get("evseId"), "evseId"),
            purpose=_opt_str(criteria.get("chargingProfilePurpose")),
            stack_level=_opt_int(criteria.get("stackLevel"), "stackLevel"),
        )
    return ClearRequest(
        profile_id=_opt_int(request.get("id"), "id"),
        evse_id=_opt_int(request.get("connectorId"), "connectorId"),
        purpose=_opt_str(request.get("chargingProfilePurpose")),
        stack_level=_opt_int(request.get("stackLevel"), "stackLevel"),
    )


def _cleared_by(p: InstalledProfile, c: ClearRequest) -> bool:
    if c.profile_id is not None:
        return p.id == c.profile_id
    return ((c.evse_id is None or p.evse_id == c.evse_id)
            and (c.purpose is None or same_purpose(p.purpose, c.purpose))
            and (c.stack_level is None or p.stack_level == c.stack_level))


def clear(profiles: Sequence[InstalledProfile], c: ClearRequest) -> tuple[InstalledProfile, ...]:
    return tuple(p for p in profiles if not _cleared_by(p, c))


def end_transaction(profiles: Sequence[InstalledProfile], transaction_id: str,
                    evse_id: int = 0) -> tuple[InstalledProfile, ...]:
    """Without the TxProfiles of the transaction that ended (and, when its EVSE is known,
    the TxProfiles without a transaction id on that EVSE: they applied to it)."""
    def ends(p: InstalledProfile) -> bool:
        if p.purpose != TX_PROFILE:
            return False
        if p.transaction_id is not None:
            return p.transaction_id == transaction_id
        return evse_id > 0 and p.evse_id == evse_id

    return tuple(p for p in profiles if not ends(p))


def unexpired(profiles: Sequence[InstalledProfile], now: datetime) -> tuple[InstalledProfile, ...]:
    return tuple(p for p in profiles if p.valid_to is None or p.valid_to > now)


def with_source(p: InstalledProfile, source: str) -> InstalledProfile:
    return p if p.source == source else replace(p, source=source)
