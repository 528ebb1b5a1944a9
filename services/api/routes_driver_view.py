"""The driver's view (ADR 018, issue 10): a token's charging sessions, so a support desk
can answer "where did my charge go".

GET /api/v1/tokens/{id}/sessions?limit=&status= lists the sessions the id token started
(or a remote start issued for it), newest first (by start, else first receive time),
each as GET /api/v1/sessions/{id} shows it (routes_sessions' view: `session_view` with its
cost and the last cost update sent to the station). The sessions
processor keeps the index: one TOKEN_SESSION document per session (parent = the id
token), written when the session opens and when its token, start or status changes. The
session documents decide: an index entry whose session now names another token (a lower
sequence number brought a different one) is left out, and the status filter runs on
the sessions. A token deleted from the store still shows its sessions; 404 only when
there is neither the token nor any session for it. At most `MAX_LIMIT` index entries
(the most recently written) are read per request.

The token's reservations are `GET /api/v1/tokens/{id}/reservations`
(services/api/routes_reservations.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.costs import TariffCache
from services.api.errors import not_found, validation_error
from services.api.openapi_parts import NULL_INT, NULL_TS, R400, R401, R404, TS, json_content, path_param, query, ref
from services.api.routes_sessions import _view as session_item
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT
from services.common import kinds
from services.sessions.documents import session_from_doc
from services.sessions.domain import Session

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_TAGS", "OPENAPI_VIEWS", "STATUSES", "setup"]

log = logging.getLogger("csms.api.driver_view")

STATUSES = ("active", "completed", "abandoned")
MAX_TOKEN_LENGTH = 255  # longer than any OCPP id token (2.0.1: 36, 1.6: 20)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _read(doc: dict[str, Any]) -> Session | None:
    try:
        return session_from_doc(doc)
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        log.error("session document %s cannot be read: %r", doc.get("id"), exc)
        return None


def _newest_first(s: Session) -> tuple[datetime, str]:
    return (s.started_at or s.received_at or _EPOCH, s.id)


async def token_sessions(
    ctx: ApiContext, id_token: str, *, status: str | None, limit: int
) -> list[tuple[Session, dict[str, Any]]] | None:
    """The token's sessions with their documents, newest first, at most `limit`; None
    when neither the token nor any session of it is known."""
    entries = await ctx.documents.list_docs(kinds.TOKEN_SESSION, parent=id_token, limit=MAX_LIMIT)
    ids = sorted({str(e.get("session_id") or "") for e in entries} - {""})
    docs = await ctx.documents.get_docs(kinds.SESSION, ids) if ids else {}
    found = [(s, d) for d in docs.values() if (s := _read(d)) is not None and s.id_token == id_token]
    if not found and await ctx.tokens.get_token(id_token) is None:
        return None
    chosen = [(s, d) for s, d in found if status is None or s.status == status]
    chosen.sort(key=lambda sd: _newest_first(sd[0]), reverse=True)
    return chosen[:limit]


async def list_token_sessions(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    id_token = request.match_info["id"]
    bad: dict[str, str] = {}
    if not id_token or len(id_token) > MAX_TOKEN_LENGTH:
        bad["id"] = f"must be an id token of 1 to {MAX_TOKEN_LENGTH} characters"
    raw_limit = request.query.get("limit") or ""
    limit = DEFAULT_LIMIT
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            bad["limit"] = f"must be an integer from 1 to {MAX_LIMIT}"
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        bad["status"] = f"must be one of {', '.join(STATUSES)}"
    if bad:
        raise validation_error(bad)
    found = await token_sessions(ctx, id_token, status=status, limit=limit)
    if found is None:
        raise not_found("token", id_token)
    tariffs = TariffCache(ctx.pricing)
    updates = await ctx.documents.get_docs(kinds.COST_UPDATE, [s.id for s, _ in found]) if found else {}
    # the view GET /api/v1/sessions/{id} answers (its cost, the last cost sent to the station)
    items = [await session_item(ctx, s, doc, tariffs, updates.get(s.id)) for s, doc in found]
    return web.json_response({"items": items})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/tokens/{{id}}/sessions", list_token_sessions)


# -- the OpenAPI part of these routes (merged by services/api/openapi_drivers.py) --------
def _obj(required: list[str], properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "object", "required": required, "additionalProperties": False, "properties": properties,
            "description": description}


OPENAPI_TAGS: tuple[str, ...] = ("tokens",)
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/tokens/{id}/sessions": {
        "parameters": [path_param("id", "The id token.")],
        "get": {
            "summary": "A token's charging sessions, newest first (the driver's view)",
            "operationId": "listTokenSessions",
            "tags": ["tokens"],
            "description": (
                "The sessions the id token started (or a remote start issued for it), newest first by start, "
                "each as GET /api/v1/sessions/{id} shows it (with its cost). A token deleted since still shows "
                "its sessions; 404 only when neither the token nor any session of it exists. The token's "
                "reservations: GET /api/v1/tokens/{id}/reservations."
            ),
            "parameters": [
                query("status", "Only sessions with this status.", {"type": "string", "enum": list(STATUSES)}),
                query("limit", f"Maximum number of items (default {DEFAULT_LIMIT}).",
                      {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
            ],
            "responses": {
                "200": json_content(ref("SessionList"), "The token's sessions."),
                "400": R400,
                "401": R401,
                "404": R404,
            },
        },
    },
}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "EvChargingNeeds": _obj(
        ["departure_time", "requested_energy_transfer", "energy_amount_wh", "ev_min_current_a", "ev_max_current_a",
         "ev_max_voltage_v", "dc", "status", "received_at"],
        {
            "departure_time": {**NULL_TS, "description": "When the driver wants to leave; null: not given."},
            "requested_energy_transfer": {"type": "string", "description": "AC_single_phase, AC_three_phase, DC, ..."},
            "energy_amount_wh": {**NULL_INT, "description": "Energy the EV asks for; null: not given."},
            "ev_min_current_a": {**NULL_INT, "description": "AC only."},
            "ev_max_current_a": NULL_INT,
            "ev_max_voltage_v": NULL_INT,
            "dc": {"oneOf": [_obj(
                ["ev_max_power_w", "state_of_charge", "ev_energy_capacity_wh", "full_soc", "bulk_soc"],
                {"ev_max_power_w": NULL_INT, "state_of_charge": {**NULL_INT, "description": "Percent."},
                 "ev_energy_capacity_wh": NULL_INT, "full_soc": NULL_INT, "bulk_soc": NULL_INT},
                "The DC parameters beyond current and voltage (null: not given).",
            ), {"type": "null"}]},
            "status": {"type": "string", "description": "What the CSMS answered (Accepted, Rejected, Processing)."},
            "received_at": TS,
        },
        "The latest NotifyEVChargingNeeds of the session's EVSE (OCPP 2.0.1 K15).",
    ),
    "EvChargingSchedule": _obj(
        ["time_base", "charging_rate_unit", "periods", "truncated", "received_at"],
        {
            "time_base": {**NULL_TS, "description": "The periods' start_period counts from here."},
            "charging_rate_unit": {"type": "string", "description": "A or W."},
            "periods": {"type": "array", "items": _obj(
                ["start_period", "limit", "number_phases"],
                {"start_period": {"type": "integer", "description": "Seconds from time_base."},
                 "limit": {"type": "number"}, "number_phases": NULL_INT},
                "One period of the schedule the EV chose.",
            )},
            "truncated": {"type": "boolean", "description": "The EV sent more periods than the session keeps (48)."},
            "received_at": TS,
        },
        "The latest NotifyEVChargingSchedule of the session's EVSE (OCPP 2.0.1 K17).",
    ),
}
OPENAPI_VIEWS: tuple[str, ...] = ("EvChargingNeeds", "EvChargingSchedule")
