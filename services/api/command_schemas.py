"""The parameters of every command type, as JSON Schemas for the OpenAPI document.

POST /api/v1/stations/{id}/commands takes `{"type": <command type>, "timeout"?, ...params}`;
`COMMAND_PARAMS[type]` describes the params of each type in the API's snake_case
vocabulary (services/common/ocpp/commands.py builds the OCPP payload of the station's
version from them). The OpenAPI document makes one schema per type and a `oneOf` of them
by `type`; a test checks that every entry of `COMMAND_TYPES` is described here.

1.6 addresses connectors (`connector_id`; connector N is EVSE N), 2.x EVSEs (`evse_id`,
with `connector_id` inside it): either is accepted for both, see the vocabulary's module
docstring. Where a parameter exists for one version only, its description says so.
"""

from __future__ import annotations

from typing import Any

from services.common.ocpp.commands import (
    CERTIFICATE_TYPES,
    COMMAND_TYPES,
    HASH_ALGORITHMS,
    INSTALLED_CERTIFICATE_TYPES,
    SIGNED_CERTIFICATE_TYPES,
    TRIGGER_MESSAGES,
)

__all__ = ["COMMAND_PARAMS", "COMMAND_SUMMARIES"]

J = dict[str, Any]

_TS = {"type": "string", "format": "date-time"}
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_CONNECTOR = {**_INT32, "description": "1.6: the connector (0 = the whole station); 2.x: the connector of evse_id."}
_EVSE = {**_INT32, "description": "2.x: the EVSE (0 or absent = the whole station); 1.6: taken as connector_id."}
_ID_TOKEN_TYPE = {"type": "string", "default": "Central",
                  "description": "2.x IdTokenEnumType (Central, eMAID, ISO14443, ISO15693, KeyCode, Local, "
                                 "MacAddress, NoAuthorization); 1.6 has idTag only."}
_REQUEST_ID = {**_INT32, "description": "OCPP requestId (2.x, 1.6 security messages); generated when absent."}
_RETRIES = {"type": "integer", "minimum": 0, "description": "How often the station retries."}
_RETRY_INTERVAL = {"type": "integer", "minimum": 0, "description": "Seconds between retries."}
_LOCATION = {"type": "string", "maxLength": 512, "description": "URL."}
_VARIABLE_PROPERTIES: J = {
    "component": {"type": ["string", "object"], "description": "A component name, or {name, instance?, evse?}."},
    "variable": {"type": ["string", "object"], "description": "A variable name, or {name, instance?}."},
    "component_instance": {"type": "string"},
    "variable_instance": {"type": "string"},
    "evse_id": _INT32,
    "connector_id": _INT32,
    "attribute_type": {"type": "string", "enum": ["Actual", "Target", "MinSet", "MaxSet"], "default": "Actual"},
}
_VARIABLE_REF: J = {"type": "object", "required": ["component", "variable"], "properties": _VARIABLE_PROPERTIES}


def _obj(properties: J | None = None, required: list[str] | None = None, *, description: str = "", **extra: Any) -> J:
    schema: J = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


