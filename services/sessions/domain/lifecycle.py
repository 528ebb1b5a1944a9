"""Session lifecycle: deciding that a station abandoned a session, and the small lookups
the sessions processor keeps for it. Pure functions on frozen values (stdlib only; their
documents are mapped in services/sessions/documents.py).

A station that never ends a transaction (a StartTransaction answered Invalid, a reboot
mid-session, a lost StopTransaction) would leave its session "active" for ever, and
smart charging would keep its current reserved. The sessions processor closes such
sessions by *deciding* and publishing one `SessionAbandoned` event per session on
csms.events.v1 (key = station id); the partition's owner applies it in order like any
station event (docs/adr/014-poison-records-and-plausibility.md). Decisions:

- a TransactionStarted on a connector → the open sessions of that connector that started
  earlier ("new_transaction", at = the new session's start);
- a StationBooted → every open session of the station first received no later than the
  boot ("boot", at = the boot's receive time);
- a ConnectorStatus "Available" (any case) on a connector → its open sessions that started
  no later than the status time ("connector_available", at = the status's effective time);
- no change to an open session for CSMS_SESSION_IDLE_TIMEOUT_H ("idle_timeout", at =
  the sweep time: the envelope has no station time).

"Same connector": same EVSE (not 0) and the same connector, or either connector unknown
(0: a 2.0.1 event naming only the EVSE). 1.6 connector N is EVSE N, so 1.6 sessions and
StatusNotifications meet on (N, N). An entry without a start (an orphan) is compared by
its first receive time instead.

The event id is uuid5(session id, reason): a redelivered deciding event, or several
sessions processes sweeping at once, publish the same event again, and applying it twice
changes nothing.

Open-sessions index (`OpenSessions`), kind "open_sessions", id = parent = station id: the
station's open sessions by id, each an `IndexEntry` (transaction id, evse, connector,
start if known, first receive time). Its content
changes only when a session opens, starts, moves, ends or is abandoned: MeterValues never
touch it. The sweeper reads these documents to find candidates.

Remote starts (`RemoteStartCommand`), kind "remote_start", id =
"<station id>/<remoteStartId>": written when a
CommandIssued for RequestStartTransaction is processed, read when a transaction event
carries that remoteStartId (the latest command with that id wins).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.common import events as ev

from .session import DEFAULT_RULES, Plausibility, RemoteStart, Session, effective_time, truncate_ms
from .station_status import StationStatus

__all__ = [
    "GATEWAY_ID",
    "Abandon",
    "IndexEntry",
    "OpenSessions",
    "RemoteStartCommand",
    "index_entry",
    "index_with",
    "abandons_for_start",
    "abandons_for_boot",
    "abandons_for_status",
    "is_idle",
    "abandon_event_id",
    "abandon_envelope",
    "remote_start_doc_id",
    "apply_remote_start",
    "remote_start_ref",
    "remote_start_of",
    "connector_from_status",
]

GATEWAY_ID = "sessions"  # envelope gateway_id of CSMS-made events
ABANDON_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:csms:sessions:abandoned:v1")
_BUSY = frozenset({"occupied", "charging", "preparing", "suspendedev", "suspendedevse", "finishing"})


@dataclass(frozen=True, slots=True)
class Abandon:
    session_id: str
    transaction_id: str
    evse_id: int
    connector_id: int
    reason: str
    at: datetime | None  # the deciding event's effective time; None for the sweeper


# -- the open-sessions index ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What the index keeps of an open session."""

    transaction_id: str
    evse_id: int
    connector_id: int
    started_at: datetime | None  # effective start, when known
    received_at: datetime        # first receive time


@dataclass(frozen=True, slots=True)
class OpenSessions:
    """A station's open sessions by session id (never mutated: `index_with` builds anew)."""

    station_id: str
    sessions: Mapping[str, IndexEntry]
    version: int = 0
    updated_at: datetime | None = None


def index_entry(s: Session | None) -> IndexEntry | None:
    """What the index keeps of a session; None when it is not open."""
    if s is None or s.status != "active":
        return None
    return IndexEntry(
        s.transaction_id, s.evse_id, s.connector_id,
        truncate_ms(s.started_at) if s.start_key is not None and s.started_at else None, truncate_ms(s.received_at),
    )


