"""The OpenAPI 3.1 document served at GET /api/v1/openapi.json (public, no key needed).

Hand-written so it reads as documentation; tests check that every registered
route is described and every `$ref` resolves.
"""

from __future__ import annotations

import copy
from typing import Any

from services.api.command_schemas import COMMAND_PARAMS
from services.api.commands import COMMAND_TYPES, MAX_TIMEOUT_S
from services.api.openapi_access import PATHS as _ACCESS_PATHS
from services.api.openapi_access import RESPONSES as _ACCESS_RESPONSES
from services.api.openapi_access import SCHEMAS as _ACCESS_SCHEMAS
from services.api.openapi_access import SECURITY_SCHEME as _ACCESS_SECURITY_SCHEME
from services.api.openapi_access import TAGS as _ACCESS_TAGS
from services.api.openapi_access import VIEW_SCHEMAS as _ACCESS_VIEWS
from services.api.openapi_access import with_access_responses as _with_access_responses
from services.api.openapi_operations import PATHS as _DEVICE_MODEL_PATHS
from services.api.openapi_operations import SCHEMAS as _DEVICE_MODEL_SCHEMAS
from services.api.openapi_operations import TAGS as _DEVICE_MODEL_TAGS
from services.api.openapi_operations import VIEW_SCHEMAS as _DEVICE_MODEL_VIEWS
from services.api.openapi_drivers import PATHS as _DRIVERS_PATHS
from services.api.openapi_drivers import SCHEMAS as _DRIVERS_SCHEMAS
from services.api.openapi_drivers import TAGS as _DRIVERS_TAGS
from services.api.openapi_drivers import VIEW_SCHEMAS as _DRIVERS_VIEWS
from services.api.openapi_security import PATHS as _SECURITY_PATHS
from services.api.openapi_security import SCHEMAS as _SECURITY_SCHEMAS
from services.api.openapi_security import TAGS as _SECURITY_TAGS
from services.api.openapi_security import VIEW_SCHEMAS as _SECURITY_VIEWS
from services.api.routes_history import HISTORY_TYPES
from services.api.routes_operations import LOG_TYPES
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["VIEW_SCHEMAS", "openapi_document"]

