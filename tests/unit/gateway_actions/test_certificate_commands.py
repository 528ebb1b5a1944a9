"""The certificate commands of the vocabulary (docs/security.md): CertificateSigned,
InstallCertificate, DeleteCertificate, GetInstalledCertificateIds, built for 1.6 (security
whitepaper) and 2.x, checked against each version's request schema, and their answers."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.commands import validate_command
from services.api.errors import ApiError
from services.common.ocpp.commands import InvalidCommand, from_ocpp, to_ocpp

from .schemas import request_validator, response_validator, wire
from .test_command_vocabulary import HASH_DATA, PEM

VERSIONS = ["1.6", "2.0.1", "2.1"]
HASH_DATA_OCPP = {"hashAlgorithm": "SHA256", "issuerNameHash": "a1" * 32, "issuerKeyHash": "b2" * 32,
                  "serialNumber": "1f2e"}


def built(command_type: str, params: dict[str, Any], version: str) -> tuple[str, dict[str, Any]]:
    action, payload = to_ocpp(command_type, params, version)
    request_validator(version, action).validate(wire(payload))  # what a station's schema check sees
    return action, payload


@pytest.mark.parametrize("version, params, payload", [
    ("1.6", {"certificate_chain": PEM}, {"certificateChain": PEM}),
    # what the certificates processor sends a 1.6 station: the type is not on the 1.6 wire
    ("1.6", {"certificate_chain": PEM, "certificate_type": "ChargingStationCertificate"}, {"certificateChain": PEM}),
    ("2.0.1", {"certificate_chain": PEM}, {"certificateChain": PEM}),
    ("2.0.1", {"certificate_chain": PEM, "certificate_type": "V2GCertificate"},
     {"certificateChain": PEM, "certificateType": "V2GCertificate"}),
    ("2.1", {"certificate_chain": PEM, "certificate_type": "ChargingStationCertificate"},
     {"certificateChain": PEM, "certificateType": "ChargingStationCertificate"}),
])
def test_certificate_signed_carries_the_chain_and_the_type_where_the_version_has_one(
        version: str, params: dict[str, Any], payload: dict[str, Any]) -> None:
    assert built("CertificateSigned", params, version) == ("CertificateSigned", payload)


@pytest.mark.parametrize("kind, v16, v201", [
    ("CSMSRootCertificate", "CentralSystemRootCertificate", "CSMSRootCertificate"),
    ("CentralSystemRootCertificate", "CentralSystemRootCertificate", "CSMSRootCertificate"),
    ("ManufacturerRootCertificate", "ManufacturerRootCertificate", "ManufacturerRootCertificate"),
])
def test_install_certificate_maps_the_csms_root_between_the_versions_names(kind: str, v16: str, v201: str) -> None:
    params = {"certificate_type": kind, "certificate": PEM}
    assert built("InstallCertificate", params, "1.6") == ("InstallCertificate", {"certificateType": v16, "certificate": PEM})
    assert built("InstallCertificate", params, "2.0.1") == ("InstallCertificate", {"certificateType": v201, "certificate": PEM})


@pytest.mark.parametrize("kind", ["V2GRootCertificate", "MORootCertificate"])
def test_iso15118_roots_are_2x_only(kind: str) -> None:
    params = {"certificate_type": kind, "certificate": PEM}
    assert built("InstallCertificate", params, "2.0.1")[1]["certificateType"] == kind
    with pytest.raises(InvalidCommand, match="OCPP 1.6 has no certificate type"):
        to_ocpp("InstallCertificate", params, "1.6")


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_certificate_sends_the_hash_data(version: str) -> None:
    assert built("DeleteCertificate", HASH_DATA, version) == ("DeleteCertificate", {"certificateHashData": HASH_DATA_OCPP})


def test_get_installed_certificate_ids_16_takes_exactly_one_type() -> None:
    assert built("GetInstalledCertificateIds", {"certificate_types": ["CSMSRootCertificate"]}, "1.6") == (
        "GetInstalledCertificateIds", {"certificateType": "CentralSystemRootCertificate"})
    assert built("GetInstalledCertificateIds", {"certificate_types": "ManufacturerRootCertificate"}, "1.6") == (
        "GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})
    for params in ({}, {"certificate_types": []},
                   {"certificate_types": ["CSMSRootCertificate", "ManufacturerRootCertificate"]}):
        with pytest.raises(InvalidCommand, match="exactly one certificate type"):
            to_ocpp("GetInstalledCertificateIds", params, "1.6")
    with pytest.raises(InvalidCommand, match="no certificate type 'V2GCertificateChain'"):
        to_ocpp("GetInstalledCertificateIds", {"certificate_types": ["V2GCertificateChain"]}, "1.6")


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_get_installed_certificate_ids_2x_takes_a_list_and_none_means_every_type(version: str) -> None:
    assert built("GetInstalledCertificateIds", {}, version) == ("GetInstalledCertificateIds", {})
    assert built("GetInstalledCertificateIds", {"certificate_types": []}, version) == ("GetInstalledCertificateIds", {})
    params = {"certificate_types": ["CentralSystemRootCertificate", "V2GCertificateChain", "CSMSRootCertificate"]}
    assert built("GetInstalledCertificateIds", params, version) == (
        "GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate", "V2GCertificateChain"]})


@pytest.mark.parametrize("version, command_type, params", [
    ("1.6", "CertificateSigned", {}),
    ("1.6", "CertificateSigned", {"certificate_chain": ["x"]}),
    ("1.6", "CertificateSigned", {"certificate_chain": PEM, "certificate_type": "V2GCertificate"}),
    ("2.0.1", "CertificateSigned", {"certificate_chain": "x" * 10001}),
    ("2.0.1", "CertificateSigned", {"certificate_chain": PEM, "certificate_type": "ChargePointCertificate"}),
    ("2.0.1", "InstallCertificate", {"certificate_type": "CSMSRootCertificate"}),
    ("2.0.1", "InstallCertificate", {"certificate_type": "ServerCertificate", "certificate": PEM}),
    ("2.0.1", "InstallCertificate", {"certificate_type": 3, "certificate": PEM}),
    ("1.6", "InstallCertificate", {"certificate_type": "CSMSRootCertificate", "certificate": "x" * 5501}),
    ("2.0.1", "DeleteCertificate", {**HASH_DATA, "hash_algorithm": "MD5"}),
    ("1.6", "DeleteCertificate", {k: v for k, v in HASH_DATA.items() if k != "serial_number"}),
    ("2.0.1", "DeleteCertificate", {**HASH_DATA, "serial_number": "f" * 41}),
    ("2.0.1", "GetInstalledCertificateIds", {"certificate_types": ["Nope"]}),
    ("2.0.1", "GetInstalledCertificateIds", {"certificate_types": {"a": 1}}),
])
def test_bad_certificate_commands_are_invalid_not_bad_calls(version: str, command_type: str, params: dict) -> None:
    with pytest.raises(InvalidCommand):
        to_ocpp(command_type, params, version)


@pytest.mark.parametrize("version, command_type, params, response, expected", [
    ("1.6", "CertificateSigned", {"certificate_chain": PEM}, {"status": "Rejected"}, ("Rejected", {"status": "Rejected"})),
    ("2.0.1", "InstallCertificate", {"certificate_type": "CSMSRootCertificate", "certificate": PEM},
     {"status": "Failed", "statusInfo": {"reasonCode": "InvalidCertificate"}},
     ("Failed", {"status": "Failed", "status_info": {"reason_code": "InvalidCertificate"}})),
    ("1.6", "DeleteCertificate", HASH_DATA, {"status": "NotFound"}, ("NotFound", {"status": "NotFound"})),
    ("1.6", "GetInstalledCertificateIds", {"certificate_types": ["CSMSRootCertificate"]},
     {"status": "Accepted", "certificateHashData": [HASH_DATA_OCPP]},
     ("Accepted", {"status": "Accepted", "certificate_hash_data": [HASH_DATA]})),
    ("2.0.1", "GetInstalledCertificateIds", {},
     {"status": "Accepted", "certificateHashDataChain": [
         {"certificateType": "CSMSRootCertificate", "certificateHashData": HASH_DATA_OCPP}]},
     ("Accepted", {"status": "Accepted", "certificate_hash_data_chain": [
         {"certificate_type": "CSMSRootCertificate", "certificate_hash_data": HASH_DATA}]})),
])
def test_answers_pass_through_with_the_stations_status(
        version: str, command_type: str, params: dict, response: dict, expected: tuple) -> None:
    action, _ = to_ocpp(command_type, params, version)
    response_validator(version, action).validate(response)
    assert from_ocpp(command_type, action, response, version) == expected


# -- the API's check (400 before anything is sent) ---------------------------------------

@pytest.mark.parametrize("body", [
    {"type": "CertificateSigned", "certificate_chain": PEM},
    {"type": "CertificateSigned", "certificate_chain": PEM, "certificate_type": "V2GCertificate"},
    {"type": "InstallCertificate", "certificate_type": "CentralSystemRootCertificate", "certificate": PEM},
    {"type": "DeleteCertificate", **HASH_DATA},
    {"type": "GetInstalledCertificateIds"},
    {"type": "GetInstalledCertificateIds", "certificate_types": ["V2GCertificateChain", "MORootCertificate"]},
])
def test_the_api_accepts_the_certificate_commands(body: dict[str, Any]) -> None:
    command_type, params, _ = validate_command(body, 30.0)
    assert command_type == body["type"] and params == {k: v for k, v in body.items() if k != "type"}


@pytest.mark.parametrize("body, field", [
    ({"type": "CertificateSigned"}, "certificate_chain"),
    ({"type": "CertificateSigned", "certificate_chain": "x" * 10001}, "certificate_chain"),
    ({"type": "CertificateSigned", "certificate_chain": PEM, "certificate_type": "Other"}, "certificate_type"),
    ({"type": "InstallCertificate", "certificate": PEM}, "certificate_type"),
    ({"type": "InstallCertificate", "certificate_type": "CSMSRootCertificate", "certificate": 5}, "certificate"),
    ({"type": "DeleteCertificate", **HASH_DATA, "hash_algorithm": "MD5"}, "hash_algorithm"),
    ({"type": "DeleteCertificate", **{k: v for k, v in HASH_DATA.items() if k != "issuer_key_hash"}}, "issuer_key_hash"),
    ({"type": "GetInstalledCertificateIds", "certificate_types": "CSMSRootCertificate"}, "certificate_types"),
    ({"type": "GetInstalledCertificateIds", "certificate_types": ["Nope"]}, "certificate_types"),
])
def test_the_api_refuses_bad_certificate_commands_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as err:
        validate_command(body, 30.0)
    assert err.value.status == 400 and field in (err.value.details or {}), err.value.details
