"""A station's charging profiles, both ways, and its composite schedule (ADR 018 §4):

- GET /api/v1/stations/{id}/charging-profiles?source=csms|station&evse_id=&purpose=&limit=
  `source=csms` (the default): the profiles the CSMS installed and the station accepted
  (operator SetChargingProfile, smart charging's SetChargingLimit), as the stations-drivers
  stage recorded them (CHARGING_PROFILES; profiles past `valid_to` are left out).
  `source=station`: a 2.0.1 station is asked (GetChargingProfiles, with a request id the API
  picks and the filters as its criteria); after an Accepted answer the request waits, up to
  the command timeout, for the ReportChargingProfiles parts to be assembled by the stage
  (CHARGING_PROFILES_REPORT) and answers them; NoProfiles is an empty list. A 1.6 station
  has no such message: the answer is the CSMS's record, `source: "csms"` with a `note`.
- GET /api/v1/stations/{id}/composite-schedule?duration=&evse_id=&charging_rate_unit=:
  GetCompositeSchedule (both versions); the station's answer normalized to one shape (1.6
  `chargingSchedule` + `scheduleStart` + `connectorId`, 2.0.1 `schedule`).

Station commands go the way `POST /stations/{id}/commands` goes (`send_and_wait`); a
gateway outcome (offline 409, not supported 400, timeout 504) is the same error as there.
Query parameters that cannot be read are a 400 naming every one of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, not_found, validation_error
from services.api.openapi_parts import (
    closed_object,
    NULL_INT, NULL_NUM, NULL_STR, NULL_TS, R400, R401, R404, error, json_content, path_param, query, ref,
)
from services.api.routes_commands import answered, result_error, send_and_wait
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT
from services.common import kinds
from services.common.events import CommandResult
from services.sessions.documents import station_status_from_doc
from services.stations.documents import (
    charging_profiles_profile_to_dict as profile_to_dict,
    charging_profiles_profiles_from_doc as profiles_from_doc,
    charging_profiles_report_doc_id as report_doc_id,
    charging_profiles_report_from_doc as report_from_doc,
    charging_profiles_report_profiles as report_profiles,
)
from services.stations.domain.charging_profiles import PURPOSES, InstalledProfile, same_purpose, unexpired

__all__ = [
    "NOTE_16",
    "OPENAPI_PATHS",
    "OPENAPI_SCHEMAS",
    "OPENAPI_TAGS",
    "OPENAPI_VIEWS",
    "composite_view",
    "setup",
]

log = logging.getLogger("csms.api.charging_profiles")

SOURCES = ("csms", "station")
RATE_UNITS = ("A", "W")
MAX_DURATION_S = 7 * 24 * 3600  # a composite schedule of up to a week
_MAX_INT32 = 2**31 - 1
NOTE_16 = ("OCPP 1.6 has no GetChargingProfiles: these are the profiles the CSMS installed and the station "
           "accepted (the CSMS's record)")
_POLL_S = (0.02, 0.05, 0.1, 0.2)


# -- query parameters -------------------------------------------------------------------

def _int_param(request: web.Request, name: str, errors: dict[str, str], *, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        errors[name] = f"must be an integer from {low} to {high}"
        return None
    return value


def _choice(request: web.Request, name: str, choices: tuple[str, ...], errors: dict[str, str]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        errors[name] = "must be one of " + ", ".join(choices)
        return None
    return raw


async def _station_version(ctx: ApiContext, station_id: str) -> str:
    """The OCPP version the station last connected with ("" when never seen); 404 when
    there is no such station."""
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)
    doc = await ctx.documents.get_doc(kinds.STATION_STATUS, station_id)
    if doc is None:
        return ""
    try:
        return station_status_from_doc(doc).ocpp_version
    except (KeyError, TypeError, ValueError):
        return ""


# -- views ------------------------------------------------------------------------------

def _chosen(profiles: list[InstalledProfile], evse_id: int | None, purpose: str | None,
            limit: int) -> list[dict[str, Any]]:
    kept = [p for p in profiles
            if (evse_id is None or p.evse_id == evse_id) and (purpose is None or same_purpose(p.purpose, purpose))]
    kept.sort(key=lambda p: (p.evse_id, p.purpose, p.stack_level, p.id))
    return [profile_to_dict(p) for p in kept[:limit]]


def _list_view(items: list[dict[str, Any]], *, source: str, request_id: int | None = None,
               note: str | None = None) -> dict[str, Any]:
    return {"items": items, "source": source, "request_id": request_id, "note": note}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _periods(raw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in raw if isinstance(raw, list) else ():
        if not isinstance(p, dict) or _int(p.get("start_period")) is None or _num(p.get("limit")) is None:
            continue  # a period the station garbled: left out, never a 500
        out.append({"start_period": p["start_period"], "limit": _num(p["limit"]),
                    "number_phases": _int(p.get("number_phases")), "phase_to_use": _int(p.get("phase_to_use"))})
    return out


def composite_view(response: dict[str, Any], evse_id: int) -> dict[str, Any] | None:
    """The schedule of a GetCompositeSchedule answer (snake_case, as the gateway recorded
    it), one shape for both versions; None when the station gave none. 1.6:
    `{connector_id, schedule_start, charging_schedule: {duration, start_schedule,
    charging_rate_unit, charging_schedule_period, min_charging_rate}}`; 2.0.1: `{schedule:
    {evse_id, duration, schedule_start, charging_rate_unit, charging_schedule_period}}`."""
    s201 = response.get("schedule")
    s16 = response.get("charging_schedule")
    if isinstance(s201, dict):
        s, evse, start = s201, _int(s201.get("evse_id")), _text(s201.get("schedule_start"))
    elif isinstance(s16, dict):
        s, evse = s16, _int(response.get("connector_id"))
        start = _text(response.get("schedule_start")) or _text(s16.get("start_schedule"))
    else:
        return None
    return {
        "evse_id": evse if evse is not None else evse_id,
        "schedule_start": start,
        "duration": _int(s.get("duration")),
        "charging_rate_unit": _text(s.get("charging_rate_unit")),
        "min_charging_rate": _num(s.get("min_charging_rate")),
        "periods": _periods(s.get("charging_schedule_period")),
    }


def _response(result: CommandResult) -> dict[str, Any]:
    try:
        out = json.loads(result.response_json or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


# -- routes -----------------------------------------------------------------------------

async def _recorded(ctx: ApiContext, station_id: str) -> list[InstalledProfile]:
    doc = await ctx.documents.get_doc(kinds.CHARGING_PROFILES, station_id)
    if doc is None:
        return []
    try:
        profiles = profiles_from_doc(doc).profiles
    except (KeyError, TypeError, ValueError):
        log.exception("station=%s charging profiles document unreadable", station_id)
        return []
    return list(unexpired(profiles, ctx.clock()))


async def _assembled(ctx: ApiContext, station_id: str, request_id: int) -> list[InstalledProfile]:
    """The station's report once complete; 504 when it is not within the command timeout."""
    deadline = time.monotonic() + ctx.settings.command_timeout_s
    doc_id = report_doc_id(station_id, request_id)
    received = attempt = 0
    while True:
        doc = await ctx.documents.get_doc(kinds.CHARGING_PROFILES_REPORT, doc_id)
        if doc is not None:
            report = report_from_doc(doc)
            received = len(report.parts)
            if report.complete:
                return report_profiles(report)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(left, _POLL_S[min(attempt, len(_POLL_S) - 1)]))
        attempt += 1
    raise ApiError(504, f"the station did not report its charging profiles within {ctx.settings.command_timeout_s:g} s",
                   body={"status": "Timeout", "request_id": request_id, "parts_received": received})


