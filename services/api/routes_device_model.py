"""A station's device model (ADR 016 §2, issue 9):

- POST /api/v1/stations/{id}/reports asks the station for a report: 2.0.1 GetBaseReport
  (`report_base`) or GetReport (`component_criteria` / `component_variables`), with a
  request id the API picks; 1.6 GetConfiguration (the variable names given as keys, none =
  all), whose answer is the whole report (its request id is derived from the command id,
  `configuration_request_id`, as the device model stage derives it). 202 {request_id,
  command_id, status, report}: `status` is the station's answer; offline 409, timeout 504.
- GET /api/v1/stations/{id}/reports/{request_id}: the report's assembly (REPORT document of
  the device model stage).
- GET /api/v1/stations/{id}/variables?component=&variable=&evse_id=&limit=&cursor=: the
  inventory (DEVICE_MODEL document), in key order, paged by an opaque cursor (the last
  item's key).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import uuid
from typing import Any

import orjson
from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import not_found, query_error
from services.api.query import query_limit_strict
from services.api.routes_commands import answered, send_and_wait
from services.api.validation import MISSING, Validator, read_json
from services.common import kinds
from services.common.timeutil import to_ocpp
from services.sessions.documents import station_status_from_doc
from services.stations.documents import inventory_from_doc, report_doc_id, report_from_doc
from services.stations.domain.device_model import (
    Entry,
    EntryKey,
    ReportAssembly,
    configuration_request_id,
    sort_key,
)

__all__ = ["REPORT_BASES", "COMPONENT_CRITERIA", "report_view", "setup", "variable_view"]

log = logging.getLogger("csms.api.device_model")

REPORT_BASES = ("ConfigurationInventory", "FullInventory", "SummaryInventory")
COMPONENT_CRITERIA = ("Active", "Available", "Enabled", "Problem")
_FIELDS = {"report_base", "component_criteria", "component_variables"}
_MAX_ITEMS = 100
_NAME = 50  # OCPP 2.0.1 identifierString / name lengths


def _request_id() -> int:
    return secrets.randbelow(2**31 - 2) + 1


def _ts(value: Any) -> str | None:
    return None if value is None else to_ocpp(value)


def report_view(r: ReportAssembly) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "status": r.status,
        "station_status": r.station_status,
        "parts": len(r.seen),
        "items": r.items,
        "requested_at": _ts(r.requested_at),
        "completed_at": _ts(r.completed_at),
    }


def variable_view(e: Entry) -> dict[str, Any]:
    c, ci, evse, conn, v, vi, a = e.key
    return {
        "component": c, "component_instance": ci or None, "evse_id": evse, "connector_id": conn, "variable": v,
        "variable_instance": vi or None, "attribute_type": a, "value": e.value, "mutability": e.mutability,
        "persistent": e.persistent, "constant": e.constant, "unit": e.unit, "data_type": e.data_type,
        "min_limit": e.min_limit, "max_limit": e.max_limit, "values_list": e.values_list, "source": e.source,
        "updated_at": _ts(e.updated_at),
    }


def _named(v: Validator, where: str, obj: Any, *, required: bool) -> dict[str, Any] | None:
    """{"name", "instance"?} as the API takes it; None (and a recorded error) when bad."""
    if obj is None and not required:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not 1 <= len(obj["name"]) <= _NAME:
        v.fail(where, f"must be an object with a name of 1-{_NAME} characters")
        return None
    inst = obj.get("instance")
    if inst is not None and (not isinstance(inst, str) or not 1 <= len(inst) <= _NAME):
        v.fail(f"{where}.instance", f"must be 1-{_NAME} characters")
        return None
    return {k: obj[k] for k in ("name", "instance") if obj.get(k) is not None}


def _component_variables(v: Validator) -> list[dict[str, Any]] | None:
    raw = v.data.get("component_variables", MISSING)
    if raw is MISSING or raw is None:
        return None
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_ITEMS:
        v.fail("component_variables", f"must be a list of 1-{_MAX_ITEMS} {{component, variable?}} objects")
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"component_variables[{i}]"
        if not isinstance(item, dict) or set(item) - {"component", "variable"}:
            v.fail(where, "must be an object of component and variable")
            continue
        comp = _named(v, f"{where}.component", item.get("component"), required=True)
        var = _named(v, f"{where}.variable", item.get("variable"), required=False)
        if comp is None:
            continue
        evse = (item.get("component") or {}).get("evse")
        if evse is not None:
            ok = isinstance(evse, dict) and set(evse) <= {"id", "connector_id"} and all(
                isinstance(evse.get(k), int) and not isinstance(evse.get(k), bool) and evse[k] >= 0
                for k in evse) and "id" in evse
            if not ok:
                v.fail(f"{where}.component.evse", "must be {id, connector_id?} of non-negative integers")
                continue
            comp["evse"] = dict(evse)
        entry: dict[str, Any] = {"component": comp}
        if var is not None:
            entry["variable"] = var
        out.append(entry)
    return out


def _criteria(v: Validator) -> list[str] | None:
    raw = v.data.get("component_criteria", MISSING)
    if raw is MISSING or raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(x in COMPONENT_CRITERIA for x in raw):
        v.fail("component_criteria", "must be a non-empty list of " + ", ".join(COMPONENT_CRITERIA))
        return None
    return list(dict.fromkeys(raw))


async def _ocpp_version(ctx: ApiContext, station_id: str) -> str:
    doc = await ctx.documents.get_doc(kinds.STATION_STATUS, station_id)
    return station_status_from_doc(doc).ocpp_version if doc is not None else ""


async def post_report(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    v = Validator(await read_json(request), allowed=_FIELDS)
    base = v.string("report_base", choices=REPORT_BASES)
    criteria = _criteria(v)
    variables = _component_variables(v)
    if base is not MISSING and (criteria is not None or variables is not None):
        v.fail("report_base", "give either report_base or component_criteria / component_variables")
    v.done()
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    version = await _ocpp_version(ctx, station_id)
    params: dict[str, Any]
    if version.startswith("1.6"):
        command_type = "GetConfiguration"
        command_id = str(uuid.uuid4())
        request_id = configuration_request_id(command_id)
        keys = list(dict.fromkeys(x["variable"]["name"] for x in variables or () if "variable" in x))
        params = {"keys": keys} if keys else {}
    else:
        command_id, request_id = str(uuid.uuid4()), _request_id()
        if criteria is None and variables is None:
            command_type = "GetBaseReport"
            params = {"request_id": request_id, "report_base": "FullInventory" if base is MISSING else base}
        else:
            command_type = "GetReport"
            params = {"request_id": request_id}
            if criteria is not None:
                params["component_criteria"] = criteria
            if variables is not None:
                params["component_variables"] = variables
    result = await send_and_wait(ctx, station_id, command_type, params, ctx.settings.command_timeout_s,
                                 command_id=command_id)
    out = answered(command_type, result, {
        "request_id": request_id, "command_id": result.command_id, "status": result.status,
        "report": f"{API_PREFIX}/stations/{station_id}/reports/{request_id}",
    })
    log.info("report %s %s station=%s request=%s status=%s", command_id, command_type, station_id, request_id,
             result.status)
    return web.json_response(out, status=202)


async def get_report(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id, raw = request.match_info["id"], request.match_info["request_id"]
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    try:
        request_id = int(raw)
    except ValueError:
        raise not_found("report", raw) from None
    doc = await ctx.documents.get_doc(kinds.REPORT, report_doc_id(station_id, request_id))
    if doc is None:
        raise not_found("report", raw)
    return web.json_response(report_view(report_from_doc(doc)))


def _encode(key: EntryKey) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(sort_key(key)))).decode("ascii").rstrip("=")


def _decode(text: str) -> tuple[str, str, int, int, str, str, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise query_error({"cursor": "not a cursor this API returned"}) from None
    shape = (str, str, int, int, str, str, str)
    if not isinstance(value, list) or len(value) != 7 or not all(
        isinstance(x, t) and not isinstance(x, bool) for x, t in zip(value, shape)
    ):
        raise query_error({"cursor": "not a cursor this API returned"})
    return (value[0], value[1], value[2], value[3], value[4], value[5], value[6])


async def get_variables(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    limit = query_limit_strict(request)
    component = request.query.get("component") or None
    variable = request.query.get("variable") or None
    evse_id: int | None = None
    raw_evse = request.query.get("evse_id")
    if raw_evse:
        try:
            evse_id = int(raw_evse)
        except ValueError:
            raise query_error({"evse_id": "must be an integer"}) from None
    raw_cursor = request.query.get("cursor")
    after = _decode(raw_cursor) if raw_cursor else None
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    doc = await ctx.documents.get_doc(kinds.DEVICE_MODEL, station_id)
    entries = [] if doc is None else list(inventory_from_doc(doc).entries.values())
    chosen = sorted(
        (e for e in entries
         if (component is None or e.key[0] == component) and (variable is None or e.key[4] == variable)
         and (evse_id is None or e.key[2] == evse_id) and (after is None or sort_key(e.key) > after)),
        key=lambda e: sort_key(e.key),
    )
    page = chosen[:limit]
    nxt = _encode(page[-1].key) if len(chosen) > limit else None
    return web.json_response({"items": [variable_view(e) for e in page], "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/stations/{{id}}/reports", post_report)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/reports/{{request_id}}", get_report)
    app.router.add_get(f"{API_PREFIX}/stations/{{id}}/variables", get_variables)
