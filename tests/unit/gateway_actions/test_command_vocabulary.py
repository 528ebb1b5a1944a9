from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.common.ocpp import profiles
from services.common.ocpp.commands import (
    COMMAND_TYPES,
    InvalidCommand,
    UnsupportedCommand,
    command_types,
    from_ocpp,
    snake_case,
    to_ocpp,
    versions_supporting,
)
from services.common.ocpp_version import OcppVersion

from .schemas import request_validator, response_validator, wire

PROFILE_16 = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
              "chargingProfileKind": "Relative",
              "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.3}]}}
PROFILE_2X = {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
              "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.3}]}]}

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
HASH_DATA = {"hash_algorithm": "SHA256", "issuer_name_hash": "a1" * 32, "issuer_key_hash": "b2" * 32, "serial_number": "1f2e"}

# Parameters an operator could send for each command type, valid for every version.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "RemoteStart": [{"id_token": "TAG-1"}, {"id_token": "TAG-1", "connector_id": 2}, {"id_token": "TAG-1", "evse_id": 2}],
    "RemoteStop": [{"transaction_id": "17"}, {"transaction_id": 17}],
    "Reset": [{"reset_type": "Soft"}, {"reset_type": "Hard"}],
    "UnlockConnector": [{"connector_id": 1}, {"evse_id": 2}, {"evse_id": 2, "connector_id": 2}],
    "ChangeAvailability": [{"availability": "Inoperative"}, {"availability": "Operative", "connector_id": 1},
                           {"availability": "Operative", "evse_id": 1, "connector_id": 2}],
    "TriggerMessage": [{"requested_message": "Heartbeat"}, {"requested_message": "StatusNotification", "evse_id": 1,
                                                            "connector_id": 1},
                       {"requested_message": "MeterValues", "connector_id": 1},
                       {"requested_message": "LogStatusNotification"}],
    "ClearChargingProfile": [{}, {"id": 3}, {"connector_id": 1, "purpose": "TxDefaultProfile", "stack_level": 0},
                             {"purpose": "ChargePointMaxProfile"}],
    "UpdateFirmware": [{"location": "https://fw.example/1.bin"},
                       {"location": "https://fw.example/1.bin", "retrieve_date": "2026-12-01T00:00:00+01:00", "retries": 3}],
    "GetDiagnostics": [{"location": "ftp://logs.example/"},
                       {"location": "ftp://logs.example/", "start_time": "2026-11-01T00:00:00Z"}],
    "GetLog": [{"location": "ftp://logs.example/"}, {"location": "ftp://logs.example/", "log_type": "SecurityLog",
                                                     "request_id": 9}],
    "DataTransfer": [{"vendor_id": "ACME"}, {"vendor_id": "ACME", "message_id": "m", "data": {"a": 1}}],
    "ClearCache": [{}],
    "GetLocalListVersion": [{}],
    "ReserveNow": [{"reservation_id": 5, "expiry_date": "2026-11-28T05:00:00Z", "id_token": "TAG-1", "connector_id": 1}],
    "CancelReservation": [{"reservation_id": 5}],
    "GetCompositeSchedule": [{"duration": 3600, "connector_id": 1}, {"duration": 60, "charging_rate_unit": "A"}],
    "CertificateSigned": [{"certificate_chain": PEM}, {"certificate_chain": PEM + PEM,
                                                       "certificate_type": "ChargingStationCertificate"}],
    "InstallCertificate": [{"certificate_type": "CSMSRootCertificate", "certificate": PEM},
                           {"certificate_type": "ManufacturerRootCertificate", "certificate": PEM}],
    "DeleteCertificate": [HASH_DATA],
    "GetInstalledCertificateIds": [{"certificate_types": ["CSMSRootCertificate"]},
                                   {"certificate_types": ["ManufacturerRootCertificate"]}],
    "SetChargingLimit": [
        {"purpose": "tx", "evse_id": 1, "transaction_id": "4711", "limit_a": "10.66", "profile_id": 7101,
         "start": "2026-11-28T04:21:16.004Z"},
        {"purpose": "tx", "evse_id": 2, "transaction_id": "12", "limit_a": "0", "number_phases": 3, "profile_id": 7102,
         "start": "2026-11-28T04:21:16.004Z"},
        {"purpose": "default", "evse_id": 0, "limit_a": "6.0", "number_phases": None, "profile_id": 7000},
        {"purpose": "default", "limit_a": "32", "number_phases": 1, "profile_id": 7000, "start": "2026-11-28T04:21:16Z"},
    ],
    "SendLocalList": [
        {"list_version": 1, "update_type": "Full"},
        {"list_version": 2, "update_type": "Full", "local_authorization_list": [
            {"id_token": "TAG-1", "status": "Accepted", "expires_at": "2027-01-01T00:00:00Z", "group_id": "FLEET"},
            {"id_token": "TAG-2", "status": "Blocked"}]},
        {"list_version": 3, "update_type": "Differential", "local_authorization_list": [{"id_token": "TAG-2"}]},
    ],
}
EXAMPLES_16 = {
    "GetConfiguration": [{}, {"keys": ["HeartbeatInterval"]}, {"keys": "MeterValueSampleInterval"}],
    "ChangeConfiguration": [{"key": "HeartbeatInterval", "value": "60"}, {"key": "AuthorizeRemoteTxRequests", "value": True},
                            {"key": "HeartbeatInterval", "value": 60}],
    "SetChargingProfile": [{"connector_id": 1, "charging_profile": PROFILE_16}, {"charging_profile": PROFILE_16}],
}
EXAMPLES_2X = {
    "GetVariables": [{"variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"},
                                    {"component": "EVSE", "variable": "Power", "evse_id": 1, "attribute_type": "MaxSet"}]}],
    "SetVariables": [{"variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": 60},
                                    {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}, "value": True}]}],
    "SetChargingProfile": [{"evse_id": 1, "charging_profile": PROFILE_2X}, {"charging_profile": PROFILE_2X}],
    "GetBaseReport": [{}, {"report_base": "ConfigurationInventory", "request_id": 4}],
    "GetReport": [{}, {"request_id": 5, "component_criteria": ["Active", "Problem"], "component_variables": [
        {"component": {"name": "EVSE", "evse": {"id": 1, "connector_id": 1}}, "variable": {"name": "Power"}},
        {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "variable_instance": "x"}]}],
    "GetTransactionStatus": [{}, {"transaction_id": "tx-1"}],
    "SetNetworkProfile": [{"configuration_slot": 1, "connection_data": {
        "ocpp_csms_url": "wss://csms.example/ocpp", "security_profile": 2, "ocpp_interface": "Wired0",
        "message_timeout": 30, "apn": {"apn": "internet", "apn_authentication": "AUTO"}}}],
    "GetChargingProfiles": [{}, {"request_id": 9, "evse_id": 1, "charging_profile": {
        "charging_profile_purpose": "TxProfile", "stack_level": 1, "charging_limit_source": ["CSO"]}}],
    "SetDisplayMessage": [{"message": {"id": 1, "priority": "NormalCycle", "start_date_time": "2026-11-28T05:00:00.000Z",
                                       "message": {"format": "UTF8", "content": "Welcome", "language": "en"}}}],
    "GetDisplayMessages": [{}, {"request_id": 4, "id": [1, 2], "priority": "InFront", "state": "Charging"}],
    "ClearDisplayMessage": [{"id": 1}],
    "CustomerInformation": [{"report": True, "clear": False, "id_token": "TAG-1", "id_token_type": "ISO14443"},
                            {"request_id": 5, "report": False, "clear": True, "customer_identifier": "cust-1"}],
    "CostUpdated": [{"total_cost": "1.23", "transaction_id": "tx-1"}, {"total_cost": 0, "transaction_id": "tx-2"}],
}


