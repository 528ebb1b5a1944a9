"""Sites (a grid connection shared by stations): /api/v1/sites[/{id}[/limit|/allocation]].

A site (services/api/documents.py): id, grid_limit_a, phases, tariff_id,
external_limit_a, created_at, updated_at. After every change is stored (or the site
deleted) the `on_site_changed` hook publishes a `SiteUpdated` on csms.sites.v1 (key =
site id, ADR 015; services/api/site_events.py) for the smart-charging processor, which
also re-reads sites from the store.

`GET /sites/{id}/allocation` shows what smart charging decided for the site: its limits,
each session's allocated current (and the last limit sent to the station), the outside
limits stations reported (NotifyChargingLimit) and the stations marked as not taking
profiles. It reads the processor's "site_state" document and recomputes the allocation
from it with the processor's own allocator (services/smart_charging/documents.py): the
document does not store the allocation, and the recomputation is deterministic, so this is
the allocation the processor acted on when it last wrote the document (`updated_at`). A
site with no state yet (no session since it was created) answers with no sessions.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from decimal import Decimal

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.documents import Site, site_from_doc, site_to_doc
from services.api.errors import conflict, not_found, validation_error
from services.api.validation import MAX_LIMIT, MISSING, Validator, check_resource_id, query_limit, read_json
from services.api.views import site_view
from services.common import kinds
from services.common.timeutil import to_ocpp
from services.smart_charging.documents import site_doc_from_json
from services.smart_charging.domain.site_state import SiteState, allocate_site

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


def _amps(value: Decimal | None) -> int | float | None:
    """Amps as a JSON number, like the site's own limits (an integer when whole)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


async def get_allocation(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    site = await _load(ctx, request.match_info["id"])
    raw = await ctx.documents.get_doc(kinds.SITE_STATE, site.id)
    if raw is None:  # no session since the site was created: its limits, nothing allocated
        cap = None if site.external_limit_a is None else Decimal(str(site.external_limit_a))
        state, updated_at = SiteState(site_id=site.id, limit_a=Decimal(str(site.grid_limit_a)), external_cap_a=cap), None
    else:
        sd = site_doc_from_json(raw)
        state, updated_at = sd.state, sd.updated_at
    allocation = state.allocation if state.allocation is not None else allocate_site(state, state.sessions)
    paused = set(allocation.paused)
    sessions = [
        {
            "station_id": s.station_id,
            "evse_id": s.evse_id,
            "transaction_id": s.transaction_id,
            "allocated_a": _amps(allocation.limits.get(key)),
            "paused": key in paused,
            "controllable": s.controllable,
            "last_sent_a": _amps(s.limit_a),
            "measured_a": _amps(s.measured_a),
            "min_a": _amps(s.min_a),
            "max_a": _amps(s.max_a),
            "ev_cap_a": _amps(s.ev_cap_a),
            "phases": s.phases,
            "priority": s.priority,
            "started_at": to_ocpp(s.started_at),
            "departure_at": None if s.departure_at is None else to_ocpp(s.departure_at),
        }
        for key, s in sorted(state.sessions.items())
    ]
    return web.json_response({
        "site_id": site.id,
        "grid_limit_a": _amps(state.limit_a),
        "external_limit_a": _amps(state.external_cap_a),
        "limit_a": _amps(state.effective_limit_a),
        "total_a": _amps(allocation.total_a),
        "reserved_a": _amps(allocation.reserved_a),
        "over_limit": allocation.over_limit,
        "sessions": sessions,
        "outside_limits": [
            {"station_id": station_id, "evse_id": evse_id, "source": source, "limit_a": _amps(limit)}
            for (station_id, evse_id, source), limit in sorted(state.external_limits.items())
        ],
        "stations_without_profiles": [
            {"station_id": station_id, "since": to_ocpp(mark.since), "reason": mark.reason}
            for station_id, mark in sorted(state.no_profiles.items())
        ],
        "updated_at": updated_at,
    })


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/sites", create_site)
    app.router.add_get(f"{API_PREFIX}/sites", list_sites)
    app.router.add_get(f"{API_PREFIX}/sites/{{id}}", get_site)
    app.router.add_patch(f"{API_PREFIX}/sites/{{id}}", patch_site)
    app.router.add_delete(f"{API_PREFIX}/sites/{{id}}", delete_site)
    app.router.add_put(f"{API_PREFIX}/sites/{{id}}/limit", put_limit)
    app.router.add_get(f"{API_PREFIX}/sites/{{id}}/allocation", get_allocation)
