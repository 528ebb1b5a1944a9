"""Charging sessions (documents written by the sessions processor), with their cost.

A session is read with the sessions service's mapper (`session_from_doc`) and shown by
`session_view` (ADR 015): its facts and bounded aggregates (sample count, first/last
register reading, peak power, ...), never its samples nor the processor's bookkeeping.
Samples are paged by GET /api/v1/sessions/{id}/meter-values?limit=&cursor= from the
samples table, in (timestamp, measurand, phase) order, each with `excluded` as the
sessions domain judges it over the session's stored samples; the response is
{"items": [...], "next": cursor or null}. `cost_update` is the last running or final cost
billing sent the station for the session (ADR 018 §6; billing's `cost_update` document).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.costs import TariffCache, session_cost
from services.api.errors import ApiError, not_found, validation_error
from services.api.validation import MAX_LIMIT, query_limit
from services.api.views import session_view
from services.billing.documents import cost_update_view
from services.common import kinds
from services.sessions.documents import decode_cursor, page, session_from_doc
from services.sessions.domain import Session

__all__ = ["setup"]

log = logging.getLogger("csms.api.sessions")


def _read(doc: dict[str, Any]) -> Session | None:
    """The session a document holds; None (logged) for one the processor cannot have
    written (no id, no receive time)."""
    try:
        return session_from_doc(doc)
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        log.error("session document %s cannot be read: %r", doc.get("id"), exc)
        return None


async def _load(ctx: ApiContext, session_id: str) -> tuple[Session, dict[str, Any]]:
    doc = await ctx.documents.get_doc(kinds.SESSION, session_id)
    if doc is None:
        raise not_found("session", session_id)
    s = _read(doc)
    if s is None:
        raise ApiError(500, f"session {session_id!r} cannot be read")
    return s, doc


async def _view(
    ctx: ApiContext, s: Session, doc: dict[str, Any], tariffs: TariffCache, cost_update: dict[str, Any] | None
) -> dict[str, Any]:
    cost = await session_cost(
        ctx.pricing, s, doc, ctx.clock(), tariffs,
        max_duration=ctx.settings.max_priced_duration, rules=ctx.settings.plausibility,
    )
    out = session_view(s, cost)
    out["cost_update"] = cost_update_view(cost_update)  # ADR 018 §6: the last cost sent to the station
    return out


async def list_sessions(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = query_limit(request)
    station_id = request.query.get("station_id") or None
    status = request.query.get("status") or None
    # The status filter runs on the documents: read a wider window when filtering.
    fetch = MAX_LIMIT if status else limit
    docs = await ctx.documents.list_docs(kinds.SESSION, parent=station_id, limit=fetch)
    read = [(s, d) for d in docs if (s := _read(d)) is not None and (status is None or s.status == status)]
    tariffs = TariffCache(ctx.pricing)
    shown = read[:limit]
    updates = await ctx.documents.get_docs(kinds.COST_UPDATE, [s.id for s, _ in shown]) if shown else {}
    items = [await _view(ctx, s, d, tariffs, updates.get(s.id)) for s, d in shown]
    return web.json_response({"items": items})


async def get_session(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    s, doc = await _load(ctx, request.match_info["id"])
    cost_update = await ctx.documents.get_doc(kinds.COST_UPDATE, s.id)
    return web.json_response(await _view(ctx, s, doc, TariffCache(ctx.pricing), cost_update))


async def get_meter_values(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = query_limit(request)
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor) > 1024:
        raise validation_error({"cursor": "not a cursor this API returned"})
    s, _ = await _load(ctx, request.match_info["id"])
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError:
            raise validation_error({"cursor": "not a cursor this API returned"}) from None
    items, nxt = await page(ctx.samples, s, limit=limit, cursor=cursor, rules=ctx.settings.plausibility)
    return web.json_response({"items": items, "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/sessions", list_sessions)
    app.router.add_get(f"{API_PREFIX}/sessions/{{id}}", get_session)
    app.router.add_get(f"{API_PREFIX}/sessions/{{id}}/meter-values", get_meter_values)
