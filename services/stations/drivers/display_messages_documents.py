"""Display messages (OCPP 2.0.1 block O, ADR 018): the documents and the pure rules that
move them on. No I/O here: the `stations-drivers` fold (display_messages.py) reads and
writes the documents, the API (services/api/routes_display_messages.py) reads them.

- `display_messages` (id = station): the messages the CSMS set on the station, recorded
  from Accepted SetDisplayMessage results (the result's `request_json` is the message
  sent), removed by Accepted ClearDisplayMessage results. Each message keeps the receive
  time of the result that set it (`set_at`), and each cleared id the time of its last
  clear (`cleared`, the newest `MAX_CLEARED`), so applying a result twice, or an older
  result after a newer one, changes nothing: a set older than a clear of the same id, or
  than the set already recorded, is ignored.
- `display_messages_report` (id = `<station>/<request id>`, parent = station): one
  GetDisplayMessages answer assembled: the station's status (Accepted; Unknown = it has
  no such message: complete and empty), then the NotifyDisplayMessages parts (no seqNo:
  a part with `tbc` false ends it). Messages are keyed by their id, and the parts seen by
  event id, so a redelivered part changes nothing.

Times in the documents are OCPP timestamps (milliseconds, Z).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.common import events as ev
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "FORMATS",
    "INT32_MAX",
    "MAX_CLEARED",
    "MAX_MESSAGES",
    "MAX_REPORT_MESSAGES",
    "PRIORITIES",
    "STATES",
    "DisplayMessageRecord",
    "MessageRecord",
    "MessagesReport",
    "active",
    "add_report_part",
    "answer_report",
    "message_from_ocpp",
    "message_from_event",
    "message_view",
    "next_message_id",
    "record_clear",
    "record_from_doc",
    "record_set",
    "record_to_doc",
    "report_doc_id",
    "report_from_doc",
    "report_to_doc",
]

PRIORITIES = ("AlwaysFront", "InFront", "NormalCycle")
STATES = ("Charging", "Faulted", "Idle", "Unavailable")
FORMATS = ("ASCII", "HTML", "URI", "UTF8")
MAX_MESSAGES = 1000        # messages kept per station record (the oldest set first out)
MAX_CLEARED = 200          # cleared ids remembered per station (the newest kept)
MAX_REPORT_MESSAGES = 1000  # messages kept per assembled report
MAX_SEEN_PARTS = 1000      # parts (event ids) remembered per report
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One display message, as the CSMS set it or the station reported it."""

    id: int
    priority: str
    format: str
    content: str
    language: str = ""
    state: str = ""
    start_at: datetime | None = None
    end_at: datetime | None = None
    transaction_id: str = ""
    command_id: str = ""              # the SetDisplayMessage that set it (CSMS record only)
    set_at: datetime | None = None    # receive time of its Accepted result (CSMS record only)


@dataclass(frozen=True, slots=True)
class DisplayMessageRecord:
    station_id: str
    messages: Mapping[int, MessageRecord] = field(default_factory=dict)
    cleared: Mapping[int, datetime] = field(default_factory=dict)
    updated_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class MessagesReport:
    station_id: str
    request_id: int
    station_status: str = ""          # the GetDisplayMessages answer ("" = not seen yet)
    command_id: str = ""
    complete: bool = False
    messages: Mapping[int, MessageRecord] = field(default_factory=dict)
    seen: tuple[str, ...] = ()        # event ids of the parts applied
    updated_at: datetime | None = None
    version: int = 0

    @property
    def parts(self) -> int:
        return len(self.seen)


# -- reading OCPP payloads ---------------------------------------------------------------

def _get(d: Mapping[str, Any], camel: str, snake: str) -> Any:
    return d[camel] if camel in d else d.get(snake)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_ocpp(value)


