"""The display messages fold of the `stations-drivers` stage (OCPP 2.0.1 block O, ADR 018).

Consumes:
- CommandResult of SetDisplayMessage (Accepted: the message in its `request_json` is
  recorded in the station's `display_messages` document), ClearDisplayMessage (Accepted:
  removed), GetDisplayMessages (the station's answer to a request, in its
  `display_messages_report` document, keyed by the request id of its `request_json`);
- DisplayMessagesReport (NotifyDisplayMessages): a part of that report.

Whoever sent the command (the display messages API, `POST /stations/{id}/commands`), an
Accepted result is recorded. The rules that make a batch applied twice, or a result
applied late, change nothing are in display_messages_documents.py. Per batch: one
`get_docs` per kind for the stations and reports touched, one versioned `put_docs` per
kind. A result or part that cannot be read is logged, counted
(`csms_display_messages_records_total{outcome="failed"}`) and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter

from services.common import events as ev
from services.common import kinds
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore, DocWrite
from services.common.timeutil import Clock
from services.stations.drivers.fold import Fold, ce_type
from services.stations.drivers.display_messages_documents import (
    DisplayMessageRecord,
    MessagesReport,
    active,
    add_report_part,
    answer_report,
    message_from_ocpp,
    record_clear,
    record_from_doc,
    record_set,
    record_to_doc,
    report_doc_id,
    report_from_doc,
    report_to_doc,
)

__all__ = ["COMMANDS", "DisplayMessagesFold", "build", "command_kind", "request_of"]

log = logging.getLogger("csms.stations.drivers.display_messages")

SET, CLEAR, GET = "SetDisplayMessage", "ClearDisplayMessage", "GetDisplayMessages"
COMMANDS = frozenset({SET, CLEAR, GET})

RECORDS = Counter(
    "csms_display_messages_records_total",
    "Events the display messages fold handled, by outcome (applied; failed: could not be read, logged and skipped)",
    ["outcome"],
)


def command_kind(body: ev.CommandResult) -> str:
    """The display message command a result answers ("" for any other)."""
    if body.command_type in COMMANDS:
        return body.command_type
    return body.ocpp_action if body.ocpp_action in COMMANDS else ""


def request_of(body: ev.CommandResult) -> dict[str, Any]:
    """The OCPP request the result answers (camelCase, as sent); {} when not recorded."""
    if not body.request_json:
        return {}
    value = orjson.loads(body.request_json)
    return value if isinstance(value, dict) else {}


def _request_id(body: ev.CommandResult) -> int | None:
    rid = request_of(body).get("requestId")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def _answered(body: ev.CommandResult) -> bool:
    """The station answered (the command became a CALL): not a gateway outcome."""
    return bool(body.ocpp_action) and body.status not in ("Timeout", "StationOffline")


class DisplayMessagesFold:
    def __init__(self, docs: DocumentStore, clock: Clock) -> None:
        self._docs = docs
        self._clock = clock

    async def apply(self, envs: Sequence[ev.Envelope]) -> None:
        mine: list[ev.Envelope] = []
        stations: set[str] = set()
        reports: set[str] = set()
        for env in envs:
            body = env.body
            try:
                if isinstance(body, ev.CommandResult):
                    kind = command_kind(body)
                    if not kind or not _answered(body):
                        continue
                    if kind == GET:
                        rid = _request_id(body)
                        if rid is None:
                            raise ValueError("GetDisplayMessages result without a requestId")
                        reports.add(report_doc_id(env.station_id, rid))
                    elif body.status == "Accepted":
                        stations.add(env.station_id)
                    else:
                        continue
                elif isinstance(body, ev.DisplayMessagesReport):
                    reports.add(report_doc_id(env.station_id, body.request_id))
                else:
                    continue
            except Exception as exc:
                self._failed(env, exc)
                continue
            mine.append(env)
        if not mine:
            return
        records = await self._records(sorted(stations))
        assembled = await self._reports(sorted(reports))
        before_r = dict(records)
        before_a = dict(assembled)
        applied = 0
        for env in mine:
            try:
                self._fold(env, records, assembled)
            except Exception as exc:
                self._failed(env, exc)
                continue
            applied += 1
        if applied:
            RECORDS.labels("applied").inc(applied)
        now = self._clock()
        writes = [
            DocWrite(sid, record_to_doc(replace(_pruned(rec, now), version=rec.version + 1)), parent=sid, version=rec.version + 1)
            for sid, rec in sorted(records.items()) if rec is not before_r.get(sid)
        ]
        if writes:
            await self._docs.put_docs(kinds.DISPLAY_MESSAGES, writes)
        rwrites = [
            DocWrite(doc_id, report_to_doc(replace(rep, version=rep.version + 1)), parent=rep.station_id, version=rep.version + 1)
            for doc_id, rep in sorted(assembled.items()) if rep is not before_a.get(doc_id)
        ]
        if rwrites:
            await self._docs.put_docs(kinds.DISPLAY_MESSAGES_REPORT, rwrites)

    def _fold(self, env: ev.Envelope, records: dict[str, DisplayMessageRecord],
              assembled: dict[str, MessagesReport]) -> None:
        body, at, sid = env.body, env.received_at, env.station_id
        if isinstance(body, ev.DisplayMessagesReport):
            doc_id = report_doc_id(sid, body.request_id)
            rep = assembled.get(doc_id) or MessagesReport(sid, body.request_id)
            assembled[doc_id] = add_report_part(rep, env.event_id, body, at)
            return
        assert isinstance(body, ev.CommandResult)
        kind = command_kind(body)
        request = request_of(body)
        if kind == GET:
            rid = _request_id(body)
            assert rid is not None
            doc_id = report_doc_id(sid, rid)
            rep = assembled.get(doc_id) or MessagesReport(sid, rid)
            assembled[doc_id] = answer_report(rep, body.status, body.command_id, at)
            return
        rec = records.get(sid) or DisplayMessageRecord(sid)
        if kind == SET:
            info = request.get("message")
            if not isinstance(info, Mapping):
                raise ValueError("SetDisplayMessage result without the message sent (request_json)")
            records[sid] = record_set(rec, message_from_ocpp(info), body.command_id, at)
            log.info("station=%s display message %s recorded (command %s)", sid, info.get("id"), body.command_id)
        else:
            mid = request.get("id")
            if not isinstance(mid, int) or isinstance(mid, bool):
                raise ValueError("ClearDisplayMessage result without the id cleared (request_json)")
            records[sid] = record_clear(rec, mid, at)
            log.info("station=%s display message %s cleared (command %s)", sid, mid, body.command_id)

    async def _records(self, stations: list[str]) -> dict[str, DisplayMessageRecord]:
        if not stations:
            return {}
        out: dict[str, DisplayMessageRecord] = {}
        for sid, doc in (await self._docs.get_docs(kinds.DISPLAY_MESSAGES, stations)).items():
            try:
                out[sid] = record_from_doc(doc)
            except Exception:
                log.exception("station=%s display messages document unreadable; starting afresh", sid)
                out[sid] = DisplayMessageRecord(sid, version=int(doc.get("version") or 0))
        return out

    async def _reports(self, ids: list[str]) -> dict[str, MessagesReport]:
        if not ids:
            return {}
        out: dict[str, MessagesReport] = {}
        for doc_id, doc in (await self._docs.get_docs(kinds.DISPLAY_MESSAGES_REPORT, ids)).items():
            try:
                out[doc_id] = report_from_doc(doc)
            except Exception:
                log.exception("display messages report %s unreadable; starting afresh", doc_id)
                sid, _, rid = doc_id.rpartition("/")
                out[doc_id] = MessagesReport(sid, int(rid), version=int(doc.get("version") or 0))
        return out

    @staticmethod
    def _failed(env: ev.Envelope, exc: Exception) -> None:
        RECORDS.labels("failed").inc()
        log.error("station=%s %s %s cannot be applied to display messages, skipped: %r",
                  env.station_id, env.type_name, env.event_id, exc)


def _pruned(rec: DisplayMessageRecord, now: datetime) -> DisplayMessageRecord:
    """Without the messages their end time has ended."""
    kept = {m.id: m for m in active(rec.messages.values(), now)}
    return rec if len(kept) == len(rec.messages) else replace(rec, messages=kept)


def build(rt: Runtime) -> Fold:
    fold = DisplayMessagesFold(rt.store, rt.clock)
    return Fold("display_messages", frozenset({ce_type(ev.CommandResult), ce_type(ev.DisplayMessagesReport)}),
                fold.apply)
