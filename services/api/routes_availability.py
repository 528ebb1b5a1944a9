"""Uptime (ADR 016 §6): GET /api/v1/stations/{id}/availability and GET /api/v1/kpis/availability.

The figures are computed by the stations domain (services/stations/domain/availability.py)
from the station's closed outages, the `Outage` rows of its history (the row's time is
the outage's end, its data {cause, start, end, duration_s}), and its open outage (the
stations processor's `station_ops.outage`). The window defaults to the 30 days before
now; observation starts at the station's creation when that is later.

Only outages ending at or after the window's start can touch it, so the rows are read
from there on, newest first, a page at a time, up to `MAX_OUTAGES` per station (a
station with more in one window is logged and measured on those).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import not_found, query_error
from services.api.ops_doc import read_station_ops
from services.api.query import query_time
from services.api.routes_history import OUTAGE
from services.api.views import availability_view, kpi_item_view
from services.common import kinds
from services.common.store.port import Station, StationEventRow
from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.availability import AvailabilityFigures, availability, combine, uptime_percent
from services.stations.domain.ops import OUTAGE_CAUSES, OpenOutage, Outage

__all__ = ["DEFAULT_WINDOW", "MAX_KPI_STATIONS", "MAX_OUTAGES", "outage_of_row", "setup"]

log = logging.getLogger("csms.api.availability")

DEFAULT_WINDOW = timedelta(days=30)
MAX_OUTAGES = 10_000
MAX_KPI_STATIONS = 10_000
_PAGE = 1000
_CONCURRENCY = 16


def outage_of_row(row: StationEventRow) -> Outage | None:
    """The closed outage an `Outage` row holds; None (logged) for a row that is not one."""
    body: dict[str, Any] = row.body if isinstance(row.body, dict) else {}
    nested = body.get("data")
    data: dict[str, Any] = nested if isinstance(nested, dict) else body
    try:
        cause = str(data["cause"])
        start = parse_ocpp(str(data["start"]))
        end = parse_ocpp(str(data["end"])) if data.get("end") else row.at
    except (KeyError, TypeError, ValueError) as exc:
        log.error("station %s: outage row %s cannot be read: %r", row.station_id, row.event_id, exc)
        return None
    if cause not in OUTAGE_CAUSES:
        log.warning("station %s: outage row %s has cause %r", row.station_id, row.event_id, cause)
    return Outage(cause, start, end)


async def _outages(ctx: ApiContext, station_id: str, since: datetime) -> list[Outage]:
    outages: list[Outage] = []
    before: tuple[datetime, str] | None = None
    read = 0
    while read < MAX_OUTAGES:
        rows = await ctx.history.read_station_events(
            station_id, types=[OUTAGE], since=since, before=before, limit=min(_PAGE, MAX_OUTAGES - read)
        )
        read += len(rows)
        outages.extend(o for r in rows if (o := outage_of_row(r)) is not None)
        if len(rows) < _PAGE:
            return outages
        before = (rows[-1].at, rows[-1].event_id)
    log.warning("station %s: more than %d outages since %s; measured on the latest", station_id, MAX_OUTAGES,
                to_ocpp(since))
    return outages


def _window(ctx: ApiContext, request: web.Request) -> tuple[datetime, datetime]:
    window_to = query_time(request, "to") or ctx.clock()
    window_from = query_time(request, "from") or window_to - DEFAULT_WINDOW
    if window_to <= window_from:
        raise query_error({"to": "must be after from"})
    return window_from, window_to


async def _figures(
    ctx: ApiContext, station: Station, open_outage: OpenOutage | None, window: tuple[datetime, datetime]
) -> AvailabilityFigures:
    outages = await _outages(ctx, station.id, window[0])
    return availability(outages, open_outage, window_from=window[0], window_to=window[1], now=ctx.clock(),
                        created_at=station.created_at)


async def station_availability(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    window = _window(ctx, request)
    station = await ctx.stations.get_station(station_id)
    if station is None:
        raise not_found("station", station_id)
    ops = read_station_ops(station_id, await ctx.documents.get_doc(kinds.STATION_OPS, station_id))
    figures = await _figures(ctx, station, ops.outage if ops is not None else None, window)
    return web.json_response(availability_view(station_id, window[0], window[1], figures))


async def kpis(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    window = _window(ctx, request)
    site_id = request.query.get("site_id") or None
    stations = await ctx.stations.list_stations(site_id=site_id, limit=MAX_KPI_STATIONS)
    docs: dict[str, dict[str, Any]] = {}
    ids = [s.id for s in stations]
    for i in range(0, len(ids), _PAGE):
        docs.update(await ctx.documents.get_docs(kinds.STATION_OPS, ids[i:i + _PAGE]))
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(station: Station) -> AvailabilityFigures:
        ops = read_station_ops(station.id, docs.get(station.id))
        async with gate:
            return await _figures(ctx, station, ops.outage if ops is not None else None, window)

    figures = await asyncio.gather(*(one(s) for s in stations))
    total = combine(figures)
    return web.json_response({
        "site_id": site_id,
        "from": to_ocpp(window[0]),
        "to": to_ocpp(window[1]),
        "stations": len(stations),
        "uptime_percent": total.uptime_percent if total is not None else uptime_percent(0, 0),
        "failures": total.failures if total is not None else 0,
        "mtbf_s": total.mtbf_s if total is not None else None,
        "mttr_s": total.mttr_s if total is not None else None,
        "items": [kpi_item_view(s.id, f) for s, f in zip(stations, figures)],
    })


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/availability", station_availability)
    app.router.add_get(f"{API_PREFIX}/kpis/availability", kpis)
