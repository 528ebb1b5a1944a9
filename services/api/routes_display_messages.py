"""A station's display messages (OCPP 2.0.1 block O, ADR 018; 1.6 has none: 400
NotSupported, as `POST /stations/{id}/commands` answers a command the version lacks):

- POST /api/v1/stations/{id}/display-messages {id?, priority, message: {format, content,
  language?}, state?, start_at?, end_at?, transaction_id?} sends SetDisplayMessage (the
  id, when absent, is one more than the highest the CSMS's record of the station uses)
  and answers the station's status with the message. An Accepted message is recorded by
  the `stations-drivers` stage from the command's result (display_messages_documents.py);
  the route waits a moment (`RECORD_WAIT_S`) for that record, so the next GET, and the
  next generated id, see it.
- GET /api/v1/stations/{id}/display-messages?source=csms (default): the CSMS's record,
  without the messages cleared or ended by their end time. `?source=station`: sends
  GetDisplayMessages (with a request id; filters `id` (comma-separated), `priority`,
  `state`), waits for its answer (Unknown = none), then for the NotifyDisplayMessages parts
  the stage assembles (bounded by the command timeout; `complete` false when the station
  had not finished by then). The filters apply to the CSMS's record too.
- DELETE /api/v1/stations/{id}/display-messages/{message_id} sends ClearDisplayMessage;
  Accepted: removed from the record (by the stage; the route waits for it as above);
  Unknown: 404 with the station's status.

A gateway outcome is the HTTP error of the commands API (offline 409, timeout 504).
"""

from __future__ import annotations

import functools

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, not_found, validation_error
from services.api.openapi_parts import (
    closed_object, operation,
    NULL_STR, NULL_TS, R404, TS, error, json_content, path_param, query, ref,
)
from services.api.routes_commands import answered, send_and_wait
from services.api.validation import MISSING, Validator, query_limit, read_json
from services.common import kinds
from services.common.timeutil import to_ocpp
from services.sessions.documents import station_status_from_doc
from services.stations.documents import (
    DISPLAY_MESSAGES_FORMATS as FORMATS,
    DISPLAY_MESSAGES_INT32_MAX as INT32_MAX,
    DISPLAY_MESSAGES_PRIORITIES as PRIORITIES,
    DISPLAY_MESSAGES_STATES as STATES,
    DisplayMessagesDisplayMessageRecord as DisplayMessageRecord,
    DisplayMessagesMessageRecord as MessageRecord,
    display_messages_active as active,
    display_messages_message_from_ocpp as message_from_ocpp,
    display_messages_message_view as message_view,
    display_messages_next_message_id as next_message_id,
    display_messages_record_from_doc as record_from_doc,
    display_messages_report_doc_id as report_doc_id,
    display_messages_report_from_doc as report_from_doc,
)

__all__ = [
    "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_TAGS", "OPENAPI_VIEWS", "RECORD_WAIT_S", "not_supported_16",
    "poll_doc", "setup",
]

log = logging.getLogger("csms.api.display_messages")

RECORD_WAIT_S = 2.0    # how long a POST / DELETE waits for the stage to record an Accepted answer
_POLL_S = 0.05
_FIELDS = {"id", "priority", "message", "state", "start_at", "end_at", "transaction_id"}
_MAX_CONTENT = 512     # OCPP 2.0.1 MessageContentType.content
_MAX_LANGUAGE = 8
_MAX_TRANSACTION = 36
_MAX_IDS = 100         # ids in one `id` filter


# -- shared with routes_customer_information ------------------------------------------------

async def not_supported_16(ctx: ApiContext, station_id: str, command_type: str) -> None:
    """404 for an unknown station; 400 NotSupported when the station last connected with
    OCPP 1.6 (the command does not exist there). A station never seen connected is asked:
    its gateway answers NotSupported the same way."""
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    doc = await ctx.documents.get_doc(kinds.STATION_STATUS, station_id)
    if doc is None:
        return
    try:
        version = station_status_from_doc(doc).ocpp_version
    except (KeyError, TypeError, ValueError):
        return
    if str(version).startswith("1."):
        raise ApiError(400, f"{command_type} is not supported by OCPP {version} stations (OCPP 2.0.1 only)",
                       body={"status": "NotSupported"})


