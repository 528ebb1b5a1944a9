"""Station status: a pure projection of station events.

A frozen value (services/sessions/documents.py maps it to the document the store
keeps and the API shows), merged with commutative, idempotent rules so a
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

Command records (`CommandRecord`, `apply_command`) moved to the stations processor
(services/stations/domain/commands.py, ADR 016).
"""

from __future__ import annotations

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
    "apply_status",
    "connector_newer",
    "STATUS_BODIES",
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
        if connector_newer(entry, old.connectors.get(key)):
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


def connector_newer(entry: ConnectorState, cur: ConnectorState | None) -> bool:
    """Whether `entry` replaces `cur` as a connector's status: the later station time wins,
    ties break deterministically (status, then error code, info, vendor code). The stations
    processor's own connector view uses this same rule (ADR 016)."""
    return cur is None or _status_rank(entry) > _status_rank(cur)


def _status_rank(entry: ConnectorState) -> tuple[datetime, str, str, str, str]:
    return (entry.at or _NEVER, entry.status, entry.error_code, entry.info, entry.vendor_error_code)


_NEVER = datetime.min.replace(tzinfo=timezone.utc)
