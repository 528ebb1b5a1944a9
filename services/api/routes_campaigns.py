"""Firmware campaigns (ADR 016 §5): /api/v1/firmware-campaigns[/{id}[/cancel]].

POST creates a FIRMWARE_CAMPAIGN document (revision 1, versioned: an existing id is a
409) for the stations listed or those of a site (none: 422); the campaign controller of
the stations processor (services/stations/campaigns.py) moves it on. Cancel is a
versioned write too: when the controller wrote the campaign in between, the API reads it
again and retries. A cancelled campaign sends nothing more; stations already updating
finish on their own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, conflict, not_found, query_error
from services.api.query import query_limit_strict
from services.api.validation import MISSING, Validator, check_resource_id, check_station_id, read_json
from services.common import kinds
from services.common.timeutil import to_ocpp
from services.stations.documents import campaign_from_doc, campaign_parent, campaign_to_doc
from services.stations.domain.campaigns import Campaign, cancel, new_campaign, progress

__all__ = ["MAX_STATIONS", "campaign_view", "setup"]

log = logging.getLogger("csms.api.campaigns")

MAX_STATIONS = 10_000
_FIELDS = {"id", "stations", "site_id", "location", "version", "retrieve_at", "signing_certificate", "signature",
           "max_in_flight", "stop_on_failure_ratio"}
_CANCEL_TRIES = 5
_LOOKUPS = 64  # station look-ups in flight while checking a campaign's list


def _ts(value: Any) -> str | None:
    return None if value is None else to_ocpp(value)


def campaign_view(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id,
        "status": c.status,
        "location": c.location,
        "version": c.version or None,
        "max_in_flight": c.max_in_flight,
        "stop_on_failure_ratio": c.stop_on_failure_ratio,
        "created_at": _ts(c.created_at),
        "updated_at": _ts(c.updated_at),
        "progress": progress(c),
        "stations": [
            {"station_id": s.station_id, "status": s.status, "firmware_status": s.firmware_status, "attempts": s.attempts,
             "started_at": _ts(s.started_at), "finished_at": _ts(s.finished_at), "reason": s.reason}
            for s in c.stations
        ],
    }


def _no_stations(why: str) -> ApiError:
    return ApiError(422, f"the campaign has no stations: {why}", details={"stations": why})


async def _stations(ctx: ApiContext, v: Validator) -> list[str]:
    """The campaign's stations (validated first; then known stations or a site's)."""
    listed, site = v.data.get("stations", MISSING), v.data.get("site_id", MISSING)
    if (listed is MISSING) == (site is MISSING):
        v.fail("stations", "give either stations (a list of station ids) or site_id")
        v.done()
    if listed is not MISSING:
        if not isinstance(listed, list) or len(listed) > MAX_STATIONS:
            v.fail("stations", f"must be a list of at most {MAX_STATIONS} station ids")
        else:
            for i, sid in enumerate(listed):
                if (why := check_station_id(sid)) is not None:
                    v.fail(f"stations[{i}]", why)
                    break
        v.done()
        ids = list(dict.fromkeys(listed))
        if not ids:
            raise _no_stations("the list is empty")
        unknown: list[str] = []
        for i in range(0, len(ids), _LOOKUPS):
            chunk = ids[i:i + _LOOKUPS]
            found = await asyncio.gather(*(ctx.stations.get_station(sid) for sid in chunk))
            unknown.extend(sid for sid, st in zip(chunk, found) if st is None)
        if unknown:
            raise ApiError(422, f"unknown station(s): {', '.join(unknown[:10])}", details={"stations": "unknown station ids"})
        return ids
    if (why := check_resource_id(site)) is not None:
        v.fail("site_id", why)
    v.done()
    if await ctx.documents.get_doc(kinds.SITE, site) is None:
        raise ApiError(422, f"unknown site {site!r}", details={"site_id": "unknown site"})
    members = await ctx.stations.list_stations(site_id=site, limit=MAX_STATIONS + 1)
    if not members:
        raise _no_stations(f"site {site!r} has none")
    if len(members) > MAX_STATIONS:
        raise ApiError(422, f"site {site!r} has more than {MAX_STATIONS} stations", details={"site_id": "too many stations"})
    return sorted(s.id for s in members)


async def create_campaign(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    v = Validator(await read_json(request), allowed=_FIELDS)
    campaign_id = v.data.get("id", MISSING)
    if campaign_id is not MISSING and (why := check_resource_id(campaign_id)) is not None:
        v.fail("id", why)
    location = v.string("location", required=True, max_len=512)
    version = v.string("version", nullable=True, max_len=50)
    retrieve_at = v.timestamp("retrieve_at", nullable=True)
    certificate = v.string("signing_certificate", nullable=True, max_len=5500)
    signature = v.string("signature", nullable=True, max_len=800)
    if (certificate in (MISSING, None)) != (signature in (MISSING, None)):
        v.fail("signature", "a signed update needs both signing_certificate and signature")
    max_in_flight = v.integer("max_in_flight", minimum=1, maximum=MAX_STATIONS)
    ratio = v.number("stop_on_failure_ratio", minimum=0, maximum=1)
    v.done()
    stations = await _stations(ctx, v)
    now = ctx.clock()
    c = new_campaign(
        str(uuid.uuid4()) if campaign_id is MISSING else campaign_id, stations, location=location, at=now,
        version=version if isinstance(version, str) else "",
        retrieve_at=None if retrieve_at in (MISSING, None) else retrieve_at,
        signing_certificate=certificate if isinstance(certificate, str) else "",
        signature=signature if isinstance(signature, str) else "",
        max_in_flight=10 if max_in_flight is MISSING else max_in_flight,
        stop_on_failure_ratio=0.2 if ratio is MISSING else float(ratio),
    )
    c = replace(c, revision=1)
    if not await ctx.documents.put_doc_if(kinds.FIRMWARE_CAMPAIGN, c.id, campaign_to_doc(c), parent=campaign_parent(c),
                                          expected_version=None, version=c.revision):
        raise conflict(f"firmware campaign {c.id!r} already exists")
    log.info("firmware campaign %r created: %d stations, max_in_flight=%d, location=%r", c.id, len(c.stations),
             c.max_in_flight, c.location)
    return web.json_response(campaign_view(c), status=201,
                             headers={"Location": f"{API_PREFIX}/firmware-campaigns/{c.id}"})


async def _load(ctx: ApiContext, campaign_id: str) -> Campaign:
    doc = await ctx.documents.get_doc(kinds.FIRMWARE_CAMPAIGN, campaign_id)
    if doc is None:
        raise not_found("firmware campaign", campaign_id)
    return campaign_from_doc(doc)


async def list_campaigns(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = query_limit_strict(request)
    cursor = request.query.get("cursor") or None
    try:
        docs, nxt = await ctx.documents.list_docs_page(kinds.FIRMWARE_CAMPAIGN, limit=limit, cursor=cursor)
    except ValueError:
        raise query_error({"cursor": "not a cursor this API returned"}) from None
    return web.json_response({"items": [campaign_view(campaign_from_doc(d)) for d in docs], "next": nxt})


async def get_campaign(request: web.Request) -> web.Response:
    return web.json_response(campaign_view(await _load(ctx_of(request), request.match_info["id"])))


async def cancel_campaign(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    campaign_id = request.match_info["id"]
    for _ in range(_CANCEL_TRIES):
        c = await _load(ctx, campaign_id)
        if c.status == "completed":
            raise conflict(f"firmware campaign {campaign_id!r} is already completed")
        stopped = cancel(c, ctx.clock())
        if stopped is c:
            return web.json_response(campaign_view(c))
        moved = replace(stopped, revision=c.revision + 1)
        if await ctx.documents.put_doc_if(kinds.FIRMWARE_CAMPAIGN, c.id, campaign_to_doc(moved),
                                          parent=campaign_parent(moved), expected_version=c.revision,
                                          version=moved.revision):
            log.info("firmware campaign %r cancelled (was %s)", c.id, c.status)
            return web.json_response(campaign_view(moved))
    raise ApiError(503, "the campaign kept changing; retry", headers={"Retry-After": "1"})


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/firmware-campaigns", create_campaign)
    app.router.add_get(f"{API_PREFIX}/firmware-campaigns", list_campaigns)
    app.router.add_get(f"{API_PREFIX}/firmware-campaigns/{{id}}", get_campaign)
    app.router.add_post(f"{API_PREFIX}/firmware-campaigns/{{id}}/cancel", cancel_campaign)
