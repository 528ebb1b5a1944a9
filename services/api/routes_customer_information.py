"""Customer information (OCPP 2.0.1 block N, ADR 018; 1.6 has none: 400 NotSupported):

- POST /api/v1/stations/{id}/customer-information {id_token (+ id_token_type) |
  customer_identifier | customer_certificate, report, clear}: exactly one identifier, at
  least one of report / clear true. Sends CustomerInformation with a request id the API
  picks and answers 202 {request_id, command_id, status}: the station's answer
  (Accepted, Rejected, Invalid). The `stations-drivers` stage records the answer in the
  request's `customer_information` document (the route waits a moment for it,
  `RECORD_WAIT_S`, so a GET right after finds the request), then assembles the
  NotifyCustomerInformation parts into it (customer_information_documents.py).
- GET /api/v1/stations/{id}/customer-information/{request_id}: the request: `status`
  (requested, assembling, complete, rejected), `parts`, `data` (the parts' data in seqNo
  order), `generated_at`, `truncated` (over 1,000,000 characters of data).
- GET /api/v1/stations/{id}/customer-information?limit=: the station's requests, newest
  first, without their data.

A gateway outcome is the HTTP error of the commands API (offline 409, timeout 504).
"""

from __future__ import annotations

import functools

import logging
import secrets
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ctx_of
from services.api.errors import not_found
from services.api.openapi_parts import NULL_STR, NULL_TS, R404, closed_object, operation, error, json_content, path_param, query, ref
from services.api.routes_commands import answered, send_and_wait
from services.api.routes_display_messages import RECORD_WAIT_S, not_supported_16, poll_doc
from services.api.validation import MISSING, Validator, query_limit, read_json
from services.common import kinds
from services.stations.documents import (
    CUSTOMER_INFORMATION_MAX_DATA_CHARS as MAX_DATA_CHARS,
    CUSTOMER_INFORMATION_STATUSES as STATUSES,
    customer_information_doc_id as doc_id,
    customer_information_from_doc as from_doc,
    customer_information_summary_view as summary_view,
    customer_information_view as view,
)

