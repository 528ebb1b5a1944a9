"""Station status and command records: pure projections of station events.

Both are plain JSON documents (what the store keeps and the API shows), merged
with commutative, idempotent rules so a redelivered event changes nothing:

`apply_status(doc, env, now)` → kind "station_status" (id = station id):
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

`apply_command(doc, env, now)` → kind "command" (id = command id, parent = station):
CommandIssued / CommandResult correlated by command id, in any order. A reply
from the station supersedes a CSMS-side outcome ("Timeout", "StationOffline",
"Expired"), so a late reply after a timeout is still recorded: `expired_at` keeps
the first CSMS-side outcome and `late_reply` says the station answered after it.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

from services.common import events as ev
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
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


def _later(a: str | None, b: str) -> str:
    if a is None:
        return b
    return b if parse_ocpp(b) > parse_ocpp(a) else a


# -- station status ----------------------------------------------------------
def _empty_status(station_id: str) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "connected": False,
        "epoch": 0,
        "disconnected_epoch": 0,
        "gateway_id": "",
        "ocpp_version": "",
        "last_seen": None,
        "last_disconnect": None,
        "boot": None,
        "connectors": {},
        "last_heartbeat": None,
        "version": 0,
        "updated_at": None,
    }


def apply_status(doc: dict[str, Any] | None, env: ev.Envelope, now: datetime) -> dict[str, Any] | None:
    """The station status document after `env`; None when `env` is not a status event.
    Returns a document equal to `doc` when nothing changed."""
    body = env.body
    if not isinstance(body, STATUS_BODIES):
        return None
    old = doc if doc is not None else _empty_status(env.station_id)
    d = copy.deepcopy(old)
    received = to_ocpp(env.received_at)
    station_at = to_ocpp(env.station_time) if env.station_time is not None else received

    if isinstance(body, ev.StationConnected):
        if body.epoch > d["epoch"]:
            d["epoch"] = body.epoch
            d["gateway_id"] = env.gateway_id
            d["ocpp_version"] = env.ocpp_version or body.subprotocol or d["ocpp_version"]
    elif isinstance(body, ev.StationDisconnected):
        if body.epoch > d["disconnected_epoch"]:
            d["disconnected_epoch"] = body.epoch
            d["last_disconnect"] = {
                "epoch": body.epoch, "close_code": body.close_code, "reason": body.reason, "at": received
            }
    elif isinstance(body, ev.StationBooted):
        boot = d["boot"]
        if boot is None or parse_ocpp(received) > parse_ocpp(boot["at"]):
            d["boot"] = {
                "vendor": body.vendor,
                "model": body.model,
                "serial_number": body.serial_number,
                "firmware_version": body.firmware_version,
                "reason": body.reason,
                "registration_status": body.registration_status,
                "interval": body.interval,
                "iccid": body.iccid,
                "imsi": body.imsi,
                "meter_type": body.meter_type,
                "meter_serial_number": body.meter_serial_number,
                "at": received,
            }
    elif isinstance(body, ev.ConnectorStatus):
        key = f"{body.evse_id}/{body.connector_id}"
        entry = {
            "status": body.status,
            "error_code": body.error_code,
            "info": body.info,
            "vendor_error_code": body.vendor_error_code,
            "at": station_at,
        }
        cur = d["connectors"].get(key)
        if cur is None or _status_rank(entry) > _status_rank(cur):
            d["connectors"][key] = entry
    elif isinstance(body, ev.Heartbeat):
        d["last_heartbeat"] = _later(d["last_heartbeat"], received)

    if env.ocpp_version and not d["ocpp_version"]:
        d["ocpp_version"] = env.ocpp_version
    d["connected"] = d["epoch"] > d["disconnected_epoch"]

    changed = d != old
    seen = d["last_seen"]
    if changed or not isinstance(body, _COALESCED):
        d["last_seen"] = _later(seen, received)
    elif seen is None or parse_ocpp(received) >= parse_ocpp(seen) + LAST_SEEN_GRANULARITY:
        d["last_seen"] = received
    if d == old:
        return old
    d["version"] = int(old.get("version", 0)) + 1
    d["updated_at"] = to_ocpp(now)
    return d


def _status_rank(entry: dict[str, Any]) -> tuple[datetime, str, str, str, str]:
    return (parse_ocpp(entry["at"]), entry["status"], entry["error_code"], entry["info"], entry.get("vendor_error_code", ""))


# -- command records ---------------------------------------------------------
def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"raw": text}


def apply_command(doc: dict[str, Any] | None, env: ev.Envelope, now: datetime) -> dict[str, Any] | None:
    """The command record after `env`; None when `env` is not a command event.
    Returns a document equal to `doc` when nothing changed."""
    body = env.body
    if not isinstance(body, COMMAND_BODIES):
        return None
    old = doc if doc is not None else {
        "command_id": body.command_id,
        "station_id": env.station_id,
        "command_type": body.command_type,
        "ocpp_action": "",
        "payload": None,
        "status": "Pending",
        "response": None,
        "error_code": "",
        "error_description": "",
        "issued_at": None,
        "completed_at": None,
        "expired_at": None,
        "late_reply": False,
        "version": 0,
        "updated_at": None,
    }
    d = copy.deepcopy(old)
    d.setdefault("expired_at", None)
    received = to_ocpp(env.received_at)
    if not d["command_type"]:
        d["command_type"] = body.command_type
    if isinstance(body, ev.CommandIssued):
        if d["issued_at"] is None or parse_ocpp(received) < parse_ocpp(d["issued_at"]):
            d["issued_at"] = received
            d["ocpp_action"] = body.ocpp_action
            d["payload"] = _json(body.payload_json)
    else:
        synthetic = body.status in SYNTHETIC_COMMAND_STATUSES
        if synthetic and (d["expired_at"] is None or parse_ocpp(received) < parse_ocpp(d["expired_at"])):
            d["expired_at"] = received
        new_rank = (not synthetic, parse_ocpp(received), body.status)
        cur_rank = None
        if d["completed_at"] is not None:
            cur_rank = (d["status"] not in SYNTHETIC_COMMAND_STATUSES, parse_ocpp(d["completed_at"]), d["status"])
        if cur_rank is None or new_rank > cur_rank:
            d["status"] = body.status
            d["response"] = _json(body.response_json)
            d["error_code"] = body.error_code
            d["error_description"] = body.error_description
            d["completed_at"] = received
    d["late_reply"] = bool(
        d["completed_at"] is not None
        and d["expired_at"] is not None
        and d["status"] not in SYNTHETIC_COMMAND_STATUSES
        and parse_ocpp(d["completed_at"]) > parse_ocpp(d["expired_at"])
    )
    if d == old:
        return old
    d["version"] = int(old.get("version", 0)) + 1
    d["updated_at"] = to_ocpp(now)
    return d
