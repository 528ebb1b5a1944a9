"""OpenAPI fragments of a station's credentials (ADR 017, services/api/routes_security.py):
`PATHS` (path items), `SCHEMAS` (component schemas), `VIEW_SCHEMAS` (schemas of views,
`additionalProperties: false`, checked against real responses) and `TAGS`.
services/api/openapi.py merges them into the document; this module imports nothing of it
(no cycle); the shared pieces are in openapi_parts.py.
"""

from __future__ import annotations

from typing import Any

from services.certificates.documents import CERTIFICATE_STATUSES
from services.common.ocpp.commands import CERTIFICATE_TYPES, INSTALLED_CERTIFICATE_TYPES
from services.common.passwords import MAX_LENGTH, MIN_LENGTH
from services.api.openapi_parts import (  # the shared pieces, under this module's old names
    R400 as _R400, R401 as _R401, R404 as _R404, TS as _TS, NULL_TS as _NULL_TS, NULL_STR as _NULL_STR,
    ref as _ref, json_content as _json, error as _error, path_param as _path,
)

__all__ = ["PATHS", "SCHEMAS", "TAGS", "VIEW_SCHEMAS"]

J = dict[str, Any]

TAGS = ("station-security",)
VIEW_SCHEMAS = ("PasswordRotation", "SecurityProfileChange", "Certificate", "CertificateList", "TrustAnchor",
                "TrustAnchorList", "StationAnswer")



def _obj(required: list[str], properties: J, *, description: str = "") -> J:
    out: J = {"type": "object", "required": required, "additionalProperties": False, "properties": properties}
    if description:
        out["description"] = description
    return out


