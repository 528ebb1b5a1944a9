"""Bearer-key authentication for /api/v1/* (the OpenAPI document is public)."""

from __future__ import annotations

import hmac
import logging
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.api.errors import ApiError

__all__ = ["API_PREFIX", "PUBLIC_PATHS", "auth_middleware", "check_bearer"]

log = logging.getLogger("csms.api.auth")

API_PREFIX = "/api/v1"
PUBLIC_PATHS = frozenset({f"{API_PREFIX}/openapi.json"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="csms"'}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_bearer(header: str | None, api_key: str | None) -> bool:
    """Constant-time comparison; with no key configured nothing is accepted (fail closed)."""
    if not api_key or not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def auth_middleware(api_key: str | None) -> Middleware:
    if not api_key:
        log.error("no API key configured (CSMS_API_KEY): every /api/v1 request will be refused")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if (path == API_PREFIX or path.startswith(API_PREFIX + "/")) and path not in PUBLIC_PATHS:
            if not check_bearer(request.headers.get("Authorization"), api_key):
                raise ApiError(401, "missing or invalid API key (Authorization: Bearer <key>)", headers=_CHALLENGE)
        return await handler(request)

    return middleware