def cases(version: str) -> list[tuple[str, dict[str, Any]]]:
    extra = EXAMPLES_16 if version == "1.6" else EXAMPLES_2X
    return [(t, p) for table in (EXAMPLES, extra) for t, ps in table.items() for p in ps]


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
def test_every_translated_payload_validates_against_the_versions_request_schema(version: str) -> None:
    covered = set()
    for command_type, params in cases(version):
        action, payload = to_ocpp(command_type, params, version)
        request_validator(version, action).validate(wire(payload))
        covered.add(command_type)
    assert covered == command_types(version)


@pytest.mark.parametrize("command_type, params, v16, v201", [
    ("RemoteStart", {"id_token": "TAG-1", "connector_id": 2, "remote_start_id": 7},
     ("RemoteStartTransaction", {"idTag": "TAG-1", "connectorId": 2}),
     ("RequestStartTransaction", {"idToken": {"idToken": "TAG-1", "type": "Central"}, "remoteStartId": 7, "evseId": 2})),
    ("RemoteStop", {"transaction_id": "17"},
     ("RemoteStopTransaction", {"transactionId": 17}), ("RequestStopTransaction", {"transactionId": "17"})),
    ("Reset", {"reset_type": "Hard"}, ("Reset", {"type": "Hard"}), ("Reset", {"type": "Immediate"})),
    ("Reset", {"reset_type": "Soft"}, ("Reset", {"type": "Soft"}), ("Reset", {"type": "OnIdle"})),
    ("UnlockConnector", {"connector_id": 2}, ("UnlockConnector", {"connectorId": 2}),
     ("UnlockConnector", {"evseId": 2, "connectorId": 1})),
    ("ChangeAvailability", {"availability": "Inoperative"},
     ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}),
     ("ChangeAvailability", {"operationalStatus": "Inoperative"})),
    ("ChangeAvailability", {"availability": "Operative", "evse_id": 1},
     ("ChangeAvailability", {"connectorId": 1, "type": "Operative"}),
     ("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}})),
    ("TriggerMessage", {"requested_message": "StatusNotification", "evse_id": 1, "connector_id": 1},
     ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}),
     ("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}})),
    ("TriggerMessage", {"requested_message": "LogStatusNotification"},
     ("ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"}),
     ("TriggerMessage", {"requestedMessage": "LogStatusNotification"})),
    ("ClearChargingProfile", {"connector_id": 1, "purpose": "ChargePointMaxProfile"},
     ("ClearChargingProfile", {"connectorId": 1, "chargingProfilePurpose": "ChargePointMaxProfile"}),
     ("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "ChargingStationMaxProfile"}})),
    ("GetDiagnostics", {"location": "ftp://x/", "request_id": 3},
     ("GetDiagnostics", {"location": "ftp://x/"}),
     ("GetLog", {"logType": "DiagnosticsLog", "requestId": 3, "log": {"remoteLocation": "ftp://x/"}})),
    ("DataTransfer", {"vendor_id": "ACME", "data": {"a": 1}},
     ("DataTransfer", {"vendorId": "ACME", "data": '{"a": 1}'}), ("DataTransfer", {"vendorId": "ACME", "data": {"a": 1}})),
])
def test_commands_translate_to_each_versions_vocabulary(command_type: str, params: dict, v16: tuple, v201: tuple) -> None:
    assert to_ocpp(command_type, params, "1.6") == v16
    assert to_ocpp(command_type, params, "2.0.1") == v201


def test_a_remote_start_without_remote_start_id_gets_a_positive_generated_one() -> None:
    ids = {to_ocpp("RemoteStart", {"id_token": "T"}, "2.0.1")[1]["remoteStartId"] for _ in range(20)}
    assert all(0 < i < 2**31 for i in ids) and len(ids) > 1


def test_update_firmware_times_are_sent_in_utc_milliseconds() -> None:
    _, payload = to_ocpp("UpdateFirmware", {"location": "x", "retrieve_date": "2026-12-01T01:00:00+01:00"}, "2.0.1")
    assert payload["firmware"]["retrieveDateTime"] == "2026-12-01T00:00:00.000Z"
    assert "requestId" in payload


def test_configuration_values_are_sent_as_strings() -> None:
    assert to_ocpp("ChangeConfiguration", {"key": "K", "value": True}, "1.6")[1]["value"] == "true"
    _, payload = to_ocpp("SetVariables", {"variables": [{"component": "C", "variable": "V", "value": 60, "evse_id": 1}]}, "2.0.1")
    assert payload["setVariableData"] == [{"attributeValue": "60", "component": {"name": "C", "evse": {"id": 1}},
                                           "variable": {"name": "V"}}]


@pytest.mark.parametrize("command_type, version", [
    ("GetConfiguration", "2.0.1"), ("ChangeConfiguration", "2.1"), ("GetVariables", "1.6"), ("SetVariables", "1.6"),
    ("GetBaseReport", "1.6"), ("Teleport", "1.6"), ("Reset", "1.5"),
])
def test_commands_a_version_does_not_have_are_unsupported(command_type: str, version: str) -> None:
    with pytest.raises(UnsupportedCommand):
        to_ocpp(command_type, {"reset_type": "Soft"}, version)


@pytest.mark.parametrize("command_type, params", [
    ("Reset", {}), ("Reset", {"reset_type": "Sideways"}), ("RemoteStart", {}), ("RemoteStop", {"transaction_id": "abc"}),
    ("UnlockConnector", {}), ("ChangeAvailability", {"availability": "Maybe"}), ("TriggerMessage", {"requested_message": "Nope"}),
    ("UpdateFirmware", {"location": "x", "retrieve_date": "tomorrow"}), ("RemoteStart", {"id_token": "X" * 21}),
    ("ReserveNow", {"id_token": "T", "expiry_date": "2026-11-28T05:00:00Z"}), ("SetChargingProfile", {"charging_profile": "x"}),
    ("GetConfiguration", {"keys": 5}), ("ClearChargingProfile", {"purpose": ["TxProfile"]}),
    ("RemoteStart", {"id_token": "T", "connector_id": True}),
])
def test_bad_parameters_are_invalid_commands_not_bad_calls(command_type: str, params: dict) -> None:
    with pytest.raises(InvalidCommand):
        to_ocpp(command_type, params, "1.6")


@pytest.mark.parametrize("params", [
    {"variables": []}, {"variables": "HeartbeatInterval"}, {"variables": [{"component": "C"}]},
    {"variables": [{"component": ["C"], "variable": "V"}]}, {"variables": [{"component": 5, "variable": "V"}]},
])
def test_bad_variable_lists_are_invalid_commands(params: dict) -> None:
    with pytest.raises(InvalidCommand):
        to_ocpp("GetVariables", params, "2.0.1")


def test_both_error_kinds_are_value_errors_for_the_api() -> None:
    assert issubclass(UnsupportedCommand, ValueError) and issubclass(InvalidCommand, ValueError)


@pytest.mark.parametrize("name, expected", [
    ("idTagInfo", "id_tag_info"), ("configurationKey", "configuration_key"), ("unknownKey", "unknown_key"),
    ("evseId", "evse_id"), ("getVariableResult", "get_variable_result"), ("readonly", "readonly"),
    ("iso15118SchemaVersion", "iso15118_schema_version"), ("status", "status"),
])
def test_response_keys_are_snake_cased(name: str, expected: str) -> None:
    assert snake_case(name) == expected


@pytest.mark.parametrize("version, command_type, params, response, expected", [
    ("1.6", "GetConfiguration", {}, {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
                                     "unknownKey": ["Foo"]},
     ("Accepted", {"configuration_key": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
                   "unknown_key": ["Foo"]})),
    ("1.6", "Reset", {"reset_type": "Hard"}, {"status": "Rejected"}, ("Rejected", {"status": "Rejected"})),
    ("1.6", "RemoteStart", {"id_token": "T"}, {"status": "Accepted"}, ("Accepted", {"status": "Accepted"})),
    ("1.6", "GetLocalListVersion", {}, {"listVersion": 3}, ("Accepted", {"list_version": 3})),
    ("1.6", "DataTransfer", {"vendor_id": "V"}, {"status": "Accepted", "data": "{\"camelKey\": 1}"},
     ("Accepted", {"status": "Accepted", "data": "{\"camelKey\": 1}"})),
    ("2.0.1", "RemoteStart", {"id_token": "T"}, {"status": "Accepted", "transactionId": "tx-9",
                                                  "statusInfo": {"reasonCode": "ok"}},
     ("Accepted", {"status": "Accepted", "transaction_id": "tx-9", "status_info": {"reason_code": "ok"}})),
    ("2.0.1", "GetVariables", {"variables": [{"component": "C", "variable": "V"}]},
     {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "60", "component": {"name": "C"},
                             "variable": {"name": "V"}}]},
     ("Accepted", {"get_variable_result": [{"attribute_status": "Accepted", "attribute_value": "60",
                                            "component": {"name": "C"}, "variable": {"name": "V"}}]})),
    ("2.0.1", "DataTransfer", {"vendor_id": "V"}, {"status": "Accepted", "data": {"camelKey": 1}},
     ("Accepted", {"status": "Accepted", "data": {"camelKey": 1}})),
    ("2.1", "UnlockConnector", {"evse_id": 1}, {"status": "UnknownConnector"},
     ("UnknownConnector", {"status": "UnknownConnector"})),
])
def test_round_trips_give_the_stations_status_and_a_snake_case_response(
    version: str, command_type: str, params: dict, response: dict, expected: tuple
) -> None:
    action, _ = to_ocpp(command_type, params, version)
    response_validator(version, action).validate(response)  # a real station's answer
    assert from_ocpp(command_type, action, response, version) == expected


