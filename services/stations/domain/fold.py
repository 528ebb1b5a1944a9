"""`apply_ops(ops, env, now)`: a station's `StationOps` after one event (pure, ADR 016).

Every rule is commutative where the events can arrive out of order and idempotent
everywhere: applying an event again (a redelivered batch) returns the same object, and
closes no outage twice. What each event does:

- StationConnected / StationDisconnected: `Connectivity`'s epochs by the sessions
  processor's rule (`apply_status`): `epoch` = the highest Connected epoch,
  `disconnected_epoch` = the highest Disconnected epoch, connected = epoch >
  disconnected_epoch; a newer Connected also sets `connected_at` (receive time),
  `remote_addr`, `security_profile` and `gateway_id`, a newer Disconnected
  `disconnected_at`.
- ConnectorStatus: the connector's latest status by station time (the receive time when
  the station gave none), with `station_status.connector_newer`'s rule.
- StationBooted: the latest boot's firmware version (by receive time).
- CommandIssued of UpdateFirmware / SignedUpdateFirmware: `firmware` = Requested (request
  id, location, signed, `version_before` = the boot firmware version); of GetLog /
  GetDiagnostics: `log` = Requested. A redelivered CommandIssued (same command id) and one
  older than what the state already says change nothing.
- FirmwareStatus / LogStatus: the status, `updated_at` (receive time) and, for firmware,
  the station time; latest by receive time. A status naming another request id than the
  current one updates all the same and carries its own request id (what was requested
  stays as it was: location, requested_at, ...).
- CommandResult of ChangeAvailability, Accepted or Scheduled: `availability["0"]` (the
  station) or `availability["<evse>"]` = the requested Operative / Inoperative, read from
  the result's `request_json` (1.6 `connectorId` / `type`, connector N being EVSE N;
  2.0.1 `evse.id` / `operationalStatus`).
- MeterValues without a transaction id: the latest reading (by sample time) per
  "<evse>/<measurand>/<phase>"; samples whose value was unusable are left out.
- ChargingLimitSet / ChargingLimitCleared: the external limit in force per EVSE (a clear
  of EVSE 0 clears that source on every EVSE); a clear's time is kept per EVSE and
  source, so a limit set before it and delivered again stays cleared.
- SecurityEvent: the latest type and its receive time.

Outages (ADR 016 §6): after every event the station is *down* when not connected
(cause "offline"), or when its station-level connector (EVSE 0) or every other known
connector is Faulted ("faulted") or Unavailable ("unavailable"; Faulted wins). A station
whose connection was never seen (no Connected nor Disconnected yet) is neither up nor
down: no outage opens for it. Each change of up/down or of cause closes the open outage
at the event's receive time (`OpsChange.closed`) and opens the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Mapping

from services.common import events as ev
from services.sessions.domain.session import truncate_ms
from services.sessions.domain.station_status import ConnectorState, connector_newer

from .ops import (
    ChargingLimit,
    Connectivity,
    FirmwareState,
    LogState,
    MeterReading,
    OpenOutage,
    Outage,
    StationOps,
)

__all__ = [
    "OpsChange",
    "apply_ops",
    "folds",
    "down_cause",
    "OPS_BODIES",
    "FIRMWARE_ACTIONS",
    "LOG_ACTIONS",
    "REQUESTED",
]

REQUESTED = "Requested"
FIRMWARE_ACTIONS = frozenset({"UpdateFirmware", "SignedUpdateFirmware"})
LOG_ACTIONS = frozenset({"GetLog", "GetDiagnostics"})
_AVAILABILITY_ACTION = "ChangeAvailability"
_AVAILABILITY_ACCEPTED = frozenset({"Accepted", "Scheduled"})
_NEVER = datetime.min.replace(tzinfo=timezone.utc)

# The event bodies `apply_ops` folds (anything else returns the state unchanged; `folds`
# says more precisely which events can change it).
OPS_BODIES: tuple[type, ...] = (
    ev.StationConnected,
    ev.StationDisconnected,
    ev.StationBooted,
    ev.ConnectorStatus,
    ev.CommandIssued,
    ev.CommandResult,
    ev.FirmwareStatus,
    ev.LogStatus,
    ev.MeterValues,
    ev.ChargingLimitSet,
    ev.ChargingLimitCleared,
    ev.SecurityEvent,
)


@dataclass(frozen=True, slots=True)
class OpsChange:
    """`ops`: the state after the event (the very object given when nothing changed);
    `closed`: the outage the event ended, if it ended one."""

    ops: StationOps
    closed: Outage | None = None


def apply_ops(ops: StationOps | None, env: ev.Envelope, now: datetime) -> OpsChange:
    """The station's operations state after `env` (see the module docstring). `ops` None:
    the station's empty state, which comes back as it is (version 0) when `env` changes
    nothing."""
    old = ops if ops is not None else StationOps(env.station_id)
    body = env.body
    if not folds(env):
        return OpsChange(old)
    received = truncate_ms(env.received_at)
    ch: dict[str, Any] = {}
    if isinstance(body, (ev.StationConnected, ev.StationDisconnected, ev.ConnectorStatus)):
        conn = _connectivity(old.connectivity, env, received)
        if conn is not old.connectivity:
            ch["connectivity"] = conn
    elif isinstance(body, ev.StationBooted):
        if old.booted_at is None or received > old.booted_at:
            ch.update(boot_firmware_version=body.firmware_version, booted_at=received)
    elif isinstance(body, ev.CommandIssued):
        _issued(old, body, received, ch)
    elif isinstance(body, ev.CommandResult):
        _availability(old, body, ch)
    elif isinstance(body, ev.FirmwareStatus):
        fw = _firmware_status(old.firmware, body, received, _ms_or_none(env.station_time))
        if fw is not old.firmware:
            ch["firmware"] = fw
    elif isinstance(body, ev.LogStatus):
        lg = _log_status(old.log, body, received)
        if lg is not old.log:
            ch["log"] = lg
    elif isinstance(body, ev.MeterValues):
        meters = _meters(old.meters, body)
        if meters is not old.meters:
            ch["meters"] = meters
    elif isinstance(body, ev.ChargingLimitSet):
        limits = _limit_set(old.charging_limits, old.limits_cleared, body, received)
        if limits is not old.charging_limits:
            ch["charging_limits"] = limits
    elif isinstance(body, ev.ChargingLimitCleared):
        limits = _limit_cleared(old.charging_limits, body, received)
        if limits is not old.charging_limits:
            ch["charging_limits"] = limits
        mark = f"{body.evse_id}/{body.source}"
        if old.limits_cleared.get(mark, _NEVER) < received:
            ch["limits_cleared"] = {**old.limits_cleared, mark: received}
    elif isinstance(body, ev.SecurityEvent):
        cur = (old.last_security_event_at or _NEVER, old.last_security_event)
        if old.last_security_event_at is None or (received, body.type) > cur:
            ch.update(last_security_event=body.type, last_security_event_at=received)

    closed: Outage | None = None
    if "connectivity" in ch:
        outage, closed = _outage(old.outage, down_cause(ch["connectivity"]), received)
        if outage != old.outage:
            ch["outage"] = outage
    if not any(getattr(old, k) != v for k, v in ch.items()):
        return OpsChange(old)
    return OpsChange(replace(old, **ch, version=old.version + 1, updated_at=truncate_ms(now)), closed)


def folds(env: ev.Envelope) -> bool:
    """Whether `apply_ops` may change anything for `env`: a shell reads a station's state
    only for these (transaction meter values and most commands, e.g. smart charging's
    SetChargingProfile, leave it alone)."""
    body = env.body
    if isinstance(body, ev.MeterValues):
        return not body.transaction_id
    if isinstance(body, ev.CommandIssued):
        return _action(body) in FIRMWARE_ACTIONS or _action(body) in LOG_ACTIONS
    if isinstance(body, ev.CommandResult):
        return _action(body) == _AVAILABILITY_ACTION
    return isinstance(body, OPS_BODIES)


# -- connection and connectors ------------------------------------------------------
def _connectivity(c: Connectivity, env: ev.Envelope, received: datetime) -> Connectivity:
    body = env.body
    if isinstance(body, ev.StationConnected):
        if body.epoch > c.epoch:
            return replace(
                c, epoch=body.epoch, connected_at=received, remote_addr=body.remote_addr,
                security_profile=body.security_profile, gateway_id=env.gateway_id,
            )
    elif isinstance(body, ev.StationDisconnected):
        if body.epoch > c.disconnected_epoch:
            return replace(c, disconnected_epoch=body.epoch, disconnected_at=received)
    elif isinstance(body, ev.ConnectorStatus):
        key = f"{body.evse_id}/{body.connector_id}"
        at = truncate_ms(env.station_time) if env.station_time is not None else received
        cur = c.connectors.get(key)
        if connector_newer(ConnectorState(body.status, at=at), None if cur is None else ConnectorState(cur[0], at=cur[1])):
            return replace(c, connectors={**c.connectors, key: (body.status, at)})
    return c


def down_cause(c: Connectivity) -> str | None:
    """Why the station is down ("offline", "faulted", "unavailable"), or None when it is up
    or its connection was never seen."""
    if not c.connected:
        return "offline" if c.epoch or c.disconnected_epoch else None
    station: set[str] = set()
    others: list[str] = []
    for key, (status, _) in c.connectors.items():
        state = status.strip().lower()
        if key.split("/", 1)[0] == "0":
            station.add(state)
        else:
            others.append(state)
    all_down = bool(others) and all(s in ("faulted", "unavailable") for s in others)
    if "faulted" in station or (all_down and "faulted" in others):
        return "faulted"
    if "unavailable" in station or all_down:
        return "unavailable"
    return None


def _outage(cur: OpenOutage | None, cause: str | None, at: datetime) -> tuple[OpenOutage | None, Outage | None]:
    if (cur.cause if cur is not None else None) == cause:
        return cur, None
    if cur is None:
        return OpenOutage(cause, at) if cause is not None else None, None
    end = max(at, cur.since)  # never before its start (an event received out of order)
    return (OpenOutage(cause, end) if cause is not None else None), Outage(cur.cause, cur.since, end)


# -- firmware and log transfers -----------------------------------------------------
def _payload(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _action(body: ev.CommandIssued | ev.CommandResult) -> str:
    return body.ocpp_action or body.command_type


def _issued(old: StationOps, body: ev.CommandIssued, received: datetime, ch: dict[str, Any]) -> None:
    action = _action(body)
    if action in FIRMWARE_ACTIONS:
        fw = old.firmware
        if fw is not None and (fw.command_id == body.command_id or received < _asof(fw.requested_at, fw.updated_at)):
            return
        p = _payload(body.payload_json)
        firmware = p.get("firmware")
        firmware = firmware if isinstance(firmware, dict) else {}
        ch["firmware"] = FirmwareState(
            status=REQUESTED,
            request_id=_int_or_none(p.get("requestId")),
            location=str(firmware.get("location") or p.get("location") or ""),
            signed=action == "SignedUpdateFirmware" or bool(firmware.get("signature")),
            requested_at=received,
            command_id=body.command_id,
            version_before=old.boot_firmware_version,
        )
    elif action in LOG_ACTIONS:
        lg = old.log
        if lg is not None and (lg.command_id == body.command_id or received < _asof(lg.requested_at, lg.updated_at)):
            return
        p = _payload(body.payload_json)
        log_type = "DiagnosticsLog" if action == "GetDiagnostics" else str(p.get("logType") or "")
        ch["log"] = LogState(
            status=REQUESTED,
            request_id=_int_or_none(p.get("requestId")),
            log_type=log_type,
            requested_at=received,
            command_id=body.command_id,
        )


def _asof(requested_at: datetime | None, updated_at: datetime | None) -> datetime:
    return max(requested_at or _NEVER, updated_at or _NEVER)


def _status_rank(status: str, request_id: int | None, updated_at: datetime | None,
                 requested_at: datetime | None) -> tuple[datetime, int, str, int]:
    """A transfer state's position: a status (1) after the request (0) at the same time;
    then deterministic ties."""
    if updated_at is None:
        return (requested_at or _NEVER, 0, "", -1)
    return (updated_at, 1, status, -1 if request_id is None else request_id)


def _firmware_status(
    cur: FirmwareState | None, body: ev.FirmwareStatus, received: datetime, station_time: datetime | None,
) -> FirmwareState | None:
    if cur is None:
        return FirmwareState(body.status, body.request_id, updated_at=received, station_time=station_time)
    new = _status_rank(body.status, body.request_id, received, None)
    if new <= _status_rank(cur.status, cur.request_id, cur.updated_at, cur.requested_at):
        return cur
    request_id = body.request_id if body.request_id is not None else cur.request_id
    return replace(cur, status=body.status, request_id=request_id, updated_at=received, station_time=station_time)


def _log_status(cur: LogState | None, body: ev.LogStatus, received: datetime) -> LogState | None:
    if cur is None:
        return LogState(body.status, body.request_id, log_type="DiagnosticsLog" if body.diagnostics else "",
                        updated_at=received)
    new = _status_rank(body.status, body.request_id, received, None)
    if new <= _status_rank(cur.status, cur.request_id, cur.updated_at, cur.requested_at):
        return cur
    request_id = body.request_id if body.request_id is not None else cur.request_id
    return replace(cur, status=body.status, request_id=request_id, updated_at=received)


# -- availability -------------------------------------------------------------------
def _availability(old: StationOps, body: ev.CommandResult, ch: dict[str, Any]) -> None:
    if _action(body) != _AVAILABILITY_ACTION or body.status not in _AVAILABILITY_ACCEPTED:
        return
    p = _payload(body.request_json)
    if "type" in p or "connectorId" in p:  # 1.6: connector N is EVSE N, 0 the station
        key = _int_or_none(p.get("connectorId"))
        status = p.get("type")
    else:  # 2.0.1: no evse, the station
        evse = p.get("evse")
        key = _int_or_none(evse.get("id")) if isinstance(evse, dict) else 0
        status = p.get("operationalStatus")
    if key is None or key < 0 or not isinstance(status, str) or not status:
        return
    if old.availability.get(str(key)) != status:
        ch["availability"] = {**old.availability, str(key): status}


# -- meters and limits --------------------------------------------------------------
def _meters(cur: Mapping[str, MeterReading], body: ev.MeterValues) -> Mapping[str, MeterReading]:
    out: dict[str, MeterReading] | None = None
    for s in body.samples:
        if s.raw_value:
            continue  # the value as sent was not a usable number
        key = f"{body.evse_id}/{s.measurand}/{s.phase}"
        reading = MeterReading(float(s.value), s.unit, truncate_ms(s.timestamp))
        held = (out if out is not None else cur).get(key)
        if held is not None and (reading.at, reading.value, reading.unit) <= (held.at, held.value, held.unit):
            continue
        if out is None:
            out = dict(cur)
        out[key] = reading
    return cur if out is None else out


def _limit_set(
    cur: Mapping[str, ChargingLimit], cleared: Mapping[str, datetime], body: ev.ChargingLimitSet, received: datetime,
) -> Mapping[str, ChargingLimit]:
    key = str(body.evse_id)
    held = cur.get(key)
    if held is not None and held.at is not None and received < held.at:
        return cur
    if received < max(cleared.get(f"{key}/{body.source}", _NEVER), cleared.get(f"0/{body.source}", _NEVER)):
        return cur  # cleared since (a limit delivered again after its clear)
    schedule = body.schedules[0] if body.schedules else None
    limit = schedule.periods[0].limit if schedule is not None and schedule.periods else None
    new = ChargingLimit(
        source=body.source, is_grid_critical=body.is_grid_critical, limit=limit,
        unit=schedule.charging_rate_unit if schedule is not None else "", at=received,
    )
    if held == new:
        return cur
    return {**cur, key: new}


def _limit_cleared(
    cur: Mapping[str, ChargingLimit], body: ev.ChargingLimitCleared, received: datetime,
) -> Mapping[str, ChargingLimit]:
    keys = list(cur) if body.evse_id == 0 else [str(body.evse_id)]
    gone = [k for k in keys if k in cur and _clears(cur[k], body.source, received)]
    if not gone:
        return cur
    return {k: v for k, v in cur.items() if k not in gone}


def _clears(held: ChargingLimit, source: str, received: datetime) -> bool:
    return held.source == source and (held.at is None or held.at <= received)


def _ms_or_none(dt: datetime | None) -> datetime | None:
    return None if dt is None else truncate_ms(dt)