J = dict[str, Any]


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: J, description: str = "") -> J:
    out: J = {"content": {"application/json": {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def _items(name: str) -> J:
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": _ref(name)}}}


def _path_param(name: str, description: str) -> J:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _query(name: str, description: str, schema: J | None = None) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}, "description": description}


_LIMIT = _query(
    "limit",
    f"Maximum number of items (default {DEFAULT_LIMIT}).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
_ERR = "#/components/responses/"
_R400 = {"$ref": _ERR + "BadRequest"}
_R401 = {"$ref": _ERR + "Unauthorized"}
_R404 = {"$ref": _ERR + "NotFound"}
_R409 = {"$ref": _ERR + "Conflict"}


def _op(summary: str, responses: J, *, tag: str, params: list[J] | None = None, body: J | None = None,
        op_id: str, description: str = "", secured: bool = True) -> J:
    op: J = {"summary": summary, "operationId": op_id, "tags": [tag], "responses": dict(responses)}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if secured:
        op["responses"].setdefault("401", _R401)
    else:
        op["security"] = []
    return op


# The schemas of what services/api/views.py writes: each declares every field its view
# emits (additionalProperties: false) and requires the ones it always emits
# (tests/unit/api/test_api_views.py checks both against real responses).
VIEW_SCHEMAS = (
    "Station", "Connector", "Boot", "Token", "Session", "SessionCost", "RegisterReading", "MeterValue",
    "MeterValuePage", "Money", "Tariff", "TariffBand", "Cdr", "Site", "CommandRecord",
    # station operations (ADR 016)
    "StationConnection", "Evse", "EvseConnector", "StationAvailabilityRequested", "StationFirmware", "StationLog",
    "StationOutage", "StationMeter", "StationChargingLimit", "StationDisconnect", "StationEvent", "StationEventPage",
    "CommandRecordPage", "FirmwareAccepted", "LogAccepted", "LogUpload", "LogUploadList", "StationAvailability",
    "OutageSpan", "AvailabilityKpis", "AvailabilityKpiItem",
    # device model and firmware campaigns (services/api/openapi_operations.py)
    *_DEVICE_MODEL_VIEWS,
    # a station's credentials (services/api/openapi_security.py)
    *_SECURITY_VIEWS,
    # operator access: api keys, audit, whoami (services/api/openapi_access.py)
    *_ACCESS_VIEWS,
    # drivers and energy (services/api/openapi_drivers.py, ADR 018)
    *_DRIVERS_VIEWS,
)

_NULL_STR = {"type": ["string", "null"]}
_NULL_NUM = {"type": ["number", "null"]}
_MONEY_STR = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["0.30"]}
_TS = {"type": "string", "format": "date-time", "examples": ["2026-11-28T04:21:16.004Z"]}
_NULL_TS = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: J = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, for a human."},
            "details": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Problems per field."},
            "status": {"type": "string", "description": "Command outcome (StationOffline, NotSupported, Timeout)."},
            "command_id": {"type": "string"},
        },
    },
    "StationCreate": {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,48}$", "description": "OCPP identity (no '..')."},
            "password": {"type": "string", "minLength": 16, "maxLength": 40,
                         "description": "Basic-auth password; when absent one is generated and returned once."},
            "site_id": _NULL_STR,
            "tariff_id": _NULL_STR,
            "enabled": {"type": "boolean", "default": True},
            "max_current_a": {**_NULL_NUM, "exclusiveMinimum": 0},
            "phases": {"type": ["integer", "null"], "enum": [1, 3, None]},
            "priority": {"type": "integer", "default": 0},
            "security_profile": {"type": "integer", "enum": [1, 2, 3],
                                 "description": "Profile the station must connect with (default CSMS_DEFAULT_SECURITY_PROFILE); "
                                                "a profile-3 station created without a password gets none."},
            "ws_ping_interval_s": {**_NULL_NUM, "minimum": 0, "description": "WebSocket ping period (0 = off; null = CSMS_WS_PING_INTERVAL_S)."},
            "cost_messages": {"type": "boolean", "default": False,
                              "description": "1.6: send the OCA pricing extension (DataTransfer org.openchargealliance.costmsg)."},
        },
    },
    "StationPatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields given change; null clears site_id, tariff_id, max_current_a, phases.",
        "properties": {
            "password": {"type": "string", "minLength": 16, "maxLength": 40},
            "site_id": _NULL_STR,
            "tariff_id": _NULL_STR,
            "enabled": {"type": "boolean"},
            "max_current_a": {**_NULL_NUM, "exclusiveMinimum": 0},
            "phases": {"type": ["integer", "null"], "enum": [1, 3, None]},
            "priority": {"type": "integer"},
            "security_profile": {"type": "integer", "enum": [1, 2, 3],
                                 "description": "Immediate; revokes the station's connection. Lowering needs role admin."},
            "ws_ping_interval_s": {**_NULL_NUM, "minimum": 0},
            "cost_messages": {"type": "boolean",
                              "description": "1.6: send the OCA pricing extension (SetUserPrice, RunningCost, FinalCost) to this station."},
        },
    },
    "Connector": {
        "type": "object",
        "required": ["status", "error_code", "info", "vendor_error_code", "at"],
        "additionalProperties": False,
        "properties": {
            "evse_id": {"type": "integer"},
            "connector_id": {"type": "integer"},
            "key": {"type": "string", "description": "Instead of evse_id/connector_id when the station's key was not numeric."},
            "status": {"type": "string", "examples": ["Available", "Charging", "Faulted"]},
            "error_code": {"type": "string"},
            "info": {"type": "string"},
            "vendor_error_code": {"type": "string"},
            "at": {**_NULL_TS, "description": "Station time of the status."},
        },
    },
    "Boot": {
        "type": "object",
        "description": "The station's last BootNotification, as it told it.",
        "required": ["vendor", "model", "serial_number", "firmware_version", "reason", "registration_status",
                     "interval", "iccid", "imsi", "meter_type", "meter_serial_number", "at"],
        "additionalProperties": False,
        "properties": {
            "vendor": {"type": "string"},
            "model": {"type": "string"},
            "serial_number": {"type": "string"},
            "firmware_version": {"type": "string"},
            "reason": {"type": "string"},
            "registration_status": {"type": "string"},
            "interval": {"type": "integer"},
            "iccid": {"type": "string"},
            "imsi": {"type": "string"},
            "meter_type": {"type": "string"},
            "meter_serial_number": {"type": "string"},
            "at": {**_NULL_TS, "description": "When the CSMS received it."},
        },
    },
    "Station": {
        "type": "object",
        "required": ["id", "site_id", "tariff_id", "enabled", "created_at", "connected", "ocpp_version", "gateway_id",
                     "last_boot", "connectors", "last_seen", "max_current_a", "phases", "priority", "has_password",
                     "connection", "last_heartbeat", "boot", "evses", "availability", "firmware", "log",
                     "security_profile", "outage", "meters", "charging_limits", "last_disconnect",
                     "pending_security_profile", "password_rotation_pending", "ws_ping_interval_s", "cost_messages"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "site_id": _NULL_STR,
            "tariff_id": _NULL_STR,
            "enabled": {"type": "boolean"},
            "created_at": _NULL_TS,
            "connected": {"type": "boolean"},
            "ocpp_version": {"type": ["string", "null"], "examples": ["1.6", "2.0.1"]},
            "gateway_id": _NULL_STR,
            "last_boot": {"oneOf": [_ref("Boot"), {"type": "null"}]},
            "connectors": {"type": "array", "items": _ref("Connector")},
            "last_seen": _NULL_TS,
            "max_current_a": _NULL_NUM,
            "phases": {"type": ["integer", "null"]},
            "priority": {"type": "integer"},
            "has_password": {"type": "boolean"},
            "password": {"type": "string", "description": "Only in the 201 answer of a create without a password."},
            "connection": _ref("StationConnection"),
            "last_heartbeat": {**_NULL_TS, "description": "Receive time of the last Heartbeat."},
            "boot": {"oneOf": [_ref("Boot"), {"type": "null"}], "description": "The same as last_boot."},
            "evses": {"type": "array", "items": _ref("Evse"),
                      "description": "Connector statuses by EVSE (1.6: connector N is EVSE N; 0 = the station)."},
            "availability": _ref("StationAvailabilityRequested"),
            "firmware": {"oneOf": [_ref("StationFirmware"), {"type": "null"}]},
            "log": {"oneOf": [_ref("StationLog"), {"type": "null"}]},
            "security_profile": {"type": "integer", "enum": [1, 2, 3],
                                 "description": "The profile the station must connect with (ADR 017)."},
            "pending_security_profile": {"type": ["integer", "null"],
                                         "description": "A raised profile the station has not connected with yet."},
            "password_rotation_pending": {"type": "boolean",
                                          "description": "A rotated password waits for the station to use it."},
            "ws_ping_interval_s": {**_NULL_NUM, "description": "The station's own ping period (null: the default)."},
            "cost_messages": {"type": "boolean",
                              "description": "1.6: the OCA pricing extension (costmsg SetUserPrice / RunningCost / FinalCost) is enabled."},
            "outage": {"oneOf": [_ref("StationOutage"), {"type": "null"}], "description": "The open outage, if any."},
            "meters": {"type": "array", "items": _ref("StationMeter"),
                       "description": "Latest meter values sent outside transactions."},
            "charging_limits": {"type": "array", "items": _ref("StationChargingLimit"),
                                "description": "External limits in force (NotifyChargingLimit)."},
            "last_disconnect": {"oneOf": [_ref("StationDisconnect"), {"type": "null"}]},
        },
    },
    "TokenCreate": {
        "type": "object",
        "required": ["id_token"],
        "additionalProperties": False,
        "properties": {
            "id_token": {"type": "string", "minLength": 1, "maxLength": 36},
            "status": {"type": "string", "enum": ["Accepted", "Blocked", "Expired", "Invalid"], "default": "Accepted"},
            "expires_at": _NULL_TS,
            "group_id": _NULL_STR,
        },
    },
    "TokenPut": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id_token": {"type": "string", "description": "Optional; must match the path."},
            "status": {"type": "string", "enum": ["Accepted", "Blocked", "Expired", "Invalid"], "default": "Accepted"},
            "expires_at": _NULL_TS,
            "group_id": _NULL_STR,
        },
    },
    "Token": {
        "type": "object",
        "required": ["id_token", "status", "expires_at", "group_id", "updated_at"],
        "additionalProperties": False,
        "properties": {
            "id_token": {"type": "string"},
            "status": {"type": "string", "enum": ["Accepted", "Blocked", "Expired", "Invalid"]},
            "expires_at": _NULL_TS,
            "group_id": _NULL_STR,
            "updated_at": _NULL_TS,
        },
    },
    "Money": {
        "type": "object",
        "required": ["amount", "currency"],
        "additionalProperties": False,
        "properties": {"amount": _MONEY_STR, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    },
    "SessionCost": {
        "type": ["object", "null"],
        "description": "Latest CDR (final) for a billed session; a running price otherwise; null without a tariff.",
        "required": ["amount", "currency", "incl_tax", "cdr_id", "version", "tariff_id", "final"],
        "additionalProperties": False,
        "properties": {
            "amount": _MONEY_STR,
            "currency": {"type": "string"},
            "incl_tax": _ref("Money"),
            "cdr_id": _NULL_STR,
            "version": {"type": ["integer", "null"]},
            "tariff_id": _NULL_STR,
            "final": {"type": "boolean"},
            "priced_until": {**_TS, "description": "Only for a running price: the instant it is priced to."},
        },
    },
    "Session": {
        "type": "object",
        "required": [
            "id", "station_id", "transaction_id", "id_token", "authorization", "status", "energy_wh", "started_at",
            "stopped_at", "station_started_at", "station_stopped_at", "received_at", "charging_ended_at",
            "abandoned_at", "abandon_reason", "evse_id", "connector_id", "meter_start_wh", "meter_stop_wh",
            "stop_reason", "ocpp_version", "remote_start_id", "issued_by", "reservation_id", "ev_charging_needs",
            "ev_charging_schedule", "orphan", "suspect", "suspect_reasons",
            "clock_suspect", "hold", "hold_reasons", "seq_gaps", "sample_count", "excluded_count", "first_sample_at",
            "last_sample_at", "first_register", "last_register", "peak_power_w", "energy_anchor_wh", "version",
            "updated_at", "cost", "cost_update",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "station_id": {"type": "string"},
            "transaction_id": {"type": "string"},
            "id_token": {"type": "string", "description": "The token the session started with (or the remote start's)."},
            "authorization": {"type": "string", "description": "The token status the CSMS answered at the start."},
            "status": {"type": "string", "enum": ["active", "completed", "abandoned"]},
            "energy_wh": {"type": "integer"},
            "started_at": _NULL_TS,
            "stopped_at": _NULL_TS,
            "station_started_at": {**_NULL_TS, "description": "The start as the station sent it, only when it was implausible."},
            "station_stopped_at": {**_NULL_TS, "description": "The stop as the station sent it, only when it was implausible."},
            "received_at": _TS,
            "charging_ended_at": _NULL_TS,
            "abandoned_at": _NULL_TS,
            "abandon_reason": {"type": "string"},
            "evse_id": {"type": "integer"},
            "connector_id": {"type": "integer"},
            "meter_start_wh": {"type": ["integer", "null"]},
            "meter_stop_wh": {"type": ["integer", "null"]},
            "stop_reason": {"type": "string"},
            "ocpp_version": {"type": "string"},
            "remote_start_id": {"type": "integer"},
            "issued_by": {"type": "string"},
            "reservation_id": {"type": ["integer", "null"],
                               "description": "The reservation the transaction started with (reservationId); null: none."},
            "ev_charging_needs": {"oneOf": [_ref("EvChargingNeeds"), {"type": "null"}],
                                  "description": "2.0.1: the latest NotifyEVChargingNeeds of the session's EVSE."},
            "ev_charging_schedule": {"oneOf": [_ref("EvChargingSchedule"), {"type": "null"}],
                                     "description": "2.0.1: the latest NotifyEVChargingSchedule of the session's EVSE."},
            "orphan": {"type": "boolean", "description": "No start was seen (yet)."},
            "suspect": {"type": "boolean"},
            "suspect_reasons": {"type": "array", "items": {"type": "string"}},
            "clock_suspect": {"type": "boolean"},
            "hold": {"type": "boolean"},
            "hold_reasons": {"type": "array", "items": {"type": "string"}},
            "seq_gaps": {"type": "boolean"},
            "sample_count": {"type": "integer", "description": "Samples stored for the session (excluded ones included)."},
            "excluded_count": {"type": "integer", "description": "Samples left out of energy (implausible or unusable)."},
            "first_sample_at": _NULL_TS,
            "last_sample_at": _NULL_TS,
            "first_register": {"oneOf": [_ref("RegisterReading"), {"type": "null"}],
                               "description": "First kept total energy register reading in the session window."},
            "last_register": {"oneOf": [_ref("RegisterReading"), {"type": "null"}],
                              "description": "Last kept total energy register reading."},
            "peak_power_w": {"type": ["number", "null"], "description": "Highest kept Power.Active.Import; null: unknown."},
            "energy_anchor_wh": {"type": ["integer", "null"],
                                 "description": "The register value energy counts from (meterStart when trusted, else the "
                                                "first reading); null: unknown."},
            "version": {"type": "integer"},
            "updated_at": _TS,
            "cost": _ref("SessionCost"),
            "cost_update": {  # ADR 018 §6 (services/billing/cost_updates.py cost_update_view)
                "oneOf": [{
                    "type": "object", "additionalProperties": False,
                    "required": ["total_cost", "sent_at", "kind", "count", "state"],
                    "properties": {
                        "total_cost": _ref("Money"),
                        "sent_at": {**_TS, "description": "When the last one was sent (or tried)."},
                        "kind": {"type": "string", "enum": ["CostUpdated", "RunningCost", "FinalCost"]},
                        "count": {"type": "integer", "description": "Cost messages routed to the station so far."},
                        "state": {"type": "string", "enum": ["sent", "sending", "offline", "unroutable"]},
                    },
                }, {"type": "null"}],
                "description": "The last running / final cost billing sent the station; null: none.",
            },
        },
        "description": ("A session's facts and bounded aggregates; its samples are paged by "
                        "GET /api/v1/sessions/{id}/meter-values (ADR 015)."),
    },
    "RegisterReading": {
        "type": "object",
        "required": ["at", "wh"],
        "additionalProperties": False,
        "properties": {"at": _TS, "wh": {"type": "number", "description": "Wh, as the station sent it."}},
    },
    "MeterValue": {
        "type": "object",
        "required": ["timestamp", "measurand", "value", "unit", "phase", "excluded", "raw_value"],
        "additionalProperties": False,
        "properties": {
            "timestamp": {**_TS, "description": "Effective time (the receive time when the station clock was implausible)."},
            "measurand": {"type": "string"},
            "value": {"type": "number", "description": "0 when the value as sent was not a usable number."},
            "unit": {"type": "string"},
            "phase": {"type": "string"},
            "excluded": {"type": "boolean", "description": "Left out of energy (implausible), as judged over the session's samples."},
            "raw_value": {"type": "string", "description": "The value as sent when it was not a usable number."},
            "station_time": {**_TS, "description": "The time as sent, only when it was replaced."},
        },
    },
    "MeterValuePage": {
        "type": "object",
        "required": ["items", "next"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": _ref("MeterValue")},
            "next": {"type": ["string", "null"], "description": "Cursor of the next page; null: no more."},
        },
    },
    "CommandResult": {
        "type": "object",
        "required": ["command_id", "status", "response"],
        "properties": {
            "command_id": {"type": "string"},
            "status": {"type": "string", "description": "The station's status, e.g. Accepted, Rejected, Unlocked."},
            "response": {"type": "object", "description": "The station's answer, snake_case."},
            "error_code": {"type": "string"},
            "error_description": {"type": "string"},
        },
    },
    "CommandRecord": {
        "type": "object",
        "description": "A command and its outcome as recorded by the stations processor (also a reply that came late).",
        "required": ["command_id", "station_id", "command_type", "ocpp_action", "payload", "status", "response",
                     "error_code", "error_description", "issued_at", "completed_at", "expired_at", "late_reply",
                     "updated_at"],
        "additionalProperties": False,
        "properties": {
            "command_id": {"type": "string"},
            "station_id": {"type": "string"},
            "command_type": {"type": "string"},
            "ocpp_action": {"type": "string", "description": "The OCPP action the gateway sent."},
            "payload": {"description": "The OCPP payload the gateway sent (null until it did)."},
            "status": {"type": "string", "description": "Pending, the station's status, or Timeout, StationOffline, Expired."},
            "response": {"description": "The station's answer (null until it answered)."},
            "error_code": {"type": "string"},
            "error_description": {"type": "string"},
            "issued_at": _NULL_TS,
            "completed_at": _NULL_TS,
            "expired_at": {**_NULL_TS, "description": "The first CSMS-side outcome (Timeout, ...), if any."},
            "late_reply": {"type": "boolean", "description": "The station answered after a CSMS-side outcome."},
            "updated_at": _NULL_TS,
        },
    },
    "TariffBand": {
        "type": "object",
        "required": ["start", "end"],
        "additionalProperties": False,
        "properties": {
            "start": {"type": "string", "pattern": r"^\d\d:\d\d$"},
            "end": {"type": "string", "pattern": r"^\d\d:\d\d$"},
            "days_of_week": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0, "maximum": 6}},
            "price_per_kwh": {"type": ["string", "null"]},
            "price_per_minute": {"type": ["string", "null"]},
        },
    },
    "Tariff": {
        "type": "object",
        "required": ["id", "currency"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "price_per_kwh": _MONEY_STR,
            "price_per_minute": _MONEY_STR,
            "session_fee": _MONEY_STR,
            "idle_fee_per_minute": _MONEY_STR,
            "idle_grace_minutes": {"type": "integer", "minimum": 0},
            "tax_rate": {"type": "string", "examples": ["0.19"]},
            "min_price": {"type": ["string", "null"]},
            "max_price": {"type": ["string", "null"]},
            "bands": {"type": "array", "items": _ref("TariffBand")},
            "timezone": {"type": "string", "default": "UTC"},
            "default": {"type": "boolean", "default": False},
        },
    },
    "Cdr": {
        "type": "object",
        "required": ["id", "session_id", "station_id", "version", "reason", "energy_wh", "started_at", "stopped_at",
                     "tariff_id", "total_cost", "total_cost_incl_tax", "breakdown", "created_at", "currency",
                     "transaction_id", "id_token", "evse_id", "connector_id", "held", "hold_reasons", "clock_suspect"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "session_id": {"type": "string"},
            "station_id": {"type": "string"},
            "version": {"type": "integer"},
            "reason": {"type": "string"},
            "energy_wh": {"type": "integer"},
            "started_at": _TS,
            "stopped_at": _TS,
            "tariff_id": {"type": "string"},
            "total_cost": _ref("Money"),
            "total_cost_incl_tax": _ref("Money"),
            "breakdown": {"type": "object", "description": "Energy, time, idle and fee lines of the price."},
            "created_at": _TS,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "transaction_id": {"type": "string", "description": "The session's (empty for CDRs stored before it was kept)."},
            "id_token": {"type": "string"},
            "evse_id": {"type": "integer"},
            "connector_id": {"type": "integer"},
            "held": {"type": "boolean", "description": "Held back from export (csms.cdrs.v1) until reviewed."},
            "hold_reasons": {"type": "array", "items": {"type": "string"}},
            "clock_suspect": {"type": "boolean", "description": "Priced on CSMS receive times: the station clock was implausible."},
        },
    },
    "OcpiCdr": {"type": "object", "additionalProperties": True, "description": "OCPI 2.2.1 CDR object."},
    "SiteCreate": {
        "type": "object",
        "required": ["id", "grid_limit_a"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "grid_limit_a": {"type": "number", "exclusiveMinimum": 0},
            "phases": {"type": "integer", "enum": [1, 3], "default": 3},
            "tariff_id": _NULL_STR,
        },
    },
    "SitePatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "grid_limit_a": {"type": "number", "exclusiveMinimum": 0},
            "phases": {"type": "integer", "enum": [1, 3]},
            "tariff_id": _NULL_STR,
        },
    },
    "SiteLimit": {
        "type": "object",
        "required": ["limit_a"],
        "additionalProperties": False,
        "properties": {"limit_a": {"type": ["number", "null"], "minimum": 0, "description": "A per phase; null lifts the cap."}},
    },
    "Site": {
        "type": "object",
        "required": ["id", "grid_limit_a", "phases", "tariff_id", "external_limit_a", "created_at", "updated_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "grid_limit_a": {"type": "number"},
            "phases": {"type": "integer", "enum": [1, 3]},
            "tariff_id": _NULL_STR,
            "external_limit_a": _NULL_NUM,
            "created_at": _NULL_TS,
            "updated_at": _NULL_TS,
        },
    },
}
_AMPS = {"type": "number", "description": "A per phase."}
_NULL_AMPS = {"type": ["number", "null"], "description": "A per phase."}
_SCHEMAS["SiteAllocation"] = {
    "type": "object",
    "required": ["site_id", "grid_limit_a", "external_limit_a", "limit_a", "total_a", "reserved_a", "over_limit",
                 "sessions", "outside_limits", "stations_without_profiles", "updated_at"],
    "additionalProperties": False,
    "properties": {
        "site_id": {"type": "string"},
        "grid_limit_a": _AMPS,
        "external_limit_a": _NULL_AMPS,
        "limit_a": {**_AMPS, "description": "The limit in force: the grid limit, lowered by the outside cap."},
        "total_a": {**_AMPS, "description": "Allocated in all, reservations included."},
        "reserved_a": {**_AMPS, "description": "Held for sessions the CSMS cannot control."},
        "over_limit": {"type": "boolean", "description": "The reservations alone exceed the limit."},
        "sessions": {"type": "array", "items": {
            "type": "object",
            "required": ["station_id", "evse_id", "transaction_id", "allocated_a", "paused", "controllable", "last_sent_a",
                         "measured_a", "min_a", "max_a", "ev_cap_a", "phases", "priority", "started_at", "departure_at"],
            "properties": {
                "station_id": {"type": "string"}, "evse_id": {"type": "integer"}, "transaction_id": {"type": "string"},
                "allocated_a": _NULL_AMPS, "paused": {"type": "boolean"},
                "controllable": {"type": "boolean", "description": "False: the station does not take profiles."},
                "last_sent_a": {**_NULL_AMPS, "description": "The last limit sent to the station for this session."},
                "measured_a": _NULL_AMPS, "min_a": _AMPS, "max_a": _AMPS,
                "ev_cap_a": {**_NULL_AMPS, "description": "The EV's cap from its charging needs."},
                "phases": {"type": "integer"}, "priority": {"type": "integer"},
                "started_at": _NULL_TS, "departure_at": _NULL_TS,
            },
        }},
        "outside_limits": {"type": "array", "items": {
            "type": "object", "required": ["station_id", "evse_id", "source", "limit_a"],
            "properties": {"station_id": {"type": "string"}, "evse_id": {"type": "integer", "description": "0: the station."},
                           "source": {"type": "string"}, "limit_a": _AMPS},
        }},
        "stations_without_profiles": {"type": "array", "items": {
            "type": "object", "required": ["station_id", "since", "reason"],
            "properties": {"station_id": {"type": "string"}, "since": _NULL_TS, "reason": {"type": "string"}},
        }},
        "updated_at": {**_NULL_TS, "description": "When smart charging last wrote the site's state (null: never)."},
    },
}
_SCHEMAS["DeadLetter"] = {
    "type": "object",
    "required": ["id", "topic", "partition", "offset", "group", "error", "attempts", "dead_lettered_at",
                 "key", "value_base64", "headers"],
    "properties": {
        "id": {"type": "string", "pattern": r"^\d+-\d+$", "description": "<partition>-<offset> in the dead-letter topic."},
        "topic": {"type": "string", "description": "The topic the record was consumed from."},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
        "group": {"type": "string", "description": "The consumer group that gave up on it."},
        "error": {"type": "string", "description": "Type: message of the last failure."},
        "attempts": {"type": "integer"},
        "dead_lettered_at": _TS,
        "key": {"type": "string"},
        "value_base64": {"type": "string", "contentEncoding": "base64"},
        "headers": {"type": "array", "items": {"type": "object", "required": ["name", "value"],
                                               "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
        "replayed_at": {"type": ["string", "null"], "format": "date-time",
                        "description": "Set when listed with replayed=true and already replayed."},
    },
}
_SCHEMAS["DeadLetterReplayRequest"] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"topic": {"type": "string", "description": "Same as the topic query parameter (which wins)."}},
}
_SCHEMAS["DeadLetterReplay"] = {
    "type": "object",
    "required": ["id", "topic", "partition", "offset", "group", "replayed_at"],
    "properties": {
        "id": {"type": "string"},
        "topic": {"type": "string"},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
        "group": {"type": "string", "description": "Only this group handles the replayed record."},
        "replayed_at": _TS,
    },
}
for _name in ("Station", "Token", "Session", "Tariff", "Cdr", "Site", "DeadLetter"):
    _SCHEMAS[f"{_name}List"] = _items(_name)

