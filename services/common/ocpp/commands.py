"""The one command vocabulary (snake_case) <-> OCPP 1.6 / 2.0.1 / 2.1 actions.

Operators say `{"type": "Reset", "reset_type": "Hard"}` whatever the station speaks;
`to_ocpp` picks the action and builds a camelCase payload for the station's version,
and `from_ocpp` turns the station's answer back into (status, snake_case dict). The
builder table is the vocabulary: the gateway builds its CALLs from it, and the API
derives its list of command types from it (`COMMAND_TYPES`, `versions_supporting`).

Every payload `to_ocpp` returns has been validated against the library's request
schema for that version, so a bad parameter is an `InvalidCommand` (HTTP 400 for the
API) instead of a CALL the station rejects. Where one side is simply missing the
concept (GetConfiguration on 2.0.1, GetVariables on 1.6) it is `UnsupportedCommand`.

Ids: 1.6 has connectors only (connector N is EVSE N), 2.x has EVSEs with connectors.
So a 1.6 station takes `connector_id` (or `evse_id` as the same number) and a 2.x
station takes `evse_id` (or `connector_id` when that is all the caller gave).

Certificates (docs/security.md): types go by their 2.0.1 names; a 1.6 station (security
whitepaper) is sent `CentralSystemRootCertificate` for `CSMSRootCertificate` (either
spelling is accepted), and the ISO 15118 types (V2G, MO) are 2.x only: InvalidCommand for
1.6. 1.6's GetInstalledCertificateIds asks for exactly one type, so a 1.6 command must
name one (`certificate_types: ["CSMSRootCertificate"]`); with none or several it is an
InvalidCommand whose message says so, and a caller that wants every type (the API's
trust-anchor route) asks once per type. 2.x takes any list, none meaning every type.
Answers pass through `from_ocpp` as sent (1.6 `certificate_hash_data`, 2.x
`certificate_hash_data_chain`).

`SetChargingLimit` is version-neutral (smart charging sends it): a current limit in A
per phase for one transaction (`purpose: "tx"`, a TxProfile, Absolute from `start`) or
as the station's fail-safe (`purpose: "default"`, a TxDefaultProfile, Relative); the
profile is built here for the station's version (`profiles`). `start` is chosen by the
sender, so a re-sent command builds the same frame. An optional `duration_s` ends a
TxProfile's schedule (an EV's departure, ADR 018 §5). `SetChargingProfile` stays the
operator's raw, already version-specific profile.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, TypeAlias

import jsonschema
import ocpp
import orjson

from services.common import timeutil
from services.common.ocpp import profiles
from services.common.ocpp.wire import json_default
from services.common.ocpp_version import OcppVersion

__all__ = [
    "CERTIFICATE_TYPES",
    "COMMAND_TYPES",
    "HASH_ALGORITHMS",
    "INSTALLED_CERTIFICATE_TYPES",
    "SIGNED_CERTIFICATE_TYPES",
    "SET_CHARGING_LIMIT",
    "TRIGGER_MESSAGES",
    "InvalidCommand",
    "UnsupportedCommand",
    "command_types",
    "from_ocpp",
    "snake_case",
    "to_ocpp",
    "versions_supporting",
]

SET_CHARGING_LIMIT = "SetChargingLimit"


class UnsupportedCommand(ValueError):
    """The command type does not exist for this OCPP version (or at all)."""


class InvalidCommand(ValueError):
    """The command's parameters are missing or do not make a valid OCPP payload."""


class _Params:
    """Typed access to the API's snake_case parameters, raising InvalidCommand."""

    __slots__ = ("command_type", "raw")

    def __init__(self, command_type: str, params: Mapping[str, Any] | None) -> None:
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

    def integer(self, name: str, default: int | None = None, *, required: bool = False) -> int | None:
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

    def required_int(self, name: str) -> int:
        value = self.integer(name, required=True)
        assert value is not None  # required: present or InvalidCommand
        return value

    def instant(self, name: str, *, default_now: bool = False, required: bool = False) -> str | None:
        """An instant normalized to UTC/Z/milliseconds (what chargers parse reliably)."""
        if name not in self.raw:
            if required:
                self.require(name)
            return timeutil.to_ocpp(timeutil.utcnow()) if default_now else None
        try:
            return timeutil.to_ocpp(timeutil.parse_ocpp(str(self.raw[name])))
        except ValueError:
            raise InvalidCommand(f"{self.command_type}: {name!r} is not an ISO 8601 time") from None

    def decimal(self, name: str) -> Decimal:
        """A required decimal (given as a string, or a JSON number)."""
        value = self.require(name)
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            return Decimal(str(value))
        except InvalidOperation:
            raise InvalidCommand(f"{self.command_type}: {name!r} must be a decimal, got {value!r}") from None

    def connector_16(self, default: int | None = None) -> int | None:
        return self.integer("connector_id", self.integer("evse_id", default))

    def evse_2x(self, default: int | None = None) -> int | None:
        return self.integer("evse_id", self.integer("connector_id", default))


