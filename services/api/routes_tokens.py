"""Authorization tokens (RFID / idTag / IdToken): /api/v1/tokens[/{id}]."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import conflict, not_found
from services.api.validation import MISSING, Validator, query_limit, read_json
from services.api.views import token_view
from services.common.store.port import Token
from services.stations.documents import bump_tokens_revision

__all__ = ["setup", "TOKEN_STATUSES"]

log = logging.getLogger("csms.api.tokens")

TOKEN_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
MAX_TOKEN_LEN = 36  # 2.0.1 IdToken (1.6 idTag: 20)
_FIELDS = {"id_token", "status", "expires_at", "group_id"}


def _fields(v: Validator) -> dict[str, Any]:
    status = v.string("status", choices=TOKEN_STATUSES)
    expires_at = v.timestamp("expires_at", nullable=True)
    group_id = v.string("group_id", nullable=True, max_len=MAX_TOKEN_LEN)
    return {
        "status": "Accepted" if status is MISSING else status,
        "expires_at": None if expires_at is MISSING else expires_at,
        "group_id": None if group_id is MISSING else group_id,
    }


async def create_token(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    v = Validator(await read_json(request), allowed=_FIELDS)
    id_token = v.string("id_token", required=True, max_len=MAX_TOKEN_LEN, printable=True)
    fields = _fields(v)
    v.done()
    if await ctx.tokens.get_token(id_token) is not None:
        raise conflict(f"token {id_token!r} already exists")
    token = Token(id_token=id_token, updated_at=ctx.clock(), **fields)
    await ctx.tokens.put_token(token)
    await bump_tokens_revision(ctx.documents, ctx.clock)  # local lists that follow the tokens (ADR 018 §2)
    log.info("token created status=%s", token.status)
    return web.json_response(
        token_view(token), status=201, headers={"Location": f"{API_PREFIX}/tokens/{id_token}"}
    )


async def list_tokens(request: web.Request) -> web.Response:
    limit = query_limit(request)
    tokens = await ctx_of(request).tokens.list_tokens(limit=limit)
    return web.json_response({"items": [token_view(t) for t in tokens[:limit]]})


async def _load(ctx: ApiContext, id_token: str) -> Token:
    token = await ctx.tokens.get_token(id_token)
    if token is None:
        raise not_found("token", id_token)
    return token


async def get_token(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return web.json_response(token_view(await _load(ctx, request.match_info["id"])))


async def put_token(request: web.Request) -> web.Response:
    """Create or replace (fields not given take their defaults)."""
    ctx = ctx_of(request)
    id_token = request.match_info["id"]
    v = Validator(await read_json(request), allowed=_FIELDS)
    if len(id_token) > MAX_TOKEN_LEN:
        v.fail("id_token", f"must be 1-{MAX_TOKEN_LEN} characters long")
    elif not id_token.isprintable():
        v.fail("id_token", "must not contain control characters")
    body_id = v.string("id_token", max_len=MAX_TOKEN_LEN)
    if body_id is not MISSING and body_id != id_token:
        v.fail("id_token", "must match the token in the path")
    fields = _fields(v)
    v.done()
    existed = await ctx.tokens.get_token(id_token) is not None
    token = Token(id_token=id_token, updated_at=ctx.clock(), **fields)
    await ctx.tokens.put_token(token)
    await bump_tokens_revision(ctx.documents, ctx.clock)
    log.info("token %s status=%s", "replaced" if existed else "created", token.status)
    return web.json_response(token_view(token), status=200 if existed else 201)


async def delete_token(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    token = await _load(ctx, request.match_info["id"])
    await ctx.tokens.delete_token(token.id_token)
    await bump_tokens_revision(ctx.documents, ctx.clock)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/tokens", create_token)
    app.router.add_get(f"{API_PREFIX}/tokens", list_tokens)
    app.router.add_get(f"{API_PREFIX}/tokens/{{id}}", get_token)
    app.router.add_put(f"{API_PREFIX}/tokens/{{id}}", put_token)
    app.router.add_delete(f"{API_PREFIX}/tokens/{{id}}", delete_token)