# --- the command list and SetChargingLimit ------------------------------------------------

def test_the_command_list_is_every_command_of_some_version_and_nothing_internal() -> None:
    every = set().union(*(command_types(v) for v in OcppVersion))
    assert set(COMMAND_TYPES) == every and len(COMMAND_TYPES) == len(every)
    assert "SetChargingLimit" in COMMAND_TYPES and not any(t.startswith("_") for t in COMMAND_TYPES)


def test_versions_supporting_names_where_a_command_can_go() -> None:
    assert versions_supporting("Reset") == set(OcppVersion)
    assert versions_supporting("SetChargingLimit") == set(OcppVersion)
    assert versions_supporting("GetConfiguration") == {OcppVersion.V16}
    assert versions_supporting("GetVariables") == {OcppVersion.V201, OcppVersion.V21}
    assert versions_supporting("_Fence") == versions_supporting("Teleport") == frozenset()


START = datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=timezone.utc)
TX_LIMIT = {"purpose": "tx", "evse_id": 2, "transaction_id": "4711", "limit_a": "10.66", "number_phases": None,
            "profile_id": 7102, "start": "2026-11-28T04:21:16.004Z"}
DEFAULT_LIMIT = {"purpose": "default", "evse_id": 0, "limit_a": "6.0", "number_phases": None, "profile_id": 7000}