def _op(summary: str, responses: J, *, op_id: str, params: list[J] | None = None, body: J | None = None,
        body_required: bool = True, description: str = "") -> J:
    op: J = {"summary": summary, "operationId": op_id, "tags": [TAGS[0]], "responses": {**responses, "401": _R401}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return op


_STATION = _path("id", "Station id.")
_OFFLINE = _error("StationOffline: the station is not connected (or, where said, the station refused).")
_TIMEOUT = _error("Timeout: no answer in time (see GET /api/v1/commands/{command_id}).")
_COMMAND = {"404": _R404, "409": _OFFLINE, "504": _TIMEOUT}
_HASH = {
    "hash_algorithm": {"type": "string", "enum": ["SHA256", "SHA384", "SHA512"]},
    "issuer_name_hash": {"type": "string"},
    "issuer_key_hash": {"type": "string"},
    "serial_number": {"type": "string"},
}

SCHEMAS: J = {
    "PasswordRotationRequest": _obj([], {
        "password": {"type": "string", "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH,
                     "description": "The new password; when absent one is generated and returned once."},
    }),
    "PasswordRotation": _obj(["status", "pending"], {
        "status": {"type": "string", "description": "The station's answer (Accepted, RebootRequired)."},
        "pending": {"type": "boolean", "const": True,
                    "description": "The new password is accepted alongside the current one until the station uses it."},
        "password": {"type": "string", "description": "Only when generated."},
    }),
    "SecurityProfileRequest": _obj(["profile"], {
        "profile": {"type": "integer", "enum": [2, 3], "description": "Higher than the station's current profile."},
        "ocpp_csms_url": {"type": "string", "pattern": "^wss://", "maxLength": 512,
                          "description": "OCPP 2.x: the URL of the new network profile (required)."},
        "configuration_slot": {"type": "integer", "minimum": 0, "default": 1,
                               "description": "OCPP 2.x: the network profile slot."},
    }),
    "SecurityProfileChange": _obj(["status", "steps", "pending_security_profile"], {
        "status": {"type": "string"},
        "steps": {"type": "array", "items": _obj(["action", "status"], {
            "action": {"type": "string", "examples": ["ChangeConfiguration", "SetNetworkProfile", "SetVariables", "Reset"]},
            "status": {"type": "string"},
        })},
        "pending_security_profile": {"type": ["integer", "null"]},
    }),
    "Certificate": _obj([
        "serial", "certificate_type", "status", "subject", "not_before", "not_after", "fingerprint_sha256",
        "issued_at", "revoked_at", "revocation_reason", "command_status",
    ], {
        "serial": {"type": "string", "description": "Lowercase hex."},
        "certificate_type": {"type": "string", "examples": ["ChargingStationCertificate", "V2GCertificate"]},
        "status": {"type": "string", "enum": list(CERTIFICATE_STATUSES)},
        "subject": {"type": "string"},
        "not_before": _TS,
        "not_after": _TS,
        "fingerprint_sha256": {"type": "string"},
        "issued_at": _TS,
        "revoked_at": _NULL_TS,
        "revocation_reason": _NULL_STR,
        "command_status": {**_NULL_STR, "description": "The station's answer to CertificateSigned."},
    }, description="A certificate the CSMS CA issued the station."),
    "CertificateList": _obj(["items"], {"items": {"type": "array", "items": _ref("Certificate")}}),
    "CertificateRevocation": _obj([], {"reason": {"type": "string", "maxLength": 64, "default": "unspecified",
                                                  "examples": ["keyCompromise", "superseded"]}}),
    "TrustAnchor": _obj(["certificate_type", *_HASH], {
        "certificate_type": {"type": "string", "enum": list(INSTALLED_CERTIFICATE_TYPES)},
        **_HASH,
    }),
    "TrustAnchorList": _obj(["items", "retrieved_at"], {
        "items": {"type": "array", "items": _ref("TrustAnchor")},
        "retrieved_at": {**_NULL_TS, "description": "When the station was asked (null: never)."},
    }),
    "TrustAnchorInstall": _obj(["certificate_type", "certificate"], {
        "certificate_type": {"type": "string", "enum": list(CERTIFICATE_TYPES),
                             "description": "1.6 stations: CSMSRootCertificate (sent as CentralSystemRootCertificate) "
                                            "or ManufacturerRootCertificate."},
        "certificate": {"type": "string", "maxLength": 5500, "description": "PEM."},
    }),
    "StationAnswer": _obj(["status"], {"status": {"type": "string", "description": "The station's answer."}}),
}

PATHS: J = {
    "/api/v1/stations/{id}/password": {
        "parameters": [_STATION],
        "post": _op(
            "Rotate the station's Basic-auth password",
            {"200": _json(_ref("PasswordRotation"), "The station took the new password."), "400": _R400,
             "409": _error("StationOffline, or the station refused (`status`): nothing is pending."),
             "404": _R404, "504": _TIMEOUT},
            op_id="rotateStationPassword", body=_ref("PasswordRotationRequest"), body_required=False,
            description="Stores the new password as pending, then sends ChangeConfiguration AuthorizationKey (1.6) "
                        "or SetVariables SecurityCtrlr.BasicAuthPassword (2.0.1). Nothing is closed.",
        ),
    },
    "/api/v1/stations/{id}/security-profile": {
        "parameters": [_STATION],
        "post": _op(
            "Raise the station's security profile",
            {"200": _json(_ref("SecurityProfileChange"), "Every step accepted: the profile is pending."),
             "400": _R400, **_COMMAND},
            op_id="raiseStationSecurityProfile", body=_ref("SecurityProfileRequest"),
            description="1.6: ChangeConfiguration SecurityProfile. 2.0.1: SetNetworkProfile, SetVariables "
                        "OCPPCommCtrlr.NetworkConfigurationPriority, Reset OnIdle; the first refusal stops (409 with "
                        "the steps so far). Pending until the station connects with it.",
        ),
    },
    "/api/v1/stations/{id}/certificates": {
        "parameters": [_STATION],
        "get": _op("The certificates the CSMS CA issued the station",
                   {"200": _json(_ref("CertificateList"), "Newest first."), "404": _R404},
                   op_id="listStationCertificates"),
    },
    "/api/v1/stations/{id}/certificates/renew": {
        "parameters": [_STATION],
        "post": _op("Ask the station for a new CSR now",
                    {"202": _json(_ref("StationAnswer"), "The TriggerMessage answer."), **_COMMAND},
                    op_id="renewStationCertificate", body={"type": "object"}, body_required=False,
                    description="TriggerMessage SignChargingStationCertificate (1.6: ExtendedTriggerMessage "
                                "SignChargePointCertificate)."),
    },
    "/api/v1/stations/{id}/certificates/{serial}/revoke": {
        "parameters": [_STATION, _path("serial", "The certificate's serial (hex).")],
        "post": _op("Revoke a certificate of the station",
                    {"200": _json(_ref("Certificate"), "Revoked (the station's connection is closed)."),
                     "400": _R400, "404": _R404, "409": _error("The certificate kept changing: retry.")},
                    op_id="revokeStationCertificate", body=_ref("CertificateRevocation"), body_required=False),
    },
    "/api/v1/stations/{id}/trust-anchors": {
        "parameters": [_STATION],
        "get": _op(
            "The station's installed trust anchors",
            {"200": _json(_ref("TrustAnchorList"), "As the station listed them."), "400": _R400, **_COMMAND},
            op_id="listStationTrustAnchors",
            params=[{"name": "cached", "in": "query", "required": False,
                     "schema": {"type": "boolean", "default": False},
                     "description": "true: the stored answer, without asking the station."}],
            description="GetInstalledCertificateIds (1.6: once per type); the answer is stored.",
        ),
        "post": _op("Install a trust anchor on the station",
                    {"200": _json(_ref("StationAnswer"), "The InstallCertificate answer."), "400": _R400, **_COMMAND},
                    op_id="installStationTrustAnchor", body=_ref("TrustAnchorInstall")),
    },
    "/api/v1/stations/{id}/trust-anchors/{serial_number}": {
        "parameters": [_STATION, _path("serial_number", "As the stored list shows it (case-insensitive).")],
        "delete": _op("Delete a trust anchor from the station",
                      {"200": _json(_ref("StationAnswer"), "The DeleteCertificate answer."), **_COMMAND},
                      op_id="deleteStationTrustAnchor",
                      description="DeleteCertificate with the hash data of the stored entry of that serial "
                                  "(404 when the stored list has none: list the trust anchors first)."),
    },
}