def message_from_ocpp(info: Mapping[str, Any]) -> MessageRecord:
    """A MessageInfoType (camelCase as sent, or snake_case) as a record; ValueError when it
    has no usable id, priority or content."""
    mid = info.get("id")
    if not isinstance(mid, int) or isinstance(mid, bool) or not 0 <= mid <= INT32_MAX:
        raise ValueError(f"message id {mid!r} is not an integer")
    content = info.get("message")
    if not isinstance(content, Mapping):
        raise ValueError("message has no content object")
    priority = _str(info.get("priority"))
    if not priority:
        raise ValueError("message has no priority")
    return MessageRecord(
        id=mid, priority=priority, format=_str(content.get("format")), content=_str(content.get("content")),
        language=_str(content.get("language")), state=_str(info.get("state")),
        start_at=_instant(_get(info, "startDateTime", "start_date_time")),
        end_at=_instant(_get(info, "endDateTime", "end_date_time")),
        transaction_id=_str(_get(info, "transactionId", "transaction_id")),
    )


def message_from_event(m: ev.DisplayMessage) -> MessageRecord:
    return MessageRecord(id=m.id, priority=m.priority, format=m.format, content=m.content, language=m.language,
                         state=m.state, start_at=m.start, end_at=m.end, transaction_id=m.transaction_id)


# -- the CSMS's record --------------------------------------------------------------------

def _ms(dt: datetime) -> datetime:
    """To the millisecond, as the documents keep instants."""
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def record_set(rec: DisplayMessageRecord, message: MessageRecord, command_id: str, at: datetime) -> DisplayMessageRecord:
    """An Accepted SetDisplayMessage received at `at`; unchanged when a clear of that id or a
    set already recorded is newer (a result applied twice or late)."""
    at = _ms(at)
    cleared = rec.cleared.get(message.id)
    if cleared is not None and cleared >= at:
        return rec
    held = rec.messages.get(message.id)
    if held is not None and held.set_at is not None and (held.set_at > at or (held.set_at == at and held.command_id == command_id)):
        return rec
    messages = dict(rec.messages)
    messages[message.id] = replace(message, command_id=command_id, set_at=at)
    if len(messages) > MAX_MESSAGES:
        oldest = sorted(messages.values(), key=lambda m: (m.set_at or at, m.id))[: len(messages) - MAX_MESSAGES]
        for m in oldest:
            del messages[m.id]
    return replace(rec, messages=messages, updated_at=at)


def record_clear(rec: DisplayMessageRecord, message_id: int, at: datetime) -> DisplayMessageRecord:
    """An Accepted ClearDisplayMessage received at `at`: the message goes (unless it was set
    again after `at`), and the id's clear time is remembered."""
    at = _ms(at)
    messages = dict(rec.messages)
    held = messages.get(message_id)
    if held is not None and (held.set_at is None or held.set_at <= at):
        del messages[message_id]
    cleared = dict(rec.cleared)
    if cleared.get(message_id) is not None and cleared[message_id] >= at and len(messages) == len(rec.messages):
        return rec
    cleared[message_id] = max(at, cleared.get(message_id, at))
    if len(cleared) > MAX_CLEARED:
        keep = sorted(cleared.items(), key=lambda kv: kv[1], reverse=True)[:MAX_CLEARED]
        cleared = dict(keep)
    return replace(rec, messages=messages, cleared=cleared, updated_at=at)


def active(messages: Iterable[MessageRecord], now: datetime) -> list[MessageRecord]:
    """The messages not ended by their end time, by id."""
    return sorted((m for m in messages if m.end_at is None or m.end_at > now), key=lambda m: m.id)


def next_message_id(rec: DisplayMessageRecord | None) -> int:
    """A positive id the record does not use: one more than the highest (1 for none); the
    lowest free one when the highest is the int32 maximum."""
    used = set(rec.messages) if rec is not None else set()
    top = max(used, default=0)
    if top < INT32_MAX:
        return top + 1
    return next(i for i in range(1, INT32_MAX) if i not in used)


# -- an assembled report ------------------------------------------------------------------

def report_doc_id(station_id: str, request_id: int) -> str:
    return f"{station_id}/{request_id}"


def answer_report(rep: MessagesReport, status: str, command_id: str, at: datetime) -> MessagesReport:
    """The station's answer to GetDisplayMessages: Unknown (no message matches) ends it empty."""
    if rep.station_status == status and rep.command_id == command_id:
        return rep
    done = rep.complete or status != "Accepted"
    return replace(rep, station_status=status, command_id=command_id, complete=done, updated_at=_ms(at))


