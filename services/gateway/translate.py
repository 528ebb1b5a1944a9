"""The API's one command vocabulary (snake_case) <-> OCPP 1.6 / 2.0.1 / 2.1 actions.

Operators say `{"type": "Reset", "reset_type": "Hard"}` whatever the station speaks;
`to_ocpp` picks the action and builds a camelCase payload for the station's version,
and `from_ocpp` turns the station's answer back into (status, snake_case dict).

Every payload `to_ocpp` returns has been validated against the library's request
schema for that version, so a bad parameter is an `InvalidCommand` (HTTP 400 for the
API) instead of a CALL the station rejects. Where one side is simply missing the
concept (GetConfiguration on 2.0.1, GetVariables on 1.6) it is `UnsupportedCommand`.

Ids: 1.6 has connectors only (connector N is EVSE N), 2.x has EVSEs with connectors.
So a 1.6 station takes `connector_id` (or `evse_id` as the same number) and a 2.x
station takes `evse_id` (or `connector_id` when that is all the caller gave).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

import jsonschema
import ocpp
import orjson

from services.common import timeutil
from services.gateway.actions.common import json_default

__all__ = ["UnsupportedCommand", "InvalidCommand", "to_ocpp", "from_ocpp", "command_types", "snake_case"]

VERSIONS = ("1.6", "2.0.1", "2.1")


class UnsupportedCommand(ValueError):
    """The command type does not exist for this OCPP version (or at all)."""


class InvalidCommand(ValueError):
    """The command's parameters are missing or do not make a valid OCPP payload."""


class _Params:
    """Typed access to the API's snake_case parameters, raising InvalidCommand."""

    def __init__(self, command_type: str, params: dict[str, Any]) -> None:
        self.command_type = command_type
        self.raw = {k: v for k, v in (params or {}).items() if v is not None}

    def has(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)

    def require(self, name: str) -> Any:
        if name not in self.raw:
            raise InvalidCommand(f"{self.command_type}: missing parameter {name!r}")
        return self.raw[name]

    def int(self, name: str, default: int | None = None, *, required: bool = False) -> int | None:
        if name not in self.raw:
            if required:
                self.require(name)
            return default
        value = self.raw[name]
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise InvalidCommand(f"{self.command_type}: {name!r} must be an integer, got {value!r}") from None

    def time(self, name: str, *, default_now: bool = False, required: bool = False) -> str | None:
        """An instant normalized to UTC/Z/milliseconds (what chargers parse reliably)."""
        if name not in self.raw:
            if required:
                self.require(name)
            return timeutil.to_ocpp(timeutil.utcnow()) if default_now else None
        try:
            return timeutil.to_ocpp(timeutil.parse_ocpp(str(self.raw[name])))
        except ValueError:
            raise InvalidCommand(f"{self.command_type}: {name!r} is not an ISO 8601 time") from None

    def connector_16(self, default: int | None = None) -> int | None:
        return self.int("connector_id", self.int("evse_id", default))

    def evse_2x(self, default: int | None = None) -> int | None:
        return self.int("evse_id", self.int("connector_id", default))


def _new_id() -> int:
    """A positive int32 for remoteStartId / requestId when the caller gave none."""
    return secrets.randbelow(2**31 - 2) + 1