__all__ = ["ID_TOKEN_TYPES", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_TAGS", "OPENAPI_VIEWS", "setup"]

log = logging.getLogger("csms.api.customer_information")

ID_TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization")
HASH_ALGORITHMS = ("SHA256", "SHA384", "SHA512")
_FIELDS = {"id_token", "id_token_type", "customer_identifier", "customer_certificate", "report", "clear"}
_IDENTIFIERS = ("id_token", "customer_identifier", "customer_certificate")
_INT32_MAX = 2**31 - 1
# OCPP 2.0.1 lengths: IdTokenType.idToken, customerIdentifier, CertificateHashDataType
_MAX_TOKEN, _MAX_IDENTIFIER, _MAX_HASH, _MAX_SERIAL = 36, 64, 128, 40


def _certificate(v: Validator) -> dict[str, Any] | None:
    raw = v.data.get("customer_certificate", MISSING)
    if raw is MISSING:
        return None
    if not isinstance(raw, dict):
        v.fail("customer_certificate", "must be an object {hash_algorithm, issuer_name_hash, issuer_key_hash, "
                                       "serial_number}")
        return None
    inner = Validator(raw, allowed={"hash_algorithm", "issuer_name_hash", "issuer_key_hash", "serial_number"})
    out = {
        "hash_algorithm": inner.string("hash_algorithm", required=True, choices=HASH_ALGORITHMS),
        "issuer_name_hash": inner.string("issuer_name_hash", required=True, max_len=_MAX_HASH, printable=True),
        "issuer_key_hash": inner.string("issuer_key_hash", required=True, max_len=_MAX_HASH, printable=True),
        "serial_number": inner.string("serial_number", required=True, max_len=_MAX_SERIAL, printable=True),
    }
    for name, problem in inner.errors.items():
        v.fail(f"customer_certificate.{name}", problem)
    return out


def _params(body: dict[str, Any]) -> dict[str, Any]:
    """The CustomerInformation parameters (without the request id) of a valid body; 400
    naming every bad field otherwise."""
    v = Validator(body, allowed=_FIELDS)
    token = v.string("id_token", max_len=_MAX_TOKEN, printable=True)
    token_type = v.string("id_token_type", choices=ID_TOKEN_TYPES)
    identifier = v.string("customer_identifier", max_len=_MAX_IDENTIFIER, printable=True)
    certificate = _certificate(v)
    report = v.boolean("report")
    clear = v.boolean("clear")
    named = [k for k in _IDENTIFIERS if k in body]
    if len(named) != 1:
        v.fail("id_token", "give exactly one of id_token, customer_identifier, customer_certificate"
               + (f" (got {', '.join(named)})" if named else ""))
    if token_type is not MISSING and "id_token" not in body:
        v.fail("id_token_type", "goes with id_token only")
    if report is not True and clear is not True and "report" not in v.errors and "clear" not in v.errors:
        v.fail("report", "at least one of report and clear must be true")
    v.done()
    params: dict[str, Any] = {"report": report is True, "clear": clear is True}
    if token is not MISSING:
        params["id_token"] = token
        params["id_token_type"] = "Central" if token_type is MISSING else token_type
    if identifier is not MISSING:
        params["customer_identifier"] = identifier
    if certificate is not None:
        params["customer_certificate"] = certificate
    return params


async def request_information(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    params = _params(await read_json(request))
    await not_supported_16(ctx, station_id, "CustomerInformation")
    request_id = secrets.randbelow(_INT32_MAX - 1) + 1
    result = await send_and_wait(ctx, station_id, "CustomerInformation", {"request_id": request_id, **params},
                                 ctx.settings.command_timeout_s)
    out = answered("CustomerInformation", result, {
        "request_id": request_id, "command_id": result.command_id, "status": result.status,
    })
    log.info("customer information request %d station=%s report=%s clear=%s status=%s command=%s", request_id,
             station_id, params["report"], params["clear"], result.status, result.command_id)
    await poll_doc(ctx, kinds.CUSTOMER_INFORMATION, doc_id(station_id, request_id),
                   lambda d: d.get("command_id") == result.command_id, RECORD_WAIT_S)
    return web.json_response(out, status=202)


async def get_information(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id, raw = request.match_info["id"], request.match_info["request_id"]
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    try:
        request_id = int(raw)
    except ValueError:
        raise not_found("customer information request", raw) from None
    doc = await ctx.documents.get_doc(kinds.CUSTOMER_INFORMATION, doc_id(station_id, request_id))
    if doc is None:
        raise not_found("customer information request", raw)
    return web.json_response(view(from_doc(doc)))


async def list_information(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    limit = query_limit(request)
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    docs = await ctx.documents.list_docs(kinds.CUSTOMER_INFORMATION, parent=station_id, limit=limit)
    items = []
    for doc in docs:
        try:
            items.append(summary_view(from_doc(doc)))
        except (KeyError, TypeError, ValueError):
            log.exception("station=%s customer information document unreadable, left out", station_id)
    return web.json_response({"items": items})


def setup(app: web.Application) -> None:
    base = f"{API_PREFIX}/stations/{{id}}/customer-information"
    app.router.add_post(base, request_information)
    app.router.add_get(base, list_information)
    app.router.add_get(f"{base}/{{request_id}}", get_information)


# -- OpenAPI (merged by services/api/openapi_drivers.py) -------------------------------------

J = dict[str, Any]
OPENAPI_TAGS: tuple[str, ...] = ("customer-information",)
OPENAPI_VIEWS: tuple[str, ...] = ("CustomerInformationAccepted", "CustomerInformation", "CustomerInformationSummary",
                                  "CustomerInformationList")


_obj = closed_object


_op = functools.partial(operation, OPENAPI_TAGS[0])


_SUMMARY: J = {
    "request_id": {"type": "integer"},
    "command_id": NULL_STR,
    "status": {"type": "string", "enum": list(STATUSES),
               "description": "requested: Accepted, no part yet; assembling: some parts; complete: the last part "
                              "and every part before it; rejected: the station answered Rejected or Invalid."},
    "station_status": {**NULL_STR, "description": "The CustomerInformation answer (Accepted, Rejected, Invalid)."},
    "report": {"type": ["boolean", "null"]},
    "clear": {"type": ["boolean", "null"]},
    "identifier_type": {"type": ["string", "null"], "enum": ["id_token", "customer_identifier",
                                                             "customer_certificate", None]},
    "identifier": {**NULL_STR, "description": "The token, the customer identifier, or the certificate's serial "
                                              "number."},
    "parts": {"type": "integer", "description": "NotifyCustomerInformation parts received (each seqNo once)."},
    "data_length": {"type": "integer", "description": "Characters of data kept."},
    "truncated": {"type": "boolean", "description": f"More than {MAX_DATA_CHARS:,} characters came: the rest "
                                                    "was dropped."},
    "requested_at": NULL_TS,
    "generated_at": {**NULL_TS, "description": "generatedAt of the first part."},
    "updated_at": NULL_TS,
}

OPENAPI_SCHEMAS: J = {
    "CustomerInformationRequest": _obj([], {
        "id_token": {"type": "string", "maxLength": _MAX_TOKEN},
        "id_token_type": {"type": "string", "enum": list(ID_TOKEN_TYPES), "default": "Central"},
        "customer_identifier": {"type": "string", "maxLength": _MAX_IDENTIFIER},
        "customer_certificate": _obj(["hash_algorithm", "issuer_name_hash", "issuer_key_hash", "serial_number"], {
            "hash_algorithm": {"type": "string", "enum": list(HASH_ALGORITHMS)},
            "issuer_name_hash": {"type": "string", "maxLength": _MAX_HASH},
            "issuer_key_hash": {"type": "string", "maxLength": _MAX_HASH},
            "serial_number": {"type": "string", "maxLength": _MAX_SERIAL},
        }),
        "report": {"type": "boolean", "default": False, "description": "The station reports what it holds."},
        "clear": {"type": "boolean", "default": False, "description": "The station deletes what it holds."},
    }, description="Exactly one of id_token, customer_identifier, customer_certificate; report or clear true."),
    "CustomerInformationAccepted": _obj(["request_id", "command_id", "status"], {
        "request_id": {"type": "integer"},
        "command_id": {"type": "string"},
        "status": {"type": "string", "examples": ["Accepted", "Rejected", "Invalid"],
                   "description": "The station's answer."},
        "error_code": {"type": "string", "description": "The station's CALLERROR code, when it sent one."},
        "error_description": {"type": "string"},
    }),
    "CustomerInformationSummary": _obj(list(_SUMMARY), _SUMMARY),
    "CustomerInformation": _obj([*_SUMMARY, "data"], {
        **_SUMMARY,
        "data": {"type": "string", "description": "The parts' data concatenated in seqNo order."},
    }),
    "CustomerInformationList": _obj(["items"], {"items": {"type": "array", "items": ref("CustomerInformationSummary")}}),
}

_STATION = path_param("id", "Station id.")
OPENAPI_PATHS: J = {
    "/api/v1/stations/{id}/customer-information": {
        "parameters": [_STATION],
        "post": _op(
            "Ask the station for (or to clear) a customer's information (CustomerInformation)",
            {"202": json_content(ref("CustomerInformationAccepted"), "The station's answer; the parts follow."),
             "400": error("Validation, or NotSupported (`status`): an OCPP 1.6 station has no customer information."),
             "404": R404,
             "409": error("StationOffline: the station is not connected."),
             "504": error("Timeout: no answer in time (see GET /api/v1/commands/{command_id}).")},
            op_id="requestCustomerInformation", body=ref("CustomerInformationRequest"),
            description="OCPP 2.0.1 only. Follow GET .../customer-information/{request_id}.",
        ),
        "get": _op(
            "The station's customer information requests",
            {"200": json_content(ref("CustomerInformationList"), "Newest first, without data."),
             "400": error("A bad limit."), "404": R404},
            op_id="listCustomerInformation",
            params=[query("limit", "At most this many (default 100).", {"type": "integer", "minimum": 1, "maximum": 1000})],
        ),
    },
    "/api/v1/stations/{id}/customer-information/{request_id}": {
        "parameters": [_STATION, path_param("request_id", "The request id POST answered.")],
        "get": _op(
            "A customer information request and its assembled data",
            {"200": json_content(ref("CustomerInformation"), "As assembled so far."), "404": R404},
            op_id="getCustomerInformation",
        ),
    },
}
