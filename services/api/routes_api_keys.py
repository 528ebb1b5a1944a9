"""Operator API keys over REST (admin only, services/api/roles.py) and `GET /whoami`.

    POST   /api/v1/api-keys        {name, role, expires_at?} -> 201 {id, name, role, key, created_at, expires_at}
    GET    /api/v1/api-keys        -> {"items": [...]} (never a key or its HMAC)
    DELETE /api/v1/api-keys/{id}   -> 200 the key with `revoked_at` (idempotent)
    GET    /api/v1/whoami          -> {"actor", "role"}

`key` is shown once, in the creation answer; the store keeps only its HMAC
(services/api/keys.py). A revoked key stops working at once on this pod and within
KEY_CACHE_S seconds on the others.
"""

from __future__ import annotations

from aiohttp import web

from services.api.auth import API_PREFIX, actor_of, role_of
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, not_found
from services.api.keys import MAX_NAME, KeyRing, check_name, create_key, key_view, list_keys, revoke_key
from services.api.roles import ALL_ROLES
from services.api.validation import MISSING, Validator, read_json
from services.common.timeutil import to_ocpp

__all__ = ["setup"]

def _ring(ctx: ApiContext) -> KeyRing:
    if ctx.keys is None:  # create_app always sets one; a context built by hand may not
        raise ApiError(503, "api keys are not configured")
    return ctx.keys


async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    v = Validator(await read_json(request), allowed=("name", "role", "expires_at"))
    name = v.string("name", required=True, max_len=MAX_NAME)
    if isinstance(name, str) and (why := check_name(name)) is not None:
        v.fail("name", why)
    role = v.string("role", required=True, choices=ALL_ROLES)
    expires_at = v.timestamp("expires_at", nullable=True)
    now = ctx.clock()
    if expires_at not in (MISSING, None) and expires_at <= now:
        v.fail("expires_at", "must be in the future")
    v.done()
    key, text = await create_key(
        ctx.documents, ctx.pepper, name=name, role=role, created_by=actor_of(request), now=now,
        expires_at=None if expires_at in (MISSING, None) else expires_at,
    )
    _ring(ctx).forget(key.id)
    body = {"id": key.id, "name": key.name, "role": key.role, "key": text, "created_at": to_ocpp(key.created_at),
            "expires_at": to_ocpp(key.expires_at) if key.expires_at else None}
    return web.json_response(body, status=201, headers={"Location": f"{API_PREFIX}/api-keys/{key.id}",
                                                         "Cache-Control": "no-store"})


async def list_all(request: web.Request) -> web.Response:
    keys = await list_keys(ctx_of(request).documents)
    return web.json_response({"items": [key_view(k) for k in keys]})


async def revoke(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    key_id = request.match_info["id"]
    key = await revoke_key(ctx.documents, key_id, ctx.clock())
    if key is None:
        raise not_found("api key", key_id)
    _ring(ctx).forget(key_id)
    return web.json_response(key_view(key))


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"actor": actor_of(request), "role": role_of(request)})


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/api-keys", create)
    app.router.add_get(f"{API_PREFIX}/api-keys", list_all)
    app.router.add_delete(f"{API_PREFIX}/api-keys/{{id}}", revoke)
    app.router.add_get(f"{API_PREFIX}/whoami", whoami)
