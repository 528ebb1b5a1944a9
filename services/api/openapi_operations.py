"""OpenAPI fragments of the device model and firmware campaign routes (issue 9):
`PATHS` (path items), `SCHEMAS` (component schemas), `VIEW_SCHEMAS` (the names of the
schemas of views, `additionalProperties: false`, checked against real responses) and
`TAGS`. services/api/openapi.py merges them into the document; this module imports
nothing of it (no cycle); the shared pieces are in openapi_parts.py.
"""

from __future__ import annotations

from typing import Any

from services.api.routes_campaigns import MAX_STATIONS
from services.api.routes_device_model import COMPONENT_CRITERIA, REPORT_BASES
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT
from services.stations.domain.campaigns import CAMPAIGN_STATUSES, STATION_STATUSES
from services.stations.domain.device_model import SOURCES
from services.api.openapi_parts import (  # the shared pieces, under this module's old names
    R400 as _R400, R401 as _R401, R404 as _R404, R409 as _R409, R422 as _R422, TS as _TS, NULL_TS as
    _NULL_TS, NULL_STR as _NULL_STR, NULL_NUM as _NULL_NUM, NULL_INT as _NULL_INT, ref as _ref,
    json_content as _json, error as _error, path_param as _path, query as _query,
)

__all__ = ["PATHS", "SCHEMAS", "TAGS", "VIEW_SCHEMAS"]

J = dict[str, Any]

TAGS = ("firmware-campaigns",)
VIEW_SCHEMAS = ("ReportAccepted", "Report", "Variable", "VariablePage", "FirmwareCampaign", "FirmwareCampaignPage",
                "FirmwareCampaignStation", "FirmwareCampaignProgress")



_LIMIT = _query("limit", f"Maximum number of items (default {DEFAULT_LIMIT}).",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT})
_CURSOR = _query("cursor", "The `next` of the previous page.")