_ALL: dict[str, J] = {
    "RemoteStart": _obj(
        {"id_token": {"type": "string", "maxLength": 36, "description": "1.6 idTag (max 20) / 2.x idToken."},
         "id_token_type": _ID_TOKEN_TYPE, "connector_id": _CONNECTOR, "evse_id": _EVSE,
         "remote_start_id": {**_INT32, "description": "2.x remoteStartId; generated when absent."},
         "charging_profile": {"type": "object", "description": "An OCPP charging profile for the station's version."}},
        ["id_token"], description="1.6 RemoteStartTransaction / 2.x RequestStartTransaction."),
    "RemoteStop": _obj(
        {"transaction_id": {"type": ["integer", "string"], "description": "1.6: an integer; 2.x: the transaction id."}},
        ["transaction_id"], description="1.6 RemoteStopTransaction / 2.x RequestStopTransaction."),
    "Reset": _obj(
        {"reset_type": {"type": "string", "enum": ["Soft", "Hard", "OnIdle", "Immediate"],
                        "description": "Soft = 2.x OnIdle, Hard = 2.x Immediate (and back for 1.6)."},
         "evse_id": {**_EVSE, "description": "2.x only: reset one EVSE."}},
        ["reset_type"]),
    "UnlockConnector": _obj(
        {"connector_id": _CONNECTOR, "evse_id": _EVSE},
        description="One of connector_id (1.6) or evse_id (2.x; connector_id then names its connector, default 1).",
        anyOf=[{"required": ["connector_id"]}, {"required": ["evse_id"]}]),
    "ChangeAvailability": _obj(
        {"availability": {"type": "string", "enum": ["Operative", "Inoperative"]},
         "connector_id": _CONNECTOR, "evse_id": _EVSE},
        ["availability"], description="Without connector_id/evse_id: the whole station."),
    "TriggerMessage": _obj(
        {"requested_message": {"type": "string", "enum": list(TRIGGER_MESSAGES),
                               "description": "1.6: BootNotification, DiagnosticsStatusNotification, "
                                              "FirmwareStatusNotification, Heartbeat, MeterValues, StatusNotification "
                                              "(TriggerMessage) and LogStatusNotification, SignChargePointCertificate "
                                              "(ExtendedTriggerMessage); 2.x: MessageTriggerEnumType. "
                                              "DiagnosticsStatusNotification/LogStatusNotification and "
                                              "SignChargePointCertificate/SignChargingStationCertificate are "
                                              "translated between versions."},
         "connector_id": _CONNECTOR, "evse_id": _EVSE,
         "extended": {"type": "boolean", "default": False,
                      "description": "1.6: send a core kind as ExtendedTriggerMessage (security whitepaper)."},
         "custom_trigger": {"type": "string", "description": "2.1 CustomTrigger only."}},
        ["requested_message"]),
    "SetChargingProfile": _obj(
        {"charging_profile": {"type": "object", "description": "An OCPP charging profile for the station's version "
                                                               "(camelCase, as the station reads it)."},
         "connector_id": _CONNECTOR, "evse_id": _EVSE},
        ["charging_profile"]),
    "SetChargingLimit": _obj(
        {"purpose": {"type": "string", "enum": ["tx", "default"],
                     "description": "tx: a TxProfile of one transaction; default: the TxDefaultProfile (fail-safe)."},
         "profile_id": _INT32,
         "limit_a": {"type": ["number", "string"], "description": "A per phase (>= 0), a number or a decimal string."},
         "number_phases": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
         "evse_id": _EVSE,
         "transaction_id": {"type": "string", "description": "tx only (required there)."},
         "start": {**_TS, "description": "tx: the schedule's start (required there); default: when it was decided."}},
        ["purpose", "profile_id", "limit_a"],
        description="A version-neutral current limit; the gateway builds the 1.6 or 2.x profile."),
    "ClearChargingProfile": _obj(
        {"id": _INT32, "connector_id": _CONNECTOR, "evse_id": _EVSE,
         "purpose": {"type": "string", "description": "ChargePointMaxProfile / ChargingStationMaxProfile (translated), "
                                                      "TxDefaultProfile, TxProfile."},
         "stack_level": {"type": "integer", "minimum": 0}},
        description="Without parameters: every profile."),
    "UpdateFirmware": _obj(
        {"location": _LOCATION, "retrieve_date": {**_TS, "description": "Default: now."},
         "install_date": {**_TS, "description": "2.x and signed 1.6 only."},
         "retries": _RETRIES, "retry_interval": _RETRY_INTERVAL, "request_id": _REQUEST_ID,
         "signing_certificate": {"type": "string", "maxLength": 5500, "description": "PEM; with signature: 1.6 "
                                                                                    "SignedUpdateFirmware."},
         "signature": {"type": "string", "maxLength": 800, "description": "Base64 signature of the firmware."}},
        ["location"], description="2.x UpdateFirmware; 1.6 UpdateFirmware, or SignedUpdateFirmware when "
                                  "signing_certificate and signature are both given."),
    "GetDiagnostics": _obj(
        {"location": _LOCATION, "start_time": _TS, "stop_time": _TS, "retries": _RETRIES,
         "retry_interval": _RETRY_INTERVAL, "request_id": _REQUEST_ID},
        ["location"], description="1.6 GetDiagnostics; 2.x GetLog with logType DiagnosticsLog."),
    "GetLog": _obj(
        {"location": _LOCATION, "log_type": {"type": "string", "enum": ["DiagnosticsLog", "SecurityLog"],
                                             "default": "DiagnosticsLog"},
         "request_id": _REQUEST_ID, "start_time": _TS, "stop_time": _TS, "retries": _RETRIES,
         "retry_interval": _RETRY_INTERVAL},
        ["location"], description="2.x GetLog; 1.6 GetLog of the security whitepaper."),
    "DataTransfer": _obj(
        {"vendor_id": {"type": "string", "maxLength": 255}, "message_id": {"type": "string", "maxLength": 50},
         "data": {"description": "Any JSON (1.6: sent as a string)."}},
        ["vendor_id"]),
    "ClearCache": _obj(description="No parameters."),
    "GetLocalListVersion": _obj(description="No parameters."),
    "ReserveNow": _obj(
        {"reservation_id": _INT32, "expiry_date": _TS, "id_token": {"type": "string", "maxLength": 36},
         "id_token_type": _ID_TOKEN_TYPE, "parent_id_token": {"type": "string", "maxLength": 36},
         "connector_id": _CONNECTOR, "evse_id": _EVSE,
         "connector_type": {"type": "string", "description": "2.x only."}},
        ["reservation_id", "expiry_date", "id_token"]),
    "CancelReservation": _obj({"reservation_id": _INT32}, ["reservation_id"]),
    "GetCompositeSchedule": _obj(
        {"duration": {"type": "integer", "minimum": 0, "description": "Seconds."},
         "connector_id": _CONNECTOR, "evse_id": _EVSE,
         "charging_rate_unit": {"type": "string", "enum": ["A", "W"]}},
        ["duration"]),
    "GetConfiguration": _obj(
        {"keys": {"type": ["array", "string"], "items": {"type": "string"},
                  "description": "Configuration keys; none = all."}},
        description="1.6 only (2.x: GetVariables / GetBaseReport)."),
    "ChangeConfiguration": _obj(
        {"key": {"type": "string", "maxLength": 50},
         "value": {"type": ["string", "number", "boolean"], "description": "Sent as text (booleans as true/false)."}},
        ["key", "value"], description="1.6 only (2.x: SetVariables)."),
    "GetVariables": _obj(
        {"variables": {"type": "array", "minItems": 1, "items": _VARIABLE_REF}}, ["variables"],
        description="2.x only."),
    "SetVariables": _obj(
        {"variables": {"type": "array", "minItems": 1, "items": {
            **_VARIABLE_REF, "required": ["component", "variable", "value"],
            "properties": {**_VARIABLE_PROPERTIES,
                           "value": {"type": ["string", "number", "boolean"], "description": "Sent as text."}}}}},
        ["variables"], description="2.x only."),
    "GetBaseReport": _obj(
        {"report_base": {"type": "string", "enum": ["ConfigurationInventory", "FullInventory", "SummaryInventory"],
                         "default": "FullInventory"},
         "request_id": _REQUEST_ID},
        description="2.x only."),
    "GetReport": _obj(
        {"request_id": _REQUEST_ID,
         "component_criteria": {"type": "array", "items": {"type": "string",
                                                           "enum": ["Active", "Available", "Enabled", "Problem"]}},
         "component_variables": {"type": "array", "items": {"type": "object", "description":
                                 "{component: {name, instance?, evse?: {id, connector_id?}}, variable?: {name, instance?}}"}}},
        description="2.x only."),
    "GetTransactionStatus": _obj(
        {"transaction_id": {"type": "string", "maxLength": 36, "description": "Absent: whether any message is queued."}},
        description="2.x only."),
    "SetNetworkProfile": _obj(
        {"configuration_slot": {"type": "integer", "description": "The slot the profile is stored in."},
         "connection_data": _obj(
             {"ocpp_csms_url": {"type": "string", "maxLength": 512},
              "security_profile": {"type": "integer", "minimum": 0, "maximum": 3},
              "ocpp_interface": {"type": "string", "enum": ["Wired0", "Wired1", "Wired2", "Wired3", "Wireless0",
                                                              "Wireless1", "Wireless2", "Wireless3"]},
              "message_timeout": {"type": "integer", "description": "Seconds."},
              "ocpp_transport": {"type": "string", "enum": ["JSON", "SOAP"], "default": "JSON"},
              "ocpp_version": {"type": "string", "default": "OCPP20",
                               "description": "OCPP12, OCPP15, OCPP16, OCPP20 (2.0.1 requires it; 2.1 ignores it)."},
              "apn": _obj({"apn": {"type": "string"}, "apn_user_name": {"type": "string"},
                           "apn_password": {"type": "string"}, "sim_pin": {"type": "integer"},
                           "preferred_network": {"type": "string"}, "use_only_preferred_network": {"type": "boolean"},
                           "apn_authentication": {"type": "string", "enum": ["CHAP", "NONE", "PAP", "AUTO"]}},
                          ["apn", "apn_authentication"]),
              "vpn": _obj({"server": {"type": "string"}, "user": {"type": "string"}, "group": {"type": "string"},
                           "password": {"type": "string"}, "key": {"type": "string"},
                           "type": {"type": "string", "enum": ["IKEv2", "IPSec", "L2TP", "PPTP"]}},
                          ["server", "user", "password", "key", "type"])},
             ["ocpp_csms_url", "security_profile", "ocpp_interface", "message_timeout"],
             description="The 2.x NetworkConnectionProfileType in snake_case.")},
        ["configuration_slot", "connection_data"], description="2.x only: a network connection profile."),
}