_RESPONSES: J = {
    "BadRequest": _json(_ref("Error"), "Invalid request (details name the fields)."),
    "Unauthorized": _json(_ref("Error"), "Missing or wrong API key."),
    "NotFound": _json(_ref("Error"), "No such resource."),
    "Conflict": _json(_ref("Error"), "Already exists, or the station is not connected."),
    "UnprocessableQuery": _json(_ref("Error"), "A query parameter cannot be read (details name it)."),
}


def _crud_paths() -> J:
    id_param = [_path_param("id", "Resource id.")]
    return {
        "/api/v1/stations": {
            "post": _op("Register a station", {"201": _json(_ref("Station"), "Created (with the generated password, once)."),
                                               "400": _R400, "409": _R409},
                        tag="stations", body=_ref("StationCreate"), op_id="createStation"),
            "get": _op("List stations", {"200": _json(_ref("StationList"), "Stations.")}, tag="stations",
                       params=[_query("site_id", "Only stations of this site."), _LIMIT], op_id="listStations"),
        },
        "/api/v1/stations/{id}": {
            "parameters": id_param,
            "get": _op("A station with its connection state", {"200": _json(_ref("Station"), "The station."), "404": _R404},
                       tag="stations", op_id="getStation"),
            "patch": _op("Change a station", {"200": _json(_ref("Station"), "The station."), "400": _R400, "404": _R404},
                         tag="stations", body=_ref("StationPatch"), op_id="patchStation"),
            "delete": _op("Remove a station", {"204": {"description": "Removed."}, "404": _R404},
                          tag="stations", op_id="deleteStation"),
        },
        "/api/v1/tokens": {
            "post": _op("Register a token", {"201": _json(_ref("Token"), "Created."), "400": _R400, "409": _R409},
                        tag="tokens", body=_ref("TokenCreate"), op_id="createToken"),
            "get": _op("List tokens", {"200": _json(_ref("TokenList"), "Tokens.")}, tag="tokens", params=[_LIMIT],
                       op_id="listTokens"),
        },
        "/api/v1/tokens/{id}": {
            "parameters": [_path_param("id", "The id token.")],
            "get": _op("A token", {"200": _json(_ref("Token"), "The token."), "404": _R404}, tag="tokens", op_id="getToken"),
            "put": _op("Create or replace a token", {"200": _json(_ref("Token"), "Replaced."),
                                                     "201": _json(_ref("Token"), "Created."), "400": _R400},
                       tag="tokens", body=_ref("TokenPut"), op_id="putToken"),
            "delete": _op("Remove a token", {"204": {"description": "Removed."}, "404": _R404}, tag="tokens",
                          op_id="deleteToken"),
        },
        "/api/v1/sessions": {
            "get": _op("List charging sessions, newest first", {"200": _json(_ref("SessionList"), "Sessions."), "400": _R400},
                       tag="sessions", op_id="listSessions",
                       params=[_query("station_id", "Only this station's sessions."),
                               _query("status", "active, completed or abandoned.", {"type": "string", "enum": ["active", "completed", "abandoned"]}),
                               _LIMIT]),
        },
        "/api/v1/sessions/{id}": {
            "parameters": id_param,
            "get": _op("A charging session with its cost", {"200": _json(_ref("Session"), "The session."), "404": _R404},
                       tag="sessions", op_id="getSession"),
        },
        "/api/v1/sessions/{id}/meter-values": {
            "parameters": id_param,
            "get": _op("A page of a session's meter samples, oldest first",
                       {"200": _json(_ref("MeterValuePage"), "Samples in (timestamp, measurand, phase) order."),
                        "400": _R400, "404": _R404},
                       tag="sessions", op_id="listSessionMeterValues",
                       params=[_LIMIT, _query("cursor", "The `next` of the previous page.")]),
        },
    }


