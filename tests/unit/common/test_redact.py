"""Credentials never leave the gateway inside command records (services/common/ocpp/redact.py)."""

from __future__ import annotations

from services.common.ocpp.redact import REDACTED, redact, redact_response


def test_change_configuration_authorization_key_is_redacted_and_others_are_not() -> None:
    p = {"key": "AuthorizationKey", "value": "new-secret-password-123"}
    assert redact("ChangeConfiguration", p) == {"key": "AuthorizationKey", "value": REDACTED}
    assert p["value"] == "new-secret-password-123"  # the command itself keeps it
    other = {"key": "HeartbeatInterval", "value": "60"}
    assert redact("ChangeConfiguration", other) is other


def test_set_variables_basic_auth_password_is_redacted_case_insensitively() -> None:
    p = {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "s3cret-s3cret-s3cret"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "60"},
    ]}
    out = redact("SetVariables", p)
    assert out["setVariableData"][0]["attributeValue"] == REDACTED
    assert out["setVariableData"][1]["attributeValue"] == "60"
    assert p["setVariableData"][0]["attributeValue"] == "s3cret-s3cret-s3cret"
    lower = {"setVariableData": [{"component": {"name": "securityctrlr"}, "variable": {"name": "basicauthpassword"},
                                  "attributeValue": "x" * 20}]}
    assert redact("SetVariables", lower)["setVariableData"][0]["attributeValue"] == REDACTED


def test_network_profile_vpn_and_apn_passwords_are_redacted() -> None:
    p = {"configurationSlot": 1, "connectionData": {"ocppCsmsUrl": "wss://x", "vpn": {"password": "a", "key": "b", "user": "u"},
                                                     "apn": {"apn": "web", "apnPassword": "c"}}}
    out = redact("SetNetworkProfile", p)
    assert out["connectionData"]["vpn"] == {"password": REDACTED, "key": REDACTED, "user": "u"}
    assert out["connectionData"]["apn"] == {"apn": "web", "apnPassword": REDACTED}


def test_station_answers_with_write_only_values_are_redacted() -> None:
    r = {"configurationKey": [{"key": "AuthorizationKey", "readonly": False, "value": "leaked"},
                              {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]}
    out = redact_response("GetConfiguration", r)
    assert [k["value"] for k in out["configurationKey"]] == [REDACTED, "60"]
    g = {"getVariableResult": [{"attributeStatus": "Accepted", "component": {"name": "SecurityCtrlr"},
                                "variable": {"name": "BasicAuthPassword"}, "attributeValue": "leaked"}]}
    assert redact_response("GetVariables", g)["getVariableResult"][0]["attributeValue"] == REDACTED
    assert redact_response("Reset", {"status": "Accepted"}) == {"status": "Accepted"}