def _new_id() -> int:
    """A positive int32 for remoteStartId / requestId when the caller gave none."""
    return secrets.randbelow(2**31 - 2) + 1


def _put(payload: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    if value is not None:
        payload[key] = value
    return payload


def _evse_obj(p: _Params) -> dict[str, Any] | None:
    """2.x `evse` {id, connectorId?}: absent (or 0) means the whole station."""
    evse = p.evse_2x()
    if not evse:
        return None
    obj: dict[str, Any] = {"id": evse}
    if p.has("evse_id") and p.has("connector_id"):
        obj["connectorId"] = p.integer("connector_id")
    return obj


def _id_token_2x(p: _Params, name: str = "id_token") -> dict[str, Any]:
    return {"idToken": str(p.require(name)), "type": p.get(f"{name}_type", "Central")}


# --- builders: (params, version) -> (action, payload) ------------------------------------

Frame: TypeAlias = tuple[str, dict[str, Any]]
Builder: TypeAlias = Callable[[_Params, OcppVersion], Frame]


def _remote_start(p: _Params, v: OcppVersion) -> Frame:
    if v.is_16:
        payload = _put({"idTag": str(p.require("id_token"))}, "connectorId", p.connector_16())
        return "RemoteStartTransaction", _put(payload, "chargingProfile", p.get("charging_profile"))
    payload = {"idToken": _id_token_2x(p), "remoteStartId": p.integer("remote_start_id") or _new_id()}
    _put(payload, "evseId", p.evse_2x())
    return "RequestStartTransaction", _put(payload, "chargingProfile", p.get("charging_profile"))


def _remote_stop(p: _Params, v: OcppVersion) -> Frame:
    if v.is_16:
        return "RemoteStopTransaction", {"transactionId": p.required_int("transaction_id")}
    return "RequestStopTransaction", {"transactionId": str(p.require("transaction_id"))}


_RESET_2X = {"Hard": "Immediate", "Soft": "OnIdle", "Immediate": "Immediate", "OnIdle": "OnIdle"}
_RESET_16 = {"Hard": "Hard", "Soft": "Soft", "Immediate": "Hard", "OnIdle": "Soft"}


def _reset(p: _Params, v: OcppVersion) -> Frame:
    kind = p.require("reset_type")
    table = _RESET_16 if v.is_16 else _RESET_2X
    if kind not in table:
        raise InvalidCommand(f"Reset: reset_type must be Soft or Hard, got {kind!r}")
    if v.is_16:
        return "Reset", {"type": table[kind]}
    return "Reset", _put({"type": table[kind]}, "evseId", p.integer("evse_id"))


def _unlock(p: _Params, v: OcppVersion) -> Frame:
    if not (p.has("evse_id") or p.has("connector_id")):
        p.require("connector_id" if v.is_16 else "evse_id")
    if v.is_16:
        return "UnlockConnector", {"connectorId": p.connector_16()}
    connector = p.integer("connector_id", 1) if p.has("evse_id") else 1
    return "UnlockConnector", {"evseId": p.evse_2x(), "connectorId": connector}


def _change_availability(p: _Params, v: OcppVersion) -> Frame:
    status = p.require("availability")
    if v.is_16:
        return "ChangeAvailability", {"connectorId": p.connector_16(0), "type": status}
    return "ChangeAvailability", _put({"operationalStatus": status}, "evse", _evse_obj(p))


# requestedMessage values each version defines. 1.6: the core TriggerMessage kinds, plus the
# security whitepaper's ExtendedTriggerMessage (which also takes the core kinds); 2.0.1 and
# 2.1: MessageTriggerEnumType. Names that differ between versions are translated, so
# callers can use either spelling.
TRIGGER_MESSAGES_16 = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
                       "Heartbeat", "MeterValues", "StatusNotification")
EXTENDED_TRIGGER_MESSAGES_16 = ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification",
                                "Heartbeat", "MeterValues", "SignChargePointCertificate", "StatusNotification")
TRIGGER_MESSAGES_201 = ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                        "MeterValues", "SignChargingStationCertificate", "SignV2GCertificate", "StatusNotification",
                        "TransactionEvent", "SignCombinedCertificate", "PublishFirmwareStatusNotification")
