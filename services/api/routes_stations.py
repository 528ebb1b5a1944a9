"""Stations: /api/v1/stations[/{id}]. Passwords are hashed off the event loop (scrypt).

Security (ADR 017, docs/security.md): a station has the profile it must connect with
(1-3), optionally a WebSocket ping period of its own. A change that makes its current
credentials or connection unacceptable (disabled, a password reset, a profile change,
deletion) is stored first and then revoked on every gateway (`broadcast_revoke`): each
drops the station from its auth caches, the one holding the socket closes it. A change the
gateways check but that leaves the connection acceptable (re-enabled, a new ping period, a
dropped pending value) and a new station (gateways cache unknown ids for 2 s) are
announced the same way without closing anything, so it applies at once instead of when
the caches expire. Lowering a profile weakens a station's protection and needs the role
`admin`; a PATCH of `password` or `security_profile` is a credential change and needs
`admin` or `installer`, as the password and security-profile routes do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX, role_of
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, conflict, not_found, validation_error
from services.api.log_uploads import upload_of_log
from services.api.ops_doc import read_station_ops
from services.api.validation import MISSING, Validator, check_station_id, query_limit, read_json
from services.api.views import StationView, station_security_profile, station_view
from services.common import kinds, passwords
from services.common.errors import BusUnavailable
from services.common.routing import broadcast_revoke
from services.common.store.port import Owner, Station
from services.sessions.documents import station_status_from_doc
from services.sessions.domain import StationStatus

__all__ = ["setup", "station_response", "hash_station_password", "refresh", "revoke"]

log = logging.getLogger("csms.api.stations")

_FIELDS = ("site_id", "tariff_id", "max_current_a", "phases", "priority", "security_profile", "ws_ping_interval_s",
           "cost_messages")
_CREATE = {"id", "password", "enabled", *_FIELDS}
_PATCH = {"password", "enabled", *_FIELDS}
_SMART_CHARGING_FIELDS = ("site_id", "max_current_a", "phases", "priority", "enabled")
# PATCH fields that are station credentials (docs/security.md, Roles)
_CREDENTIAL_FIELDS = ("password", "security_profile")
CREDENTIAL_ROLES = ("admin", "installer")


async def station_response(ctx: ApiContext, station: Station, *, password: str | None = None) -> dict[str, Any]:
    """The station merged with its ownership, the sessions processor's `station_status`
    and the stations processor's `station_ops` (ADR 016 §2); the log's upload slot is
    read only when there is a log transfer to show."""
    owner, doc, ops_doc = await asyncio.gather(
        ctx.ownership.get_owner(station.id),
        ctx.documents.get_doc(kinds.STATION_STATUS, station.id),
        ctx.documents.get_doc(kinds.STATION_OPS, station.id),
    )
    return await _merged(ctx, station, owner, doc, ops_doc, password)


async def stations_response(ctx: ApiContext, stations: list[Station]) -> list[dict[str, Any]]:
    """`station_response` of many stations, their documents read with one `get_docs` per kind."""
    ids = [s.id for s in stations]
    if not ids:
        return []
    owners, docs, ops_docs = await asyncio.gather(
        asyncio.gather(*(ctx.ownership.get_owner(i) for i in ids)),
        ctx.documents.get_docs(kinds.STATION_STATUS, ids),
        ctx.documents.get_docs(kinds.STATION_OPS, ids),
    )
    return list(await asyncio.gather(*(
        _merged(ctx, s, owner, docs.get(s.id), ops_docs.get(s.id), None) for s, owner in zip(stations, owners)
    )))


async def _merged(
    ctx: ApiContext, station: Station, owner: Owner | None, doc: dict[str, Any] | None,
    ops_doc: dict[str, Any] | None, password: str | None,
) -> dict[str, Any]:
    ops = read_station_ops(station.id, ops_doc)
    upload = None
    if ops is not None and ops.log is not None:
        upload = await upload_of_log(ctx.documents, station.id, ops.log)
    return station_view(StationView(station, owner, _status(station.id, doc), password, ops, upload))


def _status(station_id: str, doc: dict[str, Any] | None) -> StationStatus | None:
    """The sessions processor's view of the station; an unreadable document is logged and
    the station shown without it (its registration is still the operator's to see)."""
    if doc is None:
        return None
    try:
        return station_status_from_doc(doc)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("station %r: status document cannot be read: %r", station_id, exc)
        return None


async def hash_station_password(ctx: ApiContext, station_id: str, password: str) -> tuple[str, str]:
    slow = await asyncio.to_thread(passwords.hash_password, password)
    return slow, passwords.fingerprint(ctx.pepper, station_id, password)


def _common(v: Validator) -> dict[str, Any]:
    values = {
        "site_id": v.string("site_id", nullable=True, max_len=64),
        "tariff_id": v.string("tariff_id", nullable=True, max_len=64),
        "max_current_a": v.number("max_current_a", nullable=True, positive=True, maximum=10_000),
        "phases": v.integer("phases", nullable=True, choices=(1, 3)),
        "priority": v.integer("priority", minimum=-1000, maximum=1000),
        "enabled": v.boolean("enabled"),
        "password": v.string("password", min_len=passwords.MIN_LENGTH, max_len=passwords.MAX_LENGTH),
        "security_profile": v.integer("security_profile", choices=(1, 2, 3)),
        "ws_ping_interval_s": v.number("ws_ping_interval_s", nullable=True, minimum=0, maximum=86_400),
        "cost_messages": v.boolean("cost_messages"),  # ADR 018 §6: the 1.6 pricing extension
    }
    return {k: val for k, val in values.items() if val is not MISSING}


async def _check_tariff(ctx: ApiContext, tariff_id: str | None) -> None:
    if tariff_id is not None and await ctx.documents.get_doc(kinds.TARIFF, tariff_id) is None:
        raise validation_error({"tariff_id": f"unknown tariff {tariff_id!r}"})


def _store_value(name: str, value: Any) -> Any:
    return float(value) if name in ("max_current_a", "ws_ping_interval_s") and value is not None else value


async def revoke(ctx: ApiContext, station_id: str, reason: str) -> None:
    """Every gateway forgets the station's cached credentials; the one holding its socket
    closes it (ADR 017). The change is stored before (revoking first would let a station
    that reconnects at once read the old record). A bus failure here is a 503 with the
    change stored: repeating a PATCH revokes again; after a DELETE the gateways' caches
    expire on their own and the socket stays open until the station reconnects."""
    await broadcast_revoke(ctx.bus, station_id, reason=reason, close=True, issuer="api", clock=ctx.clock)
    log.info("station revoked station=%r reason=%s", station_id, reason)


async def refresh(ctx: ApiContext, station_id: str, reason: str) -> None:
    """Every gateway forgets what it cached of the station (a negative entry too) and
    re-reads it at the next attempt; no socket is closed (`_Revoke` with close false)."""
    await broadcast_revoke(ctx.bus, station_id, reason=reason, close=False, issuer="api", clock=ctx.clock)


async def create_station(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_json(request)
    v = Validator(body, allowed=_CREATE)
    station_id = v.data.get("id", MISSING)
    if station_id is MISSING:
        v.fail("id", "is required")
    elif (why := check_station_id(station_id)) is not None:
        v.fail("id", why)
    values = _common(v)
    v.done()
    await _check_tariff(ctx, values.get("tariff_id"))
    if await ctx.stations.get_station(station_id) is not None:
        raise conflict(f"station {station_id!r} already exists")
    values.setdefault("security_profile", ctx.settings.default_security_profile)
    # a profile-3 station authenticates with its certificate: no password unless one is given
    generated = "password" not in values and values["security_profile"] != 3
    password: str | None = passwords.generate_password() if generated else values.pop("password", None)
    slow, fingerprint = ("", "") if password is None else await hash_station_password(ctx, station_id, password)
    station = Station(
        id=station_id,
        password_hash=slow,
        password_fingerprint=fingerprint,
        created_at=ctx.clock(),
        **{k: _store_value(k, val) for k, val in values.items() if k != "password"},
    )
    if await ctx.stations.get_station(station_id) is not None:  # lost a race while hashing
        raise conflict(f"station {station_id!r} already exists")
    await ctx.stations.put_station(station)
    log.info("station created station=%r site=%r", station_id, station.site_id)
    # Not announced to the gateways: one that refused the id a moment ago caches "unknown"
    # for 2 s only, and announcing every creation would put a record on every command
    # partition per station (bulk provisioning of 10,000 stations x 64 partitions).
    # a generated password is shown once; only its hash is kept
    out = await station_response(ctx, station, password=password if generated else None)
    if station.site_id:
        await ctx.on_site_changed(station.site_id)
    return web.json_response(out, status=201, headers={"Location": f"{API_PREFIX}/stations/{station_id}"})


async def list_stations(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    limit = query_limit(request)
    site_id = request.query.get("site_id") or None
    stations = await ctx.stations.list_stations(site_id=site_id, limit=limit)
    return web.json_response({"items": await stations_response(ctx, stations[:limit])})


async def _load(ctx: ApiContext, station_id: str) -> Station:
    station = await ctx.stations.get_station(station_id)
    if station is None:
        raise not_found("station", station_id)
    return station


async def get_station(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    return web.json_response(await station_response(ctx, station))


async def patch_station(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    body = await read_json(request)
    v = Validator(body, allowed=_PATCH)
    values = _common(v)
    v.done()
    if "tariff_id" in values:
        await _check_tariff(ctx, values["tariff_id"])
    credentials = [f for f in _CREDENTIAL_FIELDS if f in values]
    if credentials and role_of(request) not in CREDENTIAL_ROLES:
        raise ApiError(
            403, f"role {role_of(request)} may not change {credentials[0]} (admin or installer only)",
            details={f: "admin or installer only" for f in credentials},
        )
    profile = values.get("security_profile")
    if profile is not None and profile < station_security_profile(station) and role_of(request) != "admin":
        raise ApiError(403, f"role {role_of(request)} may not lower a station's security profile (admin only)")
    changes: dict[str, Any] = {k: _store_value(k, val) for k, val in values.items() if k != "password"}
    if "password" in values:
        # an operator reset: immediate; a rotation under way is abandoned
        changes["password_hash"], changes["password_fingerprint"] = await hash_station_password(
            ctx, station.id, values["password"]
        )
        changes["pending_password_hash"] = changes["pending_password_fingerprint"] = ""
    if profile is not None:
        changes["pending_security_profile"] = None  # the operator set the profile outright
    updated = dataclasses.replace(station, **changes)
    if station_security_profile(updated) < 3 and not updated.password_hash:
        raise validation_error({"password": "is required for a station below security profile 3 (it has none)"})
    await ctx.stations.put_station(updated)
    log.info("station updated station=%r fields=%s", station.id, ",".join(sorted(values)))
    reason = _revocation(station, updated, values)
    if reason is not None:
        await revoke(ctx, station.id, reason)
    elif (why := _refresh_reason(station, updated)) is not None:
        await refresh(ctx, station.id, why)
    if any(getattr(station, f) != getattr(updated, f) for f in _SMART_CHARGING_FIELDS):
        for site in sorted({station.site_id or "", updated.site_id or ""} - {""}):
            await ctx.on_site_changed(site)
    return web.json_response(await station_response(ctx, updated))


def _revocation(before: Station, after: Station, values: dict[str, Any]) -> str | None:
    """Why a PATCH revokes the station's credentials, or None: disabled, a password set,
    a profile changed (raising makes the current connection too weak; lowering changes
    what gateways accept, so their caches must go too)."""
    if values.get("enabled") is False:
        return "disabled"
    if "password" in values:
        return "password"
    if "security_profile" in values and station_security_profile(before) != station_security_profile(after):
        return "security_profile"
    return None


def _refresh_reason(before: Station, after: Station) -> str | None:
    """Why a PATCH that closes nothing must still reach every gateway, or None: a field
    the gateways check changed (their cached record would refuse a re-enabled station
    for up to 10 s, or keep the old ping period), or a pending value was dropped (no
    gateway may act on it)."""
    if before.enabled != after.enabled:
        return "enabled"
    if before.ws_ping_interval_s != after.ws_ping_interval_s:
        return "ws_ping_interval_s"
    if (before.pending_security_profile, before.pending_password_hash) != (
        after.pending_security_profile, after.pending_password_hash
    ):
        return "pending_dropped"
    return None


async def delete_station(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station = await _load(ctx, request.match_info["id"])
    await ctx.stations.delete_station(station.id)
    log.info("station deleted station=%r", station.id)
    await revoke(ctx, station.id, "deleted")
    if station.site_id:
        await ctx.on_site_changed(station.site_id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/stations", create_station)
    app.router.add_get(f"{API_PREFIX}/stations", list_stations)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}", get_station)
    app.router.add_patch(f"{API_PREFIX}/stations/{{id}}", patch_station)
    app.router.add_delete(f"{API_PREFIX}/stations/{{id}}", delete_station)