def test_a_transaction_limit_is_a_16_tx_profile_absolute_from_the_senders_start() -> None:
    assert to_ocpp("SetChargingLimit", TX_LIMIT, "1.6") == ("SetChargingProfile", {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 7102, "transactionId": 4711, "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": {"startSchedule": "2026-11-28T04:21:16.004Z", "chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.6}]},
        },
    })


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_a_transaction_limit_is_a_2x_tx_profile_with_the_string_transaction_id(version: str) -> None:
    action, payload = to_ocpp("SetChargingLimit", {**TX_LIMIT, "transaction_id": "c0ffee-42"}, version)
    assert action == "SetChargingProfile"
    assert payload == {
        "evseId": 2,
        "chargingProfile": {
            "id": 7102, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "transactionId": "c0ffee-42",
            "chargingSchedule": [{"id": 7102, "startSchedule": "2026-11-28T04:21:16.004Z", "chargingRateUnit": "A",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.6}]}],
        },
    }


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
def test_limits_build_what_the_profile_builders_build_for_the_same_inputs(version: str) -> None:
    """What smart charging sent as a raw SetChargingProfile before, it now gets from the limit."""
    limit, phases = Decimal("13.37"), 3
    tx = {**TX_LIMIT, "transaction_id": "88", "limit_a": str(limit), "number_phases": phases}
    default = {**DEFAULT_LIMIT, "limit_a": str(limit), "number_phases": phases}
    if version == "1.6":
        want_tx = profiles.tx_profile_16(2, "88", limit, 7102, START, number_phases=phases)
        want_default = profiles.tx_default_profile_16(limit, 7000, START, number_phases=phases)
        raw_tx = {"connector_id": 2, "charging_profile": want_tx["csChargingProfiles"]}
    else:
        want_tx = profiles.tx_profile_201(2, "88", limit, 7102, START, number_phases=phases)
        want_default = profiles.tx_default_profile_201(limit, 7000, START, number_phases=phases)
        raw_tx = {"evse_id": 2, "charging_profile": want_tx["chargingProfile"]}
    assert to_ocpp("SetChargingLimit", tx, version) == ("SetChargingProfile", want_tx)
    assert to_ocpp("SetChargingLimit", default, version) == ("SetChargingProfile", want_default)
    assert to_ocpp("SetChargingLimit", tx, version) == to_ocpp("SetChargingProfile", raw_tx, version)


