"""Tariffs: validated by the billing domain, stored as documents of kind "tariff" (billing's
shape: `services.billing.documents.tariff_from_doc` reads them), shown by `tariff_view`.

Money is sent as decimal strings ("0.30"); JSON numbers are read as exact decimals
from their text (never through float). At most one tariff is the default: marking
one clears the flag on the others.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, conflict, not_found
from services.api.validation import MAX_LIMIT, check_resource_id, query_limit, read_json
from services.api.views import tariff_view
from services.billing.documents import tariff_from_doc
from services.billing.domain import Tariff, TariffError
from services.billing.codec import tariff_from_dict, tariff_to_dict
from services.common import kinds

__all__ = ["setup", "parse_tariff"]

log = logging.getLogger("csms.api.tariffs")

_KNOWN = {
    "id", "currency", "price_per_kwh", "price_per_minute", "session_fee", "idle_fee_per_minute",
    "idle_grace_minutes", "tax_rate", "bands", "min_price", "max_price", "timezone", "default",
}


def _field_of(message: str) -> str:
    """The field a TariffError message starts with ("bands[0]: ...", "tax_rate must ...")."""
    head = message.split(" ", 1)[0].rstrip(":")
    if head.split("[", 1)[0].split(".", 1)[0] in _KNOWN:
        return head
    if "currency" in message.lower():
        return "currency"
    return "tariff"


def parse_tariff(body: dict[str, Any]) -> Tariff:
    """The tariff a request body describes, or a 400 naming the field."""
    if "id" in body and (why := check_resource_id(body["id"])) is not None:
        raise ApiError(400, f"id {why}", details={"id": why})
    try:
        return tariff_from_dict(body)
    except TariffError as exc:
        message = str(exc)
        raise ApiError(400, message, details={_field_of(message): message}) from None


async def _clear_other_defaults(ctx: ApiContext, keep_id: str) -> None:
    for doc in await ctx.documents.list_docs(kinds.TARIFF, limit=MAX_LIMIT):
        if doc.get("default") is True and doc.get("id") != keep_id:
            await ctx.documents.put_doc(kinds.TARIFF, str(doc["id"]), {**doc, "default": False})
            log.info("tariff %r is no longer the default (now %r)", doc.get("id"), keep_id)


async def _save(ctx: ApiContext, tariff: Tariff) -> None:
    await ctx.documents.put_doc(kinds.TARIFF, tariff.id, tariff_to_dict(tariff))
    if tariff.default:
        await _clear_other_defaults(ctx, tariff.id)


async def create_tariff(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    tariff = parse_tariff(await read_json(request, parse_float=Decimal))
    if await ctx.documents.get_doc(kinds.TARIFF, tariff.id) is not None:
        raise conflict(f"tariff {tariff.id!r} already exists")
    await _save(ctx, tariff)
    log.info("tariff created %r (%r)", tariff.id, tariff.currency)
    return web.json_response(
        tariff_view(tariff), status=201, headers={"Location": f"{API_PREFIX}/tariffs/{tariff.id}"}
    )


async def list_tariffs(request: web.Request) -> web.Response:
    limit = query_limit(request)
    docs = await ctx_of(request).documents.list_docs(kinds.TARIFF, limit=limit)
    return web.json_response({"items": [tariff_view(tariff_from_doc(d)) for d in docs[:limit]]})


async def get_tariff(request: web.Request) -> web.Response:
    tariff_id = request.match_info["id"]
    doc = await ctx_of(request).documents.get_doc(kinds.TARIFF, tariff_id)
    if doc is None:
        raise not_found("tariff", tariff_id)
    return web.json_response(tariff_view(tariff_from_doc(doc)))


async def put_tariff(request: web.Request) -> web.Response:
    """Create or replace. CDRs already issued keep their prices; new ones use the new tariff."""
    ctx = ctx_of(request)
    tariff_id = request.match_info["id"]
    body = await read_json(request, parse_float=Decimal)
    if "id" in body and body["id"] != tariff_id:
        raise ApiError(400, "id must match the tariff in the path", details={"id": "must match the path"})
    tariff = parse_tariff({**body, "id": tariff_id})
    existed = await ctx.documents.get_doc(kinds.TARIFF, tariff_id) is not None
    await _save(ctx, tariff)
    log.info("tariff %r %s", tariff_id, "replaced" if existed else "created")
    return web.json_response(tariff_view(tariff), status=200 if existed else 201)


async def delete_tariff(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    tariff_id = request.match_info["id"]
    if not await ctx.documents.delete_doc(kinds.TARIFF, tariff_id):
        raise not_found("tariff", tariff_id)
    log.info("tariff deleted %r", tariff_id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/tariffs", create_tariff)
    app.router.add_get(f"{API_PREFIX}/tariffs", list_tariffs)
    app.router.add_get(f"{API_PREFIX}/tariffs/{{id}}", get_tariff)
    app.router.add_put(f"{API_PREFIX}/tariffs/{{id}}", put_tariff)
    app.router.add_delete(f"{API_PREFIX}/tariffs/{{id}}", delete_tariff)
