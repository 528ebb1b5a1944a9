"""The stations processor's documents: what it stores, mapped to its domain values and back.

The stations processor is the one writer of these kinds (services.common.kinds, ADR 016);
other services (the API) read them through this module only:

- STATION_OPS (`station_ops_to_doc` / `station_ops_from_doc`): a `StationOps`, id = the
  station id. Instants are `timeutil.to_ocpp` text (every instant of the value is already
  a millisecond, so a document reads back to the value it was written from). A document
  without a field added later loads with that field's default.
- COMMAND (`command_to_doc` / `command_from_doc`): a `CommandRecord`, id = the command id,
  parent = the station. Moved from services/sessions/documents.py with the record (ADR
  016): the stored shape is the same byte for byte, so records written by the sessions
  processor before the upgrade load, and both writers write the same documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.commands import CommandRecord
from services.stations.domain.ops import (
    ChargingLimit,
    Connectivity,
    FirmwareState,
    LogState,
    MeterReading,
    OpenOutage,
    StationOps,
)

# The device model stage's and the campaign controller's documents live in their own
# modules; re-exported here so other services read every stations document through this one.
from services.stations.campaign_documents import campaign_from_doc, campaign_parent, campaign_to_doc
from services.stations.device_model_documents import (
    inventory_from_doc,
    inventory_to_doc,
    report_doc_id,
    report_from_doc,
    report_to_doc,
)
from services.stations.local_list_documents import (
    ENTRIES_PARENT as LOCAL_LIST_ENTRIES_PARENT,
    HEADER_PARENT as LOCAL_LIST_HEADER_PARENT,
    DesiredList,
    bump_tokens_revision,
    content_hash as local_list_content_hash,
    desired_from_docs,
    entries_doc_id as local_list_entries_doc_id,
    entries_to_doc as local_list_entries_to_doc,
    header_to_doc as local_list_header_to_doc,
    read_tokens_revision,
    sync_from_doc as local_list_sync_from_doc,
)
from services.stations.reservation_documents import (
    OPEN as RESERVATIONS_OPEN,
    ReservationConflict,
    create_reservation,
    reservation_from_doc,
    reservation_to_doc,
    update_reservation,
)

from services.stations.charging_profile_documents import (
    profile_to_dict as charging_profiles_profile_to_dict,
    profiles_from_doc as charging_profiles_profiles_from_doc,
    report_doc_id as charging_profiles_report_doc_id,
    report_from_doc as charging_profiles_report_from_doc,
    report_profiles as charging_profiles_report_profiles,
)
from services.stations.drivers.customer_information_documents import (
    MAX_DATA_CHARS as CUSTOMER_INFORMATION_MAX_DATA_CHARS,
    STATUSES as CUSTOMER_INFORMATION_STATUSES,
    doc_id as customer_information_doc_id,
    from_doc as customer_information_from_doc,
    summary_view as customer_information_summary_view,
    view as customer_information_view,
)
from services.stations.drivers.display_messages_documents import (
    FORMATS as DISPLAY_MESSAGES_FORMATS,
    INT32_MAX as DISPLAY_MESSAGES_INT32_MAX,
    PRIORITIES as DISPLAY_MESSAGES_PRIORITIES,
    STATES as DISPLAY_MESSAGES_STATES,
    DisplayMessageRecord as DisplayMessagesDisplayMessageRecord,
    MessageRecord as DisplayMessagesMessageRecord,
    active as display_messages_active,
    message_from_ocpp as display_messages_message_from_ocpp,
    message_view as display_messages_message_view,
    next_message_id as display_messages_next_message_id,
    record_from_doc as display_messages_record_from_doc,
    report_doc_id as display_messages_report_doc_id,
    report_from_doc as display_messages_report_from_doc,
)

__all__ = [
    "charging_profiles_profile_to_dict",
    "charging_profiles_profiles_from_doc",
    "charging_profiles_report_doc_id",
    "charging_profiles_report_from_doc",
    "charging_profiles_report_profiles",
    "CUSTOMER_INFORMATION_MAX_DATA_CHARS",
    "CUSTOMER_INFORMATION_STATUSES",
    "customer_information_doc_id",
    "customer_information_from_doc",
    "customer_information_summary_view",
    "customer_information_view",
    "DISPLAY_MESSAGES_FORMATS",
    "DISPLAY_MESSAGES_INT32_MAX",
    "DISPLAY_MESSAGES_PRIORITIES",
    "DISPLAY_MESSAGES_STATES",
    "DisplayMessagesDisplayMessageRecord",
    "DisplayMessagesMessageRecord",
    "display_messages_active",
    "display_messages_message_from_ocpp",
    "display_messages_message_view",
    "display_messages_next_message_id",
    "display_messages_record_from_doc",
    "display_messages_report_doc_id",
    "display_messages_report_from_doc",
    "campaign_from_doc",
    "campaign_parent",
    "campaign_to_doc",
    "inventory_from_doc",
    "inventory_to_doc",
    "report_doc_id",
    "report_from_doc",
    "report_to_doc",
    "LOCAL_LIST_ENTRIES_PARENT",
    "LOCAL_LIST_HEADER_PARENT",
    "DesiredList",
    "bump_tokens_revision",
    "local_list_content_hash",
    "desired_from_docs",
    "local_list_entries_doc_id",
    "local_list_entries_to_doc",
    "local_list_header_to_doc",
    "read_tokens_revision",
    "local_list_sync_from_doc",
    "RESERVATIONS_OPEN",
    "ReservationConflict",
    "create_reservation",
    "reservation_from_doc",
    "reservation_to_doc",
    "update_reservation",
    "CommandRecord",
    "command_to_doc",
    "command_from_doc",
    "StationOps",
    "station_ops_to_doc",
    "station_ops_from_doc",
]


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _opt_dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


# -- command records ---------------------------------------------------------------------
def command_to_doc(c: CommandRecord) -> dict[str, Any]:
    return {
        "command_id": c.command_id,
        "station_id": c.station_id,
        "command_type": c.command_type,
        "ocpp_action": c.ocpp_action,
        "payload": c.payload,
        "status": c.status,
        "response": c.response,
        "error_code": c.error_code,
        "error_description": c.error_description,
        "issued_at": _iso(c.issued_at),
        "completed_at": _iso(c.completed_at),
        "expired_at": _iso(c.expired_at),
        "late_reply": c.late_reply,
        "version": c.version,
        "updated_at": _iso(c.updated_at),
    }


def command_from_doc(d: Mapping[str, Any]) -> CommandRecord:
    return CommandRecord(
        command_id=str(d["command_id"]),
        station_id=str(d.get("station_id") or ""),
        command_type=str(d.get("command_type") or ""),
        ocpp_action=str(d.get("ocpp_action") or ""),
        payload=d.get("payload"),
        status=str(d.get("status") or "Pending"),
        response=d.get("response"),
        error_code=str(d.get("error_code") or ""),
        error_description=str(d.get("error_description") or ""),
        issued_at=_opt_dt(d.get("issued_at")),
        completed_at=_opt_dt(d.get("completed_at")),
        expired_at=_opt_dt(d.get("expired_at")),
        late_reply=bool(d.get("late_reply", False)),
        version=int(d.get("version") or 0),
        updated_at=_opt_dt(d.get("updated_at")),
    )


# -- station operations ------------------------------------------------------------------
def _connectivity_out(c: Connectivity) -> dict[str, Any]:
    return {
        "connected": c.connected,
        "epoch": c.epoch,
        "disconnected_epoch": c.disconnected_epoch,
        "connected_at": _iso(c.connected_at),
        "disconnected_at": _iso(c.disconnected_at),
        "remote_addr": c.remote_addr,
        "security_profile": c.security_profile,
        "gateway_id": c.gateway_id,
        "connectors": {key: {"status": status, "at": to_ocpp(at)} for key, (status, at) in c.connectors.items()},
    }


def _connectivity_in(d: Mapping[str, Any] | None) -> Connectivity:
    if not d:
        return Connectivity()
    connectors: dict[str, tuple[str, datetime]] = {}
    for key, c in (d.get("connectors") or {}).items():
        at = _opt_dt(c.get("at"))
        if at is not None:
            connectors[str(key)] = (str(c.get("status") or ""), at)
    return Connectivity(
        epoch=int(d.get("epoch") or 0),
        disconnected_epoch=int(d.get("disconnected_epoch") or 0),
        connected_at=_opt_dt(d.get("connected_at")),
        disconnected_at=_opt_dt(d.get("disconnected_at")),
        remote_addr=str(d.get("remote_addr") or ""),
        security_profile=int(d.get("security_profile") or 0),
        gateway_id=str(d.get("gateway_id") or ""),
        connectors=connectors,
    )


def _firmware_out(f: FirmwareState | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "status": f.status,
        "request_id": f.request_id,
        "location": f.location,
        "signed": f.signed,
        "requested_at": _iso(f.requested_at),
        "command_id": f.command_id,
        "version_before": f.version_before,
        "updated_at": _iso(f.updated_at),
        "station_time": _iso(f.station_time),
    }


def _firmware_in(d: Mapping[str, Any] | None) -> FirmwareState | None:
    if not d:
        return None
    return FirmwareState(
        status=str(d.get("status") or ""),
        request_id=_opt_int(d.get("request_id")),
        location=str(d.get("location") or ""),
        signed=bool(d.get("signed", False)),
        requested_at=_opt_dt(d.get("requested_at")),
        command_id=str(d.get("command_id") or ""),
        version_before=str(d.get("version_before") or ""),
        updated_at=_opt_dt(d.get("updated_at")),
        station_time=_opt_dt(d.get("station_time")),
    )


def _log_out(g: LogState | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {
        "status": g.status,
        "request_id": g.request_id,
        "log_type": g.log_type,
        "requested_at": _iso(g.requested_at),
        "command_id": g.command_id,
        "updated_at": _iso(g.updated_at),
    }


def _log_in(d: Mapping[str, Any] | None) -> LogState | None:
    if not d:
        return None
    return LogState(
        status=str(d.get("status") or ""),
        request_id=_opt_int(d.get("request_id")),
        log_type=str(d.get("log_type") or ""),
        requested_at=_opt_dt(d.get("requested_at")),
        command_id=str(d.get("command_id") or ""),
        updated_at=_opt_dt(d.get("updated_at")),
    )


def station_ops_to_doc(s: StationOps) -> dict[str, Any]:
    """The stored document (the API shows parts of it in GET /stations/{id})."""
    outage = s.outage
    return {
        "station_id": s.station_id,
        "connectivity": _connectivity_out(s.connectivity),
        "availability": dict(s.availability),
        "firmware": _firmware_out(s.firmware),
        "log": _log_out(s.log),
        "outage": None if outage is None else {"cause": outage.cause, "since": to_ocpp(outage.since)},
        "meters": {
            key: {"value": m.value, "unit": m.unit, "at": to_ocpp(m.at)} for key, m in s.meters.items()
        },
        "charging_limits": {
            key: {
                "source": c.source, "is_grid_critical": c.is_grid_critical, "limit": c.limit, "unit": c.unit,
                "at": _iso(c.at),
            }
            for key, c in s.charging_limits.items()
        },
        "limits_cleared": {key: to_ocpp(at) for key, at in s.limits_cleared.items()},
        "last_security_event": s.last_security_event,
        "last_security_event_at": _iso(s.last_security_event_at),
        "boot_firmware_version": s.boot_firmware_version,
        "booted_at": _iso(s.booted_at),
        "version": s.version,
        "updated_at": _iso(s.updated_at),
    }


def station_ops_from_doc(d: Mapping[str, Any]) -> StationOps:
    outage = d.get("outage")
    since = _opt_dt(outage.get("since")) if outage else None
    return StationOps(
        station_id=str(d["station_id"]),
        connectivity=_connectivity_in(d.get("connectivity")),
        availability={str(k): str(v) for k, v in (d.get("availability") or {}).items()},
        firmware=_firmware_in(d.get("firmware")),
        log=_log_in(d.get("log")),
        outage=None if outage is None or since is None else OpenOutage(str(outage.get("cause") or ""), since),
        meters={
            str(key): MeterReading(float(m.get("value") or 0.0), str(m.get("unit") or ""), parse_ocpp(str(m["at"])))
            for key, m in (d.get("meters") or {}).items()
            if m.get("at")
        },
        charging_limits={
            str(key): ChargingLimit(
                source=str(c.get("source") or ""),
                is_grid_critical=_opt_bool(c.get("is_grid_critical")),
                limit=_opt_float(c.get("limit")),
                unit=str(c.get("unit") or ""),
                at=_opt_dt(c.get("at")),
            )
            for key, c in (d.get("charging_limits") or {}).items()
        },
        limits_cleared={str(k): parse_ocpp(str(v)) for k, v in (d.get("limits_cleared") or {}).items() if v},
        last_security_event=str(d.get("last_security_event") or ""),
        last_security_event_at=_opt_dt(d.get("last_security_event_at")),
        boot_firmware_version=str(d.get("boot_firmware_version") or ""),
        booted_at=_opt_dt(d.get("booted_at")),
        version=int(d.get("version") or 0),
        updated_at=_opt_dt(d.get("updated_at")),
    )
