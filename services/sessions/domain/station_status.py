"""Station status and command records: pure projections of station events.

Both are frozen values (services/sessions/documents.py maps them to the documents the
store keeps and the API shows), merged with commutative, idempotent rules so a
redelivered event changes nothing:

`apply_status(status, env, now)` → a `StationStatus` (kind "station_status", id = station
id; services/sessions/documents.py maps it to and from its document):
- connection: `epoch` = highest StationConnected epoch, `disconnected_epoch` =
  highest StationDisconnected epoch, `connected` = epoch > disconnected_epoch.
  In order this is "a Connected with epoch ≥ current connects; a Disconnected of
  the current epoch disconnects; an older epoch's Disconnected is ignored", and it
  also stays right when a Connected is redelivered after its own Disconnected.
- boot: the latest StationBooted (by receive time) with `at`.
- connectors["<evse>/<connector>"]: the status with the latest station time
  (older station timestamps are ignored; ties break deterministically).
- last_heartbeat, last_seen: latest receive times (last_seen moves on any status
  event, and on Authorization/Notification only when `LAST_SEEN_GRANULARITY` newer,
  to spare writes). Transaction events do not touch this document (hot path).

`apply_command(record, env, now)` → a `CommandRecord` (kind "command", id = command id,
parent = station): CommandIssued / CommandResult correlated by command id, in any order. A reply
from the station supersedes a CSMS-side outcome ("Timeout", "StationOffline",
"Expired"), so a late reply after a timeout is still recorded: `expired_at` keeps
the first CSMS-side outcome and `late_reply` says the station answered after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from services.common import events as ev
from .session import truncate_ms

__all__ = [
    "Boot",
    "ConnectorState",
    "Disconnect",
    "StationStatus",
    "CommandRecord",
    "apply_status",
    "apply_command",
    "STATUS_BODIES",
    "COMMAND_BODIES",
    "SYNTHETIC_COMMAND_STATUSES",
    "LAST_SEEN_GRANULARITY",
]

STATUS_BODIES = (
    ev.StationConnected,
    ev.StationDisconnected,
    ev.StationBooted,
    ev.ConnectorStatus,
    ev.Heartbeat,
    ev.Authorization,
    ev.Notification,
)
_COALESCED = (ev.Authorization, ev.Notification)
COMMAND_BODIES = (ev.CommandIssued, ev.CommandResult)
SYNTHETIC_COMMAND_STATUSES = frozenset({"Timeout", "StationOffline", "Expired"})
LAST_SEEN_GRANULARITY = timedelta(seconds=60)


# -- station status ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Disconnect:
    """The latest StationDisconnected (by epoch)."""

    epoch: int
    close_code: int
    reason: str
    at: datetime  # receive time


@dataclass(frozen=True, slots=True)
class Boot:
    """The latest StationBooted (by receive time), as the station told it."""

    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    reason: str = ""
    registration_status: str = ""
    interval: int = 0
    iccid: str = ""
    imsi: str = ""
    meter_type: str = ""
    meter_serial_number: str = ""
    at: datetime | None = None  # receive time


@dataclass(frozen=True, slots=True)
class ConnectorState:
    """One connector's latest status (by station time)."""

    status: str
    error_code: str = ""
    info: str = ""
    vendor_error_code: str = ""
    at: datetime | None = None  # station time (the receive time when the event had none)