_CERT_TYPE_NOTE = ("2.0.1 names; 1.6 is sent CentralSystemRootCertificate for CSMSRootCertificate (either "
                   "spelling accepted) and has no V2G/MO types.")
_ALL.update({
    "CertificateSigned": _obj(
        {"certificate_chain": {"type": "string", "maxLength": 10000,
                               "description": "The signed certificate (PEM), followed by its sub-CA certificates."},
         "certificate_type": {"type": "string", "enum": list(SIGNED_CERTIFICATE_TYPES),
                              "description": "2.x only (1.6 signs the charge point certificate alone)."}},
        ["certificate_chain"], description="Sends a signed certificate (the certificates processor does this "
                                           "after a SignCertificate)."),
    "InstallCertificate": _obj(
        {"certificate_type": {"type": "string", "enum": [*CERTIFICATE_TYPES, "CentralSystemRootCertificate"],
                              "description": _CERT_TYPE_NOTE},
         "certificate": {"type": "string", "maxLength": 5500, "description": "A PEM certificate."}},
        ["certificate_type", "certificate"], description="Installs a trust anchor on the station."),
    "DeleteCertificate": _obj(
        {"hash_algorithm": {"type": "string", "enum": list(HASH_ALGORITHMS)},
         "issuer_name_hash": {"type": "string", "maxLength": 128, "description": "Hex, as the station listed it."},
         "issuer_key_hash": {"type": "string", "maxLength": 128, "description": "Hex, as the station listed it."},
         "serial_number": {"type": "string", "maxLength": 40, "description": "Hex, as the station listed it."}},
        ["hash_algorithm", "issuer_name_hash", "issuer_key_hash", "serial_number"],
        description="Deletes an installed certificate by its hash data (GetInstalledCertificateIds)."),
    "GetInstalledCertificateIds": _obj(
        {"certificate_types": {"type": "array", "items": {
            "type": "string", "enum": [*INSTALLED_CERTIFICATE_TYPES, "CentralSystemRootCertificate"]},
            "description": "2.x: none = every type. 1.6: exactly one (CSMSRootCertificate or "
                           "ManufacturerRootCertificate), else the command is refused as invalid."}},
        description="Lists the station's installed certificates (status and certificate hash data)."),
})