def _op(summary: str, responses: J, *, tag: str, op_id: str, params: list[J] | None = None, body: J | None = None,
        description: str = "") -> J:
    op: J = {"summary": summary, "operationId": op_id, "tags": [tag], "responses": {**responses, "401": _R401}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(required: list[str], properties: J, *, closed: bool = True, description: str = "") -> J:
    out: J = {"type": "object", "required": required, "properties": properties}
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


_NAMED = _obj(["name"], {"name": {"type": "string", "minLength": 1, "maxLength": 50},
                         "instance": {"type": "string", "minLength": 1, "maxLength": 50}})

SCHEMAS: J = {
    "ReportRequest": {
        "description": "Either a base report (`report_base`; {} = FullInventory) or a custom one (criteria and/or "
                       "component variables). OCPP 1.6: GetConfiguration of the variable names given (none: all).",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "report_base": {"type": "string", "enum": list(REPORT_BASES)},
            "component_criteria": {"type": "array", "minItems": 1,
                                   "items": {"type": "string", "enum": list(COMPONENT_CRITERIA)}},
            "component_variables": {"type": "array", "minItems": 1, "maxItems": 100, "items": _obj(["component"], {
                "component": _obj(["name"], {
                    "name": {"type": "string", "minLength": 1, "maxLength": 50},
                    "instance": {"type": "string", "minLength": 1, "maxLength": 50},
                    "evse": _obj(["id"], {"id": {"type": "integer", "minimum": 0},
                                          "connector_id": {"type": "integer", "minimum": 0}}),
                }),
                "variable": _NAMED,
            })},
        },
    },
    "ReportAccepted": _obj(["request_id", "command_id", "status", "report"], {
        "request_id": {"type": "integer"},
        "command_id": {"type": "string"},
        "status": {"type": "string", "description": "The station's answer (Accepted, Rejected, NotSupported, "
                                                    "EmptyResultSet...)."},
        "report": {"type": "string", "description": "Where the report's assembly is followed."},
        "error_code": {"type": "string"},
        "error_description": {"type": "string"},
    }),
    "Report": _obj(["request_id", "status", "station_status", "parts", "items", "requested_at", "completed_at"], {
        "request_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["requested", "assembling", "complete", "rejected"]},
        "station_status": _NULL_STR,
        "parts": {"type": "integer", "minimum": 0},
        "items": {"type": "integer", "minimum": 0},
        "requested_at": _NULL_TS,
        "completed_at": _NULL_TS,
    }, description="A report being assembled from the station's NotifyReport parts (1.6: a GetConfiguration answer)."),
    "Variable": _obj([
        "component", "component_instance", "evse_id", "connector_id", "variable", "variable_instance", "attribute_type",
        "value", "mutability", "persistent", "constant", "unit", "data_type", "min_limit", "max_limit", "values_list",
        "source", "updated_at",
    ], {
        "component": {"type": "string", "description": "\"\" for a 1.6 configuration key."},
        "component_instance": _NULL_STR,
        "evse_id": _NULL_INT,
        "connector_id": _NULL_INT,
        "variable": {"type": "string"},
        "variable_instance": _NULL_STR,
        "attribute_type": {"type": "string", "examples": ["Actual", "Target", "MinSet", "MaxSet"]},
        "value": _NULL_STR,
        "mutability": {"type": "string", "examples": ["ReadOnly", "ReadWrite", "WriteOnly"]},
        "persistent": {"type": "boolean"},
        "constant": {"type": "boolean"},
        "unit": {"type": "string"},
        "data_type": {"type": "string"},
        "min_limit": _NULL_NUM,
        "max_limit": _NULL_NUM,
        "values_list": {"type": "string"},
        "source": {"type": "string", "enum": list(SOURCES)},
        "updated_at": _NULL_TS,
    }, description="One attribute of one variable of the station's device model."),
    "VariablePage": _obj(["items", "next"], {"items": {"type": "array", "items": _ref("Variable")},
                                             "next": _NULL_STR}),
    "FirmwareCampaignRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["location"],
        "description": "Either `stations` or `site_id`.",
        "properties": {
            "id": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,64}$"},
            "stations": {"type": "array", "maxItems": MAX_STATIONS, "items": {"type": "string"}},
            "site_id": {"type": "string"},
            "location": {"type": "string", "minLength": 1, "maxLength": 512},
            "version": {"type": ["string", "null"], "maxLength": 50,
                        "description": "The version stations must boot into; none: any other than before."},
            "retrieve_at": _NULL_TS,
            "signing_certificate": {"type": ["string", "null"], "maxLength": 5500},
            "signature": {"type": ["string", "null"], "maxLength": 800},
            "max_in_flight": {"type": "integer", "minimum": 1, "default": 10},
            "stop_on_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2},
        },
    },
    "FirmwareCampaignProgress": _obj(["total", "pending", "in_flight", "succeeded", "failed"], {
        k: {"type": "integer", "minimum": 0} for k in ("total", "pending", "in_flight", "succeeded", "failed")
    }),
    "FirmwareCampaignStation": _obj(
        ["station_id", "status", "firmware_status", "attempts", "started_at", "finished_at", "reason"], {
            "station_id": {"type": "string"},
            "status": {"type": "string", "enum": list(STATION_STATUSES)},
            "firmware_status": _NULL_STR,
            "attempts": {"type": "integer", "minimum": 0},
            "started_at": _NULL_TS,
            "finished_at": _NULL_TS,
            "reason": {"type": ["string", "null"], "examples": ["old_version", "timeout", "DownloadFailed"]},
        }),
    "FirmwareCampaign": _obj([
        "id", "status", "location", "version", "max_in_flight", "stop_on_failure_ratio", "created_at", "updated_at",
        "progress", "stations",
    ], {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": list(CAMPAIGN_STATUSES)},
        "location": {"type": "string"},
        "version": _NULL_STR,
        "max_in_flight": {"type": "integer", "minimum": 1},
        "stop_on_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "created_at": _NULL_TS,
        "updated_at": _NULL_TS,
        "progress": _ref("FirmwareCampaignProgress"),
        "stations": {"type": "array", "items": _ref("FirmwareCampaignStation")},
    }),
    "FirmwareCampaignPage": _obj(["items", "next"], {"items": {"type": "array", "items": _ref("FirmwareCampaign")},
                                                     "next": _NULL_STR}),
}

