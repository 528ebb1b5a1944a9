"""Sites (a grid connection shared by stations): /api/v1/sites[/{id}[/limit]].

A site (services/api/documents.py): id, grid_limit_a, phases, tariff_id,
external_limit_a, created_at, updated_at. After every change is stored (or the site
deleted) the `on_site_changed` hook publishes a `SiteUpdated` on csms.sites.v1 (key =
site id, ADR 015; services/api/site_events.py) for the smart-charging processor, which
also re-reads sites from the store.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.documents import Site, site_from_doc, site_to_doc
from services.api.errors import conflict, not_found, validation_error
from services.api.validation import MAX_LIMIT, MISSING, Validator, check_resource_id, query_limit, read_json
from services.api.views import site_view
from services.common import kinds
from services.common.timeutil import to_ocpp

__all__ = ["setup"]

log = logging.getLogger("csms.api.sites")

_MAX_AMPS = 100_000
_EDITABLE = {"grid_limit_a", "phases", "tariff_id"}


async def _check_tariff(ctx: ApiContext, tariff_id: Any) -> None:
    if isinstance(tariff_id, str) and await ctx.documents.get_doc(kinds.TARIFF, tariff_id) is None:
        raise validation_error({"tariff_id": f"unknown tariff {tariff_id!r}"})


def _fields(v: Validator, *, creating: bool) -> dict[str, Any]:
    values = {
        "grid_limit_a": v.number("grid_limit_a", required=creating, positive=True, maximum=_MAX_AMPS),
        "phases": v.integer("phases", choices=(1, 3)),
        "tariff_id": v.string("tariff_id", nullable=True, max_len=64),
    }
    return {k: val for k, val in values.items() if val is not MISSING}


async def _load(ctx: ApiContext, site_id: str) -> Site:
    doc = await ctx.documents.get_doc(kinds.SITE, site_id)
    if doc is None:
        raise not_found("site", site_id)
    return site_from_doc(doc)


async def _save(ctx: ApiContext, site: Site) -> web.Response:
    await ctx.documents.put_doc(kinds.SITE, site.id, site_to_doc(site))
    await ctx.on_site_changed(site.id)
    return web.json_response(site_view(site))


async def create_site(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    v = Validator(await read_json(request), allowed={"id", *_EDITABLE})
    site_id = v.data.get("id", MISSING)
    if site_id is MISSING:
        v.fail("id", "is required")
    elif (why := check_resource_id(site_id)) is not None:
        v.fail("id", why)
    values = _fields(v, creating=True)
    v.done()
    await _check_tariff(ctx, values.get("tariff_id"))
    if await ctx.documents.get_doc(kinds.SITE, site_id) is not None:
        raise conflict(f"site {site_id!r} already exists")
    now = to_ocpp(ctx.clock())
    site = Site(
        id=site_id,
        grid_limit_a=values["grid_limit_a"],
        phases=values.get("phases", 3),
        tariff_id=values.get("tariff_id"),
        created_at=now,
        updated_at=now,
    )
    response = await _save(ctx, site)
    log.info("site created %r grid_limit_a=%s phases=%s", site_id, site.grid_limit_a, site.phases)
    response.set_status(201)
    response.headers["Location"] = f"{API_PREFIX}/sites/{site_id}"
    return response


async def list_sites(request: web.Request) -> web.Response:
    limit = query_limit(request)
    docs = await ctx_of(request).documents.list_docs(kinds.SITE, limit=min(limit, MAX_LIMIT))
    return web.json_response({"items": [site_view(site_from_doc(d)) for d in docs[:limit]]})


async def get_site(request: web.Request) -> web.Response:
    return web.json_response(site_view(await _load(ctx_of(request), request.match_info["id"])))


async def patch_site(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    site = await _load(ctx, request.match_info["id"])
    v = Validator(await read_json(request), allowed=_EDITABLE)
    values = _fields(v, creating=False)
    v.done()
    if "tariff_id" in values:
        await _check_tariff(ctx, values["tariff_id"])
    site = dataclasses.replace(site, **values, updated_at=to_ocpp(ctx.clock()))
    response = await _save(ctx, site)
    log.info("site updated %r fields=%s", site.id, ",".join(sorted(values)))
    return response


async def put_limit(request: web.Request) -> web.Response:
    """An outside cap (e.g. a grid operator's signal), in A per phase; null lifts it."""
    ctx = ctx_of(request)
    site = await _load(ctx, request.match_info["id"])
    v = Validator(await read_json(request), allowed={"limit_a"})
    limit = v.number("limit_a", required=True, nullable=True, minimum=0, maximum=_MAX_AMPS)
    v.done()
    site = dataclasses.replace(site, external_limit_a=limit, updated_at=to_ocpp(ctx.clock()))
    response = await _save(ctx, site)
    log.info("site %r external limit %s", site.id, "lifted" if limit is None else f"{limit} A")
    return response


async def delete_site(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    site_id = request.match_info["id"]
    if not await ctx.documents.delete_doc(kinds.SITE, site_id):
        raise not_found("site", site_id)
    log.info("site deleted %r", site_id)
    await ctx.on_site_changed(site_id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/sites", create_site)
    app.router.add_get(f"{API_PREFIX}/sites", list_sites)
    app.router.add_get(f"{API_PREFIX}/sites/{{id}}", get_site)
    app.router.add_patch(f"{API_PREFIX}/sites/{{id}}", patch_site)
    app.router.add_delete(f"{API_PREFIX}/sites/{{id}}", delete_site)
    app.router.add_put(f"{API_PREFIX}/sites/{{id}}/limit", put_limit)
