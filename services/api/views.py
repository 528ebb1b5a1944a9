"""Typed values -> the REST API's JSON, one explicit view per resource.

Every response body is written here, field by field, from a typed value: a domain
dataclass (`Session`, `StationStatus`, `CommandRecord`, `Tariff`, `Cdr`, the
store's `Station`/`Token`, the API's `Site`) or a small view dataclass of this module
(`CdrView`, `StationView`). Nothing is a stored document passed through minus some
keys, so a field the processors add for their own bookkeeping never leaks into the API, and each
view has a schema of the same name in services/api/openapi.py (a test checks that the
two agree). Never a password hash or fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from services.api.documents import Site
from services.billing.documents import cdr_public_dict
from services.billing.domain import Cdr, Tariff
from services.billing.codec import tariff_to_dict
from services.common.store.port import Owner, Station, Token
from services.common.timeutil import to_ocpp
from services.sessions.domain import Boot, CommandRecord, ConnectorState, Session, StationStatus

__all__ = [
    "CdrView",
    "StationView",
    "boot_view",
    "cdr_view",
    "command_record_view",
    "connectors_view",
    "session_view",
    "site_view",
    "station_view",
    "tariff_view",
    "token_view",
]

Json = dict[str, Any]


def _ts(value: datetime | None) -> str | None:
    return None if value is None else to_ocpp(value)


# -- stations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationView:
    """A station with who holds its connection (ownership) and what the sessions
    processor knows of it (its `StationStatus`: boot, connectors, last seen)."""

    station: Station
    owner: Owner | None = None
    status: StationStatus | None = None
    password: str | None = None  # only in the answer of a create that generated it


def _connector_order(key: str) -> tuple[int, int, str]:
    evse, _, conn = key.partition("/")
    try:
        return (int(evse), int(conn or 0), key)
    except ValueError:
        return (1 << 31, 0, key)


def _connector_view(key: str, c: ConnectorState) -> Json:
    out: Json = {}
    evse, _, conn = key.partition("/")
    try:
        out["evse_id"], out["connector_id"] = int(evse), int(conn or 0)
    except ValueError:
        out["key"] = key
    out.update(
        status=c.status, error_code=c.error_code, info=c.info, vendor_error_code=c.vendor_error_code, at=_ts(c.at)
    )
    return out


def connectors_view(connectors: Mapping[str, ConnectorState]) -> list[Json]:
    """{"evse/connector": state} -> [{evse_id, connector_id, status, ...}] by (evse, connector)."""
    return [_connector_view(k, connectors[k]) for k in sorted(connectors, key=_connector_order)]


def boot_view(b: Boot) -> Json:
    return {
        "vendor": b.vendor,
        "model": b.model,
        "serial_number": b.serial_number,
        "firmware_version": b.firmware_version,
        "reason": b.reason,
        "registration_status": b.registration_status,
        "interval": b.interval,
        "iccid": b.iccid,
        "imsi": b.imsi,
        "meter_type": b.meter_type,
        "meter_serial_number": b.meter_serial_number,
        "at": _ts(b.at),
    }


def station_view(v: StationView) -> Json:
    station, owner, status = v.station, v.owner, v.status
    connected = bool(owner is not None and owner.connected)
    out: Json = {
        "id": station.id,
        "site_id": station.site_id,
        "tariff_id": station.tariff_id,
        "enabled": station.enabled,
        "created_at": _ts(station.created_at),
        "connected": connected,
        "ocpp_version": (status.ocpp_version if status is not None else "") or None,
        "gateway_id": owner.gateway_id if connected and owner is not None else None,
        "last_boot": boot_view(status.boot) if status is not None and status.boot is not None else None,
        "connectors": connectors_view(status.connectors) if status is not None else [],
        "last_seen": _ts(status.last_seen) if status is not None else None,
        "max_current_a": station.max_current_a,
        "phases": station.phases,
        "priority": station.priority,
        "has_password": bool(station.password_hash or station.password_fingerprint),
    }
    if v.password is not None:
        out["password"] = v.password
    return out


# -- tokens --------------------------------------------------------------------------


def token_view(token: Token) -> Json:
    return {
        "id_token": token.id_token,
        "status": token.status,
        "expires_at": _ts(token.expires_at),
        "group_id": token.group_id,
        "updated_at": _ts(token.updated_at),
    }


# -- sessions ------------------------------------------------------------------------


def _reading(r: tuple[datetime, float] | None) -> Json | None:
    return None if r is None else {"at": to_ocpp(r[0]), "wh": r[1]}


def session_view(s: Session, cost: Json | None) -> Json:
    """A session's facts and bounded aggregates with its cost, never its samples
    (ADR 015: they are paged by /sessions/{id}/meter-values) nor the processor's
    bookkeeping (its price accumulator, applied positions, series marks)."""
    return {
        "id": s.id,
        "station_id": s.station_id,
        "transaction_id": s.transaction_id,
        "id_token": s.id_token,
        "authorization": s.authorization,
        "status": s.status,
        "energy_wh": s.energy_wh,
        "started_at": _ts(s.started_at),
        "stopped_at": _ts(s.stopped_at),
        "station_started_at": _ts(s.station_started_at),
        "station_stopped_at": _ts(s.station_stopped_at),
        "received_at": _ts(s.received_at),
        "charging_ended_at": _ts(s.charging_ended_at),
        "abandoned_at": _ts(s.abandoned_at),
        "abandon_reason": s.abandon_reason,
        "evse_id": s.evse_id,
        "connector_id": s.connector_id,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "stop_reason": s.stop_reason,
        "ocpp_version": s.ocpp_version,
        "remote_start_id": s.remote_start_id,
        "issued_by": s.issued_by,
        "orphan": s.orphan,
        "suspect": s.suspect,
        "suspect_reasons": sorted(s.suspect_reasons),
        "clock_suspect": s.clock_suspect,
        "hold": s.hold,
        "hold_reasons": sorted(s.hold_reasons),
        "seq_gaps": s.seq_gaps,
        "sample_count": s.sample_count,
        "excluded_count": s.excluded_count,
        "first_sample_at": _ts(s.first_sample_at),
        "last_sample_at": _ts(s.last_sample_at),
        "first_register": _reading(s.first_register),
        "last_register": _reading(s.last_register),
        "peak_power_w": s.peak_power_w,
        "energy_anchor_wh": s.energy_anchor_wh,
        "version": s.version,
        "updated_at": _ts(s.updated_at),
        "cost": cost,
    }


# -- tariffs, CDRs -------------------------------------------------------------------


def tariff_view(t: Tariff) -> Json:
    """The billing domain's own shape of a tariff (money as decimal strings)."""
    return tariff_to_dict(t)


