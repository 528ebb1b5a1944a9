"""Credentials inside OCPP payloads, hidden before a payload leaves the gateway as an event.

A password rotation sends the new password to the station (1.6 ChangeConfiguration
`AuthorizationKey`, 2.0.1 SetVariables `SecurityCtrlr.BasicAuthPassword`), and a network
profile may carry VPN and APN passwords. The command itself must carry them, but the
records made of it must not: `CommandIssued.payload_json` and `CommandResult.request_json`
go to csms.events.v1 (a topic other teams consume), into the station history, the command
records and the device model. Station answers are redacted too, in case a station returns
a write-only value it should not (GetConfiguration, GetVariables).

`redact(action, payload)` returns the payload unchanged (the same object) when it holds no
credential, else a copy with each credential replaced by `REDACTED`.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["REDACTED", "redact", "redact_response", "SECRET_CONFIGURATION_KEYS", "is_secret_variable"]

REDACTED = "***"

# 1.6 configuration keys whose value is a credential (security whitepaper: write-only)
SECRET_CONFIGURATION_KEYS = frozenset({"authorizationkey"})
# 2.0.1 (component, variable) pairs whose value is a credential
_SECRET_VARIABLES = frozenset({("securityctrlr", "basicauthpassword")})
_NETWORK_SECRETS = (("vpn", "password"), ("vpn", "key"), ("apn", "apnPassword"))


def is_secret_variable(component: object, variable: object) -> bool:
    """True for a device-model variable holding a credential (names compared case-insensitively)."""
    c = component.get("name") if isinstance(component, dict) else component
    v = variable.get("name") if isinstance(variable, dict) else variable
    return isinstance(c, str) and isinstance(v, str) and (c.casefold(), v.casefold()) in _SECRET_VARIABLES


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key.casefold() in SECRET_CONFIGURATION_KEYS


def redact(action: str, payload: Any) -> Any:
    """The request `payload` of OCPP `action` without credentials (see the module docstring)."""
    if not isinstance(payload, dict):
        return payload
    if action == "ChangeConfiguration" and _secret_key(payload.get("key")) and "value" in payload:
        return {**payload, "value": REDACTED}
    if action == "SetVariables":
        data = payload.get("setVariableData")
        if isinstance(data, list) and any(
            isinstance(d, dict) and is_secret_variable(d.get("component"), d.get("variable")) for d in data
        ):
            out = copy.deepcopy(payload)
            for d in out["setVariableData"]:
                if isinstance(d, dict) and is_secret_variable(d.get("component"), d.get("variable")) and "attributeValue" in d:
                    d["attributeValue"] = REDACTED
            return out
    if action == "SetNetworkProfile":
        conn = payload.get("connectionData")
        if isinstance(conn, dict) and any(isinstance(conn.get(o), dict) and f in conn[o] for o, f in _NETWORK_SECRETS):
            out = copy.deepcopy(payload)
            for outer, field in _NETWORK_SECRETS:
                part = out["connectionData"].get(outer)
                if isinstance(part, dict) and field in part:
                    part[field] = REDACTED
            return out
    return payload


def redact_response(action: str, response: Any) -> Any:
    """A station's answer to `action` without credentials it should not have returned."""
    if not isinstance(response, dict):
        return response
    if action == "GetConfiguration":
        keys = response.get("configurationKey")
        if isinstance(keys, list) and any(isinstance(k, dict) and _secret_key(k.get("key")) and "value" in k for k in keys):
            out = copy.deepcopy(response)
            for k in out["configurationKey"]:
                if isinstance(k, dict) and _secret_key(k.get("key")) and "value" in k:
                    k["value"] = REDACTED
            return out
    if action == "GetVariables":
        rows = response.get("getVariableResult")
        if isinstance(rows, list) and any(
            isinstance(r, dict) and is_secret_variable(r.get("component"), r.get("variable")) and "attributeValue" in r for r in rows
        ):
            out = copy.deepcopy(response)
            for r in out["getVariableResult"]:
                if isinstance(r, dict) and is_secret_variable(r.get("component"), r.get("variable")) and "attributeValue" in r:
                    r["attributeValue"] = REDACTED
            return out
    return response