TRIGGER_MESSAGES_21 = (*TRIGGER_MESSAGES_201, "SignV2G20Certificate", "CustomTrigger")
_TRIGGER_16 = {"SignChargingStationCertificate": "SignChargePointCertificate"}
_TRIGGER_2X = {"DiagnosticsStatusNotification": "LogStatusNotification",
               "SignChargePointCertificate": "SignChargingStationCertificate"}
# Every requestedMessage the API accepts (in some version, in either spelling).
TRIGGER_MESSAGES: tuple[str, ...] = tuple(dict.fromkeys(
    [*TRIGGER_MESSAGES_16, *EXTENDED_TRIGGER_MESSAGES_16, *TRIGGER_MESSAGES_201, *TRIGGER_MESSAGES_21]
))


def _trigger(p: _Params, v: OcppVersion) -> Frame:
    """1.6 sends a core kind as TriggerMessage (ExtendedTriggerMessage when `extended` is
    true) and the whitepaper-only kinds as ExtendedTriggerMessage; 2.x sends TriggerMessage."""
    message = str(p.require("requested_message"))
    if v.is_16:
        message = _TRIGGER_16.get(message, message)
        extended = p.get("extended") is True or message not in TRIGGER_MESSAGES_16
        if extended and message not in EXTENDED_TRIGGER_MESSAGES_16:
            raise InvalidCommand(f"TriggerMessage: OCPP 1.6 cannot trigger {message!r}")
        action = "ExtendedTriggerMessage" if extended else "TriggerMessage"
        return action, _put({"requestedMessage": message}, "connectorId", p.connector_16())
    message = _TRIGGER_2X.get(message, message)
    if message not in (TRIGGER_MESSAGES_21 if v is OcppVersion.V21 else TRIGGER_MESSAGES_201):
        raise InvalidCommand(f"TriggerMessage: OCPP {v} cannot trigger {message!r}")
    payload = _put({"requestedMessage": message}, "evse", _evse_obj(p))
    if message == "CustomTrigger":
        _put(payload, "customTrigger", p.get("custom_trigger"))
    return "TriggerMessage", payload


def _get_configuration(p: _Params, v: OcppVersion) -> Frame:
    keys = p.get("keys")
    if isinstance(keys, str):
        keys = [keys]
    return "GetConfiguration", _put({}, "key", list(keys) if keys else None)


def _config_value(value: Any) -> str:
    # 1.6 configuration values are strings on the wire; JSON booleans become "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _change_configuration(p: _Params, v: OcppVersion) -> Frame:
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


def _get_variables(p: _Params, v: OcppVersion) -> Frame:
    data = [_put({"component": _component(x), "variable": _variable(x)}, "attributeType", x.get("attribute_type"))
            for x in _variables(p)]
    return "GetVariables", {"getVariableData": data}


def _set_variables(p: _Params, v: OcppVersion) -> Frame:
    data = []
    for x in _variables(p):
        if "value" not in x:
            raise InvalidCommand("SetVariables: every variable needs a 'value'")
        item = {"attributeValue": _config_value(x["value"]), "component": _component(x), "variable": _variable(x)}
        data.append(_put(item, "attributeType", x.get("attribute_type")))
    return "SetVariables", {"setVariableData": data}


def _set_charging_profile(p: _Params, v: OcppVersion) -> Frame:
    profile = p.require("charging_profile")  # OCPP camelCase, built for this version
    if v.is_16:
        return "SetChargingProfile", {"connectorId": p.connector_16(0), "csChargingProfiles": profile}
    return "SetChargingProfile", {"evseId": p.evse_2x(0), "chargingProfile": profile}


_LIMIT_PURPOSES = ("tx", "default")


