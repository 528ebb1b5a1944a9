"""Firmware and logs of one station (ADR 016 §4, issue 9):

- POST /api/v1/stations/{id}/firmware sends UpdateFirmware (1.6 SignedUpdateFirmware when a
  signing certificate and a signature are given; services/common/ocpp/commands.py) with a
  request id the API picks, waits for the station's answer like any command, and answers
  202 {request_id, command_id, status}. The transfer is then followed by the stations
  processor (`firmware` of GET /stations/{id}).
- POST /api/v1/stations/{id}/logs creates a one-time upload slot (services/api/log_uploads.py)
  and sends GetLog / GetDiagnostics with its URL; GET .../logs lists the station's slots
  with the latest status; GET .../logs/{request_id} streams the file from the file store
  once the gateway received it and the station reported it Uploaded (409 before).

Commands go through `send_and_wait` (services/api/routes_commands.py): 409 StationOffline,
504 Timeout and the gateway's refusals are answered as for POST /commands.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from datetime import timedelta
from typing import Any, NoReturn
from urllib.parse import quote

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.documents import LOG_UPLOAD_RECEIVED, LogUpload, log_upload_to_doc
from services.api.errors import ApiError, conflict, not_found
from services.api.log_uploads import new_slot, station_uploads, upload_of_request, upload_url
from services.api.ops_doc import read_station_ops
from services.api.routes_commands import answered, send_and_wait
from services.api.validation import MISSING, Validator, read_json
from services.api.views import log_is_for, log_upload_view
from services.common import kinds
from services.common.events import CommandResult
from services.common.timeutil import to_ocpp
from services.stations.domain.ops import StationOps

__all__ = ["LOG_TYPES", "setup"]

log = logging.getLogger("csms.api.operations")

LOG_TYPES = ("DiagnosticsLog", "SecurityLog")
UPLOADED = "Uploaded"
FILE_SETTLING = timedelta(seconds=60)  # a received slot's file may still be moving into place
_FIRMWARE_FIELDS = {"location", "retrieve_at", "install_at", "retries", "retry_interval", "signing_certificate",
                    "signature"}
_LOG_FIELDS = {"log_type", "from", "to"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _request_id() -> int:
    """A positive int32 for the OCPP requestId."""
    return secrets.randbelow(2**31 - 2) + 1


async def _station_exists(ctx: ApiContext, station_id: str) -> None:
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)


def _sent_request_id(result: CommandResult, picked: int) -> int | None:
    """The requestId the station was sent (from the result's request payload): None when
    the OCPP message has none (1.6 UpdateFirmware); `picked` when the gateway did not say."""
    if not result.request_json:
        return picked
    try:
        sent = json.loads(result.request_json)
    except ValueError:
        return picked
    value = sent.get("requestId") if isinstance(sent, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _answer(command_type: str, result: CommandResult, request_id: int | None) -> dict[str, Any]:
    return answered(command_type, result,
                    {"request_id": request_id, "command_id": result.command_id, "status": result.status})


# -- firmware ------------------------------------------------------------------------


async def post_firmware(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    v = Validator(await read_json(request), allowed=_FIRMWARE_FIELDS)
    location = v.string("location", required=True, max_len=512)
    retrieve_at = v.timestamp("retrieve_at")
    install_at = v.timestamp("install_at")
    retries = v.integer("retries", minimum=0, maximum=1000)
    retry_interval = v.integer("retry_interval", minimum=0, maximum=7 * 86400)
    certificate = v.string("signing_certificate", max_len=5500)
    signature = v.string("signature", max_len=800)
    if (certificate is MISSING) != (signature is MISSING):
        v.fail("signature" if signature is MISSING else "signing_certificate",
               "a signed update needs both signing_certificate and signature")
    v.done()
    await _station_exists(ctx, station_id)
    picked = _request_id()
    params: dict[str, Any] = {"location": location, "request_id": picked}
    for name, value in (("retrieve_date", retrieve_at), ("install_date", install_at)):
        if value is not MISSING:
            params[name] = to_ocpp(value)
    for name, value in (("retries", retries), ("retry_interval", retry_interval),
                        ("signing_certificate", certificate), ("signature", signature)):
        if value is not MISSING:
            params[name] = value
    result = await send_and_wait(ctx, station_id, "UpdateFirmware", params, ctx.settings.command_timeout_s)
    out = _answer("UpdateFirmware", result, _sent_request_id(result, picked))
    log.info("firmware update %s station=%r request=%s status=%s", result.command_id, station_id, out["request_id"],
             result.status)
    return web.json_response(out, status=202)


# -- logs ----------------------------------------------------------------------------


async def post_logs(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    v = Validator(await read_json(request), allowed=_LOG_FIELDS)
    log_type = v.string("log_type", choices=LOG_TYPES)
    start, stop = v.timestamp("from"), v.timestamp("to")
    if start is not MISSING and stop is not MISSING and stop <= start:
        v.fail("to", "must be after from")
    v.done()
    log_type = "DiagnosticsLog" if log_type is MISSING else log_type
    await _station_exists(ctx, station_id)
    request_id, command_id = _request_id(), str(uuid.uuid4())
    token, slot = new_slot(ctx.settings, station_id=station_id, request_id=request_id, log_type=log_type,
                           command_id=command_id, now=ctx.clock())
    # the slot exists before the station has the URL: an upload can never find no slot
    await ctx.documents.put_doc_if(kinds.LOG_UPLOAD, slot.token_sha256, log_upload_to_doc(slot), parent=station_id,
                                   expected_version=None, version=slot.version)
    # 1.6 knows diagnostics only as GetDiagnostics (2.x builds GetLog from it); a security
    # log is GetLog in both (1.6: the security whitepaper's)
    command_type = "GetDiagnostics" if log_type == "DiagnosticsLog" else "GetLog"
    params: dict[str, Any] = {"location": upload_url(ctx.settings, token), "request_id": request_id}
    if command_type == "GetLog":
        params["log_type"] = log_type
    if start is not MISSING:
        params["start_time"] = to_ocpp(start)
    if stop is not MISSING:
        params["stop_time"] = to_ocpp(stop)
    try:
        result = await send_and_wait(ctx, station_id, command_type, params, ctx.settings.command_timeout_s,
                                     command_id=command_id)
        out = _answer(command_type, result, request_id)
    except ApiError as exc:
        if _never_reached_the_station(exc):
            await ctx.documents.delete_doc(kinds.LOG_UPLOAD, slot.token_sha256)
        raise
    out["upload_expires_at"] = to_ocpp(slot.expires_at)
    log.info("log request %s station=%r request=%s type=%r status=%s", command_id, station_id, request_id, log_type,
             result.status)
    return web.json_response(out, status=202)


def _never_reached_the_station(exc: ApiError) -> bool:
    """Offline, unroutable, or refused by the gateway: the URL was never given out, so the
    slot goes. (A timeout or a shutdown keeps it: the station may have it.)"""
    status = (exc.body or {}).get("status")
    return exc.status in (400, 409) or (exc.status == 503 and status != "Unknown")


async def list_logs(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    await _station_exists(ctx, station_id)
    slots = await station_uploads(ctx.documents, station_id)
    ops = read_station_ops(station_id, await ctx.documents.get_doc(kinds.STATION_OPS, station_id))
    return web.json_response({"items": [log_upload_view(u, ops) for u in slots]})


def _download_ready(slot: LogUpload, ops: StationOps | None) -> str | None:
    """None when the file may be served, else why not (409)."""
    if slot.status != LOG_UPLOAD_RECEIVED:
        return "the station has not uploaded the file yet"
    latest = ops.log if ops is not None else None
    if latest is not None and log_is_for(latest, slot):
        if latest.status == UPLOADED:
            return None
        return f"the station has not reported the upload as done (status {latest.status or 'unknown'})"
    if latest is not None and latest.requested_at is not None and latest.requested_at > slot.created_at:
        return None  # a later request followed: the station was done with this one
    return "the station has not reported the upload as done"


def _missing(ctx: ApiContext, slot: LogUpload, raw: str) -> NoReturn:
    """A received slot without its file: the gateway marks the slot before it moves the
    file into place, so just after the upload that is a 409 (retry); later the file is
    gone (404, logged)."""
    now = ctx.clock()
    if slot.received_at is not None and now - slot.received_at < FILE_SETTLING:
        raise conflict("the upload is being stored; retry in a moment")
    log.error("station %s: log %d was received but file %s is missing", slot.station_id, slot.request_id, slot.file_id)
    raise not_found("log file", raw)


def _disposition(name: str) -> str:
    safe = _SAFE_NAME.sub("_", name).strip("._") or "log"
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name, safe='')}"


async def download_log(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    raw = request.match_info["request_id"]
    await _station_exists(ctx, station_id)
    try:
        request_id = int(raw)
    except ValueError:
        raise not_found("log request", raw) from None
    slot = await upload_of_request(ctx.documents, station_id, request_id)
    if slot is None:
        raise not_found("log request", raw)
    ops = read_station_ops(station_id, await ctx.documents.get_doc(kinds.STATION_OPS, station_id))
    why = _download_ready(slot, ops)
    if why is not None:
        raise conflict(why)
    info = await ctx.files.file_info(slot.file_id)
    chunks = ctx.files.read_file(slot.file_id) if info is not None else None
    try:
        first = await anext(chunks, b"") if chunks is not None else None
    except FileNotFoundError:
        info, first = None, None
    if info is None or chunks is None or first is None:
        _missing(ctx, slot, raw)
    name = slot.name or info.name or f"{station_id}-{request_id}.log"
    response = web.StreamResponse(status=200, headers={"Content-Disposition": _disposition(name)})
    response.content_type = slot.content_type or info.content_type or "application/octet-stream"
    response.content_length = info.size
    await response.prepare(request)
    if first:
        await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/stations/{{id}}/firmware", post_firmware)
    app.router.add_post(f"{API_PREFIX}/stations/{{id}}/logs", post_logs)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/logs", list_logs)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/logs/{{request_id}}", download_log)