def _other_paths() -> J:
    id_param = [_path_param("id", "Resource id.")]
    return {
        "/api/v1/stations/{id}/commands": {
            "parameters": [_path_param("id", "Station id.")],
            "post": _op(
                "Send a command and wait for the station's answer",
                {
                    "200": _json(_ref("CommandResult"), "The station answered."),
                    "400": _json(_ref("Error"), "Invalid command, NotSupported by the station's OCPP version, "
                                                "or parameters the gateway cannot express for it (InvalidCommand)."),
                    "404": _R404,
                    "409": _json(_ref("Error"), "StationOffline: the station is not connected."),
                    "503": _json(_ref("Error"), "The message bus is unavailable."),
                    "504": _json(_ref("Error"), "Timeout: no answer in time (see GET /api/v1/commands/{command_id})."),
                },
                tag="commands", body=_ref("CommandRequest"), op_id="sendCommand",
            ),
        },
        "/api/v1/commands/{command_id}": {
            "parameters": [_path_param("command_id", "Command id from a command answer.")],
            "get": _op("A command's recorded result (also a late one)",
                       {"200": _json(_ref("CommandRecord"), "The record."), "404": _R404},
                       tag="commands", op_id="getCommand"),
        },
        "/api/v1/tariffs": {
            "post": _op("Create a tariff", {"201": _json(_ref("Tariff"), "Created."), "400": _R400, "409": _R409},
                        tag="tariffs", body=_ref("Tariff"), op_id="createTariff",
                        description="Money as decimal strings. \"default\": true makes it the only default tariff."),
            "get": _op("List tariffs", {"200": _json(_ref("TariffList"), "Tariffs.")}, tag="tariffs", params=[_LIMIT],
                       op_id="listTariffs"),
        },
        "/api/v1/tariffs/{id}": {
            "parameters": id_param,
            "get": _op("A tariff", {"200": _json(_ref("Tariff"), "The tariff."), "404": _R404}, tag="tariffs",
                       op_id="getTariff"),
            "put": _op("Create or replace a tariff", {"200": _json(_ref("Tariff"), "Replaced."),
                                                      "201": _json(_ref("Tariff"), "Created."), "400": _R400},
                       tag="tariffs", body=_ref("Tariff"), op_id="putTariff"),
            "delete": _op("Remove a tariff", {"204": {"description": "Removed."}, "404": _R404}, tag="tariffs",
                          op_id="deleteTariff"),
        },
        "/api/v1/cdrs": {
            "get": _op("List charge detail records", {"200": _json(_ref("CdrList"), "CDRs.")}, tag="cdrs",
                       params=[_query("session_id", "Only this session's CDRs (all versions)."),
                               _query("held", "true: only held CDRs, false: only exportable ones",
                                      {"type": "string", "enum": ["true", "false"]}), _LIMIT], op_id="listCdrs"),
        },
        "/api/v1/cdrs/{id}": {
            "parameters": id_param,
            "get": _op(
                "A charge detail record",
                {"200": _json({"oneOf": [_ref("Cdr"), _ref("OcpiCdr")]}, "The CDR."), "400": _R400, "404": _R404, "409": _R409},
                tag="cdrs", op_id="getCdr",
                params=[
                    _query("format", "csms (default) or ocpi (OCPI 2.2.1).", {"type": "string", "enum": ["csms", "ocpi"]}),
                    _query("country_code", "OCPI country code (format=ocpi).", {"type": "string", "pattern": "^[A-Z]{2}$"}),
                    _query("party_id", "OCPI party id (format=ocpi).", {"type": "string", "pattern": "^[A-Z0-9]{3}$"}),
                ],
            ),
        },
        "/api/v1/sites": {
            "post": _op("Create a site", {"201": _json(_ref("Site"), "Created."), "400": _R400, "409": _R409},
                        tag="sites", body=_ref("SiteCreate"), op_id="createSite"),
            "get": _op("List sites", {"200": _json(_ref("SiteList"), "Sites.")}, tag="sites", params=[_LIMIT],
                       op_id="listSites"),
        },
        "/api/v1/sites/{id}": {
            "parameters": id_param,
            "get": _op("A site", {"200": _json(_ref("Site"), "The site."), "404": _R404}, tag="sites", op_id="getSite"),
            "patch": _op("Change a site", {"200": _json(_ref("Site"), "The site."), "400": _R400, "404": _R404},
                         tag="sites", body=_ref("SitePatch"), op_id="patchSite"),
            "delete": _op("Remove a site", {"204": {"description": "Removed."}, "404": _R404}, tag="sites",
                          op_id="deleteSite"),
        },
        "/api/v1/sites/{id}/limit": {
            "parameters": id_param,
            "put": _op("Set or lift an outside cap (grid operator signal)",
                       {"200": _json(_ref("Site"), "The site."), "400": _R400, "404": _R404},
                       tag="sites", body=_ref("SiteLimit"), op_id="putSiteLimit"),
        },
        "/api/v1/sites/{id}/allocation": {
            "parameters": id_param,
            "get": _op("What smart charging allocated: limits, each session's current, outside limits, stations without profiles",
                       {"200": _json(_ref("SiteAllocation"), "The site's allocation."), "404": _R404},
                       tag="sites", op_id="getSiteAllocation"),
        },
        "/api/v1/dead-letters": {
            "get": _op(
                "List dead letters (records a consumer group gave up on), oldest first",
                {"200": _json(_ref("DeadLetterList"), "Dead letters."), "400": _R400,
                 "503": _json(_ref("Error"), "The message bus is unavailable.")},
                tag="dead-letters", op_id="listDeadLetters",
                params=[_query("topic", "The consumed topic (default csms.events.v1) or its dead-letter topic."),
                        _query("group", "Only dead letters of this consumer group."),
                        _query("replayed", "true: also dead letters already replayed.", {"type": "boolean", "default": False}),
                        _LIMIT],
                description="See docs/dead-letters.md. The same as `csms dlq list`.",
            ),
        },
        "/api/v1/dead-letters/{id}/replay": {
            "parameters": [_path_param("id", "Dead letter id (<partition>-<offset>).")],
            "post": _op(
                "Re-publish a dead letter to its topic, for its consumer group only",
                {"202": _json(_ref("DeadLetterReplay"), "Re-published; the group handles it again."),
                 "400": _R400, "404": _R404, "503": _json(_ref("Error"), "The message bus is unavailable.")},
                tag="dead-letters", op_id="replayDeadLetter",
                params=[_query("topic", "The consumed topic (default csms.events.v1) or its dead-letter topic.")],
                description="Header csms_replay_group makes every other consumer group skip it. "
                            "The same as `csms dlq replay <id>`. The body is optional.",
            ) | {"requestBody": {"required": False, **_json(_ref("DeadLetterReplayRequest"))}},
        },
        "/api/v1/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                       tag="meta", op_id="getOpenApi", secured=False),
        },
    }