def _set_charging_limit(p: _Params, v: OcppVersion) -> Frame:
    """A current limit as a charging profile of the station's version (see the module doc).
    The profile builders' ValueErrors (an EVSE 0 TxProfile, a 1.6 transaction id that is
    not a number, a 2.0.1 one over 36 chars, a negative limit) become InvalidCommand."""
    purpose = p.require("purpose")
    if purpose not in _LIMIT_PURPOSES:
        raise InvalidCommand(f"{SET_CHARGING_LIMIT}: purpose must be 'tx' or 'default', got {purpose!r}")
    evse = p.integer("evse_id", 0)
    assert evse is not None
    limit_a = p.decimal("limit_a")
    phases = p.integer("number_phases")
    profile_id = p.required_int("profile_id")
    try:
        if purpose == "tx":
            start = timeutil.parse_ocpp(str(p.instant("start", required=True)))
            tx_id = str(p.require("transaction_id"))
            duration = p.integer("duration_s")  # optional: the schedule ends (an EV's departure)
            if v.is_16:
                payload = profiles.tx_profile_16(evse, tx_id, limit_a, profile_id, start, number_phases=phases, duration_s=duration)
            else:
                payload = profiles.tx_profile_201(evse, tx_id, limit_a, profile_id, start, number_phases=phases, duration_s=duration)
        else:
            # Relative: the schedule starts with each transaction, so `start` is not on the wire.
            at = timeutil.parse_ocpp(str(p.instant("start", default_now=True)))
            if v.is_16:
                payload = profiles.tx_default_profile_16(limit_a, profile_id, at, connector_id=evse, number_phases=phases)
            else:
                payload = profiles.tx_default_profile_201(limit_a, profile_id, at, evse_id=evse, number_phases=phases)
    except ValueError as exc:
        raise InvalidCommand(f"{SET_CHARGING_LIMIT}: {exc}") from None
    return "SetChargingProfile", payload


_PURPOSE_16 = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}
_PURPOSE_2X = {"ChargePointMaxProfile": "ChargingStationMaxProfile"}


def _clear_charging_profile(p: _Params, v: OcppVersion) -> Frame:
    purpose = p.get("purpose")
    if v.is_16:
        payload = _put({}, "id", p.integer("id"))
        _put(payload, "connectorId", p.connector_16())
        _put(payload, "chargingProfilePurpose", _PURPOSE_16.get(purpose, purpose))
        return "ClearChargingProfile", _put(payload, "stackLevel", p.integer("stack_level"))
    criteria = _put({}, "evseId", p.evse_2x())
    _put(criteria, "chargingProfilePurpose", _PURPOSE_2X.get(purpose, purpose))
    _put(criteria, "stackLevel", p.integer("stack_level"))
    payload = _put({}, "chargingProfileId", p.integer("id"))
    return "ClearChargingProfile", _put(payload, "chargingProfileCriteria", criteria or None)


def _retries(p: _Params, payload: dict[str, Any]) -> dict[str, Any]:
    _put(payload, "retries", p.integer("retries"))
    return _put(payload, "retryInterval", p.integer("retry_interval"))


def _update_firmware(p: _Params, v: OcppVersion) -> Frame:
    """1.6: UpdateFirmware, or the security whitepaper's SignedUpdateFirmware when both
    `signing_certificate` and `signature` are given (it carries a requestId, like 2.x)."""
    location = str(p.require("location"))
    retrieve = p.instant("retrieve_date", default_now=True)
    signed = p.has("signing_certificate") and p.has("signature")
    if v.is_16 and not signed:
        if p.has("signing_certificate") or p.has("signature"):
            raise InvalidCommand("UpdateFirmware: a signed update needs both 'signing_certificate' and 'signature'")
        return "UpdateFirmware", _retries(p, {"location": location, "retrieveDate": retrieve})
    firmware = {"location": location, "retrieveDateTime": retrieve}
    _put(firmware, "installDateTime", p.instant("install_date"))
    _put(firmware, "signingCertificate", p.get("signing_certificate"))
    _put(firmware, "signature", p.get("signature"))
    action = "SignedUpdateFirmware" if v.is_16 else "UpdateFirmware"
    return action, _retries(p, {"requestId": p.integer("request_id") or _new_id(), "firmware": firmware})


def _get_log(p: _Params, v: OcppVersion, default_type: str = "DiagnosticsLog") -> Frame:
    log = {"remoteLocation": str(p.require("location"))}
    _put(log, "oldestTimestamp", p.instant("start_time"))
    _put(log, "latestTimestamp", p.instant("stop_time"))
    payload = {"logType": p.get("log_type", default_type), "requestId": p.integer("request_id") or _new_id(), "log": log}
    return "GetLog", _retries(p, payload)


def _get_diagnostics(p: _Params, v: OcppVersion) -> Frame:
    if not v.is_16:
        return _get_log(p, v)  # 2.x replaced GetDiagnostics with GetLog(DiagnosticsLog)
    payload = {"location": str(p.require("location"))}
    _put(payload, "startTime", p.instant("start_time"))
    _put(payload, "stopTime", p.instant("stop_time"))
    return "GetDiagnostics", _retries(p, payload)


def _data_transfer(p: _Params, v: OcppVersion) -> Frame:
    payload = _put({"vendorId": str(p.require("vendor_id"))}, "messageId", p.get("message_id"))
    data = p.get("data")
    if v.is_16 and data is not None and not isinstance(data, str):
        data = json.dumps(data)  # 1.6 data is a string; 2.x takes any JSON
    return "DataTransfer", _put(payload, "data", data)


