"""Reservations as objects (ADR 018 §3, docs/drivers-and-energy.md "Reservations"):
/api/v1/reservations[/{id}] and a token's reservations, /api/v1/tokens/{id}/reservations.

`POST` checks the request (the expiry in the future and at most `MAX_AHEAD` away, the
station known (404) and connected (409 StationOffline, like commands)), takes a
reservation id from the store's integer allocator (the one transaction ids come from: a
positive int32, unique across every API instance), stores the reservation `Requested`
with its index entries (the token's, the open ones'), then sends ReserveNow the way
`POST /stations/{id}/commands` does (`send_and_wait`) and records the answer. It answers
201 with the reservation whatever the station said: `status` tells (`Accepted`, or the
station's `Faulted` / `Occupied` / `Rejected` / `Unavailable`; `Requested` with a `note`
when the station did not answer in time: a late answer is recorded by the stations
processor). When no gateway holds the station at the moment of sending, nothing was sent:
the reservation is kept `Rejected` (its note says why) and the answer is 409 StationOffline
naming it (`reservation_id`).

`DELETE` records the CancelReservation command on the reservation first, sends it, and
answers 200 with the reservation `Cancelled` when the station accepts; a station that
refuses is a 409 with its `status` (the reservation stands); a reservation already final
(used, expired, cancelled, removed, refused) is a 409 too.

Both writers of a reservation (this API and the `stations-drivers` stage) write with
compare-and-set on its revision (`update_reservation`), so neither undoes the other.

Lists: `GET /reservations?station_id=&status=&id_token=&limit=` and
`GET /tokens/{id}/reservations?status=&station_id=&limit=`, newest first. The narrowest
index answers: the token's index, else the station's reservations, else (`status`
Requested or Accepted) the open reservations, else all; the other filters are applied to
the newest `SCAN` reservations of that scope.
"""

from __future__ import annotations

import functools

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, not_found, validation_error
from services.api.openapi_parts import (
    closed_object, operation,
    NULL_INT, NULL_STR, NULL_TS, R400, R404, TS, error, json_content, path_param, query, ref,
)
from services.api.routes_commands import result_error, send_and_wait
from services.api.validation import (
    DEFAULT_LIMIT, MAX_LIMIT, MISSING, Validator, check_station_id, query_limit, read_json,
)
from services.common import kinds
from services.common.timeutil import to_ocpp
from services.stations.documents import (
    RESERVATIONS_OPEN,
    ReservationConflict,
    create_reservation,
    reservation_from_doc,
    update_reservation,
)
from services.stations.domain.reservations import (
    CANCEL,
    CANCELLED,
    OPEN,
    STATUSES,
    Reservation,
    cancel_answered,
    cancel_requested,
    command_id,
    is_final,
    new_reservation,
    reserve_answered,
)

__all__ = [
    "MAX_AHEAD",
    "OPENAPI_PATHS",
    "OPENAPI_SCHEMAS",
    "OPENAPI_TAGS",
    "OPENAPI_VIEWS",
    "SCAN",
    "reservation_view",
    "setup",
]

log = logging.getLogger("csms.api.reservations")

MAX_AHEAD = timedelta(days=7)   # the furthest expiry a reservation may have
SCAN = 2000                     # reservations of one scope a filtered list looks at
MAX_TOKEN_LEN = 36              # 2.0.1 IdToken (1.6 idTag: 20)
ID_TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization")
_FIELDS = {"station_id", "connector_id", "evse_id", "id_token", "id_token_type", "expires_at", "group_id"}
_INT32_MAX = 2**31 - 1
_ALLOCATE_TRIES = 3


# -- view -----------------------------------------------------------------------------------

def reservation_view(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "station_id": r.station_id,
        "connector_id": r.connector_id,
        "evse_id": r.evse_id,
        "id_token": r.id_token,
        "id_token_type": r.id_token_type or None,
        "group_id": r.group_id or None,
        "expires_at": to_ocpp(r.expires_at),
        "status": r.status,
        "note": r.note or None,
        "created_at": to_ocpp(r.created_at),
        "updated_at": to_ocpp(r.updated_at),
        "transaction_id": r.transaction_id or None,
        "session_id": r.session_id or None,
        "command_ids": {"reserve": r.reserve_command_id or None, "cancel": r.cancel_command_id or None},
        "history": [{"at": to_ocpp(c.at), "status": c.status, "cause": c.cause} for c in r.history],
    }