# -- station operations (ADR 016): views, requests, commands by type -----------------------

_R422 = {"$ref": _ERR + "UnprocessableQuery"}
_NULL_INT = {"type": ["integer", "null"]}


def _strict(properties: J, *, description: str = "", required: list[str] | None = None) -> J:
    """A view schema: every property always emitted, nothing else."""
    out: J = {"type": "object", "required": list(properties) if required is None else required,
              "additionalProperties": False, "properties": properties}
    if description:
        out["description"] = description
    return out


_SCHEMAS.update({
    "StationConnection": _strict({
        "connected": {"type": "boolean"},
        "gateway_id": _NULL_STR,
        "since": {**_NULL_TS, "description": "When it connected (connected) or disconnected (not connected)."},
        "remote": {**_NULL_STR, "description": "The station's address as the gateway saw it."},
        "security_profile": {**_NULL_INT, "description": "The security profile the (last) connection proved."},
    }),
    "EvseConnector": _strict({
        "id": {"type": "integer"},
        "status": {"type": "string"},
        "since": {**_NULL_TS, "description": "Station time of the status."},
        "error_code": {"type": "string"},
        "info": {"type": "string"},
        "vendor_error_code": {"type": "string"},
    }),
    "Evse": _strict({"id": {"type": "integer"}, "connectors": {"type": "array", "items": _ref("EvseConnector")}}),
    "StationAvailabilityRequested": _strict({
        "station": {"type": ["string", "null"], "enum": ["Operative", "Inoperative", None],
                    "description": "What the last accepted ChangeAvailability of the whole station asked."},
        "evses": {"type": "object", "additionalProperties": {"type": "string", "enum": ["Operative", "Inoperative"]},
                  "description": "By EVSE id (1.6: connector id)."},
    }, description="Availability as requested by accepted ChangeAvailability commands."),
    "StationFirmware": _strict({
        "status": {"type": "string", "description": "Requested until the station reports; then as sent "
                                                    "(Downloading, Downloaded, Installing, Installed, ...Failed)."},
        "request_id": _NULL_INT,
        "location": {"type": "string"},
        "signed": {"type": "boolean"},
        "requested_at": _NULL_TS,
        "updated_at": _NULL_TS,
    }, description="The latest firmware transfer."),
    "StationLog": _strict({
        "status": {"type": "string", "description": "Requested until the station reports; then as sent "
                                                    "(Uploading, Uploaded, UploadFailure, ...)."},
        "request_id": _NULL_INT,
        "log_type": {"type": "string"},
        "requested_at": _NULL_TS,
        "updated_at": _NULL_TS,
        "file": {**_NULL_STR, "description": "Where to download it, once the upload was received."},
    }, description="The latest log / diagnostics transfer."),
    "StationOutage": _strict({"cause": {"type": "string", "enum": ["offline", "faulted", "unavailable"]}, "since": _TS}),
    "StationMeter": _strict({
        "evse_id": _NULL_INT,
        "measurand": {"type": "string"},
        "phase": {"type": "string"},
        "value": {"type": "number"},
        "unit": {"type": "string"},
        "at": _TS,
    }),
    "StationChargingLimit": _strict({
        "evse_id": _NULL_INT,
        "source": {"type": "string"},
        "is_grid_critical": {"type": ["boolean", "null"]},
        "limit": {**_NULL_NUM, "description": "The first period's limit of the first schedule, for display."},
        "unit": {"type": "string"},
        "at": _NULL_TS,
    }),
    "StationDisconnect": _strict({"close_code": {"type": "integer"}, "reason": {"type": "string"}, "at": _TS}),
    "StationEvent": _strict({
        "event_id": {"type": "string"},
        "type": {"type": "string", "description": "The event body's name (FirmwareStatus, StationConnected, "
                                                  "CommandIssued, Outage, ...)."},
        "action": {"type": "string", "description": "The OCPP action the event came from (empty for CSMS events)."},
        "received_at": _TS,
        "station_time": {**_NULL_TS, "description": "The time the station gave, if any."},
        "gateway_id": {"type": "string"},
        "data": {"type": "object", "description": "The event body, snake_case (instants as times, absent optionals null)."},
    }, description="One entry of a station's history."),
    "StationEventPage": _strict({
        "items": {"type": "array", "items": _ref("StationEvent")},
        "next": {"type": ["string", "null"], "description": "Cursor of the next page; null: no more."},
    }),
    "CommandRecordPage": _strict({
        "items": {"type": "array", "items": _ref("CommandRecord")},
        "next": {"type": ["string", "null"], "description": "Cursor of the next page; null: no more."},
    }),
    "FirmwareRequest": {
        "type": "object",
        "required": ["location"],
        "additionalProperties": False,
        "properties": {
            "location": {"type": "string", "maxLength": 512, "description": "URL of the firmware image."},
            "retrieve_at": {**_TS, "description": "When to download it (default: now)."},
            "install_at": {**_TS, "description": "When to install it (2.0.1, signed 1.6)."},
            "retries": {"type": "integer", "minimum": 0, "maximum": 1000},
            "retry_interval": {"type": "integer", "minimum": 0, "maximum": 604800, "description": "Seconds."},
            "signing_certificate": {"type": "string", "maxLength": 5500,
                                    "description": "PEM; with signature, 1.6 sends SignedUpdateFirmware."},
            "signature": {"type": "string", "maxLength": 800},
        },
    },
    "FirmwareAccepted": _strict({
        "request_id": {**_NULL_INT, "description": "The requestId sent (null: 1.6 UpdateFirmware has none)."},
        "command_id": {"type": "string"},
        "status": {"type": "string", "description": "The station's answer (Accepted, Rejected, ...)."},
        "error_code": {"type": "string"},
        "error_description": {"type": "string"},
    }, required=["request_id", "command_id", "status"]),
    "LogRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "log_type": {"type": "string", "enum": list(LOG_TYPES), "default": "DiagnosticsLog"},
            "from": {**_TS, "description": "Oldest entries wanted."},
            "to": {**_TS, "description": "Latest entries wanted."},
        },
    },
    "LogAccepted": _strict({
        "request_id": {"type": "integer"},
        "command_id": {"type": "string"},
        "status": {"type": "string", "description": "The station's answer (Accepted, Rejected, AcceptedCanceled)."},
        "upload_expires_at": {**_TS, "description": "The upload URL works until then, once."},
        "error_code": {"type": "string"},
        "error_description": {"type": "string"},
    }, required=["request_id", "command_id", "status", "upload_expires_at"]),
    "LogUpload": _strict({
        "request_id": {"type": "integer"},
        "log_type": {"type": "string"},
        "status": {"type": "string", "description": "The station's latest status for this request, else the slot's "
                                                    "(waiting, received)."},
        "requested_at": _TS,
        "received": {"type": "boolean"},
        "size": {**_NULL_INT, "description": "Bytes, once received."},
        "sha256": {**_NULL_STR, "description": "Hex, once received."},
    }, description="A log request and its one-time upload."),
    "LogUploadList": _strict({"items": {"type": "array", "items": _ref("LogUpload")}}),
    "OutageSpan": _strict({
        "cause": {"type": "string", "enum": ["offline", "faulted", "unavailable"]},
        "start": {**_TS, "description": "Clipped to the window."},
        "end": {**_NULL_TS, "description": "Clipped to the window; null: still open."},
        "duration_s": {"type": "number", "description": "Within the window."},
    }),
    "StationAvailability": _strict({
        "station_id": {"type": "string"},
        "from": _TS,
        "to": _TS,
        "uptime_percent": {"type": "number", "description": "Up / observed time, 2 decimals (100 when nothing "
                                                           "was observed)."},
        "up_s": {"type": "number"},
        "down_s": {"type": "number"},
        "failures": {"type": "integer", "description": "Outages that started in the window."},
        "mtbf_s": {**_NULL_NUM, "description": "Up time / failures; null without failures."},
        "mttr_s": {**_NULL_NUM, "description": "Mean full duration of the outages that ended in the window."},
        "outages": {"type": "array", "items": _ref("OutageSpan")},
    }, description="Uptime over a window: up = connected and not Faulted/Unavailable; observed from "
                   "max(from, the station's creation) to min(to, now)."),
    "AvailabilityKpiItem": _strict({
        "station_id": {"type": "string"},
        "uptime_percent": {"type": "number"},
        "failures": {"type": "integer"},
        "mttr_s": _NULL_NUM,
    }),
    "AvailabilityKpis": _strict({
        "site_id": _NULL_STR,
        "from": _TS,
        "to": _TS,
        "stations": {"type": "integer"},
        "uptime_percent": {"type": "number", "description": "Summed up time / summed observed time."},
        "failures": {"type": "integer"},
        "mtbf_s": _NULL_NUM,
        "mttr_s": _NULL_NUM,
        "items": {"type": "array", "items": _ref("AvailabilityKpiItem")},
    }),
})