_LOCAL_ENTRY = _obj(
    {"id_token": {"type": "string", "maxLength": 36},
     "status": {"type": "string", "enum": ["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"],
                "description": "Absent: the entry removes the token (Differential)."},
     "expires_at": _TS, "group_id": {"type": "string", "maxLength": 36}, "id_token_type": _ID_TOKEN_TYPE},
    ["id_token"])
_ALL.update({
    "SendLocalList": _obj(
        {"list_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
         "update_type": {"type": "string", "enum": ["Full", "Differential"]},
         "local_authorization_list": {"type": "array", "items": _LOCAL_ENTRY}},
        ["list_version", "update_type"],
        description="One SendLocalList message (the local-list sync loop chunks and versions lists itself: "
                    "PUT /api/v1/stations/{id}/local-list)."),
    "GetChargingProfiles": _obj(
        {"request_id": _REQUEST_ID, "evse_id": _EVSE,
         "charging_profile": {"type": "object", "description": "ChargingProfileCriterionType in snake_case "
                              "(charging_profile_purpose, stack_level, charging_profile_id, charging_limit_source); "
                              "{} = every profile."}},
        description="2.x only; the station answers with ReportChargingProfiles."),
    "SetDisplayMessage": _obj(
        {"message": {"type": "object", "description": "MessageInfoType in snake_case: id, priority, state?, "
                     "start_date_time?, end_date_time?, transaction_id?, message {format, content, language?}."}},
        ["message"], description="2.x only."),
    "GetDisplayMessages": _obj(
        {"request_id": _REQUEST_ID, "id": {"type": "array", "items": _INT32},
         "priority": {"type": "string", "enum": ["AlwaysFront", "InFront", "NormalCycle"]},
         "state": {"type": "string", "enum": ["Charging", "Faulted", "Idle", "Unavailable"]}},
        description="2.x only; the station answers with NotifyDisplayMessages."),
    "ClearDisplayMessage": _obj({"id": _INT32}, ["id"], description="2.x only."),
    "CustomerInformation": _obj(
        {"request_id": _REQUEST_ID, "report": {"type": "boolean"}, "clear": {"type": "boolean"},
         "id_token": {"type": "string", "maxLength": 36}, "id_token_type": _ID_TOKEN_TYPE,
         "customer_identifier": {"type": "string", "maxLength": 64},
         "customer_certificate": {"type": "object", "description": "CertificateHashDataType in snake_case."}},
        ["report", "clear"], description="2.x only; the station answers with NotifyCustomerInformation."),
    "CostUpdated": _obj(
        {"total_cost": {"type": ["string", "number"], "description": "Decimal, incl. tax."},
         "transaction_id": {"type": "string", "maxLength": 36}},
        ["total_cost", "transaction_id"], description="2.x only (1.6: the costmsg DataTransfer extension)."),
})

# Only the command types the vocabulary has (a schema written ahead of its builder waits).
COMMAND_PARAMS: dict[str, J] = {t: _ALL[t] for t in COMMAND_TYPES if t in _ALL}
COMMAND_SUMMARIES: dict[str, str] = {t: str(s.get("description", "")) for t, s in COMMAND_PARAMS.items()}
