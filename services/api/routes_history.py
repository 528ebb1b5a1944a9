"""A station's history (ADR 016 §3): GET /api/v1/stations/{id}/events and
GET /api/v1/stations/{id}/commands, newest first, paged by an opaque cursor.

Both read the store's append-only station event log (`StationEventLog`, written by the
stations processor): `events` any rows (of the given `type`s), `commands` the
`CommandIssued` rows, whose `command` documents (the command and its result) are then
read with one `get_docs`. A command whose document is missing (not written yet, or
expired) is shown from its row: what was issued, status Pending.

A page asks the store for one row more than it shows, so `next` is null exactly when
there is nothing after the page.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, get_args

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import not_found, query_error
from services.api.query import encode_cursor, query_cursor, query_limit_strict, query_time
from services.api.views import command_record_view, station_event_view
from services.common import kinds
from services.common.events import Body
from services.common.store.port import StationEventRow
from services.stations.codec import OUTAGE
from services.stations.documents import command_from_doc
from services.stations.domain.commands import CommandRecord

__all__ = ["HISTORY_TYPES", "OUTAGE", "setup"]

log = logging.getLogger("csms.api.history")

COMMAND_ISSUED = "CommandIssued"
# What `type=` may name: every event body of csms.events.v1, and the stations processor's
# `Outage` rows (transaction events are not in the history, but naming them is no error:
# the page is simply empty).
HISTORY_TYPES = frozenset({t.__name__ for t in get_args(Body)} | {OUTAGE})
_MAX_TYPES = 32
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


def _types(request: web.Request) -> list[str] | None:
    raw = request.query.get("type")
    if raw is None or raw.strip() == "":
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > _MAX_TYPES:
        raise query_error({"type": f"at most {_MAX_TYPES} types"})
    unknown = [n for n in names if not _NAME.match(n) or n not in HISTORY_TYPES]
    if unknown:
        raise query_error({"type": f"unknown event type {unknown[0][:64]!r} (one of: {', '.join(sorted(HISTORY_TYPES))})"})
    return sorted(set(names))


async def _station(ctx: ApiContext, station_id: str) -> None:
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)


def _page(rows: list[StationEventRow], limit: int) -> tuple[list[StationEventRow], str | None]:
    shown = rows[:limit]
    if len(rows) <= limit or not shown:
        return shown, None
    return shown, encode_cursor(shown[-1].at, shown[-1].event_id)


async def list_events(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    types = _types(request)
    since, until = query_time(request, "since"), query_time(request, "until")
    if since is not None and until is not None and until <= since:
        raise query_error({"until": "must be after since"})
    limit = query_limit_strict(request)
    before = query_cursor(request)
    await _station(ctx, station_id)
    rows = await ctx.history.read_station_events(
        station_id, types=types, since=since, until=until, before=before, limit=limit + 1
    )
    shown, nxt = _page(rows, limit)
    return web.json_response({"items": [station_event_view(r) for r in shown], "next": nxt})


def _row_data(row: StationEventRow) -> dict[str, Any]:
    data = row.body.get("data") if isinstance(row.body, dict) else None
    return data if isinstance(data, dict) else dict(row.body) if isinstance(row.body, dict) else {}


def _payload(data: dict[str, Any]) -> Any:
    if "payload" in data:
        return data["payload"]
    text = data.get("payload_json")
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"raw": text}


def _from_row(station_id: str, row: StationEventRow, command_id: str) -> CommandRecord:
    """What the row says of a command whose record is missing: issued, not answered yet."""
    data = _row_data(row)
    return CommandRecord(
        command_id=command_id,
        station_id=station_id,
        command_type=str(data.get("command_type") or ""),
        ocpp_action=str(data.get("ocpp_action") or ""),
        payload=_payload(data),
        issued_at=row.at,
    )


def _record(station_id: str, row: StationEventRow, command_id: str, doc: dict[str, Any] | None) -> CommandRecord:
    if doc is not None:
        try:
            return command_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("station %s: command document %s cannot be read: %r", station_id, command_id, exc)
    return _from_row(station_id, row, command_id)


async def list_commands(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    limit = query_limit_strict(request)
    before = query_cursor(request)
    await _station(ctx, station_id)
    rows = await ctx.history.read_station_events(station_id, types=[COMMAND_ISSUED], before=before, limit=limit + 1)
    shown, nxt = _page(rows, limit)
    ids = [str(_row_data(r).get("command_id") or r.event_id) for r in shown]
    docs = await ctx.documents.get_docs(kinds.COMMAND, list(dict.fromkeys(ids))) if ids else {}
    items = [command_record_view(_record(station_id, r, cid, docs.get(cid))) for r, cid in zip(shown, ids)]
    return web.json_response({"items": items, "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/events", list_events)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/commands", list_commands)
