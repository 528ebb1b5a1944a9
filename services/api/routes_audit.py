"""`GET /api/v1/audit`: the audit log, newest first, filtered, paged across days (admin only).

    GET /api/v1/audit?actor=&action=&target=&result=&since=&until=&limit=&cursor=
      -> {"items": [AuditEntry...], "next": <cursor or null>}

Filters are exact matches (`action` is "<METHOD> <route template>"); `since` (inclusive)
and `until` (exclusive) are ISO 8601 times. A page looks at up to 31 days; a sparse log
can answer a short (even empty) page with a `next` cursor: follow it until `next` is null.
Entry fields are those of proto/csms/audit/v1/audit.proto (`at` in the OCPP time form).
"""

from __future__ import annotations

from aiohttp import web

from services.api.audit import AuditFilter, AuditLog, entry_to_doc, is_cursor
from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, query_error
from services.api.query import query_limit_strict, query_time

__all__ = ["setup"]

RESULTS = ("ok", "denied", "unauthenticated", "throttled", "error")
_MAX_FILTER = 300


def _log(ctx: ApiContext) -> AuditLog:
    if ctx.audit is None:
        raise ApiError(503, "the audit log is not configured")
    return ctx.audit


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > _MAX_FILTER:
        raise query_error({name: f"must be at most {_MAX_FILTER} characters"})
    return value


async def list_audit(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    result = _text(request, "result")
    if result is not None and result not in RESULTS:
        raise query_error({"result": "must be one of " + ", ".join(RESULTS)})
    cursor = _text(request, "cursor")
    if cursor is not None and not is_cursor(cursor):
        raise query_error({"cursor": "not a cursor this API returned"})
    flt = AuditFilter(
        actor=_text(request, "actor"), action=_text(request, "action"), target=_text(request, "target"),
        result=result, since=query_time(request, "since"), until=query_time(request, "until"),
    )
    items, nxt = await _log(ctx).list(flt, limit=query_limit_strict(request), cursor=cursor)
    return web.json_response({"items": [entry_to_doc(e) for e in items], "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/audit", list_audit)
