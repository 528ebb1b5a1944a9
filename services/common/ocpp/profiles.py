"""OCPP charging-profile payloads for a current limit (pure: stdlib and timeutil).

The builders return plain dicts, camelCase as on the wire, ready to be the payload of
a 1.6 ``SetChargingProfile`` or a 2.0.1 ``SetChargingProfileRequest``.

* Limits are in A per phase (``chargingRateUnit: "A"``) and are rounded *down* to
  0.1 A: the 1.6 schema has ``multipleOf: 0.1`` and 2.0.1 accepts one decimal.
* Timestamps are UTC, ``Z``, millisecond precision (``2026-11-28T04:21:16.004Z``,
  ``timeutil.to_ocpp``).
* TxProfile defaults to ``Absolute`` starting at ``now``; TxDefaultProfile (the
  fail-safe a station applies to every new transaction) defaults to ``Relative`` so it
  does not depend on the station's clock.

A wire-format builder, so it lives with the command vocabulary (`commands`'s
``SetChargingLimit`` is built from it) and not in a service's domain.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal, TypeAlias

from services.common.timeutil import to_ocpp

__all__ = [
    "LIMIT_RESOLUTION_A",
    "ProfileKind",
    "tx_default_profile_16",
    "tx_default_profile_201",
    "tx_profile_16",
    "tx_profile_201",
    "wire_limit",
]

ProfileKind: TypeAlias = Literal["Absolute", "Relative"]
LIMIT_RESOLUTION_A = Decimal("0.1")
_MAX_TX_ID_201 = 36  # TransactionType.transactionId maxLength


def wire_limit(limit_a: Decimal) -> float:
    """The limit as sent: rounded down to 0.1 A (never above what was allocated)."""
    limit = Decimal(limit_a)
    if not limit.is_finite() or limit < 0:
        raise ValueError(f"limit must be a finite current >= 0 A, got {limit_a}")
    return float(limit.quantize(LIMIT_RESOLUTION_A, rounding=ROUND_DOWN))


def _check_kind(kind: str) -> None:
    if kind not in ("Absolute", "Relative"):
        raise ValueError(f"chargingProfileKind must be Absolute or Relative, got {kind!r}")


def _period(limit_a: Decimal, number_phases: int | None) -> dict[str, Any]:
    period: dict[str, Any] = {"startPeriod": 0, "limit": wire_limit(limit_a)}
    if number_phases is not None:
        if number_phases not in (1, 2, 3):
            raise ValueError(f"numberPhases must be 1, 2 or 3, got {number_phases}")
        period["numberPhases"] = number_phases
    return period


def _schedule_16(
    limit_a: Decimal, now: datetime, kind: ProfileKind, number_phases: int | None, duration_s: int | None = None
) -> dict[str, Any]:
    schedule: dict[str, Any] = {}
    if duration_s is not None:
        if duration_s <= 0:
            raise ValueError(f"duration must be > 0 s, got {duration_s}")
        schedule["duration"] = duration_s
    if kind == "Absolute":
        schedule["startSchedule"] = to_ocpp(now)
    schedule["chargingRateUnit"] = "A"
    schedule["chargingSchedulePeriod"] = [_period(limit_a, number_phases)]
    return schedule


def _schedule_201(
    schedule_id: int, limit_a: Decimal, now: datetime, kind: ProfileKind, number_phases: int | None,
    duration_s: int | None = None,
) -> dict[str, Any]:
    return {"id": schedule_id, **_schedule_16(limit_a, now, kind, number_phases, duration_s)}


def tx_profile_16(
    connector_id: int,
    transaction_id: int | str,
    limit_a: Decimal,
    profile_id: int,
    now: datetime,
    *,
    stack_level: int = 0,
    kind: ProfileKind = "Absolute",
    number_phases: int | None = None,
    duration_s: int | None = None,
) -> dict[str, Any]:
    """OCPP 1.6 ``SetChargingProfile`` payload limiting one transaction (TxProfile);
    ``duration_s`` ends the schedule (an EV's departure), else it lasts."""
    _check_kind(kind)
    if connector_id <= 0:
        raise ValueError(f"a TxProfile needs a connector > 0, got {connector_id}")
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": profile_id,
            "transactionId": int(transaction_id),  # 1.6 transaction ids are integers
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": kind,
            "chargingSchedule": _schedule_16(limit_a, now, kind, number_phases, duration_s),
        },
    }


def tx_default_profile_16(
    limit_a: Decimal,
    profile_id: int,
    now: datetime,
    *,
    connector_id: int = 0,
    stack_level: int = 0,
    kind: ProfileKind = "Relative",
    number_phases: int | None = None,
) -> dict[str, Any]:
    """OCPP 1.6 ``SetChargingProfile`` payload for the per-station fail-safe.

    A TxDefaultProfile on connector 0 applies to every transaction the station starts
    (until a TxProfile replaces it), including while the CSMS is unreachable.
    """
    _check_kind(kind)
    if connector_id < 0:
        raise ValueError(f"connector id must be >= 0, got {connector_id}")
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": kind,
            "chargingSchedule": _schedule_16(limit_a, now, kind, number_phases),
        },
    }


def tx_profile_201(
    evse_id: int,
    transaction_id: int | str,
    limit_a: Decimal,
    profile_id: int,
    now: datetime,
    *,
    stack_level: int = 0,
    schedule_id: int | None = None,
    kind: ProfileKind = "Absolute",
    number_phases: int | None = None,
    duration_s: int | None = None,
) -> dict[str, Any]:
    """OCPP 2.0.1 ``SetChargingProfileRequest`` payload limiting one transaction;
    ``duration_s`` ends the schedule (an EV's departure), else it lasts."""
    _check_kind(kind)
    if evse_id <= 0:
        raise ValueError(f"a TxProfile needs an EVSE > 0, got {evse_id}")
    tx_id = str(transaction_id)
    if not tx_id or len(tx_id) > _MAX_TX_ID_201:
        raise ValueError(f"2.0.1 transaction ids are 1..{_MAX_TX_ID_201} chars, got {tx_id!r}")
    return {
        "evseId": evse_id,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": kind,
            "transactionId": tx_id,
            "chargingSchedule": [
                _schedule_201(
                    profile_id if schedule_id is None else schedule_id,
                    limit_a,
                    now,
                    kind,
                    number_phases,
                    duration_s,
                )
            ],
        },
    }


def tx_default_profile_201(
    limit_a: Decimal,
    profile_id: int,
    now: datetime,
    *,
    evse_id: int = 0,
    stack_level: int = 0,
    schedule_id: int | None = None,
    kind: ProfileKind = "Relative",
    number_phases: int | None = None,
) -> dict[str, Any]:
    """OCPP 2.0.1 ``SetChargingProfileRequest`` payload for the station fail-safe."""
    _check_kind(kind)
    if evse_id < 0:
        raise ValueError(f"EVSE id must be >= 0, got {evse_id}")
    return {
        "evseId": evse_id,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": kind,
            "chargingSchedule": [
                _schedule_201(
                    profile_id if schedule_id is None else schedule_id,
                    limit_a,
                    now,
                    kind,
                    number_phases,
                )
            ],
        },
    }