@dataclass(frozen=True, slots=True)
class StationStatus:
    """What the CSMS knows of a station's connection, boot and connectors. Instants are
    aware UTC, to the millisecond. `connectors` maps "<evse>/<connector>" to its state, in
    the order the connectors were first reported (never mutated: `apply_status` builds a
    new mapping)."""

    station_id: str
    connected: bool = False
    epoch: int = 0
    disconnected_epoch: int = 0
    gateway_id: str = ""
    ocpp_version: str = ""
    last_seen: datetime | None = None
    last_disconnect: Disconnect | None = None
    boot: Boot | None = None
    connectors: Mapping[str, ConnectorState] = field(default_factory=dict)
    last_heartbeat: datetime | None = None
    version: int = 0
    updated_at: datetime | None = None


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def apply_status(status: StationStatus | None, env: ev.Envelope, now: datetime) -> StationStatus | None:
    """The station status after `env`; None when `env` is not a status event. Returns
    `status` itself when nothing changed."""
    body = env.body
    if not isinstance(body, STATUS_BODIES):
        return None
    old = status if status is not None else StationStatus(env.station_id)
    ch: dict[str, Any] = {}
    received = truncate_ms(env.received_at)
    station_at = truncate_ms(env.station_time) if env.station_time is not None else received
    ocpp_version = old.ocpp_version

    if isinstance(body, ev.StationConnected):
        if body.epoch > old.epoch:
            ocpp_version = env.ocpp_version or body.subprotocol or ocpp_version
            ch.update(epoch=body.epoch, gateway_id=env.gateway_id, ocpp_version=ocpp_version)
    elif isinstance(body, ev.StationDisconnected):
        if body.epoch > old.disconnected_epoch:
            ch.update(
                disconnected_epoch=body.epoch,
                last_disconnect=Disconnect(body.epoch, body.close_code, body.reason, received),
            )
    elif isinstance(body, ev.StationBooted):
        if old.boot is None or old.boot.at is None or received > old.boot.at:
            ch["boot"] = Boot(
                vendor=body.vendor,
                model=body.model,
                serial_number=body.serial_number,
                firmware_version=body.firmware_version,
                reason=body.reason,
                registration_status=body.registration_status,
                interval=body.interval,
                iccid=body.iccid,
                imsi=body.imsi,
                meter_type=body.meter_type,
                meter_serial_number=body.meter_serial_number,
                at=received,
            )
    elif isinstance(body, ev.ConnectorStatus):
        key = f"{body.evse_id}/{body.connector_id}"
        entry = ConnectorState(body.status, body.error_code, body.info, body.vendor_error_code, station_at)
        cur = old.connectors.get(key)
        if cur is None or _status_rank(entry) > _status_rank(cur):
            ch["connectors"] = {**old.connectors, key: entry}
    elif isinstance(body, ev.Heartbeat):
        heartbeat = _later(old.last_heartbeat, received)
        if heartbeat != old.last_heartbeat:
            ch["last_heartbeat"] = heartbeat

    if env.ocpp_version and not ocpp_version:
        ch["ocpp_version"] = env.ocpp_version
    connected = ch.get("epoch", old.epoch) > ch.get("disconnected_epoch", old.disconnected_epoch)
    if connected != old.connected:
        ch["connected"] = connected

    changed = any(getattr(old, k) != v for k, v in ch.items())
    seen = old.last_seen
    if changed or not isinstance(body, _COALESCED):
        last_seen = _later(seen, received)
    elif seen is None or received >= seen + LAST_SEEN_GRANULARITY:
        last_seen = received
    else:
        last_seen = seen
    if last_seen != seen:
        ch["last_seen"] = last_seen
    if not any(getattr(old, k) != v for k, v in ch.items()):
        return old
    return replace(old, **ch, version=old.version + 1, updated_at=truncate_ms(now))


def _status_rank(entry: ConnectorState) -> tuple[datetime, str, str, str, str]:
    return (entry.at or _NEVER, entry.status, entry.error_code, entry.info, entry.vendor_error_code)


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


# -- command records ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command the CSMS issued to a station and its outcome. `payload` and `response`
    are the JSON the command carried and the station answered (`{"raw": text}` when that
    was not JSON)."""

    command_id: str
    station_id: str
    command_type: str = ""
    ocpp_action: str = ""
    payload: Any = None
    status: str = "Pending"
    response: Any = None
    error_code: str = ""
    error_description: str = ""
    issued_at: datetime | None = None
    completed_at: datetime | None = None
    expired_at: datetime | None = None
    late_reply: bool = False
    version: int = 0
    updated_at: datetime | None = None


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"raw": text}


def apply_command(record: CommandRecord | None, env: ev.Envelope, now: datetime) -> CommandRecord | None:
    """The command record after `env`; None when `env` is not a command event. Returns
    `record` itself when nothing changed."""
    body = env.body
    if not isinstance(body, COMMAND_BODIES):
        return None
    old = record if record is not None else CommandRecord(body.command_id, env.station_id, body.command_type)
    ch: dict[str, Any] = {}
    received = truncate_ms(env.received_at)
    if not old.command_type:
        ch["command_type"] = body.command_type
    expired_at, completed_at, status = old.expired_at, old.completed_at, old.status
    if isinstance(body, ev.CommandIssued):
        if old.issued_at is None or received < old.issued_at:
            ch.update(issued_at=received, ocpp_action=body.ocpp_action, payload=_json(body.payload_json))
    else:
        synthetic = body.status in SYNTHETIC_COMMAND_STATUSES
        if synthetic and (expired_at is None or received < expired_at):
            expired_at = ch["expired_at"] = received
        new_rank = (not synthetic, received, body.status)
        cur_rank = None
        if completed_at is not None:
            cur_rank = (status not in SYNTHETIC_COMMAND_STATUSES, completed_at, status)
        if cur_rank is None or new_rank > cur_rank:
            status, completed_at = body.status, received
            ch.update(
                status=status, response=_json(body.response_json), error_code=body.error_code,
                error_description=body.error_description, completed_at=completed_at,
            )
    ch["late_reply"] = bool(
        completed_at is not None
        and expired_at is not None
        and status not in SYNTHETIC_COMMAND_STATUSES
        and completed_at > expired_at
    )
    if record is not None and not any(getattr(old, k) != v for k, v in ch.items()):
        return record
    return replace(old, **ch, version=old.version + 1, updated_at=truncate_ms(now))
