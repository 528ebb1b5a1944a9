"""The aiohttp application: middlewares (metrics, JSON errors, bearer auth) and routes."""

from __future__ import annotations

import json
import logging
import time
from typing import Awaitable, Callable

from aiohttp import web

from services.api import (
    routes_availability,
    routes_campaigns,
    routes_cdrs,
    routes_commands,
    routes_dead_letters,
    routes_device_model,
    routes_history,
    routes_operations,
    routes_sessions,
    routes_sites,
    routes_stations,
    routes_tariffs,
    routes_tokens,
)
from services.api.auth import API_PREFIX, auth_middleware
from services.api.context import CTX, ApiContext
from services.api.errors import ApiError
from services.api.metrics import REQUEST_SECONDS, REQUESTS
from services.api.openapi import openapi_document
from services.common.errors import BusUnavailable, StoreUnavailable

__all__ = ["create_app", "json_error"]

log = logging.getLogger("csms.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_of(request)
        REQUESTS.labels(request.method, route, str(status)).inc()
        REQUEST_SECONDS.labels(route).observe(time.perf_counter() - start)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.to_json(), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return json_error(exc.status, {"error": exc.reason}, headers)
    except BusUnavailable as exc:
        log.warning("bus unavailable on %s %s: %s", request.method, request.path, exc)
        return json_error(503, {"error": "message bus unavailable, retry later"}, {"Retry-After": "1"})
    except StoreUnavailable as exc:
        log.warning("store unavailable on %s %s: %s", request.method, request.path, exc)
        return json_error(503, {"error": "store unavailable, retry later"}, {"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, {"error": "internal error"})


_OPENAPI_TEXT = json.dumps(openapi_document(), separators=(",", ":"))


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(text=_OPENAPI_TEXT, content_type="application/json")


def create_app(ctx: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, auth_middleware(ctx.settings.api_key)],
        client_max_size=1 << 20,
    )
    app[CTX] = ctx
    app.router.add_get(f"{API_PREFIX}/openapi.json", _openapi)
    for module in (
        routes_stations,
        routes_tokens,
        routes_sessions,
        routes_commands,
        routes_tariffs,
        routes_cdrs,
        routes_sites,
        routes_dead_letters,
        routes_history,
        routes_operations,
        routes_availability,
        routes_device_model,
        routes_campaigns,
    ):
        module.setup(app)
    return app