_STATION = _path("id", "Station id.")
_OFFLINE = _error("StationOffline: the station is not connected.")
_TIMEOUT = _error("Timeout: no answer in time (see GET /api/v1/commands/{command_id}).")

PATHS: J = {
    "/api/v1/stations/{id}/reports": {
        "parameters": [_STATION],
        "post": _op(
            "Ask the station for a device model report",
            {"202": _json(_ref("ReportAccepted"), "Sent; the station's answer."), "400": _R400, "404": _R404,
             "409": _OFFLINE, "504": _TIMEOUT},
            tag="stations", op_id="requestReport", body=_ref("ReportRequest"),
            description="2.0.1: GetBaseReport or GetReport; the parts are assembled by the stations processor. "
                        "1.6: GetConfiguration, whose answer is the report.",
        ),
    },
    "/api/v1/stations/{id}/reports/{request_id}": {
        "parameters": [_STATION, _path("request_id", "The request id of a report answer.")],
        "get": _op("A report's assembly", {"200": _json(_ref("Report"), "The report."), "404": _R404},
                   tag="stations", op_id="getReport"),
    },
    "/api/v1/stations/{id}/variables": {
        "parameters": [_STATION],
        "get": _op(
            "The station's device model (its variables)",
            {"200": _json(_ref("VariablePage"), "A page of variables, in key order."), "404": _R404, "422": _R422},
            tag="stations", op_id="listVariables",
            params=[_query("component", "Only this component."), _query("variable", "Only this variable."),
                    _query("evse_id", "Only this EVSE.", {"type": "integer"}), _LIMIT, _CURSOR],
        ),
    },
    "/api/v1/firmware-campaigns": {
        "post": _op(
            "Start a firmware campaign",
            {"201": _json(_ref("FirmwareCampaign"), "Created."), "400": _R400, "409": _R409,
             "422": _error("No stations (an empty list, a site without stations) or unknown stations / site.")},
            tag="firmware-campaigns", op_id="createFirmwareCampaign", body=_ref("FirmwareCampaignRequest"),
            description="At most max_in_flight stations update at once; offline stations wait; the campaign halts "
                        "when failed / finished reaches stop_on_failure_ratio.",
        ),
        "get": _op("List firmware campaigns",
                   {"200": _json(_ref("FirmwareCampaignPage"), "A page of campaigns."), "422": _R422},
                   tag="firmware-campaigns", op_id="listFirmwareCampaigns", params=[_LIMIT, _CURSOR]),
    },
    "/api/v1/firmware-campaigns/{id}": {
        "parameters": [_path("id", "Campaign id.")],
        "get": _op("A firmware campaign", {"200": _json(_ref("FirmwareCampaign"), "The campaign."), "404": _R404},
                   tag="firmware-campaigns", op_id="getFirmwareCampaign"),
    },
    "/api/v1/firmware-campaigns/{id}/cancel": {
        "parameters": [_path("id", "Campaign id.")],
        "post": _op("Cancel a firmware campaign",
                    {"200": _json(_ref("FirmwareCampaign"), "Cancelled (or already)."), "404": _R404,
                     "409": _error("The campaign is already completed.")},
                    tag="firmware-campaigns", op_id="cancelFirmwareCampaign",
                    description="Stations already updating finish on their own; no station is started after. "
                                "The body is optional (and ignored).")
        | {"requestBody": {"required": False, "content": {"application/json": {
            "schema": {"type": "object", "additionalProperties": False}}}}},
    },
}
