"""Every command type's parameters are described in the OpenAPI document, and what the
vocabulary accepts is what the descriptions allow."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from services.api.command_schemas import COMMAND_PARAMS
from services.api.commands import validate_command
from services.api.errors import ApiError
from services.api.openapi import openapi_document
from services.common.ocpp.commands import COMMAND_TYPES, TRIGGER_MESSAGES, to_ocpp
from tests.unit.gateway_actions.test_command_vocabulary import EXAMPLES, EXAMPLES_2X, EXAMPLES_16

_DOC = openapi_document()
_SCHEMAS = _DOC["components"]["schemas"]


def _validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]})


def test_every_command_type_has_its_parameters_described() -> None:
    assert list(COMMAND_PARAMS) == list(COMMAND_TYPES)
    request = _SCHEMAS["CommandRequest"]
    assert [r["$ref"].rsplit("/", 1)[1] for r in request["oneOf"]] == [f"Command{t}" for t in COMMAND_TYPES]
    assert set(request["discriminator"]["mapping"]) == set(COMMAND_TYPES)
    for t in COMMAND_TYPES:
        schema = _SCHEMAS[f"Command{t}"]
        assert schema["properties"]["type"] == {"const": t}
        assert set(schema["required"]) <= set(schema["properties"]), t
        assert schema.get("description") or len(schema["properties"]) > 2, t  # params or a sentence
        for name, prop in schema["properties"].items():
            assert prop, (t, name)  # every parameter has a schema, not just a name


def _examples() -> list[tuple[str, dict[str, Any]]]:
    return [(t, p) for table in (EXAMPLES, EXAMPLES_16, EXAMPLES_2X) for t, ps in table.items() for p in ps]


@pytest.mark.parametrize("command_type, params", _examples())
def test_the_vocabularys_examples_are_valid_command_requests(command_type: str, params: dict[str, Any]) -> None:
    body = {"type": command_type, **{k: v for k, v in params.items() if v is not None}}
    _validator("CommandRequest").validate(body)
    _validator(f"Command{command_type}").validate(body)


@pytest.mark.parametrize("body", [
    {"type": "Reset"}, {"type": "Reset", "reset_type": 1}, {"type": "TriggerMessage", "requested_message": "Nope"},
    {"type": "SetNetworkProfile", "configuration_slot": 1}, {"type": "UnlockConnector"}, {"type": "Teleport"},
    {"type": "UpdateFirmware"},
])
def test_bad_command_requests_do_not_match_the_description(body: dict[str, Any]) -> None:
    assert not _validator("CommandRequest").is_valid(body)


def test_every_trigger_kind_of_each_version_is_accepted() -> None:
    # 1.6 core + ExtendedTriggerMessage kinds, 2.0.1 MessageTriggerEnumType: each goes through for
    # at least its version, and the API lets every one of them through
    for message in TRIGGER_MESSAGES:
        sent = []
        for version in ("1.6", "2.0.1", "2.1"):
            try:
                sent.append(to_ocpp("TriggerMessage", {"requested_message": message}, version))
            except ValueError:
                continue
        assert sent, message
        assert validate_command({"type": "TriggerMessage", "requested_message": message}, 5)[0] == "TriggerMessage"
    for message in ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                    "MeterValues", "StatusNotification", "LogStatusNotification", "SignChargePointCertificate"):
        to_ocpp("TriggerMessage", {"requested_message": message}, "1.6")
    for message in ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                    "MeterValues", "SignChargingStationCertificate", "SignV2GCertificate", "StatusNotification",
                    "TransactionEvent", "SignCombinedCertificate", "PublishFirmwareStatusNotification"):
        to_ocpp("TriggerMessage", {"requested_message": message}, "2.0.1")


@pytest.mark.parametrize("body, field", [
    ({"type": "TriggerMessage", "requested_message": "Everything"}, "requested_message"),
    ({"type": "TriggerMessage", "requested_message": "Heartbeat", "extended": "yes"}, "extended"),
    ({"type": "SetNetworkProfile", "connection_data": {}}, "configuration_slot"),
    ({"type": "SetNetworkProfile", "configuration_slot": 1}, "connection_data"),
    ({"type": "UpdateFirmware", "location": "x", "signature": "s"}, "signature"),
    ({"type": "UpdateFirmware"}, "location"),
])
def test_the_api_refuses_what_the_vocabulary_cannot_send(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        validate_command(body, 5)
    assert caught.value.status == 400 and caught.value.details and field in caught.value.details


def test_signed_1_6_firmware_and_the_extended_trigger() -> None:
    action, payload = to_ocpp("UpdateFirmware", {"location": "https://fw/1.bin", "signing_certificate": "C",
                                                 "signature": "S", "install_date": "2026-12-01T00:00:00Z"}, "1.6")
    assert action == "SignedUpdateFirmware" and payload["firmware"]["installDateTime"] == "2026-12-01T00:00:00.000Z"
    assert 0 < payload["requestId"] < 2**31
    with pytest.raises(ValueError):
        to_ocpp("UpdateFirmware", {"location": "https://fw/1.bin", "signature": "S"}, "1.6")
    assert to_ocpp("TriggerMessage", {"requested_message": "Heartbeat", "extended": True}, "1.6") == (
        "ExtendedTriggerMessage", {"requestedMessage": "Heartbeat"})
    assert to_ocpp("TriggerMessage", {"requested_message": "SignChargingStationCertificate"}, "1.6") == (
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    with pytest.raises(ValueError):
        to_ocpp("TriggerMessage", {"requested_message": "TransactionEvent"}, "1.6")
    assert to_ocpp("GetLog", {"location": "http://h/u/", "log_type": "SecurityLog", "request_id": 3}, "1.6") == (
        "GetLog", {"logType": "SecurityLog", "requestId": 3, "log": {"remoteLocation": "http://h/u/"}})


def test_set_network_profile_takes_snake_case_connection_data() -> None:
    params = {"configuration_slot": 2, "connection_data": {
        "ocpp_csms_url": "wss://csms/ocpp", "security_profile": 3, "ocpp_interface": "Wireless0", "message_timeout": 30,
        "vpn": {"server": "vpn", "user": "u", "password": "p", "key": "k", "type": "IKEv2"}}}
    assert to_ocpp("SetNetworkProfile", params, "2.0.1") == ("SetNetworkProfile", {
        "configurationSlot": 2, "connectionData": {
            "ocppCsmsUrl": "wss://csms/ocpp", "securityProfile": 3, "ocppInterface": "Wireless0", "messageTimeout": 30,
            "vpn": {"server": "vpn", "user": "u", "password": "p", "key": "k", "type": "IKEv2"},
            "ocppTransport": "JSON", "ocppVersion": "OCPP20"}})
    with pytest.raises(ValueError):
        to_ocpp("SetNetworkProfile", params, "1.6")
    with pytest.raises(ValueError):  # the profile misses its url
        to_ocpp("SetNetworkProfile", {"configuration_slot": 1, "connection_data": {"security_profile": 1}}, "2.0.1")