def add_report_part(rep: MessagesReport, event_id: str, part: ev.DisplayMessagesReport, at: datetime) -> MessagesReport:
    """One NotifyDisplayMessages part (event `event_id`); a part seen before changes nothing."""
    if event_id in rep.seen:
        return rep
    messages = dict(rep.messages)
    for m in part.messages:
        if len(messages) >= MAX_REPORT_MESSAGES and m.id not in messages:
            break
        messages[m.id] = message_from_event(m)
    seen = (*rep.seen, event_id)[-MAX_SEEN_PARTS:]
    return replace(rep, messages=messages, seen=seen, complete=rep.complete or not part.tbc, updated_at=_ms(at))


# -- documents -----------------------------------------------------------------------------

def _ts(value: datetime | None) -> str | None:
    return None if value is None else to_ocpp(value)


def _message_doc(m: MessageRecord) -> dict[str, Any]:
    return {
        "id": m.id, "priority": m.priority, "format": m.format, "content": m.content, "language": m.language,
        "state": m.state, "start_at": _ts(m.start_at), "end_at": _ts(m.end_at), "transaction_id": m.transaction_id,
        "command_id": m.command_id, "set_at": _ts(m.set_at),
    }


def _message_of(d: Mapping[str, Any]) -> MessageRecord:
    return MessageRecord(
        id=int(d["id"]), priority=str(d.get("priority") or ""), format=str(d.get("format") or ""),
        content=str(d.get("content") or ""), language=str(d.get("language") or ""), state=str(d.get("state") or ""),
        start_at=_instant(d.get("start_at")), end_at=_instant(d.get("end_at")),
        transaction_id=str(d.get("transaction_id") or ""), command_id=str(d.get("command_id") or ""),
        set_at=_instant(d.get("set_at")),
    )


def record_to_doc(rec: DisplayMessageRecord) -> dict[str, Any]:
    return {
        "station_id": rec.station_id,
        "messages": [_message_doc(m) for m in sorted(rec.messages.values(), key=lambda m: m.id)],
        "cleared": {str(k): to_ocpp(v) for k, v in sorted(rec.cleared.items())},
        "updated_at": _ts(rec.updated_at),
        "version": rec.version,
    }


def record_from_doc(doc: Mapping[str, Any]) -> DisplayMessageRecord:
    messages = {m.id: m for m in map(_message_of, doc.get("messages") or ())}
    cleared = {int(k): parse_ocpp(v) for k, v in (doc.get("cleared") or {}).items()}
    return DisplayMessageRecord(str(doc["station_id"]), messages, cleared, _instant(doc.get("updated_at")),
                                int(doc.get("version") or 0))


def report_to_doc(rep: MessagesReport) -> dict[str, Any]:
    return {
        "station_id": rep.station_id, "request_id": rep.request_id, "station_status": rep.station_status,
        "command_id": rep.command_id, "complete": rep.complete,
        "messages": [_message_doc(m) for m in sorted(rep.messages.values(), key=lambda m: m.id)],
        "seen": list(rep.seen), "updated_at": _ts(rep.updated_at), "version": rep.version,
    }


def report_from_doc(doc: Mapping[str, Any]) -> MessagesReport:
    return MessagesReport(
        station_id=str(doc["station_id"]), request_id=int(doc["request_id"]),
        station_status=str(doc.get("station_status") or ""), command_id=str(doc.get("command_id") or ""),
        complete=bool(doc.get("complete")), messages={m.id: m for m in map(_message_of, doc.get("messages") or ())},
        seen=tuple(str(s) for s in doc.get("seen") or ()), updated_at=_instant(doc.get("updated_at")),
        version=int(doc.get("version") or 0),
    )


# -- the REST view -------------------------------------------------------------------------

def message_view(m: MessageRecord) -> dict[str, Any]:
    """A message as the API shows it (`command_id` / `set_at`: null for a station's report)."""
    return {
        "id": m.id,
        "priority": m.priority,
        "state": m.state or None,
        "message": {"format": m.format, "content": m.content, "language": m.language or None},
        "start_at": _ts(m.start_at),
        "end_at": _ts(m.end_at),
        "transaction_id": m.transaction_id or None,
        "command_id": m.command_id or None,
        "set_at": _ts(m.set_at),
    }