_COMMAND_ENVELOPE: J = {
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S,
                "description": "Seconds to wait for the station (default CSMS_COMMAND_TIMEOUT)."},
}


def _command_schema(command_type: str, params: J) -> J:
    schema: J = {
        "type": "object",
        "required": ["type", *params.get("required", [])],
        "properties": {"type": {"const": command_type}, **_COMMAND_ENVELOPE, **params.get("properties", {})},
    }
    for key in ("description", "anyOf"):
        if key in params:
            schema[key] = params[key]
    return schema


for _type, _params in COMMAND_PARAMS.items():
    _SCHEMAS[f"Command{_type}"] = _command_schema(_type, _params)
_SCHEMAS["CommandRequest"] = {
    "description": ("One vocabulary in snake_case, whatever the station speaks: {\"type\": <command type>, "
                    "\"timeout\"?, ...its parameters}; the gateway translates it to the station's OCPP version "
                    "(a type the version lacks answers 400 NotSupported)."),
    "oneOf": [_ref(f"Command{t}") for t in COMMAND_PARAMS],
    "discriminator": {"propertyName": "type", "mapping": {t: f"#/components/schemas/Command{t}" for t in COMMAND_PARAMS}},
}


_CLASHES = (set(_SCHEMAS) & set(_DEVICE_MODEL_SCHEMAS)) | (set(_SCHEMAS) & set(_SECURITY_SCHEMAS)) \
    | (set(_DEVICE_MODEL_SCHEMAS) & set(_SECURITY_SCHEMAS)) \
    | ((set(_SCHEMAS) | set(_DEVICE_MODEL_SCHEMAS) | set(_SECURITY_SCHEMAS)) & set(_DRIVERS_SCHEMAS))
