"""The aiohttp application: middlewares (metrics, JSON errors, access: authentication, roles,
audit, throttling — services/api/auth.py) and routes.

At start every /api/v1 route without a rule in services/api/roles.py is logged once (it
is admin-only until it gets one), and an hourly task prunes audit entries older than
CSMS_AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from services.api import (
    roles,
    routes_api_keys,
    routes_audit,
    routes_availability,
    routes_campaigns,
    routes_cdrs,
    routes_charging_profiles,
    routes_commands,
    routes_customer_information,
    routes_dead_letters,
    routes_device_model,
    routes_display_messages,
    routes_driver_view,
    routes_history,
    routes_local_lists,
    routes_operations,
    routes_reservations,
    routes_security,
    routes_sessions,
    routes_sites,
    routes_stations,
    routes_tariffs,
    routes_tokens,
)
from services.api.audit import AuditLog, prune
from services.api.auth import API_PREFIX, PUBLIC_PATHS, Access, access_middleware
from services.api.context import CTX, ApiContext
from services.api.errors import ApiError
from services.api.keys import KeyRing
from services.api.metrics import REQUEST_SECONDS, REQUESTS
from services.api.openapi import openapi_document
from services.api.throttle import FailureCounter, TrustedProxies
from services.common.errors import BusUnavailable, StoreUnavailable

__all__ = ["access_of", "create_app", "json_error"]

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
        log.warning("bus unavailable on %s %r: %s", request.method, request.path, exc)
        return json_error(503, {"error": "message bus unavailable, retry later"}, {"Retry-After": "1"})
    except StoreUnavailable as exc:
        log.warning("store unavailable on %s %r: %s", request.method, request.path, exc)
        return json_error(503, {"error": "store unavailable, retry later"}, {"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error on %s %r", request.method, request.path)
        return json_error(500, {"error": "internal error"})


_OPENAPI_TEXT = json.dumps(openapi_document(), separators=(",", ":"))


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(text=_OPENAPI_TEXT, content_type="application/json")


AUDIT_PRUNE_EVERY_S = 3600.0


def access_of(ctx: ApiContext) -> Access:
    """The access checks of `ctx`, filling in the key ring and audit log when the context
    was built without them (tests that build their own context)."""
    if ctx.keys is None:
        ctx.keys = KeyRing(ctx.documents, ctx.pepper, ctx.clock)
    if ctx.audit is None:
        ctx.audit = AuditLog(ctx.documents, ctx.bus.publish, ctx.clock, retention_days=ctx.settings.audit_retention_days)
    return Access(
        bootstrap_key=ctx.settings.api_key,
        keys=ctx.keys,
        audit=ctx.audit,
        oidc=ctx.oidc,
        failures=FailureCounter(ctx.settings.api_auth_fail_limit),
        trusted=TrustedProxies.from_cidrs(ctx.settings.trusted_proxies),
    )


def _log_unruled(app: web.Application) -> None:
    routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]
    for method, template in roles.unruled_routes(routes, PUBLIC_PATHS):
        log.warning("route %s %s has no rule in services/api/roles.py: admin only", method, template)


async def _audit_pruner(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]

    async def run() -> None:
        while True:
            try:
                await prune(ctx.documents, ctx.clock, ctx.settings.audit_retention_days)
            except Exception as exc:  # noqa: BLE001 - the next hour tries again
                log.warning("audit prune failed: %s", exc)
            await asyncio.sleep(AUDIT_PRUNE_EVERY_S)

    task = asyncio.create_task(run(), name="audit-prune") if ctx.settings.audit_retention_days > 0 else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def create_app(ctx: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, access_middleware(access_of(ctx))],
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
        routes_security,
        routes_api_keys,
        routes_audit,
        routes_local_lists,
        routes_reservations,
        routes_charging_profiles,
        routes_display_messages,
        routes_customer_information,
        routes_driver_view,
    ):
        module.setup(app)
    _log_unruled(app)
    app.cleanup_ctx.append(_audit_pruner)
    return app
