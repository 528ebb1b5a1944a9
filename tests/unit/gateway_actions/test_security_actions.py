"""SignCertificate, GetCertificateStatus and Get15118EVCertificate handlers with their ports
(services/gateway/actions/security.py): the answer each promises, statusInfo where the
version has it, and the recorded event with the status answered. Every answer is checked
against the version's response schema by the harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pytest

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.events import CertificateSigningRequest, CertificateStatusRequest, EvCertificateRequest
from services.gateway.actions.common import CsrSigning
from services.gateway.actions.security import certificate_ports
from services.gateway.contract_certs import HttpProvider, NoProvider, TestProvider, fake_exi_response
from services.gateway.contract_certs import EvCertificateRequest as ProviderRequest
from services.gateway.ocsp import StatusAnswer
from tests.support.certs import make_ca, make_csr, write_pem

from .builders import NOW, a_harness

STATION = "CS-1"  # the harness's station id
GOOD_CSR, _ = make_csr(STATION)
RSA_CSR, _ = make_csr(STATION, "rsa", 2048)
WEAK_CSR, _ = make_csr(STATION, "rsa", 1024)
OTHER_CN_CSR, _ = make_csr("CS-2")
CA_ON = CsrSigning(lambda: True, 2048)
CA_OFF = CsrSigning(lambda: False, 2048)


@pytest.mark.parametrize("version, payload, certificate_type", [
    ("1.6", {"csr": GOOD_CSR}, ""),
    ("1.6", {"csr": RSA_CSR}, ""),
    ("2.0.1", {"csr": GOOD_CSR}, ""),
    ("2.0.1", {"csr": GOOD_CSR, "certificateType": "ChargingStationCertificate"}, "ChargingStationCertificate"),
    ("2.1", {"csr": RSA_CSR, "certificateType": "ChargingStationCertificate"}, "ChargingStationCertificate"),
])
async def test_a_good_csr_with_a_ca_is_accepted_and_published_for_the_certificates_processor(
        version: str, payload: dict[str, Any], certificate_type: str) -> None:
    h = a_harness(version, signing=CA_ON)
    assert await h.call("SignCertificate", payload) == {"status": "Accepted"}
    assert h.events.body == CertificateSigningRequest(csr=payload["csr"], certificate_type=certificate_type,
                                                      status="Accepted")


@pytest.mark.parametrize("payload, signing, reason, info", [
    ({"csr": WEAK_CSR}, CA_ON, "InvalidCSR", "weak key (RSA 1024 < 2048 bits)"),
    ({"csr": OTHER_CN_CSR}, CA_ON, "InvalidCSR", "CN 'CS-2' is not the station id"),
    ({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----"}, CA_ON, "InvalidCSR",
     "unreadable"),
    ({"csr": GOOD_CSR}, CA_OFF, "NoCA", "no certificate authority is configured"),
    ({"csr": GOOD_CSR, "certificateType": "V2GCertificate"}, CA_ON, "UnsupportedType",
     "the CSMS CA does not sign V2GCertificate"),
    ({"csr": GOOD_CSR}, None, "NoCA", "no certificate authority is configured"),
])
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_csr_the_ca_may_not_sign_is_rejected_with_the_reason_where_the_version_has_one(
        version: str, payload: dict[str, Any], signing: CsrSigning | None, reason: str, info: str) -> None:
    if version == "1.6" and "certificateType" in payload:
        return  # 1.6 has no certificateType
    h = a_harness(version, signing=signing)
    answer = await h.call("SignCertificate", payload)
    if version == "1.6":
        assert answer == {"status": "Rejected"}  # the whitepaper's answer has no statusInfo
    else:
        assert answer == {"status": "Rejected", "statusInfo": {"reasonCode": reason, "additionalInfo": info}}
    assert h.events.body.status == "Rejected" and h.events.body.csr == payload["csr"]


async def test_the_ca_is_looked_for_on_every_request() -> None:
    present = [False]
    h = a_harness("2.0.1", signing=CsrSigning(lambda: present[0], 2048))
    assert (await h.call("SignCertificate", {"csr": GOOD_CSR}))["status"] == "Rejected"
    present[0] = True  # `csms ca init` ran after the gateway started
    assert (await h.call("SignCertificate", {"csr": GOOD_CSR}))["status"] == "Accepted"


async def test_the_smallest_rsa_key_is_the_setting() -> None:
    h = a_harness("2.0.1", signing=CsrSigning(lambda: True, 1024))
    assert await h.call("SignCertificate", {"csr": WEAK_CSR}) == {"status": "Accepted"}


# -- GetCertificateStatus ------------------------------------------------------------------

OCSP_DATA = {"hashAlgorithm": "SHA256", "issuerNameHash": "aa" * 32, "issuerKeyHash": "bb" * 32, "serialNumber": "1f",
             "responderURL": "http://ocsp.example"}


class FixedStatus:
    def __init__(self, answer: StatusAnswer | Exception) -> None:
        self.answer = answer
        self.asked: list[Mapping[str, Any]] = []

    async def status(self, request: Mapping[str, Any]) -> StatusAnswer:
        self.asked.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer, response", [
    (StatusAnswer("Accepted", "MIIB"), {"status": "Accepted", "ocspResult": "MIIB"}),
    (StatusAnswer.failed("ResponderFailed"), {"status": "Failed", "statusInfo": {"reasonCode": "ResponderFailed"}}),
    (RuntimeError("bug"), {"status": "Failed", "statusInfo": {"reasonCode": "InternalError"}}),
])
@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
async def test_certificate_status_answers_what_the_port_found_and_records_it(
        version: str, answer: StatusAnswer | Exception, response: dict[str, Any]) -> None:
    port = FixedStatus(answer)
    h = a_harness(version, certificate_status=port)
    assert await h.call("GetCertificateStatus", {"ocspRequestData": OCSP_DATA}) == response
    assert port.asked == [OCSP_DATA]
    assert h.events.body == CertificateStatusRequest(
        hash_algorithm="SHA256", issuer_name_hash="aa" * 32, issuer_key_hash="bb" * 32, serial_number="1f",
        responder_url="http://ocsp.example", status=response["status"])


# -- Get15118EVCertificate -----------------------------------------------------------------

EV_REQUEST = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "gAB="}


class Raising:
    async def get(self, request: ProviderRequest) -> Any:
        raise RuntimeError("bug")


@pytest.mark.parametrize("provider, response", [
    (NoProvider(), {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "NoProvider"}}),
    (TestProvider(), {"status": "Accepted", "exiResponse": fake_exi_response(
        ProviderRequest(STATION, EV_REQUEST["iso15118SchemaVersion"], "Install", "gAB="))}),
    (Raising(), {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "InternalError"}}),
])
async def test_ev_certificate_answers_what_the_provider_answered_and_records_it(provider: Any, response: dict) -> None:
    h = a_harness("2.0.1", contract_certs=provider)
    assert await h.call("Get15118EVCertificate", EV_REQUEST) == response
    assert h.events.body == EvCertificateRequest(iso15118_schema_version="urn:iso:15118:2:2013:MsgDef", action="Install",
                                                 exi_request="gAB=", status=response["status"])


# -- the ports from the settings -------------------------------------------------------------

class NoStore:
    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return None


def ports(**settings: Any) -> Any:
    return certificate_ports(Settings(**settings), NoStore(), lambda: NOW)  # type: ignore[arg-type]


def test_a_ca_is_configured_by_a_ca_url_or_a_ca_pem_in_the_ca_dir(tmp_path: Path) -> None:
    assert not ports().signing.ca_configured()
    assert ports(ca_url="https://ca.example/sign").signing.ca_configured()
    built = ports(ca_dir=str(tmp_path), csr_min_rsa_bits=3072)
    assert not built.signing.ca_configured() and built.signing.min_rsa_bits == 3072
    write_pem(tmp_path, "ca", make_ca())
    assert built.signing.ca_configured()  # looked at per call


def test_the_contract_certificate_provider_is_the_setting() -> None:
    assert isinstance(ports().contract_certs, NoProvider)
    assert isinstance(ports(contract_cert_provider="test").contract_certs, TestProvider)
    assert isinstance(ports(contract_cert_provider="https://pki.example/ev").contract_certs, HttpProvider)
    for bad in ("tset", "ftp://pki.example", "https://"):
        with pytest.raises(ConfigError):
            ports(contract_cert_provider=bad)