if _CLASHES:
    raise ValueError(f"schemas described twice: {sorted(_CLASHES)}")
_SCHEMAS.update(_DEVICE_MODEL_SCHEMAS)
_SCHEMAS.update(_SECURITY_SCHEMAS)
_SCHEMAS.update(_DRIVERS_SCHEMAS)


def _operations_paths() -> J:
    station = [_path_param("id", "Station id.")]
    window = [_query("from", "Window start (default: `to` - 30 days).", {"type": "string", "format": "date-time"}),
              _query("to", "Window end (default: now).", {"type": "string", "format": "date-time"})]
    return {
        "/api/v1/stations/{id}/events": {
            "parameters": station,
            "get": _op("A station's history, newest first",
                       {"200": _json(_ref("StationEventPage"), "A page of events."), "404": _R404, "422": _R422},
                       tag="stations", op_id="listStationEvents",
                       params=[_query("type", "Event types, comma separated (e.g. FirmwareStatus,LogStatus).",
                                      {"type": "string", "examples": ["FirmwareStatus,LogStatus"]}),
                               _query("since", "Received at or after.", {"type": "string", "format": "date-time"}),
                               _query("until", "Received before.", {"type": "string", "format": "date-time"}),
                               _LIMIT, _query("cursor", "The `next` of the previous page.")],
                       description="Every station event except transaction events, meter values of transactions "
                                   "and heartbeats, plus `Outage` entries (when an outage ended). Types: "
                                   + ", ".join(sorted(HISTORY_TYPES)) + "."),
        },
        "/api/v1/stations/{id}/commands": {
            "get": _op("A station's commands and their results, newest first",
                       {"200": _json(_ref("CommandRecordPage"), "A page of commands."), "404": _R404, "422": _R422},
                       tag="commands", op_id="listStationCommands",
                       params=[_LIMIT, _query("cursor", "The `next` of the previous page.")]),
        },
        "/api/v1/stations/{id}/firmware": {
            "parameters": station,
            "post": _op("Update a station's firmware",
                        {"202": _json(_ref("FirmwareAccepted"), "Sent; the station's answer. Follow it in the "
                                                                "station's `firmware`."),
                         "400": _R400, "404": _R404,
                         "409": _json(_ref("Error"), "StationOffline: the station is not connected."),
                         "504": _json(_ref("Error"), "Timeout: no answer in time.")},
                        tag="stations", body=_ref("FirmwareRequest"), op_id="updateFirmware",
                        description="2.0.1 UpdateFirmware (the API picks the requestId); 1.6 UpdateFirmware, or "
                                    "SignedUpdateFirmware when signing_certificate and signature are given."),
        },
        "/api/v1/stations/{id}/logs": {
            "parameters": station,
            "post": _op("Ask a station for its log; it uploads to the CSMS",
                        {"202": _json(_ref("LogAccepted"), "Sent with a one-time upload URL; the station's answer."),
                         "400": _R400, "404": _R404,
                         "409": _json(_ref("Error"), "StationOffline: the station is not connected."),
                         "504": _json(_ref("Error"), "Timeout: no answer in time.")},
                        tag="stations", body=_ref("LogRequest"), op_id="requestLog",
                        description="Sends 2.0.1 GetLog, 1.6 GetDiagnostics (DiagnosticsLog) or 1.6 GetLog "
                                    "(SecurityLog) with remoteLocation <CSMS_UPLOAD_BASE_URL>/uploads/<token>/, a "
                                    "URL that takes one upload of at most CSMS_UPLOAD_MAX_BYTES until "
                                    "CSMS_UPLOAD_TTL_S has passed."),
            "get": _op("A station's log requests and uploads, newest first",
                       {"200": _json(_ref("LogUploadList"), "Log requests."), "404": _R404},
                       tag="stations", op_id="listLogs"),
        },
        "/api/v1/stations/{id}/logs/{request_id}": {
            "parameters": [*station, _path_param("request_id", "The request id of a log request.")],
            "get": _op("Download an uploaded log",
                       {"200": {"description": "The file as uploaded (its content type; Content-Disposition names "
                                               "it).", "content": {"application/octet-stream": {
                                                   "schema": {"type": "string", "contentMediaType":
                                                              "application/octet-stream"}}}},
                        "404": _R404,
                        "409": _json(_ref("Error"), "Not uploaded yet, or the station has not reported Uploaded.")},
                       tag="stations", op_id="downloadLog"),
        },
        "/api/v1/stations/{id}/availability": {
            "parameters": station,
            "get": _op("A station's uptime, outages, MTBF and MTTR over a window",
                       {"200": _json(_ref("StationAvailability"), "Uptime figures."), "404": _R404, "422": _R422},
                       tag="kpis", op_id="getStationAvailability", params=window),
        },
        "/api/v1/kpis/availability": {
            "get": _op("Uptime, MTBF and MTTR of all stations or a site's over a window",
                       {"200": _json(_ref("AvailabilityKpis"), "Uptime figures, summed and per station."),
                        "422": _R422},
                       tag="kpis", op_id="getAvailabilityKpis",
                       params=[_query("site_id", "Only this site's stations."), *window]),
        },
    }