def _reserve_now(p: _Params, v: OcppVersion) -> Frame:
    reservation = p.required_int("reservation_id")
    expiry = p.instant("expiry_date", required=True)
    payload: dict[str, Any]
    if v.is_16:
        payload = {"connectorId": p.connector_16(0), "expiryDate": expiry, "idTag": str(p.require("id_token")),
                   "reservationId": reservation}
        return "ReserveNow", _put(payload, "parentIdTag", p.get("parent_id_token"))
    payload = {"id": reservation, "expiryDateTime": expiry, "idToken": _id_token_2x(p)}
    _put(payload, "evseId", p.evse_2x())
    _put(payload, "connectorType", p.get("connector_type"))
    if p.has("parent_id_token"):
        payload["groupIdToken"] = _id_token_2x(p, "parent_id_token")
    return "ReserveNow", payload


def _cancel_reservation(p: _Params, v: OcppVersion) -> Frame:
    return "CancelReservation", {"reservationId": p.required_int("reservation_id")}


def _composite_schedule(p: _Params, v: OcppVersion) -> Frame:
    duration = p.required_int("duration")
    if v.is_16:
        payload = {"connectorId": p.connector_16(0), "duration": duration}
    else:
        payload = {"evseId": p.evse_2x(0), "duration": duration}
    return "GetCompositeSchedule", _put(payload, "chargingRateUnit", p.get("charging_rate_unit"))


def _get_base_report(p: _Params, v: OcppVersion) -> Frame:
    return "GetBaseReport", {"requestId": p.integer("request_id") or _new_id(),
                             "reportBase": p.get("report_base", "FullInventory")}


def _report_component(spec: Any) -> dict[str, Any]:
    """A GetReport componentVariable from the API's {"component": {"name", "instance"?,
    "evse": {"id", "connector_id"?}?}, "variable": {"name", "instance"?}?} (or the flat
    form of GetVariables: "component": name, "evse_id", ...)."""
    if not isinstance(spec, dict):
        raise InvalidCommand("GetReport: every component_variables item must be an object")
    comp = spec.get("component")
    if isinstance(comp, dict) and isinstance(comp.get("evse"), dict):
        evse = comp["evse"]
        comp = {**comp, "evse": _put({"id": evse.get("id")}, "connectorId", evse.get("connector_id", evse.get("connectorId")))}
    out = {"component": _component({**spec, "component": comp})}
    if spec.get("variable") is not None:
        out["variable"] = _variable(spec)
    return out


def _get_report(p: _Params, v: OcppVersion) -> Frame:
    payload: dict[str, Any] = {"requestId": p.integer("request_id") or _new_id()}
    criteria = p.get("component_criteria")
    if criteria is not None:
        payload["componentCriteria"] = [criteria] if isinstance(criteria, str) else list(criteria)
    variables = p.get("component_variables")
    if variables is not None:
        if not isinstance(variables, list):
            raise InvalidCommand("GetReport: 'component_variables' must be a list")
        payload["componentVariable"] = [_report_component(x) for x in variables] or None
    return "GetReport", {k: val for k, val in payload.items() if val is not None}


def _get_transaction_status(p: _Params, v: OcppVersion) -> Frame:
    return "GetTransactionStatus", _put({}, "transactionId", p.get("transaction_id"))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(value: Any) -> Any:
    """snake_case keys -> camelCase, recursively (camelCase keys pass unchanged)."""
    if isinstance(value, dict):
        return {_camel(str(k)): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(x) for x in value]
    return value


def _set_network_profile(p: _Params, v: OcppVersion) -> Frame:
    """2.x SetNetworkProfile: `configuration_slot` and `connection_data` (the
    NetworkConnectionProfileType in snake_case: ocpp_csms_url, security_profile,
    ocpp_interface, message_timeout, ocpp_transport (default JSON), ocpp_version
    (2.0.1 requires it; default OCPP20), apn?, vpn?)."""
    data = p.require("connection_data")
    if not isinstance(data, dict):
        raise InvalidCommand("SetNetworkProfile: 'connection_data' must be an object")
    connection = _camel_keys(data)
    connection.setdefault("ocppTransport", "JSON")
    if v is OcppVersion.V201:
        connection.setdefault("ocppVersion", "OCPP20")
    return "SetNetworkProfile", {"configurationSlot": p.required_int("configuration_slot"), "connectionData": connection}