async def poll_doc(ctx: ApiContext, kind: str, doc_id: str, done: Callable[[dict[str, Any]], bool],
                   timeout_s: float) -> dict[str, Any] | None:
    """The document once `done(doc)` holds, polled until `timeout_s` has passed; the last
    one read (or None) otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_s, 0.0)
    while True:
        doc = await ctx.documents.get_doc(kind, doc_id)
        if doc is not None and done(doc):
            return doc
        if loop.time() >= deadline:
            return doc
        await asyncio.sleep(min(_POLL_S, max(0.0, deadline - loop.time())))


# -- pure helpers ------------------------------------------------------------------------

def _record(doc: dict[str, Any] | None, station_id: str) -> DisplayMessageRecord:
    if doc is None:
        return DisplayMessageRecord(station_id)
    try:
        return record_from_doc(doc)
    except (KeyError, TypeError, ValueError):
        log.exception("station=%s display messages document unreadable", station_id)
        return DisplayMessageRecord(station_id)


def _message_params(v: Validator) -> dict[str, Any]:
    """The SetDisplayMessage `message` (MessageInfoType, snake_case) of a validated body,
    without its id."""
    out: dict[str, Any] = {}
    priority = v.string("priority", required=True, choices=PRIORITIES)
    content = v.data.get("message", MISSING)
    if content is MISSING:
        v.fail("message", "is required")
    elif not isinstance(content, dict):
        v.fail("message", "must be an object {format, content, language?}")
    else:
        inner = Validator(content, allowed={"format", "content", "language"})
        fmt = inner.string("format", required=True, choices=FORMATS)
        text = inner.string("content", required=True, min_len=0, max_len=_MAX_CONTENT)
        language = inner.string("language", max_len=_MAX_LANGUAGE, printable=True)
        for name, problem in inner.errors.items():
            v.fail(f"message.{name}", problem)
        msg: dict[str, Any] = {"format": fmt, "content": text}
        if language is not MISSING:
            msg["language"] = language
        out["message"] = msg
    state = v.string("state", choices=STATES)
    start = v.timestamp("start_at")
    end = v.timestamp("end_at")
    transaction = v.string("transaction_id", max_len=_MAX_TRANSACTION, printable=True)
    if start is not MISSING and end is not MISSING and end <= start:
        v.fail("end_at", "must be after start_at")
    out["priority"] = priority
    if state is not MISSING:
        out["state"] = state
    if start is not MISSING:
        out["start_date_time"] = to_ocpp(start)
    if end is not MISSING:
        out["end_date_time"] = to_ocpp(end)
    if transaction is not MISSING:
        out["transaction_id"] = transaction
    return out


def _ids(raw: str | None) -> list[int] | None:
    if raw is None or raw == "":
        return None
    out: list[int] = []
    for part in raw.split(","):
        try:
            value = int(part)
        except ValueError:
            raise validation_error({"id": "must be comma-separated message ids (integers)"}) from None
        if not 0 <= value <= INT32_MAX:
            raise validation_error({"id": f"must be message ids from 0 to {INT32_MAX}"})
        out.append(value)
    if len(out) > _MAX_IDS:
        raise validation_error({"id": f"at most {_MAX_IDS} ids"})
    return list(dict.fromkeys(out))


def _filters(request: web.Request) -> tuple[list[int] | None, str | None, str | None]:
    errors: dict[str, str] = {}
    ids: list[int] | None = None
    try:
        ids = _ids(request.query.get("id"))
    except ApiError as exc:
        errors.update(exc.details or {})
    priority = request.query.get("priority") or None
    if priority is not None and priority not in PRIORITIES:
        errors["priority"] = "must be one of " + ", ".join(PRIORITIES)
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        errors["state"] = "must be one of " + ", ".join(STATES)
    source = request.query.get("source", "csms")
    if source not in ("csms", "station"):
        errors["source"] = "must be csms or station"
    if errors:
        raise validation_error(errors)
    return ids, priority, state


def _chosen(messages: list[MessageRecord], ids: list[int] | None, priority: str | None,
            state: str | None) -> list[MessageRecord]:
    return [m for m in messages
            if (ids is None or m.id in ids) and (priority is None or m.priority == priority)
            and (state is None or m.state == state)]


def _has_command(message_id: int, command_id: str) -> Callable[[dict[str, Any]], bool]:
    def done(doc: dict[str, Any]) -> bool:
        return any(isinstance(m, dict) and m.get("id") == message_id and m.get("command_id") == command_id
                   for m in doc.get("messages") or ())
    return done


def _without(message_id: int) -> Callable[[dict[str, Any]], bool]:
    def done(doc: dict[str, Any]) -> bool:
        return not any(isinstance(m, dict) and m.get("id") == message_id for m in doc.get("messages") or ())
    return done


# -- routes ------------------------------------------------------------------------------

async def set_message(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    v = Validator(await read_json(request), allowed=_FIELDS)
    given = v.integer("id", minimum=0, maximum=INT32_MAX)
    info = _message_params(v)
    v.done()
    await not_supported_16(ctx, station_id, "SetDisplayMessage")
    if given is MISSING:
        record = _record(await ctx.documents.get_doc(kinds.DISPLAY_MESSAGES, station_id), station_id)
        message_id = next_message_id(record)
    else:
        message_id = int(given)
    info = {"id": message_id, **info}
    result = await send_and_wait(ctx, station_id, "SetDisplayMessage", {"message": info},
                                 ctx.settings.command_timeout_s)
    out = answered("SetDisplayMessage", result, {"status": result.status, "command_id": result.command_id})
    log.info("display message %d set station=%s status=%s command=%s", message_id, station_id, result.status,
             result.command_id)
    shown: MessageRecord | None = None
    if result.status == "Accepted":
        doc = await poll_doc(ctx, kinds.DISPLAY_MESSAGES, station_id, _has_command(message_id, result.command_id),
                             RECORD_WAIT_S)
        if doc is not None:
            shown = _record(doc, station_id).messages.get(message_id)
            if shown is not None and shown.command_id != result.command_id:
                shown = None
    if shown is None:  # not (yet) recorded: what was sent
        shown = replace(message_from_ocpp(info), command_id=result.command_id)
    out["message"] = message_view(shown)
    return web.json_response(out)


async def list_messages(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    limit = query_limit(request)
    ids, priority, state = _filters(request)
    source = request.query.get("source", "csms")
    if source == "csms":
        if await ctx.stations.get_station(station_id) is None:
            raise not_found("station", station_id)
        record = _record(await ctx.documents.get_doc(kinds.DISPLAY_MESSAGES, station_id), station_id)
        chosen = _chosen(active(record.messages.values(), ctx.clock()), ids, priority, state)
        return web.json_response({"items": [message_view(m) for m in chosen[:limit]], "source": "csms"})
    await not_supported_16(ctx, station_id, "GetDisplayMessages")
    request_id = secrets.randbelow(INT32_MAX - 1) + 1
    params: dict[str, Any] = {"request_id": request_id}
    if ids is not None:
        params["id"] = ids
    if priority is not None:
        params["priority"] = priority
    if state is not None:
        params["state"] = state
    timeout_s = ctx.settings.command_timeout_s
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await send_and_wait(ctx, station_id, "GetDisplayMessages", params, timeout_s)
    out = answered("GetDisplayMessages", result, {"status": result.status, "command_id": result.command_id,
                                                  "request_id": request_id})
    items: list[MessageRecord] = []
    complete = result.status != "Accepted"
    if result.status == "Accepted":
        remaining = timeout_s - (loop.time() - started)
        doc = await poll_doc(ctx, kinds.DISPLAY_MESSAGES_REPORT, report_doc_id(station_id, request_id),
                             lambda d: bool(d.get("complete")), max(remaining, RECORD_WAIT_S))
        if doc is not None:
            rep = report_from_doc(doc)
            complete = rep.complete
            items = sorted(rep.messages.values(), key=lambda m: m.id)
    log.info("display messages asked station=%s request=%d status=%s messages=%d complete=%s", station_id,
             request_id, result.status, len(items), complete)
    return web.json_response({"items": [message_view(m) for m in items[:limit]], "source": "station", **out,
                              "complete": complete})


async def clear_message(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id, raw = request.match_info["id"], request.match_info["message_id"]
    try:
        message_id = int(raw)
    except ValueError:
        raise not_found("display message", raw) from None
    if not 0 <= message_id <= INT32_MAX:
        raise not_found("display message", raw)
    await not_supported_16(ctx, station_id, "ClearDisplayMessage")
    result = await send_and_wait(ctx, station_id, "ClearDisplayMessage", {"id": message_id},
                                 ctx.settings.command_timeout_s)
    out = answered("ClearDisplayMessage", result, {"status": result.status, "command_id": result.command_id})
    log.info("display message %d clear station=%s status=%s command=%s", message_id, station_id, result.status,
             result.command_id)
    if result.status == "Unknown":
        raise ApiError(404, f"the station has no display message {message_id}", body=out)
    if result.status == "Accepted":
        await poll_doc(ctx, kinds.DISPLAY_MESSAGES, station_id, _without(message_id), RECORD_WAIT_S)
    return web.json_response(out)


def setup(app: web.Application) -> None:
    base = f"{API_PREFIX}/stations/{{id}}/display-messages"
    app.router.add_post(base, set_message)
    app.router.add_get(base, list_messages)
    app.router.add_delete(f"{base}/{{message_id}}", clear_message)


# -- OpenAPI (merged by services/api/openapi_drivers.py) -------------------------------------

J = dict[str, Any]
OPENAPI_TAGS: tuple[str, ...] = ("display-messages",)
OPENAPI_VIEWS: tuple[str, ...] = ("DisplayMessage", "DisplayMessageList", "DisplayMessageSet", "DisplayMessageCleared")


_obj = closed_object


_op = functools.partial(operation, OPENAPI_TAGS[0])


_CONTENT = _obj(["format", "content"], {
    "format": {"type": "string", "enum": list(FORMATS)},
    "content": {"type": "string", "maxLength": _MAX_CONTENT},
    "language": {"type": ["string", "null"], "maxLength": _MAX_LANGUAGE, "description": "RFC 5646, e.g. en-US."},
})
_COMMAND_ERRORS: J = {
    "400": error("Validation, or NotSupported (`status`): an OCPP 1.6 station has no display messages."),
    "404": R404,
    "409": error("StationOffline: the station is not connected."),
    "504": error("Timeout: no answer in time (see GET /api/v1/commands/{command_id})."),
}
_FILTERS = [
    query("id", "Comma-separated message ids.", {"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
    query("priority", "Only messages of this priority.", {"type": "string", "enum": list(PRIORITIES)}),
    query("state", "Only messages shown in this station state.", {"type": "string", "enum": list(STATES)}),
]

OPENAPI_SCHEMAS: J = {
    "DisplayMessageRequest": _obj(["priority", "message"], {
        "id": {"type": "integer", "minimum": 0, "maximum": INT32_MAX,
               "description": "When absent: one more than the highest id the CSMS's record of the station uses. "
                              "An id the station has replaces its message."},
        "priority": {"type": "string", "enum": list(PRIORITIES)},
        "message": _CONTENT,
        "state": {"type": "string", "enum": list(STATES), "description": "Shown only in this station state."},
        "start_at": TS,
        "end_at": {**TS, "description": "After start_at; the message leaves the CSMS's record at this time."},
        "transaction_id": {"type": "string", "maxLength": _MAX_TRANSACTION,
                           "description": "Shown only during this transaction."},
    }),
    "DisplayMessage": _obj(
        ["id", "priority", "state", "message", "start_at", "end_at", "transaction_id", "command_id", "set_at"], {
            "id": {"type": "integer"},
            "priority": {"type": "string", "examples": list(PRIORITIES)},
            "state": NULL_STR,
            "message": _CONTENT,
            "start_at": NULL_TS,
            "end_at": NULL_TS,
            "transaction_id": NULL_STR,
            "command_id": {**NULL_STR, "description": "The SetDisplayMessage that set it (null: a station's report)."},
            "set_at": {**NULL_TS, "description": "When the station accepted it (null: a station's report)."},
        }),
    "DisplayMessageList": _obj(["items", "source"], {
        "items": {"type": "array", "items": ref("DisplayMessage")},
        "source": {"type": "string", "enum": ["csms", "station"]},
        "status": {"type": "string", "description": "source=station: the GetDisplayMessages answer (Accepted; "
                                                    "Unknown = no message matches)."},
        "command_id": {"type": "string"},
        "request_id": {"type": "integer"},
        "complete": {"type": "boolean", "description": "source=station: false when the station had not sent its "
                                                       "last NotifyDisplayMessages part within the command timeout."},
        "error_code": {"type": "string"},
        "error_description": {"type": "string"},
    }),
    "DisplayMessageSet": _obj(["status", "command_id", "message"], {
        "status": {"type": "string", "examples": ["Accepted", "NotSupportedMessageFormat", "Rejected",
                                                   "NotSupportedPriority", "NotSupportedState", "UnknownTransaction"],
                   "description": "The station's answer; only an Accepted message is recorded."},
        "command_id": {"type": "string"},
        "message": ref("DisplayMessage"),
        "error_code": {"type": "string", "description": "The station's CALLERROR code, when it sent one."},
        "error_description": {"type": "string"},
    }),
    "DisplayMessageCleared": _obj(["status", "command_id"], {
        "status": {"type": "string", "description": "The ClearDisplayMessage answer (Accepted)."},
        "command_id": {"type": "string"},
        "error_code": {"type": "string"},
        "error_description": {"type": "string"},
    }),
}

OPENAPI_PATHS: J = {
    "/api/v1/stations/{id}/display-messages": {
        "parameters": [path_param("id", "Station id.")],
        "post": _op(
            "Set a display message on the station (SetDisplayMessage)",
            {"200": json_content(ref("DisplayMessageSet"), "The station's answer, with the message."), **_COMMAND_ERRORS},
            op_id="setDisplayMessage", body=ref("DisplayMessageRequest"),
            description="OCPP 2.0.1 only. An Accepted message is recorded in the CSMS's record of the station "
                        "(GET ?source=csms).",
        ),
        "get": _op(
            "The station's display messages",
            {"200": json_content(ref("DisplayMessageList"), "By id."), **_COMMAND_ERRORS},
            op_id="listDisplayMessages",
            params=[query("source", "csms (default): what the CSMS set, without the messages cleared or ended; "
                                    "station: asks the station (GetDisplayMessages + NotifyDisplayMessages).",
                          {"type": "string", "enum": ["csms", "station"], "default": "csms"}),
                    *_FILTERS,
                    query("limit", "At most this many messages (default 100).",
                          {"type": "integer", "minimum": 1, "maximum": 1000})],
        ),
    },
    "/api/v1/stations/{id}/display-messages/{message_id}": {
        "parameters": [path_param("id", "Station id."), path_param("message_id", "The message id.")],
        "delete": _op(
            "Clear a display message on the station (ClearDisplayMessage)",
            {"200": json_content(ref("DisplayMessageCleared"), "The station's answer; Accepted: removed from the "
                                                               "CSMS's record."),
             **_COMMAND_ERRORS,
             "404": error("No such station, or the station has no such message (`status` Unknown).")},
            op_id="clearDisplayMessage",
        ),
    },
}
