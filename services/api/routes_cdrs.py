"""Charge detail records (documents of kind "cdr", parent = session id), also as OCPI 2.2.1.

The billing worker's bookkeeping in a CDR document (`exact`: the unrounded breakdown;
`published`: its outbox marker) stays internal; `?format=ocpi` rebuilds the priced
`Cdr` from the document with the billing adapters and renders it with the domain's
`cdr_to_ocpi`.

Held CDRs (docs/billing-holds.md) are shown like any other, with `hold_reasons`,
`clock_suspect` and `held: true`; `?held=true|false` lists only those (among the
newest CSMS CDRs scanned, at most 1000). A held CDR is not exported: its OCPI form is
a 409 naming the reasons.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ctx_of
from services.api.errors import ApiError, not_found, validation_error
from services.api.validation import MAX_LIMIT, query_limit
from services.billing.documents import cdr_from_doc, hold_reasons_of
from services.billing.domain import cdr_to_ocpi

__all__ = ["setup"]

log = logging.getLogger("csms.api.cdrs")

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_PARTY_RE = re.compile(r"^[A-Z0-9]{3}$")
_INTERNAL = ("exact", "published")


def cdr_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The REST shape; CDRs stored before holds existed read as not held."""
    out = {k: v for k, v in doc.items() if k not in _INTERNAL}
    reasons = list(hold_reasons_of(doc))
    out["hold_reasons"] = reasons
    out["held"] = bool(reasons)
    out["clock_suspect"] = bool(doc.get("clock_suspect", False))
    return out


def _held_filter(request: web.Request) -> bool | None:
    raw = request.query.get("held")
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false"):
        raise validation_error({"held": "must be true or false"})
    return raw.lower() == "true"


async def list_cdrs(request: web.Request) -> web.Response:
    limit = query_limit(request)
    held = _held_filter(request)
    session_id = request.query.get("session_id") or None
    # With a filter, scan more than `limit` so that `limit` matches can be found.
    scan = limit if held is None else MAX_LIMIT
    docs = await ctx_of(request).rt.store.list_docs("cdr", parent=session_id, limit=scan)
    if session_id:
        docs = sorted(docs, key=lambda d: int(d.get("version") or 0))
    if held is not None:
        docs = [d for d in docs if bool(hold_reasons_of(d)) == held]
    return web.json_response({"items": [cdr_view(d) for d in docs[:limit]]})


def _ocpi_party(request: web.Request) -> tuple[str, str]:
    extra: dict[str, Any] = ctx_of(request).rt.settings.extra
    country = request.query.get("country_code") or str(extra.get("ocpi_country_code", "DE"))
    party = request.query.get("party_id") or str(extra.get("ocpi_party_id", "CSM"))
    errors = {}
    if not _COUNTRY_RE.match(country):
        errors["country_code"] = "must be an ISO 3166-1 alpha-2 code (2 uppercase letters)"
    if not _PARTY_RE.match(party):
        errors["party_id"] = "must be 3 uppercase letters or digits"
    if errors:
        raise validation_error(errors)
    return country, party


async def get_cdr(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    cdr_id = request.match_info["id"]
    fmt = request.query.get("format", "csms")
    if fmt not in ("csms", "ocpi"):
        raise validation_error({"format": "must be csms or ocpi"})
    doc = await ctx.rt.store.get_doc("cdr", cdr_id)
    if doc is None:
        raise not_found("CDR", cdr_id)
    if fmt == "csms":
        return web.json_response(cdr_view(doc))
    held = hold_reasons_of(doc)
    if held:
        raise ApiError(
            409,
            f"CDR {cdr_id!r} is held from export ({', '.join(held)}): see docs/billing-holds.md",
            body={"hold_reasons": list(held)},
        )
    country, party = _ocpi_party(request)
    session: dict[str, Any] = {}
    if not doc.get("id_token"):
        session = await ctx.rt.store.get_doc("session", str(doc.get("session_id") or "")) or {}
    try:
        cdr = cdr_from_doc(doc)
        out = cdr_to_ocpi(
            cdr,
            country_code=country,
            party_id=party,
            token_uid=str(doc.get("id_token") or session.get("id_token") or "UNKNOWN"),
            connector_id=str(doc.get("connector_id") or session.get("connector_id") or 1),
        )
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        log.error("CDR %s cannot be rendered as OCPI: %r", cdr_id, exc)
        raise ApiError(500, f"CDR {cdr_id!r} cannot be rendered as OCPI") from None
    return web.json_response(out)


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/cdrs", list_cdrs)
    app.router.add_get(f"{API_PREFIX}/cdrs/{{id}}", get_cdr)
