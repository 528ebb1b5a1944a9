"""Command records: a pure projection of CommandIssued / CommandResult (ADR 016: moved here
from the sessions processor, same behaviour and same stored shape).

`apply_command(record, env, now)` → a `CommandRecord` (kind "command", id = command id,
parent = station; services/stations/documents.py maps it to and from its document):
CommandIssued / CommandResult correlated by command id, in any order. A reply from the
station supersedes a CSMS-side outcome ("Timeout", "StationOffline", "Expired"), so a late
reply after a timeout is still recorded: `expired_at` keeps the first CSMS-side outcome and
`late_reply` says the station answered after it. A redelivered event changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.common import events as ev
from services.sessions.domain.session import truncate_ms

__all__ = [
    "CommandRecord",
    "apply_command",
    "COMMAND_BODIES",
    "SYNTHETIC_COMMAND_STATUSES",
]

COMMAND_BODIES = (ev.CommandIssued, ev.CommandResult)
SYNTHETIC_COMMAND_STATUSES = frozenset({"Timeout", "StationOffline", "Expired"})


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