# -- create ---------------------------------------------------------------------------------

async def _allocate(ctx: ApiContext) -> int:
    if ctx.id_allocator is None:
        raise ApiError(503, "reservations are not available: no id allocator")
    for _ in range(_ALLOCATE_TRIES):
        rid = await ctx.id_allocator.allocate_transaction_id(f"reservation:{uuid.uuid4()}")
        if 0 < rid <= _INT32_MAX:
            return rid
    raise ApiError(503, "no reservation id could be allocated; retry", headers={"Retry-After": "1"})


async def _record(ctx: ApiContext, rid: int, change: Callable[[Reservation], Reservation]) -> Reservation:
    """Apply `change` with compare-and-set; the reservation as stored after it."""
    try:
        moved = await update_reservation(ctx.documents, rid, change)
    except ReservationConflict:
        raise ApiError(503, "the reservation kept changing; retry", headers={"Retry-After": "1"}) from None
    if moved is None:
        raise not_found("reservation", str(rid))
    return moved[1]


async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    v = Validator(await read_json(request), allowed=_FIELDS)
    station_id = v.data.get("station_id", MISSING)
    if station_id is MISSING:
        v.fail("station_id", "is required")
    elif (why := check_station_id(station_id)) is not None:
        v.fail("station_id", why)
    connector_id = v.integer("connector_id", minimum=0, maximum=_INT32_MAX)
    evse_id = v.integer("evse_id", minimum=0, maximum=_INT32_MAX)
    if "connector_id" in v.data and "evse_id" in v.data:
        v.fail("evse_id", "give connector_id (OCPP 1.6) or evse_id (OCPP 2.0.1), not both")
    id_token = v.string("id_token", required=True, max_len=MAX_TOKEN_LEN, printable=True)
    id_token_type = v.string("id_token_type", choices=ID_TOKEN_TYPES)
    group_id = v.string("group_id", nullable=True, max_len=MAX_TOKEN_LEN, printable=True)
    expires_at = v.timestamp("expires_at", required=True)
    now = ctx.clock()
    if isinstance(expires_at, datetime):
        if expires_at <= now:
            v.fail("expires_at", "must be in the future")
        elif expires_at - now > MAX_AHEAD:
            v.fail("expires_at", f"must be at most {MAX_AHEAD.days} days ahead")
    v.done()
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    owner = await ctx.ownership.get_owner(station_id)
    if owner is None or not owner.connected:
        raise ApiError(409, "station is not connected", body={"status": "StationOffline"})
    rid = await _allocate(ctx)
    r = new_reservation(
        rid, station_id, id_token, expires_at, now,
        connector_id=None if connector_id is MISSING else connector_id,
        evse_id=None if evse_id is MISSING else evse_id,
        id_token_type="" if id_token_type is MISSING else id_token_type,
        group_id=group_id if isinstance(group_id, str) else "",
    )
    try:
        r = await create_reservation(ctx.documents, r)
    except ReservationConflict:
        log.error("reservation id %d allocated twice", rid)
        raise ApiError(503, "reservation id already in use; retry", headers={"Retry-After": "1"}) from None
    params: dict[str, Any] = {"reservation_id": rid, "expiry_date": to_ocpp(r.expires_at), "id_token": r.id_token}
    if r.id_token_type:
        params["id_token_type"] = r.id_token_type
    if r.group_id:
        params["parent_id_token"] = r.group_id
    if r.connector_id is not None:
        params["connector_id"] = r.connector_id
    if r.evse_id is not None:
        params["evse_id"] = r.evse_id
    cid = r.reserve_command_id
    try:
        result = await send_and_wait(ctx, station_id, "ReserveNow", params, ctx.settings.command_timeout_s,
                                     command_id=cid)
    except ApiError as exc:
        status = (exc.body or {}).get("status")
        if status == "Timeout":
            r = await _record(ctx, rid, lambda x: reserve_answered(x, cid, "Timeout", ctx.clock()))
            log.info("reservation %d station=%s: ReserveNow not answered in time; Requested", rid, station_id)
            return _created(r)
        if status == "Unknown":  # sent, the API is shutting down: the processor records the answer
            raise
        # never sent (no gateway holds the station now, or no route to it): final at once
        outcome = str(status or "Unroutable")
        r = await _record(ctx, rid, lambda x: reserve_answered(x, cid, outcome, ctx.clock(), description=exc.error))
        exc.body = {**(exc.body or {}), "reservation_id": rid}
        raise
    r = await _record(ctx, rid, lambda x: reserve_answered(x, cid, result.status, ctx.clock(),
                                                           error_code=result.error_code,
                                                           description=result.error_description))
    log.info("reservation %d station=%s: ReserveNow %s -> %s", rid, station_id, result.status, r.status)
    return _created(r)