@dataclass(frozen=True, slots=True)
class CdrView:
    """A priced CDR with what the billing worker stored next to it: the session's
    token and connector, and whether (and why) it is held from export."""

    cdr: Cdr
    currency: str
    hold_reasons: tuple[str, ...] = ()
    clock_suspect: bool = False
    transaction_id: str = ""
    id_token: str = ""
    evse_id: int = 0
    connector_id: int = 0


def cdr_view(v: CdrView) -> Json:
    """A CDR as priced (the breakdown in billing's shape), without billing's replay
    detection (`inputs_fingerprint`) or outbox bookkeeping."""
    return {
        **cdr_public_dict(v.cdr),
        "currency": v.currency,
        "transaction_id": v.transaction_id,
        "id_token": v.id_token,
        "evse_id": v.evse_id,
        "connector_id": v.connector_id,
        "held": bool(v.hold_reasons),
        "hold_reasons": list(v.hold_reasons),
        "clock_suspect": v.clock_suspect,
    }


# -- sites ---------------------------------------------------------------------------


def site_view(site: Site) -> Json:
    return {
        "id": site.id,
        "grid_limit_a": site.grid_limit_a,
        "phases": site.phases,
        "tariff_id": site.tariff_id,
        "external_limit_a": site.external_limit_a,
        "created_at": site.created_at,
        "updated_at": site.updated_at,
    }


# -- command records -----------------------------------------------------------------


def command_record_view(r: CommandRecord) -> Json:
    """A command and its outcome as the sessions processor recorded it (also a reply
    that came after the API stopped waiting)."""
    return {
        "command_id": r.command_id,
        "station_id": r.station_id,
        "command_type": r.command_type,
        "ocpp_action": r.ocpp_action,
        "payload": r.payload,
        "status": r.status,
        "response": r.response,
        "error_code": r.error_code,
        "error_description": r.error_description,
        "issued_at": _ts(r.issued_at),
        "completed_at": _ts(r.completed_at),
        "expired_at": _ts(r.expired_at),
        "late_reply": r.late_reply,
        "updated_at": _ts(r.updated_at),
    }