def index_with(
    index: OpenSessions | None, station_id: str, entries: Mapping[str, IndexEntry | None], now: datetime
) -> OpenSessions | None:
    """The index with `entries` set (None removes); the same `index` object when nothing
    changes, None when there is no index and nothing to add."""
    sessions = dict(index.sessions) if index is not None else {}
    for sid, entry in entries.items():
        if entry is None:
            sessions.pop(sid, None)
        else:
            sessions[sid] = entry
    if index is None and not sessions:
        return None
    if index is not None and sessions == index.sessions:
        return index
    return OpenSessions(station_id, sessions, (index.version if index is not None else 0) + 1, truncate_ms(now))


def _entries(index: OpenSessions | None) -> list[tuple[str, IndexEntry]]:
    return sorted(index.sessions.items()) if index is not None else []


def _same_connector(e: IndexEntry, evse: int, connector: int) -> bool:
    other = e.connector_id
    return evse != 0 and e.evse_id == evse and (other == connector or 0 in (other, connector))


def _older(e: IndexEntry, s: Session) -> bool:
    """The entry's session began before session `s`: by (start, first receive time) when
    both starts are known, else by first receive time. Strict, so that of two sessions
    the redelivered start of either never closes the other as well."""
    if e.started_at is not None and s.started_at is not None:
        return (e.started_at, e.received_at) < (s.started_at, s.received_at)
    return e.received_at < s.received_at


def _not_after(e: IndexEntry, at: datetime, received: datetime) -> bool:
    """The entry's session began no later than a status/boot at `at` (received at
    `received`): by start when known, else by first receive time. Inclusive: an Available
    stamped in the very second the session started (1.6 clocks often have whole seconds)
    contradicts the session as much as a later one does."""
    if e.started_at is not None:
        return e.started_at <= at
    return e.received_at <= received


def _abandon(sid: str, e: IndexEntry, reason: str, at: datetime | None) -> Abandon:
    return Abandon(sid, e.transaction_id, e.evse_id, e.connector_id, reason, at)


def abandons_for_start(index: OpenSessions | None, s: Session) -> list[Abandon]:
    """A transaction started on a connector: its older open sessions are abandoned."""
    if s.start_key is None or s.started_at is None:
        return []
    return [
        _abandon(sid, e, ev.ABANDONED_NEW_TRANSACTION, s.started_at)
        for sid, e in _entries(index)
        if sid != s.id and _same_connector(e, s.evse_id, s.connector_id) and _older(e, s)
    ]


def abandons_for_boot(index: OpenSessions | None, env: ev.Envelope) -> list[Abandon]:
    """The station booted: every open session it started before is abandoned."""
    if not isinstance(env.body, ev.StationBooted):
        return []
    at = env.received_at
    return [_abandon(sid, e, ev.ABANDONED_BOOT, at) for sid, e in _entries(index) if e.received_at <= at]


def abandons_for_status(
    index: OpenSessions | None, env: ev.Envelope, rules: Plausibility = DEFAULT_RULES
) -> list[Abandon]:
    """A connector reported Available: its open sessions that started before are abandoned."""
    body = env.body
    if not isinstance(body, ev.ConnectorStatus) or body.status.strip().lower() != "available":
        return []
    evse = body.evse_id or body.connector_id
    connector = body.connector_id or 0
    if evse == 0:
        return []  # 1.6 connector 0: the whole station, not a connector
    at = env.received_at if env.station_time is None else effective_time(env.station_time, env.received_at, rules)[0]
    return [
        _abandon(sid, e, ev.ABANDONED_CONNECTOR_AVAILABLE, at)
        for sid, e in _entries(index)
        if _same_connector(e, evse, connector) and _not_after(e, at, env.received_at)
    ]


def is_idle(s: Session | None, now: datetime, timeout: timedelta) -> bool:
    """An open session that has not changed for `timeout`."""
    if s is None or s.status != "active":
        return False
    try:
        return now - s.updated_at >= timeout
    except OverflowError:
        return False


def abandon_event_id(session_id: str, reason: str) -> str:
    return str(uuid.uuid5(ABANDON_NAMESPACE, f"{session_id}\n{reason}"))