def test_the_fail_safe_is_relative_so_it_carries_no_start_and_a_re_send_is_the_same_frame() -> None:
    first = to_ocpp("SetChargingLimit", DEFAULT_LIMIT, "1.6")
    assert first == to_ocpp("SetChargingLimit", DEFAULT_LIMIT, "1.6")
    assert first[1]["connectorId"] == 0
    profile = first[1]["csChargingProfiles"]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile" and profile["chargingProfileKind"] == "Relative"
    assert "startSchedule" not in profile["chargingSchedule"]
    assert to_ocpp("SetChargingLimit", TX_LIMIT, "2.0.1") == to_ocpp("SetChargingLimit", dict(TX_LIMIT), "2.0.1")


@pytest.mark.parametrize("version, params", [
    ("1.6", {**TX_LIMIT, "purpose": "max"}),
    ("1.6", {k: v for k, v in TX_LIMIT.items() if k != "purpose"}),
    ("1.6", {k: v for k, v in TX_LIMIT.items() if k != "transaction_id"}),
    ("1.6", {k: v for k, v in TX_LIMIT.items() if k != "start"}),
    ("1.6", {**TX_LIMIT, "start": "soon"}),
    ("1.6", {k: v for k, v in TX_LIMIT.items() if k != "profile_id"}),
    ("1.6", {k: v for k, v in TX_LIMIT.items() if k != "limit_a"}),
    ("1.6", {**TX_LIMIT, "transaction_id": "c0ffee"}),       # 1.6 transaction ids are integers
    ("1.6", {**TX_LIMIT, "evse_id": 0}),                     # a TxProfile needs a connector
    ("1.6", {**TX_LIMIT, "limit_a": "lots"}),
    ("1.6", {**TX_LIMIT, "limit_a": "-1"}),
    ("1.6", {**TX_LIMIT, "limit_a": "NaN"}),
    ("1.6", {**TX_LIMIT, "limit_a": True}),
    ("1.6", {**TX_LIMIT, "number_phases": 4}),
    ("1.6", {**DEFAULT_LIMIT, "evse_id": -1}),
    ("2.0.1", {**TX_LIMIT, "transaction_id": "x" * 37}),
    ("2.0.1", {**TX_LIMIT, "evse_id": 0}),
    ("2.0.1", {**TX_LIMIT, "profile_id": "seven"}),
    ("2.0.1", {**DEFAULT_LIMIT, "evse_id": "one"}),
])
def test_bad_limits_are_invalid_commands(version: str, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidCommand):
        to_ocpp("SetChargingLimit", params, version)
