"""Typed values -> the REST API's JSON, one explicit view per resource.

Every response body is written here, field by field, from a typed value: a domain
dataclass (`Session`, `StationStatus`, `StationOps`, `CommandRecord`, `Tariff`, `Cdr`,
the store's `Station`/`Token`/`StationEventRow`, the API's `Site`/`LogUpload`, the uptime
figures) or a small view dataclass of this module (`CdrView`, `StationView`). Nothing is a stored document passed through minus some
keys, so a field the processors add for their own bookkeeping never leaks into the API, and each
view has a schema of the same name in services/api/openapi.py (a test checks that the
two agree). Never a password hash or fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from services.api.documents import LOG_UPLOAD_RECEIVED, LogUpload, Site
from services.billing.documents import cdr_public_dict
from services.billing.domain import Cdr, Tariff
from services.billing.codec import tariff_to_dict
from services.common.store.port import Owner, Station, StationEventRow, Token
from services.common.timeutil import to_ocpp
from services.sessions.documents import ev_needs_view, ev_schedule_view
from services.sessions.domain import Boot, ConnectorState, Session, StationStatus
from services.stations.domain.availability import AvailabilityFigures, OutageSpan
from services.stations.domain.commands import CommandRecord
from services.stations.domain.ops import LogState, StationOps

__all__ = [
    "CdrView",
    "StationView",
    "availability_view",
    "boot_view",
    "kpi_item_view",
    "log_upload_view",
    "log_is_for",
    "outage_view",
    "station_event_view",
    "station_security_profile",
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
    """A station with who holds its connection (ownership), what the sessions processor
    knows of it (its `StationStatus`: boot, connectors, last seen, heartbeat) and what the
    stations processor knows (its `StationOps`: connection details, firmware and log
    transfers, availability, the open outage, meters, external limits)."""

    station: Station
    owner: Owner | None = None
    status: StationStatus | None = None
    password: str | None = None  # only in the answer of a create that generated it
    ops: StationOps | None = None
    log_upload: LogUpload | None = None  # the upload slot of `ops.log`'s request, if the API made one


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


def _evse_order(key: str) -> tuple[int, int] | None:
    evse, _, conn = key.partition("/")
    try:
        return int(evse), int(conn or 0)
    except ValueError:
        return None


def evses_view(connectors: Mapping[str, ConnectorState]) -> list[Json]:
    """The connectors grouped by EVSE, ordered by ids (1.6: connector N is EVSE N, connector
    0 is EVSE 0; a key that is not "<evse>/<connector>" is only in `connectors`)."""
    evses: dict[int, list[tuple[int, ConnectorState]]] = {}
    for key, state in connectors.items():
        ids = _evse_order(key)
        if ids is not None:
            evses.setdefault(ids[0], []).append((ids[1], state))
    return [
        {
            "id": evse,
            "connectors": [
                {"id": conn, "status": c.status, "since": _ts(c.at), "error_code": c.error_code, "info": c.info,
                 "vendor_error_code": c.vendor_error_code}
                for conn, c in sorted(evses[evse], key=lambda x: x[0])
            ],
        }
        for evse in sorted(evses)
    ]


def _connection_view(owner: Owner | None, ops: StationOps | None) -> Json:
    connected = bool(owner is not None and owner.connected)
    c = ops.connectivity if ops is not None else None
    since = None if c is None else (c.connected_at if connected else c.disconnected_at)
    return {
        "connected": connected,
        "gateway_id": owner.gateway_id if connected and owner is not None else None,
        "since": _ts(since),
        "remote": (c.remote_addr or None) if c is not None else None,
        # the profile the (last) connection proved (ADR 017); the station's required one is
        # the view's top-level `security_profile`
        "security_profile": (c.security_profile or None) if c is not None else None,
    }


def _availability_view(ops: StationOps | None) -> Json:
    requested = dict(ops.availability) if ops is not None else {}
    station = requested.pop("0", None)
    return {
        "station": station,
        "evses": {k: requested[k] for k in sorted(requested, key=lambda k: (len(k), k))},
    }


def _firmware_view(ops: StationOps | None) -> Json | None:
    f = ops.firmware if ops is not None else None
    if f is None:
        return None
    return {
        "status": f.status,
        "request_id": f.request_id,
        "location": f.location,
        "signed": f.signed,
        "requested_at": _ts(f.requested_at),
        "updated_at": _ts(f.updated_at),
    }


def log_file_path(station_id: str, request_id: int) -> str:
    return f"/api/v1/stations/{station_id}/logs/{request_id}"


def _log_view(station_id: str, ops: StationOps | None, upload: LogUpload | None) -> Json | None:
    """The latest log transfer; its request id is the slot's when the station's messages
    carry none (1.6 GetDiagnostics), and `file` is set once the slot received the file."""
    g = ops.log if ops is not None else None
    if g is None:
        return None
    request_id = g.request_id if g.request_id is not None else (upload.request_id if upload is not None else None)
    received = upload is not None and upload.status == LOG_UPLOAD_RECEIVED
    return {
        "status": g.status,
        "request_id": request_id,
        "log_type": g.log_type,
        "requested_at": _ts(g.requested_at),
        "updated_at": _ts(g.updated_at),
        "file": log_file_path(station_id, upload.request_id) if received and upload is not None else None,
    }


def _split_key(key: str, parts: int) -> list[str]:
    out = key.split("/", parts - 1)
    return out + [""] * (parts - len(out))


def _evse_id(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _meters_view(ops: StationOps | None) -> list[Json]:
    if ops is None:
        return []
    items = []
    for key in sorted(ops.meters):
        evse, measurand, phase = _split_key(key, 3)
        m = ops.meters[key]
        items.append({"evse_id": _evse_id(evse), "measurand": measurand, "phase": phase, "value": m.value,
                      "unit": m.unit, "at": _ts(m.at)})
    return items


def _charging_limits_view(ops: StationOps | None) -> list[Json]:
    if ops is None:
        return []
    return [
        {"evse_id": _evse_id(key), "source": c.source, "is_grid_critical": c.is_grid_critical, "limit": c.limit,
         "unit": c.unit, "at": _ts(c.at)}
        for key, c in sorted(ops.charging_limits.items(), key=lambda kv: (_evse_id(kv[0]) is None, kv[0]))
    ]


def station_security_profile(station: Station) -> int:
    """The profile a station must connect with: its stored one, 1 for a station stored
    before profiles were (ADR 017)."""
    return station.security_profile if station.security_profile is not None else 1


def station_view(v: StationView) -> Json:
    station, owner, status, ops = v.station, v.owner, v.status, v.ops
    connected = bool(owner is not None and owner.connected)
    boot = boot_view(status.boot) if status is not None and status.boot is not None else None
    gone = status.last_disconnect if status is not None else None
    out: Json = {
        "id": station.id,
        "site_id": station.site_id,
        "tariff_id": station.tariff_id,
        "enabled": station.enabled,
        "created_at": _ts(station.created_at),
        "connected": connected,
        "ocpp_version": (status.ocpp_version if status is not None else "") or None,
        "gateway_id": owner.gateway_id if connected and owner is not None else None,
        "last_boot": boot,
        "connectors": connectors_view(status.connectors) if status is not None else [],
        "last_seen": _ts(status.last_seen) if status is not None else None,
        "max_current_a": station.max_current_a,
        "phases": station.phases,
        "priority": station.priority,
        "has_password": bool(station.password_hash or station.password_fingerprint),
        "connection": _connection_view(owner, ops),
        "last_heartbeat": _ts(status.last_heartbeat) if status is not None else None,
        "boot": boot,
        "evses": evses_view(status.connectors) if status is not None else [],
        "availability": _availability_view(ops),
        "firmware": _firmware_view(ops),
        "log": _log_view(station.id, ops, v.log_upload),
        # ADR 017: the profile the station must connect with (None stored: created before
        # profiles were stored, profile 1), a raised one it has not used yet, a rotation
        "security_profile": station_security_profile(station),
        "pending_security_profile": station.pending_security_profile,
        "password_rotation_pending": bool(station.pending_password_hash or station.pending_password_fingerprint),
        "ws_ping_interval_s": station.ws_ping_interval_s,
        "cost_messages": station.cost_messages,  # ADR 018 §6: 1.6 pricing extension enabled
        "outage": None if ops is None or ops.outage is None else {
            "cause": ops.outage.cause, "since": to_ocpp(ops.outage.since),
        },
        "meters": _meters_view(ops),
        "charging_limits": _charging_limits_view(ops),
        "last_disconnect": None if gone is None else {
            "close_code": gone.close_code, "reason": gone.reason, "at": to_ocpp(gone.at),
        },
    }
    if v.password is not None:
        out["password"] = v.password
    return out


# -- station history -----------------------------------------------------------------

_ROW_META = ("action", "station_time", "gateway_id")


def station_event_view(row: StationEventRow) -> Json:
    """One history row: its identity and type, the envelope facts the stations processor
    kept next to the body (`action`, `station_time`, `gateway_id`) and the body itself
    (`data`, snake_case JSON as the row holds it)."""
    body = row.body if isinstance(row.body, dict) else {}
    data = body.get("data")
    if not isinstance(data, dict):
        data = {k: val for k, val in body.items() if k not in _ROW_META}
    station_time = body.get("station_time")
    return {
        "event_id": row.event_id,
        "type": row.type,
        "action": str(body.get("action") or ""),
        "received_at": to_ocpp(row.at),
        "station_time": station_time if isinstance(station_time, str) and station_time else None,
        "gateway_id": str(body.get("gateway_id") or ""),
        "data": data,
    }


# -- logs ----------------------------------------------------------------------------


def log_is_for(log: LogState | None, upload: LogUpload) -> bool:
    """Whether the stations processor's latest log transfer is this slot's request (by
    request id, or by command for 1.6 GetDiagnostics, which carries no request id)."""
    if log is None:
        return False
    if log.request_id is not None:
        return log.request_id == upload.request_id
    return bool(upload.command_id) and log.command_id == upload.command_id


def log_upload_view(u: LogUpload, ops: StationOps | None) -> Json:
    latest = ops.log if ops is not None else None
    received = u.status == LOG_UPLOAD_RECEIVED
    return {
        "request_id": u.request_id,
        "log_type": u.log_type,
        "status": latest.status if latest is not None and log_is_for(latest, u) else u.status,
        "requested_at": to_ocpp(u.created_at),
        "received": received,
        "size": u.size if received else None,
        "sha256": u.sha256 if received else None,
    }


# -- availability --------------------------------------------------------------------


def outage_view(o: OutageSpan) -> Json:
    return {"cause": o.cause, "start": to_ocpp(o.start), "end": _ts(o.end), "duration_s": o.duration_s}


def availability_view(station_id: str, window_from: datetime, window_to: datetime, f: AvailabilityFigures) -> Json:
    return {
        "station_id": station_id,
        "from": to_ocpp(window_from),
        "to": to_ocpp(window_to),
        "uptime_percent": f.uptime_percent,
        "up_s": f.up_s,
        "down_s": f.down_s,
        "failures": f.failures,
        "mtbf_s": f.mtbf_s,
        "mttr_s": f.mttr_s,
        "outages": [outage_view(o) for o in f.outages],
    }


def kpi_item_view(station_id: str, f: AvailabilityFigures) -> Json:
    return {"station_id": station_id, "uptime_percent": f.uptime_percent, "failures": f.failures, "mttr_s": f.mttr_s}


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
        "reservation_id": s.reservation_id or None,  # ADR 018: the reservation it started with
        "ev_charging_needs": ev_needs_view(s.ev_needs),
        "ev_charging_schedule": ev_schedule_view(s.ev_schedule),
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
    """A command and its outcome as the stations processor recorded it (also a reply
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