async def list_profiles(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    errors: dict[str, str] = {}
    source = _choice(request, "source", SOURCES, errors) or "csms"
    evse_id = _int_param(request, "evse_id", errors, low=0, high=_MAX_INT32)
    purpose = _choice(request, "purpose", PURPOSES, errors)
    limit = _int_param(request, "limit", errors, low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
    if errors:
        raise validation_error(errors)
    version = await _station_version(ctx, station_id)
    if source == "csms":
        return web.json_response(_list_view(_chosen(await _recorded(ctx, station_id), evse_id, purpose, limit),
                                            source="csms"))
    if version.startswith("1.6"):
        return web.json_response(_list_view(_chosen(await _recorded(ctx, station_id), evse_id, purpose, limit),
                                            source="csms", note=NOTE_16))
    request_id = secrets.randbelow(_MAX_INT32 - 1) + 1
    params: dict[str, Any] = {"request_id": request_id, "charging_profile": {}}
    if evse_id is not None:
        params["evse_id"] = evse_id
    if purpose is not None:
        # the 2.0.1 name (a 1.6 name given for a 2.0.1 station is translated)
        params["charging_profile"]["charging_profile_purpose"] = (
            "ChargingStationMaxProfile" if purpose == "ChargePointMaxProfile" else purpose)
    result = await send_and_wait(ctx, station_id, "GetChargingProfiles", params, ctx.settings.command_timeout_s)
    if result.status == "NotSupported" and not result.ocpp_action:
        # the gateway says the station's version has no GetChargingProfiles (a 1.6 station
        # whose version the API had not seen yet)
        return web.json_response(_list_view(_chosen(await _recorded(ctx, station_id), evse_id, purpose, limit),
                                            source="csms", note=NOTE_16))
    failed = result_error("GetChargingProfiles", result, {"status": result.status, "command_id": result.command_id})
    if failed is not None:
        raise failed
    log.info("charging profiles asked station=%s request=%s status=%s", station_id, request_id, result.status)
    if result.status == "NoProfiles":
        return web.json_response(_list_view([], source="station", request_id=request_id))
    if result.status != "Accepted":
        body: dict[str, Any] = {"status": result.status, "command_id": result.command_id, "request_id": request_id}
        if result.error_code:
            body["error_code"] = result.error_code
        raise ApiError(409, f"the station refused GetChargingProfiles ({result.status})", body=body)
    profiles = await _assembled(ctx, station_id, request_id)
    return web.json_response(_list_view(_chosen(profiles, evse_id, purpose, limit), source="station",
                                        request_id=request_id))


async def composite_schedule(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    errors: dict[str, str] = {}
    duration = _int_param(request, "duration", errors, low=1, high=MAX_DURATION_S)
    if duration is None and "duration" not in errors:
        errors["duration"] = f"is required: seconds, from 1 to {MAX_DURATION_S}"
    evse_id = _int_param(request, "evse_id", errors, low=0, high=_MAX_INT32)
    unit = _choice(request, "charging_rate_unit", RATE_UNITS, errors)
    if errors:
        raise validation_error(errors)
    await _station_version(ctx, station_id)  # 404 for an unknown station
    evse = evse_id or 0
    params: dict[str, Any] = {"duration": duration, "evse_id": evse}
    if unit is not None:
        params["charging_rate_unit"] = unit
    result = await send_and_wait(ctx, station_id, "GetCompositeSchedule", params, ctx.settings.command_timeout_s)
    out = answered("GetCompositeSchedule", result, {
        "command_id": result.command_id,
        "status": result.status,
        "evse_id": evse,
        "schedule": composite_view(_response(result), evse) if result.status == "Accepted" else None,
    })
    return web.json_response(out)


def setup(app: web.Application) -> None:
    base = f"{API_PREFIX}/stations/{{id}}"
    app.router.add_get(f"{base}/charging-profiles", list_profiles)
    app.router.add_get(f"{base}/composite-schedule", composite_schedule)


# -- OpenAPI (merged by services/api/openapi_drivers.py) -----------------------------------

J = dict[str, Any]
OPENAPI_TAGS: tuple[str, ...] = ("charging-profiles",)
OPENAPI_VIEWS: tuple[str, ...] = ("StationChargingProfile", "StationChargingProfileList", "CompositeSchedule",
                                  "CompositeScheduleAnswer")


_obj = closed_object


_PERIOD = _obj(["start_period", "limit", "number_phases", "phase_to_use"], {
    "start_period": {"type": "integer", "description": "Seconds from the schedule's start."},
    "limit": {"type": "number", "description": "In the schedule's charging_rate_unit (A per phase, or W)."},
    "number_phases": NULL_INT,
    "phase_to_use": NULL_INT,
})

OPENAPI_SCHEMAS: J = {
    "StationChargingProfile": _obj(
        ["evse_id", "id", "purpose", "stack_level", "kind", "recurrency_kind", "valid_from", "valid_to",
         "transaction_id", "schedules", "source", "installed_at", "command_id"], {
            "evse_id": {"type": "integer", "description": "EVSE (1.6: connector); 0 = the whole station."},
            "id": {"type": "integer", "description": "The profile id."},
            "purpose": {"type": "string", "enum": list(PURPOSES),
                        "description": "As the station's version names it (1.6 ChargePointMaxProfile = 2.0.1 "
                                       "ChargingStationMaxProfile)."},
            "stack_level": {"type": "integer"},
            "kind": {"type": "string", "examples": ["Absolute", "Recurring", "Relative"]},
            "recurrency_kind": {**NULL_STR, "examples": ["Daily", "Weekly"]},
            "valid_from": NULL_TS,
            "valid_to": NULL_TS,
            "transaction_id": {**NULL_STR, "description": "TxProfile: the transaction it limits."},
            "schedules": {"type": "array", "items": _obj(
                ["id", "charging_rate_unit", "start_schedule", "duration", "min_charging_rate", "periods"], {
                    "id": NULL_INT,
                    "charging_rate_unit": {"type": "string", "enum": ["A", "W"]},
                    "start_schedule": NULL_TS,
                    "duration": {**NULL_INT, "description": "Seconds."},
                    "min_charging_rate": NULL_NUM,
                    "periods": {"type": "array", "items": _PERIOD},
                })},
            "source": {"type": "string", "examples": ["operator", "smart_charging", "EMS", "CSO"],
                       "description": "Recorded profiles: who installed it (operator: the REST API; smart_charging: "
                                      "the site allocator). Reported by the station: its chargingLimitSource."},
            "installed_at": {**NULL_TS, "description": "When the station accepted it (null: reported by the station)."},
            "command_id": {**NULL_STR, "description": "The command that installed it (null: reported by the station)."},
        }, description="A charging profile on a station."),
    "StationChargingProfileList": _obj(["items", "source", "request_id", "note"], {
        "items": {"type": "array", "items": ref("StationChargingProfile")},
        "source": {"type": "string", "enum": list(SOURCES),
                   "description": "Where the items come from: the CSMS's record or the station's report."},
        "request_id": {**NULL_INT, "description": "The GetChargingProfiles request id (source station)."},
        "note": {**NULL_STR, "description": "Set when the station cannot report (OCPP 1.6): the CSMS's record instead."},
    }),
    "CompositeSchedule": _obj(["evse_id", "schedule_start", "duration", "charging_rate_unit", "min_charging_rate",
                               "periods"], {
        "evse_id": {"type": "integer"},
        "schedule_start": NULL_TS,
        "duration": {**NULL_INT, "description": "Seconds."},
        "charging_rate_unit": {"type": ["string", "null"], "enum": ["A", "W", None]},
        "min_charging_rate": NULL_NUM,
        "periods": {"type": "array", "items": _PERIOD},
    }, description="The station's composite schedule, one shape for 1.6 and 2.0.1."),
    "CompositeScheduleAnswer": _obj(["command_id", "status", "evse_id", "schedule"], {
        "command_id": {"type": "string"},
        "status": {"type": "string", "examples": ["Accepted", "Rejected"], "description": "The station's answer."},
        "evse_id": {"type": "integer", "description": "As asked (0 = the whole station)."},
        "schedule": {"oneOf": [ref("CompositeSchedule"), {"type": "null"}]},
        "error_code": {"type": "string", "description": "The station's CALLERROR code, when it sent one."},
        "error_description": {"type": "string"},
    }),
}

_STATION = path_param("id", "Station id.")
_COMMAND_ERRORS: J = {
    "404": R404,
    "409": error("StationOffline: the station is not connected (or, where said, it refused)."),
    "504": error("Timeout: no answer in time."),
    "401": R401,
}
_EVSE = query("evse_id", "EVSE (1.6: connector); 0 = the whole station.", {"type": "integer", "minimum": 0})
OPENAPI_PATHS: J = {
    f"{API_PREFIX}/stations/{{id}}/charging-profiles": {
        "parameters": [_STATION],
        "get": {
            "summary": "The station's charging profiles (the CSMS's record, or the station's own list)",
            "operationId": "listStationChargingProfiles",
            "tags": [OPENAPI_TAGS[0]],
            "description": "`source=csms` (default): every profile the CSMS installed and the station accepted "
                           "(operator and smart charging), TxProfiles until their transaction ends, expired ones "
                           "left out. `source=station`: 2.0.1 GetChargingProfiles, then the ReportChargingProfiles "
                           "parts assembled (the request waits up to the command timeout); a 1.6 station cannot "
                           "report: the CSMS's record with a `note`.",
            "parameters": [
                query("source", "csms (default) or station.", {"type": "string", "enum": list(SOURCES)}),
                _EVSE,
                query("purpose", "Only profiles of this purpose.", {"type": "string", "enum": list(PURPOSES)}),
                query("limit", f"Maximum number of items (default {DEFAULT_LIMIT}).",
                      {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
            ],
            "responses": {
                "200": json_content(ref("StationChargingProfileList"), "The profiles."),
                "400": R400,
                **_COMMAND_ERRORS,
            },
        },
    },
    f"{API_PREFIX}/stations/{{id}}/composite-schedule": {
        "parameters": [_STATION],
        "get": {
            "summary": "Ask the station for its composite schedule",
            "operationId": "getStationCompositeSchedule",
            "tags": [OPENAPI_TAGS[0]],
            "description": "Sends GetCompositeSchedule and answers the station's schedule, normalized "
                           "(1.6 and 2.0.1 alike).",
            "parameters": [
                query("duration", f"Seconds from now (1 to {MAX_DURATION_S}); required.",
                      {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_S}),
                _EVSE,
                query("charging_rate_unit", "A or W (default: the station's choice).",
                      {"type": "string", "enum": list(RATE_UNITS)}),
            ],
            "responses": {
                "200": json_content(ref("CompositeScheduleAnswer"), "The station's answer."),
                "400": R400,
                **_COMMAND_ERRORS,
            },
        },
    },
}