# Certificate types in the API's (2.0.1) names. InstallCertificate: the trust anchors;
# GetInstalledCertificateIds also lists the V2G chain; CertificateSigned: what was signed.
CERTIFICATE_TYPES = ("CSMSRootCertificate", "ManufacturerRootCertificate", "V2GRootCertificate", "MORootCertificate")
INSTALLED_CERTIFICATE_TYPES = (*CERTIFICATE_TYPES, "V2GCertificateChain")
SIGNED_CERTIFICATE_TYPES = ("ChargingStationCertificate", "V2GCertificate")
HASH_ALGORITHMS = ("SHA256", "SHA384", "SHA512")
_CSMS_ROOT_16 = "CentralSystemRootCertificate"
# 1.6 (security whitepaper) has two trust anchor types; the CSMS root under its 1.6 name.
_CERT_TYPES_16 = {"CSMSRootCertificate": _CSMS_ROOT_16, _CSMS_ROOT_16: _CSMS_ROOT_16,
                  "ManufacturerRootCertificate": "ManufacturerRootCertificate"}


def _text(p: _Params, name: str) -> str:
    """A required string parameter (certificates, hashes: no silent str() of a list)."""
    value = p.require(name)
    if not isinstance(value, str) or not value:
        raise InvalidCommand(f"{p.command_type}: {name!r} must be a non-empty string")
    return value


def _certificate_type(p: _Params, value: Any, v: OcppVersion) -> str:
    """A certificate type in the station's version's name (see the module docstring)."""
    if not isinstance(value, str):
        raise InvalidCommand(f"{p.command_type}: a certificate type must be a string, got {value!r}")
    if v.is_16:
        if value not in _CERT_TYPES_16:
            raise InvalidCommand(f"{p.command_type}: OCPP 1.6 has no certificate type {value!r} "
                                 "(only CSMSRootCertificate and ManufacturerRootCertificate)")
        return _CERT_TYPES_16[value]
    return "CSMSRootCertificate" if value == _CSMS_ROOT_16 else value  # the schema checks the rest


def _certificate_signed(p: _Params, v: OcppVersion) -> Frame:
    """The signed chain (PEM, leaf first). 1.6 has no type: it signs only the charge point
    certificate, so a V2G type cannot go to a 1.6 station."""
    payload: dict[str, Any] = {"certificateChain": _text(p, "certificate_chain")}
    kind = p.get("certificate_type")
    if v.is_16:
        if kind not in (None, "ChargingStationCertificate", "ChargePointCertificate"):
            raise InvalidCommand(f"CertificateSigned: OCPP 1.6 takes only the charge point certificate, not {kind!r}")
        return "CertificateSigned", payload
    return "CertificateSigned", _put(payload, "certificateType", kind)


def _install_certificate(p: _Params, v: OcppVersion) -> Frame:
    return "InstallCertificate", {"certificateType": _certificate_type(p, p.require("certificate_type"), v),
                                  "certificate": _text(p, "certificate")}


def _delete_certificate(p: _Params, v: OcppVersion) -> Frame:
    """The station's certificate by its CertificateHashDataType (as GetInstalledCertificateIds
    listed it: the same hashes, the serial as the station wrote it)."""
    data = {"hashAlgorithm": _text(p, "hash_algorithm"), "issuerNameHash": _text(p, "issuer_name_hash"),
            "issuerKeyHash": _text(p, "issuer_key_hash"), "serialNumber": _text(p, "serial_number")}
    return "DeleteCertificate", {"certificateHashData": data}


def _get_installed_certificate_ids(p: _Params, v: OcppVersion) -> Frame:
    kinds = p.get("certificate_types")
    if isinstance(kinds, str):
        kinds = [kinds]
    if kinds is not None and not isinstance(kinds, list):
        raise InvalidCommand("GetInstalledCertificateIds: 'certificate_types' must be a list of certificate types")
    if v.is_16:
        if not kinds or len(kinds) != 1:
            raise InvalidCommand("GetInstalledCertificateIds: OCPP 1.6 asks for exactly one certificate type per call "
                                 "(CSMSRootCertificate or ManufacturerRootCertificate); send one command per type")
        return "GetInstalledCertificateIds", {"certificateType": _certificate_type(p, kinds[0], v)}
    # 2.x: a list (deduplicated, in order); none or empty = every type.
    names = list(dict.fromkeys(_certificate_type(p, k, v) for k in kinds or ()))
    return "GetInstalledCertificateIds", _put({}, "certificateType", names or None)


# --- drivers and energy (issue 10, ADR 018) -------------------------------------------------

