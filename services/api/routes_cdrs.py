"""Charge detail records (documents of kind "cdr", parent = session id), also as OCPI 2.2.1.

A CDR is read from its document with billing's mapper (`cdr_from_doc`: the priced `Cdr`)
and shown by `cdr_view`; the billing worker's bookkeeping (`exact`, `published`,
`session_version`, `inputs_fingerprint`) stays internal. `?format=ocpi` renders the same
`Cdr` with billing's `cdr_to_ocpi` (services.billing.codec).

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
from services.api.views import CdrView, cdr_view
from services.billing.documents import cdr_from_doc, hold_reasons_of
from services.billing.codec import cdr_to_ocpi
from services.billing.domain import Cdr
from services.common import kinds
from services.sessions.documents import session_from_doc

__all__ = ["setup"]

log = logging.getLogger("csms.api.cdrs")

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_PARTY_RE = re.compile(r"^[A-Z0-9]{3}$")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cdr(cdr_id: str, doc: dict[str, Any]) -> Cdr:
    try:
        return cdr_from_doc(doc)
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        log.error("CDR %s cannot be read: %r", cdr_id, exc)
        raise ApiError(500, f"CDR {cdr_id!r} cannot be read") from None


def cdr_view_of(doc: dict[str, Any]) -> CdrView:
    """The view of a stored CDR document; CDRs stored before holds existed read as not held."""
    cdr = _cdr(str(doc.get("id")), doc)
    return CdrView(
        cdr=cdr,
        currency=_str(doc.get("currency")) or cdr.total_cost.currency,
        hold_reasons=hold_reasons_of(doc),
        clock_suspect=doc.get("clock_suspect") is True,
        transaction_id=_str(doc.get("transaction_id")),
        id_token=_str(doc.get("id_token")),
        evse_id=_int(doc.get("evse_id")),
        connector_id=_int(doc.get("connector_id")),
    )


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
    docs = await ctx_of(request).documents.list_docs(kinds.CDR, parent=session_id, limit=scan)
    if session_id:
        docs = sorted(docs, key=lambda d: int(d.get("version") or 0))
    if held is not None:
        docs = [d for d in docs if bool(hold_reasons_of(d)) == held]
    return web.json_response({"items": [cdr_view(cdr_view_of(d)) for d in docs[:limit]]})


def _ocpi_party(request: web.Request) -> tuple[str, str]:
    settings = ctx_of(request).settings
    country = request.query.get("country_code") or settings.ocpi_country_code
    party = request.query.get("party_id") or settings.ocpi_party_id
    errors = {}
    if not _COUNTRY_RE.fullmatch(country):
        errors["country_code"] = "must be an ISO 3166-1 alpha-2 code (2 uppercase letters)"
    if not _PARTY_RE.fullmatch(party):
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
    doc = await ctx.documents.get_doc(kinds.CDR, cdr_id)
    if doc is None:
        raise not_found("CDR", cdr_id)
    view = cdr_view_of(doc)
    if fmt == "csms":
        return web.json_response(cdr_view(view))
    if view.hold_reasons:
        raise ApiError(
            409,
            f"CDR {cdr_id!r} is held from export ({', '.join(view.hold_reasons)}): see docs/billing-holds.md",
            body={"hold_reasons": list(view.hold_reasons)},
        )
    country, party = _ocpi_party(request)
    token, connector = view.id_token, view.connector_id
    if not token:  # a CDR stored before it carried the session's token: the session has it
        session_doc = await ctx.documents.get_doc(kinds.SESSION, view.cdr.session_id)
        if session_doc is not None:
            session = session_from_doc(session_doc)
            token, connector = session.id_token, connector or session.connector_id
    try:
        out = cdr_to_ocpi(
            view.cdr,
            country_code=country,
            party_id=party,
            token_uid=token or "UNKNOWN",
            connector_id=str(connector or 1),
        )
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        log.error("CDR %s cannot be rendered as OCPI: %r", cdr_id, exc)
        raise ApiError(500, f"CDR {cdr_id!r} cannot be rendered as OCPI") from None
    return web.json_response(out)


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/cdrs", list_cdrs)
    app.router.add_get(f"{API_PREFIX}/cdrs/{{id}}", get_cdr)