def _created(r: Reservation) -> web.Response:
    return web.json_response(reservation_view(r), status=201, headers={"Location": f"{API_PREFIX}/reservations/{r.id}"})


# -- read -----------------------------------------------------------------------------------

def _rid(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 0 < int(raw) <= _INT32_MAX:
        raise not_found("reservation", raw)
    return int(raw)


async def _load(ctx: ApiContext, rid: int) -> Reservation:
    doc = await ctx.documents.get_doc(kinds.RESERVATION, str(rid))
    if doc is None:
        raise not_found("reservation", str(rid))
    return reservation_from_doc(doc)


async def get_one(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return web.json_response(reservation_view(await _load(ctx, _rid(request))))


def _filters(request: web.Request, *, with_token: bool) -> tuple[str | None, str | None, str | None, int]:
    """(station_id, status, id_token, limit) of the query; 400 naming every bad one."""
    errors: dict[str, str] = {}
    q = request.query
    station_id = q.get("station_id") or None
    if station_id is not None and (why := check_station_id(station_id)) is not None:
        errors["station_id"] = why
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        errors["status"] = "must be one of " + ", ".join(STATUSES)
    id_token = (q.get("id_token") or None) if with_token else None
    if id_token is not None and len(id_token) > MAX_TOKEN_LEN:
        errors["id_token"] = f"must be 1-{MAX_TOKEN_LEN} characters long"
    try:
        limit = query_limit(request)
    except ApiError as exc:
        errors.update(exc.details or {})
        limit = DEFAULT_LIMIT
    if errors:
        raise validation_error(errors)
    return station_id, status, id_token, limit


async def _listed(
    ctx: ApiContext, *, station_id: str | None, status: str | None, id_token: str | None, limit: int,
) -> list[Reservation]:
    filtered = any(x is not None for x in (station_id, status, id_token))
    scan = max(SCAN, limit) if filtered else limit
    if id_token is not None:
        ids = [str(d["id"]) for d in await ctx.documents.list_docs(kinds.RESERVATION_TOKEN, parent=id_token, limit=scan)]
    elif station_id is not None:
        ids = [str(d["id"]) for d in await ctx.documents.list_docs(kinds.RESERVATION, parent=station_id, limit=scan)]
    elif status in OPEN:
        ids = [str(d["id"]) for d in await ctx.documents.list_docs(kinds.RESERVATION_OPEN, parent=RESERVATIONS_OPEN,
                                                                   limit=scan)]
    else:
        ids = [str(d["id"]) for d in await ctx.documents.list_docs(kinds.RESERVATION, limit=scan)]
    docs = await ctx.documents.get_docs(kinds.RESERVATION, ids) if ids else {}
    out: list[Reservation] = []
    for doc in docs.values():
        try:
            r = reservation_from_doc(doc)
        except (KeyError, TypeError, ValueError):
            log.warning("reservation document %r unreadable; left out of the list", doc.get("id"))
            continue
        if station_id is not None and r.station_id != station_id:
            continue
        if status is not None and r.status != status:
            continue
        if id_token is not None and r.id_token != id_token:
            continue
        out.append(r)
    out.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return out[:limit]


async def list_all(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id, status, id_token, limit = _filters(request, with_token=True)
    items = await _listed(ctx, station_id=station_id, status=status, id_token=id_token, limit=limit)
    return web.json_response({"items": [reservation_view(r) for r in items]})


async def list_of_token(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    id_token = request.match_info["id"]
    station_id, status, _, limit = _filters(request, with_token=False)
    items = await _listed(ctx, station_id=station_id, status=status, id_token=id_token, limit=limit)
    if not items and await ctx.tokens.get_token(id_token) is None:
        if not await ctx.documents.list_docs(kinds.RESERVATION_TOKEN, parent=id_token, limit=1):
            raise not_found("token", id_token)
    return web.json_response({"items": [reservation_view(r) for r in items]})


# -- cancel ---------------------------------------------------------------------------------

def _final(r: Reservation) -> ApiError:
    return ApiError(409, f"reservation {r.id} is already {r.status}", body={"status": r.status})


async def cancel(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    rid = _rid(request)
    r = await _load(ctx, rid)
    if is_final(r):
        raise _final(r)
    cid = command_id(rid, CANCEL)
    r = await _record(ctx, rid, lambda x: cancel_requested(x, cid, ctx.clock()))
    if r.cancel_command_id != cid:  # it became final meanwhile
        raise _final(r)
    result = await send_and_wait(ctx, r.station_id, "CancelReservation", {"reservation_id": rid},
                                 ctx.settings.command_timeout_s, command_id=cid)
    error = result_error("CancelReservation", result, {"status": result.status, "command_id": result.command_id})
    if error is not None:
        raise error
    r = await _record(ctx, rid, lambda x: cancel_answered(x, cid, result.status, ctx.clock(),
                                                          error_code=result.error_code))
    log.info("reservation %d station=%s: CancelReservation %s -> %s", rid, r.station_id, result.status, r.status)
    if r.status == CANCELLED:
        return web.json_response(reservation_view(r))
    if is_final(r):
        raise _final(r)
    body: dict[str, Any] = {"status": result.status, "command_id": result.command_id}
    if result.error_code:
        body["error_code"] = result.error_code
    raise ApiError(409, f"the station did not cancel the reservation ({result.status})", body=body)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/reservations", create)
    app.router.add_get(f"{API_PREFIX}/reservations", list_all)
    app.router.add_get(f"{API_PREFIX}/reservations/{{id}}", get_one)
    app.router.add_delete(f"{API_PREFIX}/reservations/{{id}}", cancel)
    app.router.add_get(f"{API_PREFIX}/tokens/{{id}}/reservations", list_of_token)


# -- OpenAPI (merged by services/api/openapi_drivers.py) -------------------------------------

_J = dict[str, Any]
OPENAPI_TAGS: tuple[str, ...] = ("reservations",)
OPENAPI_VIEWS: tuple[str, ...] = ("Reservation", "ReservationList")


_obj = closed_object


_op = functools.partial(operation, OPENAPI_TAGS[0])


_STATUS = {"type": "string", "enum": list(STATUSES)}
_COMMAND_ID = {**NULL_STR, "description": "See GET /api/v1/commands/{command_id}."}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "ReservationRequest": _obj(["station_id", "id_token", "expires_at"], {
        "station_id": {"type": "string"},
        "connector_id": {"type": "integer", "minimum": 0,
                         "description": "OCPP 1.6 connector (0 or absent: any). Give this or evse_id, not both."},
        "evse_id": {"type": "integer", "minimum": 0, "description": "OCPP 2.0.1 EVSE (absent: any)."},
        "id_token": {"type": "string", "maxLength": MAX_TOKEN_LEN},
        "id_token_type": {"type": "string", "enum": list(ID_TOKEN_TYPES), "description": "2.0.1; default Central."},
        "expires_at": {**TS, "description": f"In the future, at most {MAX_AHEAD.days} days ahead."},
        "group_id": {**NULL_STR, "maxLength": MAX_TOKEN_LEN,
                     "description": "Sent as 1.6 parentIdTag / 2.0.1 groupIdToken."},
    }),
    "Reservation": _obj([
        "id", "station_id", "connector_id", "evse_id", "id_token", "id_token_type", "group_id", "expires_at",
        "status", "note", "created_at", "updated_at", "transaction_id", "session_id", "command_ids", "history",
    ], {
        "id": {"type": "integer", "description": "The reservationId sent to the station."},
        "station_id": {"type": "string"},
        "connector_id": NULL_INT,
        "evse_id": NULL_INT,
        "id_token": {"type": "string"},
        "id_token_type": NULL_STR,
        "group_id": NULL_STR,
        "expires_at": TS,
        "status": {**_STATUS, "description": "Requested and Accepted are open; every other status is final."},
        "note": {**NULL_STR, "description": "Why it is as it is, when worth saying (a timeout, a refused cancel)."},
        "created_at": TS,
        "updated_at": TS,
        "transaction_id": {**NULL_STR, "description": "When Used: the transaction started with it."},
        "session_id": {**NULL_STR, "description": "When Used: see GET /api/v1/sessions/{id}."},
        "command_ids": _obj(["reserve", "cancel"], {"reserve": _COMMAND_ID, "cancel": _COMMAND_ID}),
        "history": {"type": "array", "description": "Status changes, oldest first (the last 20).",
                    "items": _obj(["at", "status", "cause"], {
                        "at": TS, "status": _STATUS,
                        "cause": {"type": "string", "examples": ["created", "ReserveNow Accepted", "TransactionStarted",
                                                                 "ReservationStatusUpdate Removed", "expiry"]},
                    })},
    }, description="A reservation and what happened to it."),
    "ReservationList": _obj(["items"], {"items": {"type": "array", "items": ref("Reservation")}}),
}
_LIST_PARAMS = [
    query("station_id", "Only this station's reservations."),
    query("status", "Only reservations in this status.", _STATUS),
    query("limit", f"At most this many (default {DEFAULT_LIMIT}).",
          {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]
_ID = path_param("id", "Reservation id.")
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/reservations": {
        "post": _op(
            "Reserve a connector or EVSE for a token (sends ReserveNow)",
            {"201": json_content(ref("Reservation"), "The reservation; `status` is what the station answered "
                                                     "(Requested with a note when it did not answer in time)."),
             "400": R400, "404": R404,
             "409": error("StationOffline: the station is not connected (nothing was sent; when it went away "
                          "between the check and the send, `reservation_id` names the reservation, kept Rejected)."),
             "503": error("No gateway route, or the API is shutting down.")},
            op_id="createReservation", body=ref("ReservationRequest"),
        ),
        "get": _op(
            "List reservations, newest first",
            {"200": json_content(ref("ReservationList"), "The reservations."), "400": R400},
            op_id="listReservations",
            params=[*_LIST_PARAMS, query("id_token", "Only this token's reservations.")],
            description=f"Filters apply to the newest {SCAN} reservations of the narrowest scope "
                        "(the token's, the station's, the open ones, or all).",
        ),
    },
    "/api/v1/reservations/{id}": {
        "parameters": [_ID],
        "get": _op("One reservation", {"200": json_content(ref("Reservation"), "The reservation."), "404": R404},
                   op_id="getReservation"),
        "delete": _op(
            "Cancel a reservation (sends CancelReservation)",
            {"200": json_content(ref("Reservation"), "The station cancelled it: status Cancelled."),
             "400": R400, "404": R404,
             "409": error("Already final (`status`), the station refused (`status`: its answer), or StationOffline."),
             "503": error("The reservation kept changing, or the API is shutting down; retry."),
             "504": error("Timeout: no answer in time; a late Accepted still cancels it.")},
            op_id="cancelReservation",
        ),
    },
    "/api/v1/tokens/{id}/reservations": {
        "parameters": [path_param("id", "Id token.")],
        "get": _op(
            "A token's reservations, newest first",
            {"200": json_content(ref("ReservationList"), "The token's reservations."), "400": R400,
             "404": error("Neither a token nor any reservation of it.")},
            op_id="listTokenReservations", params=_LIST_PARAMS,
        ),
    },
}