def _put(payload: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    if value is not None:
        payload[key] = value
    return payload


def _is_16(version: str) -> bool:
    return version == "1.6"


def _evse_obj(p: _Params) -> dict[str, Any] | None:
    """2.x `evse` {id, connectorId?}: absent (or 0) means the whole station."""
    evse = p.evse_2x()
    if not evse:
        return None
    obj: dict[str, Any] = {"id": evse}
    if p.has("evse_id") and p.has("connector_id"):
        obj["connectorId"] = p.int("connector_id")
    return obj


def _id_token_2x(p: _Params, name: str = "id_token") -> dict[str, Any]:
    return {"idToken": str(p.require(name)), "type": p.get(f"{name}_type", "Central")}


# --- builders: (params, version) -> (action, payload) ------------------------------------

Builder = Callable[[_Params, str], tuple[str, dict[str, Any]]]


def _remote_start(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    if _is_16(v):
        payload = _put({"idTag": str(p.require("id_token"))}, "connectorId", p.connector_16())
        return "RemoteStartTransaction", _put(payload, "chargingProfile", p.get("charging_profile"))
    payload = {"idToken": _id_token_2x(p), "remoteStartId": p.int("remote_start_id") or _new_id()}
    _put(payload, "evseId", p.evse_2x())
    return "RequestStartTransaction", _put(payload, "chargingProfile", p.get("charging_profile"))


def _remote_stop(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    if _is_16(v):
        return "RemoteStopTransaction", {"transactionId": p.int("transaction_id", required=True)}
    return "RequestStopTransaction", {"transactionId": str(p.require("transaction_id"))}


_RESET_2X = {"Hard": "Immediate", "Soft": "OnIdle", "Immediate": "Immediate", "OnIdle": "OnIdle"}
_RESET_16 = {"Hard": "Hard", "Soft": "Soft", "Immediate": "Hard", "OnIdle": "Soft"}


def _reset(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    kind = p.require("reset_type")
    table = _RESET_16 if _is_16(v) else _RESET_2X
    if kind not in table:
        raise InvalidCommand(f"Reset: reset_type must be Soft or Hard, got {kind!r}")
    if _is_16(v):
        return "Reset", {"type": table[kind]}
    return "Reset", _put({"type": table[kind]}, "evseId", p.int("evse_id"))


def _unlock(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    if not (p.has("evse_id") or p.has("connector_id")):
        p.require("connector_id" if _is_16(v) else "evse_id")
    if _is_16(v):
        return "UnlockConnector", {"connectorId": p.connector_16()}
    connector = p.int("connector_id", 1) if p.has("evse_id") else 1
    return "UnlockConnector", {"evseId": p.evse_2x(), "connectorId": connector}


def _change_availability(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    status = p.require("availability")
    if _is_16(v):
        return "ChangeAvailability", {"connectorId": p.connector_16(0), "type": status}
    return "ChangeAvailability", _put({"operationalStatus": status}, "evse", _evse_obj(p))


# Trigger names that differ between versions, so callers can use either spelling.
_TRIGGER_16 = {"SignChargingStationCertificate": "SignChargePointCertificate"}
_TRIGGER_2X = {"DiagnosticsStatusNotification": "LogStatusNotification",
               "SignChargePointCertificate": "SignChargingStationCertificate"}
# Security-whitepaper triggers exist in 1.6 only through ExtendedTriggerMessage.
_EXTENDED_ONLY_16 = frozenset({"LogStatusNotification", "SignChargePointCertificate"})


def _trigger(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    message = str(p.require("requested_message"))
    if _is_16(v):
        message = _TRIGGER_16.get(message, message)
        action = "ExtendedTriggerMessage" if message in _EXTENDED_ONLY_16 else "TriggerMessage"
        return action, _put({"requestedMessage": message}, "connectorId", p.connector_16())
    message = _TRIGGER_2X.get(message, message)
    return "TriggerMessage", _put({"requestedMessage": message}, "evse", _evse_obj(p))


def _get_configuration(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    keys = p.get("keys")
    if isinstance(keys, str):
        keys = [keys]
    return "GetConfiguration", _put({}, "key", list(keys) if keys else None)


def _config_value(value: Any) -> str:
    # 1.6 configuration values are strings on the wire; JSON booleans become "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _change_configuration(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    return "ChangeConfiguration", {"key": str(p.require("key")), "value": _config_value(p.require("value"))}


def _component(spec: dict[str, Any]) -> dict[str, Any]:
    comp = spec.get("component")
    obj: dict[str, Any] = {"name": comp} if isinstance(comp, str) else dict(comp or {})
    if spec.get("component_instance") is not None:
        obj["instance"] = spec["component_instance"]
    if spec.get("evse_id") is not None:
        obj["evse"] = _put({"id": spec["evse_id"]}, "connectorId", spec.get("connector_id"))
    return obj


def _variable(spec: dict[str, Any]) -> dict[str, Any]:
    var = spec.get("variable")
    obj: dict[str, Any] = {"name": var} if isinstance(var, str) else dict(var or {})
    return _put(obj, "instance", spec.get("variable_instance"))


def _variables(p: _Params) -> list[dict[str, Any]]:
    variables = p.require("variables")
    if not isinstance(variables, list) or not variables or not all(isinstance(x, dict) for x in variables):
        raise InvalidCommand(f"{p.command_type}: 'variables' must be a non-empty list of objects")
    return variables


def _get_variables(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    data = [_put({"component": _component(x), "variable": _variable(x)}, "attributeType", x.get("attribute_type"))
            for x in _variables(p)]
    return "GetVariables", {"getVariableData": data}


def _set_variables(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    data = []
    for x in _variables(p):
        if "value" not in x:
            raise InvalidCommand("SetVariables: every variable needs a 'value'")
        item = {"attributeValue": _config_value(x["value"]), "component": _component(x), "variable": _variable(x)}
        data.append(_put(item, "attributeType", x.get("attribute_type")))
    return "SetVariables", {"setVariableData": data}


def _set_charging_profile(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    profile = p.require("charging_profile")  # OCPP camelCase, built for this version
    if _is_16(v):
        return "SetChargingProfile", {"connectorId": p.connector_16(0), "csChargingProfiles": profile}
    return "SetChargingProfile", {"evseId": p.evse_2x(0), "chargingProfile": profile}


_PURPOSE_16 = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}
_PURPOSE_2X = {"ChargePointMaxProfile": "ChargingStationMaxProfile"}


def _clear_charging_profile(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    purpose = p.get("purpose")
    if _is_16(v):
        payload = _put({}, "id", p.int("id"))
        _put(payload, "connectorId", p.connector_16())
        _put(payload, "chargingProfilePurpose", _PURPOSE_16.get(purpose, purpose))
        return "ClearChargingProfile", _put(payload, "stackLevel", p.int("stack_level"))
    criteria = _put({}, "evseId", p.evse_2x())
    _put(criteria, "chargingProfilePurpose", _PURPOSE_2X.get(purpose, purpose))
    _put(criteria, "stackLevel", p.int("stack_level"))
    payload = _put({}, "chargingProfileId", p.int("id"))
    return "ClearChargingProfile", _put(payload, "chargingProfileCriteria", criteria or None)


def _retries(p: _Params, payload: dict[str, Any]) -> dict[str, Any]:
    _put(payload, "retries", p.int("retries"))
    return _put(payload, "retryInterval", p.int("retry_interval"))


def _update_firmware(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    location = str(p.require("location"))
    retrieve = p.time("retrieve_date", default_now=True)
    if _is_16(v):
        return "UpdateFirmware", _retries(p, {"location": location, "retrieveDate": retrieve})
    firmware = {"location": location, "retrieveDateTime": retrieve}
    _put(firmware, "installDateTime", p.time("install_date"))
    _put(firmware, "signingCertificate", p.get("signing_certificate"))
    _put(firmware, "signature", p.get("signature"))
    return "UpdateFirmware", _retries(p, {"requestId": p.int("request_id") or _new_id(), "firmware": firmware})


def _get_log(p: _Params, v: str, default_type: str = "DiagnosticsLog") -> tuple[str, dict[str, Any]]:
    log = {"remoteLocation": str(p.require("location"))}
    _put(log, "oldestTimestamp", p.time("start_time"))
    _put(log, "latestTimestamp", p.time("stop_time"))
    payload = {"logType": p.get("log_type", default_type), "requestId": p.int("request_id") or _new_id(), "log": log}
    return "GetLog", _retries(p, payload)


def _get_diagnostics(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    if not _is_16(v):
        return _get_log(p, v)  # 2.x replaced GetDiagnostics with GetLog(DiagnosticsLog)
    payload = {"location": str(p.require("location"))}
    _put(payload, "startTime", p.time("start_time"))
    _put(payload, "stopTime", p.time("stop_time"))
    return "GetDiagnostics", _retries(p, payload)


def _data_transfer(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    payload = _put({"vendorId": str(p.require("vendor_id"))}, "messageId", p.get("message_id"))
    data = p.get("data")
    if _is_16(v) and data is not None and not isinstance(data, str):
        data = json.dumps(data)  # 1.6 data is a string; 2.x takes any JSON
    return "DataTransfer", _put(payload, "data", data)


def _reserve_now(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    reservation = p.int("reservation_id", required=True)
    expiry = p.time("expiry_date", required=True)
    if _is_16(v):
        payload = {"connectorId": p.connector_16(0), "expiryDate": expiry, "idTag": str(p.require("id_token")),
                   "reservationId": reservation}
        return "ReserveNow", _put(payload, "parentIdTag", p.get("parent_id_token"))
    payload = {"id": reservation, "expiryDateTime": expiry, "idToken": _id_token_2x(p)}
    _put(payload, "evseId", p.evse_2x())
    _put(payload, "connectorType", p.get("connector_type"))
    if p.has("parent_id_token"):
        payload["groupIdToken"] = _id_token_2x(p, "parent_id_token")
    return "ReserveNow", payload


def _cancel_reservation(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    return "CancelReservation", {"reservationId": p.int("reservation_id", required=True)}


def _composite_schedule(p: _Params, v: str) -> tuple[str, dict[str, Any]]:
    duration = p.int("duration", required=True)
    if _is_16(v):
        payload = {"connectorId": p.connector_16(0), "duration": duration}
    else:
        payload = {"evseId": p.evse_2x(0), "duration": duration}
    return "GetCompositeSchedule", _put(payload, "chargingRateUnit", p.get("charging_rate_unit"))


def _fixed(action: str) -> Builder:
    return lambda p, v: (action, {})


_BOTH: dict[str, Builder] = {
    "RemoteStart": _remote_start,
    "RemoteStop": _remote_stop,
    "Reset": _reset,
    "UnlockConnector": _unlock,
    "ChangeAvailability": _change_availability,
    "TriggerMessage": _trigger,
    "SetChargingProfile": _set_charging_profile,
    "ClearChargingProfile": _clear_charging_profile,
    "UpdateFirmware": _update_firmware,
    "GetDiagnostics": _get_diagnostics,
    "GetLog": _get_log,
    "DataTransfer": _data_transfer,
    "ClearCache": _fixed("ClearCache"),
    "GetLocalListVersion": _fixed("GetLocalListVersion"),
    "ReserveNow": _reserve_now,
    "CancelReservation": _cancel_reservation,
    "GetCompositeSchedule": _composite_schedule,
}
_ONLY_16: dict[str, Builder] = {
    "GetConfiguration": _get_configuration,
    "ChangeConfiguration": _change_configuration,
}
_ONLY_2X: dict[str, Builder] = {
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetBaseReport": lambda p, v: ("GetBaseReport", {"requestId": p.int("request_id") or _new_id(),
                                                     "reportBase": p.get("report_base", "FullInventory")}),
    "GetTransactionStatus": lambda p, v: ("GetTransactionStatus", _put({}, "transactionId", p.get("transaction_id"))),
}


def _builders(version: str) -> dict[str, Builder]:
    if version not in VERSIONS:
        raise UnsupportedCommand(f"OCPP version {version!r} is not supported")
    return {**_BOTH, **(_ONLY_16 if _is_16(version) else _ONLY_2X)}


def command_types(ocpp_version: str) -> frozenset[str]:
    """The API command types a station of this version accepts."""
    return frozenset(_builders(ocpp_version))


# --- schema validation ---------------------------------------------------------------------

@lru_cache(maxsize=None)
def _request_validator(version: str, action: str) -> Any:
    folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + version.replace(".", ""), "schemas")
    name = action if _is_16(version) else action + "Request"
    # Decimal floats: jsonschema's multipleOf (0.1 in 1.6 profiles) misjudges binary floats.
    with open(os.path.join(folder, name + ".json"), encoding="utf-8-sig") as f:
        schema = json.loads(f.read(), parse_float=Decimal)
    return jsonschema.validators.validator_for(schema)(schema)


def _validate(version: str, action: str, payload: dict[str, Any]) -> None:
    as_wire = json.loads(orjson.dumps(payload, default=json_default), parse_float=Decimal)
    error = jsonschema.exceptions.best_match(_request_validator(version, action).iter_errors(as_wire))
    if error is not None:
        where = "/".join(str(x) for x in error.absolute_path) or "payload"
        raise InvalidCommand(f"{action} ({version}): {where}: {error.message}")


def to_ocpp(command_type: str, params: dict[str, Any], ocpp_version: str) -> tuple[str, dict[str, Any]]:
    """API command -> (OCPP action, camelCase payload valid for the version's request schema)."""
    builder = _builders(ocpp_version).get(command_type)
    if builder is None:
        raise UnsupportedCommand(f"{command_type} is not available for OCPP {ocpp_version}")
    try:
        action, payload = builder(_Params(command_type, params), ocpp_version)
        _validate(ocpp_version, action, payload)
    except InvalidCommand:
        raise
    except (TypeError, AttributeError, ValueError) as exc:  # e.g. a list where a name belongs
        raise InvalidCommand(f"{command_type}: bad parameters ({exc})") from None
    return action, payload


# --- responses -----------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Vendor-defined content: keep it as the station sent it.
_OPAQUE = frozenset({"data", "customData"})


def snake_case(name: str) -> str:
    """`idTagInfo` -> `id_tag_info`, `configurationKey` -> `configuration_key`."""
    return _CAMEL.sub("_", name).lower()


def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake_case(k): (v if k in _OPAQUE else _snake(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(x) for x in value]
    return value


def from_ocpp(command_type: str, action: str, response: dict[str, Any], ocpp_version: str) -> tuple[str, dict[str, Any]]:
    """Station answer -> (status, snake_case response). Answers without a `status`
    (GetConfiguration, GetVariables, GetLocalListVersion...) count as Accepted."""
    status = response.get("status") if isinstance(response, dict) else None
    return (status if isinstance(status, str) and status else "Accepted"), _snake(response or {})