def _local_list_entry(entry: Any, v: OcppVersion) -> dict[str, Any]:
    """One `{"id_token", "status"?, "expires_at"?, "group_id"?, "id_token_type"?}` entry.
    Without `status` the entry removes the token (a Differential update's deletion)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id_token"), str) or not entry["id_token"]:
        raise InvalidCommand("SendLocalList: every entry needs an 'id_token' string")
    p = _Params("SendLocalList", entry)
    status = p.get("status")
    expires = p.instant("expires_at")
    group = p.get("group_id")
    if v.is_16:
        out: dict[str, Any] = {"idTag": entry["id_token"]}
        if status is not None:
            info = _put({"status": str(status)}, "expiryDate", expires)
            out["idTagInfo"] = _put(info, "parentIdTag", group)
        return out
    token = {"idToken": entry["id_token"], "type": str(p.get("id_token_type", "Central"))}
    out = {"idToken": token}
    if status is not None:
        info = _put({"status": str(status)}, "cacheExpiryDateTime", expires)
        if group is not None:
            info["groupIdToken"] = {"idToken": str(group), "type": "Central"}
        out["idTokenInfo"] = info
    return out


def _send_local_list(p: _Params, v: OcppVersion) -> Frame:
    """`list_version` (> 0), `update_type` (Full | Differential) and
    `local_authorization_list` (entries, see `_local_list_entry`; may be empty)."""
    version = p.required_int("list_version")
    update = str(p.require("update_type"))
    entries = p.get("local_authorization_list", [])
    if not isinstance(entries, list):
        raise InvalidCommand("SendLocalList: 'local_authorization_list' must be a list")
    items = [_local_list_entry(e, v) for e in entries]
    if v.is_16:
        payload: dict[str, Any] = {"listVersion": version, "updateType": update}
        return "SendLocalList", _put(payload, "localAuthorizationList", items or None)
    payload = {"versionNumber": version, "updateType": update}
    return "SendLocalList", _put(payload, "localAuthorizationList", items or None)


def _object_param(p: _Params, name: str) -> dict[str, Any]:
    value = p.require(name)
    if not isinstance(value, dict):
        raise InvalidCommand(f"{p.command_type}: {name!r} must be an object")
    return value


def _get_charging_profiles(p: _Params, v: OcppVersion) -> Frame:
    """2.x GetChargingProfiles: `request_id`? (generated), `evse_id`?, `charging_profile`:
    the ChargingProfileCriterionType in snake_case (purpose, stack level, ids, sources;
    `{}` = every profile)."""
    criterion = p.get("charging_profile", {})
    if not isinstance(criterion, dict):
        raise InvalidCommand("GetChargingProfiles: 'charging_profile' must be an object")
    payload = {"requestId": p.integer("request_id") or _new_id(), "chargingProfile": _camel_keys(criterion)}
    return "GetChargingProfiles", _put(payload, "evseId", p.integer("evse_id"))


def _set_display_message(p: _Params, v: OcppVersion) -> Frame:
    """2.x SetDisplayMessage: `message` is the MessageInfoType in snake_case (id, priority,
    state?, start_date_time?, end_date_time?, transaction_id?, message: {format, content,
    language?}, display?)."""
    return "SetDisplayMessage", {"message": _camel_keys(_object_param(p, "message"))}


def _get_display_messages(p: _Params, v: OcppVersion) -> Frame:
    """2.x GetDisplayMessages: `request_id`? (generated), `id`? (list), `priority`?, `state`?."""
    payload: dict[str, Any] = {"requestId": p.integer("request_id") or _new_id()}
    ids = p.get("id")
    if ids is not None and not isinstance(ids, list):
        raise InvalidCommand("GetDisplayMessages: 'id' must be a list of message ids")
    _put(payload, "id", ids or None)
    _put(payload, "priority", p.get("priority"))
    return "GetDisplayMessages", _put(payload, "state", p.get("state"))


def _clear_display_message(p: _Params, v: OcppVersion) -> Frame:
    return "ClearDisplayMessage", {"id": p.required_int("id")}


def _customer_information(p: _Params, v: OcppVersion) -> Frame:
    """2.x CustomerInformation: `request_id`? (generated), `report`, `clear` (booleans), and
    one of `id_token` (+ `id_token_type`), `customer_identifier`, `customer_certificate`
    (CertificateHashDataType in snake_case)."""
    report, clear = p.require("report"), p.require("clear")
    if not isinstance(report, bool) or not isinstance(clear, bool):
        raise InvalidCommand("CustomerInformation: 'report' and 'clear' must be booleans")
    payload: dict[str, Any] = {"requestId": p.integer("request_id") or _new_id(), "report": report, "clear": clear}
    if p.has("id_token"):
        payload["idToken"] = _id_token_2x(p)
    _put(payload, "customerIdentifier", p.get("customer_identifier"))
    if p.has("customer_certificate"):
        payload["customerCertificate"] = _camel_keys(_object_param(p, "customer_certificate"))
    return "CustomerInformation", payload


def _cost_updated(p: _Params, v: OcppVersion) -> Frame:
    """2.x CostUpdated: `total_cost` (a decimal, incl. tax, the currency of the station's
    tariff) and `transaction_id`."""
    return "CostUpdated", {"totalCost": p.decimal("total_cost"), "transactionId": str(p.require("transaction_id"))}


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
    SET_CHARGING_LIMIT: _set_charging_limit,
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
    "CertificateSigned": _certificate_signed,
    "InstallCertificate": _install_certificate,
    "DeleteCertificate": _delete_certificate,
    "GetInstalledCertificateIds": _get_installed_certificate_ids,
    "SendLocalList": _send_local_list,
}
_ONLY_16: dict[str, Builder] = {
    "GetConfiguration": _get_configuration,
    "ChangeConfiguration": _change_configuration,
}
_ONLY_2X: dict[str, Builder] = {
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetBaseReport": _get_base_report,
    "GetReport": _get_report,
    "GetTransactionStatus": _get_transaction_status,
    "SetNetworkProfile": _set_network_profile,
    "GetChargingProfiles": _get_charging_profiles,
    "SetDisplayMessage": _set_display_message,
    "GetDisplayMessages": _get_display_messages,
    "ClearDisplayMessage": _clear_display_message,
    "CustomerInformation": _customer_information,
    "CostUpdated": _cost_updated,
}
_BY_VERSION: dict[OcppVersion, dict[str, Builder]] = {
    v: {**_BOTH, **(_ONLY_16 if v.is_16 else _ONLY_2X)} for v in OcppVersion
}

# Every command type a producer (the API, smart charging) may send, in table order.
# Internal commands (a gateway's `_Fence`) are not in the table.
COMMAND_TYPES: tuple[str, ...] = tuple(dict.fromkeys([*_BOTH, *_ONLY_16, *_ONLY_2X]))


def _version(ocpp_version: str) -> OcppVersion:
    try:
        return OcppVersion(ocpp_version)
    except ValueError:
        raise UnsupportedCommand(f"OCPP version {ocpp_version!r} is not supported") from None


def command_types(ocpp_version: str) -> frozenset[str]:
    """The command types a station of this version accepts."""
    return frozenset(_BY_VERSION[_version(ocpp_version)])


def versions_supporting(command_type: str) -> frozenset[OcppVersion]:
    """The OCPP versions a command type can be sent to (empty: not a command type)."""
    return frozenset(v for v, table in _BY_VERSION.items() if command_type in table)


# --- schema validation ---------------------------------------------------------------------

@lru_cache(maxsize=None)
def _request_validator(version: OcppVersion, action: str) -> Any:
    folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + version.value.replace(".", ""), "schemas")
    name = action if version.is_16 else action + "Request"
    # Decimal floats: jsonschema's multipleOf (0.1 in 1.6 profiles) misjudges binary floats.
    with open(os.path.join(folder, name + ".json"), encoding="utf-8-sig") as f:
        schema = json.loads(f.read(), parse_float=Decimal)
    return jsonschema.validators.validator_for(schema)(schema)


def _validate(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    as_wire = json.loads(orjson.dumps(payload, default=json_default), parse_float=Decimal)
    error = jsonschema.exceptions.best_match(_request_validator(version, action).iter_errors(as_wire))
    if error is not None:
        where = "/".join(str(x) for x in error.absolute_path) or "payload"
        raise InvalidCommand(f"{action} ({version}): {where}: {error.message}")


def to_ocpp(command_type: str, params: Mapping[str, Any], ocpp_version: str) -> Frame:
    """Command -> (OCPP action, camelCase payload valid for the version's request schema)."""
    version = _version(ocpp_version)
    builder = _BY_VERSION[version].get(command_type)
    if builder is None:
        raise UnsupportedCommand(f"{command_type} is not available for OCPP {version}")
    try:
        action, payload = builder(_Params(command_type, params), version)
        _validate(version, action, payload)
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


def from_ocpp(command_type: str, action: str, response: Any, ocpp_version: str) -> tuple[str, dict[str, Any]]:
    """Station answer -> (status, snake_case response). Answers without a `status`
    (GetConfiguration, GetVariables, GetLocalListVersion...) count as Accepted."""
    status = response.get("status") if isinstance(response, dict) else None
    normalized = _snake(response if isinstance(response, dict) else {})
    return (status if isinstance(status, str) and status else "Accepted"), normalized
