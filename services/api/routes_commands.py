"""POST /api/v1/stations/{id}/commands (synchronous wait) and GET /api/v1/commands/{command_id}.

A command goes through the one `CommandRouter` (ADR 001, ADR 010): it is produced to the
partition of the gateway holding the station's socket, and the request waits for the
station's answer (`CommandWaiter`). Not connected is a 409 `StationOffline`; a gateway
the command topic has no partition for is a deployment error, a 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.commands import WaiterClosed, validate_command
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, not_found
from services.api.metrics import COMMANDS
from services.api.validation import read_json
from services.api.views import command_record_view
from services.common import kinds
from services.common.codec import Command
from services.common.events import CommandResult
from services.common.routing import Offline, Unroutable
from services.stations.documents import command_from_doc

__all__ = ["answered", "result_error", "send_and_wait", "setup"]

log = logging.getLogger("csms.api.commands")

# Gateway outcomes that are not a station's answer, with their HTTP status. A station's
# own answer (Accepted, Rejected, Unlocked, ..., or Rejected with its CALLERROR code)
# is a 200: the command was delivered and answered.
_STATUS_HTTP = {"StationOffline": 409, "NotSupported": 400, "Timeout": 504}
_INVALID_FOR_VERSION = "InvalidCommand"  # the gateway could not build a valid payload for the station's version


def _response_json(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {"raw": text}


async def send_and_wait(
    ctx: ApiContext, station_id: str, command_type: str, params: dict[str, Any], timeout_s: float,
    *, command_id: str | None = None,
) -> CommandResult:
    """Routes the command to the station's gateway and waits for its result. A command that
    was not delivered or not answered is an ApiError: 409 StationOffline, 503 (no route,
    shutting down), 504 Timeout (with the command id: a late answer is recorded)."""
    command_id = command_id or str(uuid.uuid4())
    waiting: list[asyncio.Future[CommandResult]] = []

    def expect(cmd: Command) -> None:  # registered before the command is produced: a fast answer is not missed
        waiting.append(ctx.waiter.expect(cmd.command_id))

    try:
        routed = await ctx.router.send(
            station_id, command_type, params, ttl=timedelta(seconds=timeout_s), command_id=command_id,
            before_publish=expect,
        )
    except BaseException:
        ctx.waiter.forget(command_id)
        raise
    if isinstance(routed, Offline):
        COMMANDS.labels(command_type, "StationOffline").inc()
        raise ApiError(409, "station is not connected", body={"status": "StationOffline"})
    if isinstance(routed, Unroutable):
        # more gateway pods than command partitions (or a gateway id without an ordinal):
        # a deployment error, not the caller's; the router logged it
        COMMANDS.labels(command_type, "Unroutable").inc()
        raise ApiError(503, routed.reason)
    cmd = routed.command
    log.info("command %s %s sent station=%r gateway=%s", cmd.command_id, command_type, station_id, routed.gateway_id)
    [fut] = waiting
    try:
        result = await ctx.waiter.wait(cmd.command_id, fut, timeout_s)
    except WaiterClosed:
        COMMANDS.labels(command_type, "Unknown").inc()
        raise ApiError(
            503,
            f"the API is shutting down; the command was sent, its result will appear at "
            f"{API_PREFIX}/commands/{cmd.command_id}",
            body={"status": "Unknown", "command_id": cmd.command_id},
            headers={"Retry-After": "1"},
        ) from None
    if result is None:
        COMMANDS.labels(command_type, "Timeout").inc()
        log.info("command %s %s timed out after %.1fs station=%r", cmd.command_id, command_type, timeout_s, station_id)
        raise ApiError(
            504,
            f"the station did not answer within {timeout_s:g} s; a late answer appears at "
            f"{API_PREFIX}/commands/{cmd.command_id}",
            body={"status": "Timeout", "command_id": cmd.command_id},
        )
    COMMANDS.labels(command_type, result.status or "unknown").inc()
    return result


def result_error(command_type: str, result: CommandResult, body: dict[str, Any]) -> ApiError | None:
    """The error a result that is not a station's answer maps to (gateway outcomes:
    StationOffline 409, NotSupported / InvalidCommand 400, Timeout 504); None for an answer."""
    http = _STATUS_HTTP.get(result.status, 200)
    if result.status == "NotSupported" and result.ocpp_action:
        # The station answered NotSupported to a call it was sent (a GetBaseReport base it
        # lacks, ...): its answer, not the gateway's "this version cannot express it".
        http = 200
    if result.error_code == _INVALID_FOR_VERSION:
        http = 400
    if http == 200:
        return None
    if result.status == "StationOffline":
        error = "station is not connected"
    elif result.status == "Timeout":
        error = result.error_description or "the station did not answer in time"
    else:
        error = result.error_description or f"{command_type} is not supported by this station"
    return ApiError(http, error, body=body)


def answered(command_type: str, result: CommandResult, out: dict[str, Any]) -> dict[str, Any]:
    """`out` (the route's answer) with the station's CALLERROR code when it sent one; raises
    the API error a gateway outcome maps to (`result_error`)."""
    if result.error_code:
        out["error_code"] = result.error_code
        out["error_description"] = result.error_description
    error = result_error(command_type, result, out)
    if error is not None:
        raise error
    return out


async def post_command(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    body = await read_json(request)
    command_type, params, timeout_s = validate_command(body, ctx.settings.command_timeout_s)
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    result = await send_and_wait(ctx, station_id, command_type, params, timeout_s)
    out = answered(command_type, result, {
        "command_id": result.command_id,
        "status": result.status,
        "response": _response_json(result.response_json),
    })
    return web.json_response(out)


async def get_command(request: web.Request) -> web.Response:
    command_id = request.match_info["command_id"]
    doc = await ctx_of(request).documents.get_doc(kinds.COMMAND, command_id)
    if doc is None:
        raise not_found("command", command_id)
    return web.json_response(command_record_view(command_from_doc(doc)))


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/stations/{{id}}/commands", post_command)
    app.router.add_get(f"{API_PREFIX}/commands/{{command_id}}", get_command)