def abandon_envelope(station_id: str, a: Abandon, energy_wh: int, now: datetime) -> ev.Envelope:
    """The SessionAbandoned event for one decision: received_at = when it was decided,
    station_time = the deciding event's effective time (unset for the sweeper)."""
    return ev.Envelope(
        event_id=abandon_event_id(a.session_id, a.reason),
        station_id=station_id,
        received_at=now,
        body=ev.SessionAbandoned(
            transaction_id=a.transaction_id, session_id=a.session_id, evse_id=a.evse_id,
            connector_id=a.connector_id, reason=a.reason, energy_wh=max(int(energy_wh), 0),
        ),
        gateway_id=GATEWAY_ID,
        station_time=a.at,
        action="SessionAbandoned",
    )


# -- remote starts -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RemoteStartCommand:
    """The latest RequestStartTransaction naming a remoteStartId, for the transaction
    events that will carry that id."""

    station_id: str
    remote_start_id: int
    id_token: str
    id_token_type: str
    evse_id: int
    command_id: str
    issued_by: str
    issued_at: datetime  # receive time of the CommandIssued
    version: int = 0
    updated_at: datetime | None = None


def remote_start_doc_id(station_id: str, remote_start_id: int) -> str:
    return f"{station_id}/{remote_start_id}"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _remote_start_payload(env: ev.Envelope) -> tuple[int, dict[str, Any]] | None:
    body = env.body
    if not isinstance(body, ev.CommandIssued) or body.ocpp_action != "RequestStartTransaction":
        return None
    try:
        payload = json.loads(body.payload_json or "{}")
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    rsid = _int(payload.get("remoteStartId"))
    return (rsid, payload) if rsid else None


def remote_start_ref(env: ev.Envelope) -> str | None:
    """The remote start doc id a CommandIssued writes, or None (not a RequestStartTransaction
    naming a remoteStartId)."""
    found = _remote_start_payload(env)
    return None if found is None else remote_start_doc_id(env.station_id, found[0])


def apply_remote_start(
    current: RemoteStartCommand | None, env: ev.Envelope, now: datetime
) -> RemoteStartCommand | None:
    """The remote start after a CommandIssued of a RequestStartTransaction that names a
    remoteStartId (`current` itself when unchanged); None for anything else. The latest
    command with that id wins. The issuer comes from CommandIssued.issuer when the event
    carries one."""
    found = _remote_start_payload(env)
    if found is None:
        return None
    rsid, payload = found
    body = env.body
    assert isinstance(body, ev.CommandIssued)
    token = payload.get("idToken")
    token = token if isinstance(token, dict) else {}
    issued_at = truncate_ms(env.received_at)
    if current is not None and (issued_at, body.command_id) <= (current.issued_at, current.command_id):
        return current
    return RemoteStartCommand(
        station_id=env.station_id,
        remote_start_id=rsid,
        id_token=str(token.get("idToken") or ""),
        id_token_type=str(token.get("type") or ""),
        evse_id=_int(payload.get("evseId")),
        command_id=body.command_id,
        issued_by=str(getattr(body, "issuer", "") or ""),
        issued_at=issued_at,
        version=(current.version if current is not None else 0) + 1,
        updated_at=truncate_ms(now),
    )


def remote_start_of(command: RemoteStartCommand | None) -> RemoteStart | None:
    """What a session takes from the remote start command its events name."""
    if command is None:
        return None
    return RemoteStart(id_token=command.id_token, issued_by=command.issued_by)


# -- connector from the station status -------------------------------------------
def connector_from_status(status: StationStatus | None, evse_id: int) -> int:
    """The connector of EVSE `evse_id` per the station status: its only known connector,
    else its only busy one (Occupied, Charging, ...); 0 when undecidable."""
    if status is None or evse_id == 0:
        return 0
    found: dict[int, str] = {}
    for key, entry in status.connectors.items():
        evse, _, connector = str(key).partition("/")
        try:
            e, c = int(evse), int(connector)
        except ValueError:
            continue
        if e == evse_id and c != 0:
            found[c] = entry.status.strip().lower()
    if len(found) == 1:
        return next(iter(found))
    busy = [c for c, st in found.items() if st in _BUSY]
    return busy[0] if len(busy) == 1 else 0
