"""Charging sessions (documents written by the sessions processor), with their cost.

A session is shown compact (ADR 015): its facts and bounded aggregates (sample count,
first/last register reading, peak power, ...), never its samples. Those are paged by
GET /api/v1/sessions/{id}/meter-values?limit=&cursor= from the samples table, in
(timestamp, measurand, phase) order, each with `excluded` as the sessions domain judges
it over the session's stored samples; the response is {"items": [...], "next": cursor
or null}.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.costs import TariffResolver, session_cost
from services.api.errors import not_found, validation_error
from services.api.validation import MAX_LIMIT, query_limit
from services.api.views import session_view
from services.billing.handlers import billing_limits
from services.sessions import meter_values
from services.sessions.domain import Plausibility, session_from_doc

__all__ = ["setup"]


async def _with_cost(ctx: ApiContext, doc: dict[str, Any], tariffs: TariffResolver) -> dict[str, Any]:
    out = session_view(doc)
    out["cost"] = await session_cost(ctx.rt.store, doc, ctx.rt.clock(), tariffs, max_duration=billing_limits(ctx.rt.settings)[0])
    return out


async def list_sessions(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = query_limit(request)
    station_id = request.query.get("station_id") or None
    status = request.query.get("status") or None
    # The status filter runs on the documents: read a wider window when filtering.
    fetch = MAX_LIMIT if status else limit
    docs = await ctx.rt.store.list_docs("session", parent=station_id, limit=fetch)
    if status:
        docs = [d for d in docs if d.get("status") == status]
    docs = docs[:limit]
    tariffs = TariffResolver(ctx.rt.store)
    items = [await _with_cost(ctx, d, tariffs) for d in docs]
    return web.json_response({"items": items})


async def get_session(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    session_id = request.match_info["id"]
    doc = await ctx.rt.store.get_doc("session", session_id)
    if doc is None:
        raise not_found("session", session_id)
    return web.json_response(await _with_cost(ctx, doc, TariffResolver(ctx.rt.store)))


async def get_meter_values(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    session_id = request.match_info["id"]
    limit = query_limit(request)
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor) > 1024:
        raise validation_error({"cursor": "not a cursor this API returned"})
    doc = await ctx.rt.store.get_doc("session", session_id)
    if doc is None:
        raise not_found("session", session_id)
    if cursor is not None:
        try:
            meter_values.decode_cursor(cursor)
        except ValueError:
            raise validation_error({"cursor": "not a cursor this API returned"}) from None
    items, nxt = await meter_values.page(
        ctx.rt.store, session_from_doc(doc), limit=limit, cursor=cursor,
        rules=Plausibility.from_settings(ctx.rt.settings),
    )
    return web.json_response({"items": items, "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/sessions", list_sessions)
    app.router.add_get(f"{API_PREFIX}/sessions/{{id}}", get_session)
    app.router.add_get(f"{API_PREFIX}/sessions/{{id}}/meter-values", get_meter_values)