def _merge_paths(*tables: J) -> J:
    """Path items of several tables (methods of one path merged, none described twice)."""
    out: J = {}
    for table in tables:
        for path, item in table.items():
            merged = out.setdefault(path, {})
            for key, value in item.items():
                if key in merged and key != "parameters":
                    raise ValueError(f"{key.upper()} {path} is described twice")
                merged.setdefault(key, value)
    return out


_DOCUMENT: J = {
    "openapi": "3.1.0",
    "info": {
        "title": "CSMS REST API",
        "version": "1.0.0",
        "description": (
            "Operators' API of the OCPP charging station management system. JSON everywhere; "
            "errors are {\"error\": ..., \"details\"?: {field: problem}}; lists are {\"items\": [...]}. "
            "Money is a decimal string with a currency, energy integer Wh, times ISO 8601 UTC."
        ),
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "tags": [{"name": t} for t in dict.fromkeys(("stations", "tokens", "sessions", "commands", "tariffs", "cdrs", "sites",
                                                "dead-letters", "kpis", *_DEVICE_MODEL_TAGS, *_SECURITY_TAGS, *_DRIVERS_TAGS, *_ACCESS_TAGS,
                                                "meta"))],
    "paths": _with_access_responses(_merge_paths(_crud_paths(), _other_paths(), _operations_paths(), _DEVICE_MODEL_PATHS,
                                                 _SECURITY_PATHS, _DRIVERS_PATHS,
                                                 _ACCESS_PATHS)),
    "components": {
        "securitySchemes": {"bearer": _ACCESS_SECURITY_SCHEME},
        "schemas": {**_SCHEMAS, **_ACCESS_SCHEMAS},
        "responses": {**_RESPONSES, **_ACCESS_RESPONSES},
    },
}


def openapi_document() -> J:
    return copy.deepcopy(_DOCUMENT)
