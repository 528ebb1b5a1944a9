"""The certificate messages over a real socket (ADR 017 §3, docs/security.md): SignCertificate
with the built-in CA's directory, GetCertificateStatus answered by the CA's OCSP delegate from
the `certificate` documents and by real local OCSP responders, Get15118EVCertificate with
each provider, and the four certificate commands round-tripped to 1.6 and 2.0.1 stations.

The CA is made by `csms ca`'s own code (services/certificates/ca.py `init_ca`) in the test's
directory; responders and providers are aiohttp servers on 127.0.0.1:0."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509 import ocsp

from services.certificates.ca import init_ca, issue_station_certificate
from services.certificates.documents import Certificate, Certificates
from services.common import pki
from services.common.events import (
    CertificateSigningRequest,
    CertificateStatusRequest,
    CommandResult,
    EvCertificateRequest,
)
from services.gateway.contract_certs import EvCertificateRequest as ProviderRequest
from services.gateway.contract_certs import fake_exi_response
from tests.integration_inproc.gateway.harness import Gateway, call, recv
from tests.support.certs import CA, Issued, issue, make_ca, make_csr

P16, P201 = ("ocpp1.6",), ("ocpp2.0.1",)
MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ca"
    init_ca(folder)  # ca.pem, ca.key, ocsp.pem, ocsp.key, as `csms ca init` makes them
    return folder


def station_certificate(ca_dir: Path, station_id: str) -> tuple[x509.Certificate, x509.Certificate]:
    chain, _key = issue_station_certificate(ca_dir, station_id)
    leaf, ca_cert = pki.load_certificates(chain)
    return leaf, ca_cert


async def serve(routes: Callable[[web.Application], None]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# -- SignCertificate -----------------------------------------------------------------------

@pytest.mark.parametrize("protocols, extra", [(P16, {}), (P201, {"certificateType": "ChargingStationCertificate"})])
async def test_a_good_csr_with_a_configured_ca_is_accepted_and_published(
        make_gateway: MakeGateway, ca_dir: Path, protocols: tuple[str, ...], extra: dict[str, Any]) -> None:
    gw = await make_gateway(ca_dir=str(ca_dir))
    ws = await gw.connect("CP1", protocols=protocols)
    csr, _ = make_csr("CP1")
    assert await call(ws, "SignCertificate", {"csr": csr, **extra}, mid="s1") == [3, "s1", {"status": "Accepted"}]
    env = await gw.wait_event(lambda e: e.message_id == "s1")
    assert env.body == CertificateSigningRequest(csr=csr, certificate_type=extra.get("certificateType", ""),
                                                 status="Accepted")


@pytest.mark.parametrize("protocols", [P16, P201])
@pytest.mark.parametrize("cn, key, bits, with_ca, reason", [
    ("CP-OTHER", "ec", 0, True, "InvalidCSR"),      # CN is not the station id
    ("CP1", "rsa", 1024, True, "InvalidCSR"),       # weak key
    ("CP1", "ec", 0, False, "NoCA"),                # no CA configured
])
async def test_a_csr_the_ca_may_not_sign_is_rejected_and_recorded_rejected(
        make_gateway: MakeGateway, ca_dir: Path, protocols: tuple[str, ...], cn: str, key: str, bits: int,
        with_ca: bool, reason: str) -> None:
    gw = await make_gateway(**({"ca_dir": str(ca_dir)} if with_ca else {}))
    ws = await gw.connect("CP1", protocols=protocols)
    csr, _ = make_csr(cn, key, bits) if key == "rsa" else make_csr(cn)  # type: ignore[arg-type]
    frame = await call(ws, "SignCertificate", {"csr": csr}, mid="s2")
    assert frame[:2] == [3, "s2"] and frame[2]["status"] == "Rejected"
    if protocols == P201:
        assert frame[2]["statusInfo"]["reasonCode"] == reason
    env = await gw.wait_event(lambda e: e.message_id == "s2")
    assert isinstance(env.body, CertificateSigningRequest) and env.body.status == "Rejected"


# -- GetCertificateStatus -------------------------------------------------------------------

def status_request(cert: x509.Certificate, issuer: x509.Certificate, responder_url: str = "") -> dict[str, Any]:
    return {"ocspRequestData": {**pki.hash_data(cert, issuer, "SHA256"), "responderURL": responder_url}}


def ocsp_of(frame: list[Any]) -> ocsp.OCSPResponse:
    assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
    return ocsp.load_der_ocsp_response(base64.b64decode(frame[2]["ocspResult"]))


@pytest.mark.parametrize("doc_status, expected", [
    ("installed", ocsp.OCSPCertStatus.GOOD),
    ("revoked", ocsp.OCSPCertStatus.REVOKED),
    (None, ocsp.OCSPCertStatus.UNKNOWN),
])
async def test_our_cas_certificates_are_answered_by_its_ocsp_delegate_from_the_store(
        make_gateway: MakeGateway, ca_dir: Path, doc_status: str | None, expected: ocsp.OCSPCertStatus) -> None:
    gw = await make_gateway(ca_dir=str(ca_dir))
    leaf, ca_cert = station_certificate(ca_dir, "CP1")
    serial = pki.serial_hex(leaf)
    if doc_status is not None:  # as the certificates processor (and the API's revocation) write it
        revoked = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc) if doc_status == "revoked" else None
        cert = Certificate(serial=serial, station_id="CP1", certificate_type="ChargingStationCertificate",
                           status=doc_status, subject="CN=CP1", not_before=leaf.not_valid_before_utc,
                           not_after=leaf.not_valid_after_utc, fingerprint_sha256=pki.fingerprint_sha256(leaf),
                           pem="", issued_at=leaf.not_valid_before_utc, revoked_at=revoked)
        assert await Certificates(gw.store).put(cert) is not None
    ws = await gw.connect("CP1", protocols=P201)
    response = ocsp_of(await call(ws, "GetCertificateStatus", status_request(leaf, ca_cert), mid="o1"))
    assert response.certificate_status is expected and response.serial_number == leaf.serial_number
    delegate = pki.load_certificate((ca_dir / "ocsp.pem").read_bytes())
    assert response.certificates == [delegate]  # signed by the delegate, never by the CA key
    if expected is ocsp.OCSPCertStatus.REVOKED:
        assert response.revocation_time_utc == datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    env = await gw.wait_event(lambda e: e.message_id == "o1")
    assert isinstance(env.body, CertificateStatusRequest) and env.body.status == "Accepted"
    assert env.body.serial_number == serial


@dataclass
class Responder:
    """A real OCSP responder for certificates of `ca`, signed by a delegate of it."""

    ca: CA
    delegate: Issued
    url: str = ""
    requests: list[ocsp.OCSPRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        req = ocsp.load_der_ocsp_request(await request.read())
        self.requests.append(req)
        der = pki.ocsp_response(
            {"hashAlgorithm": "SHA256", "issuerNameHash": req.issuer_name_hash.hex(),
             "issuerKeyHash": req.issuer_key_hash.hex(), "serialNumber": format(req.serial_number, "x")},
            status_of=lambda serial: "good", issuer=self.ca.cert, responder_cert=self.delegate.cert,
            responder_key=self.delegate.key, now=datetime.now(timezone.utc),
        )
        return web.Response(body=der, content_type="application/ocsp-response")


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    ca = make_ca("V2G Root CA")
    r = Responder(ca, issue(ca, "V2G OCSP", client=False))
    runner, base = await serve(lambda app: app.router.add_post("/ocsp", r.handle))
    r.url = base + "/ocsp"
    yield r
    await runner.cleanup()


async def test_a_configured_responder_answers_through_the_gateway(make_gateway: MakeGateway, responder: Responder) -> None:
    gw = await make_gateway(ocsp_responder_url=responder.url)
    evse = issue(responder.ca, "EVSE-CERT")
    ws = await gw.connect("CP1", protocols=P201)
    response = ocsp_of(await call(ws, "GetCertificateStatus", status_request(evse.cert, responder.ca.cert,
                                                                             "http://not.used.invalid/")))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD and response.serial_number == evse.cert.serial_number
    assert [r.serial_number for r in responder.requests] == [evse.cert.serial_number]


async def test_another_issuers_certificate_goes_to_the_responder_the_station_names(
        make_gateway: MakeGateway, ca_dir: Path, responder: Responder) -> None:
    gw = await make_gateway(ca_dir=str(ca_dir), ocsp_follow_station_url=True)
    evse = issue(responder.ca, "EVSE-CERT")
    ws = await gw.connect("CP1", protocols=P201)
    response = ocsp_of(await call(ws, "GetCertificateStatus", status_request(evse.cert, responder.ca.cert, responder.url)))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD and len(responder.requests) == 1


async def test_a_responder_that_answers_no_ocsp_is_failed_and_its_body_is_not_passed_on(make_gateway: MakeGateway) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>internal admin page</html>", content_type="text/html")

    runner, base = await serve(lambda app: app.router.add_post("/", page))
    try:
        gw = await make_gateway(ocsp_follow_station_url=True)
        other = make_ca("Other")
        ws = await gw.connect("CP1", protocols=P201)
        frame = await call(ws, "GetCertificateStatus", status_request(issue(other, "X").cert, other.cert, base + "/"),
                           mid="o2")
        assert frame == [3, "o2", {"status": "Failed", "statusInfo": {"reasonCode": "BadResponse"}}]
        env = await gw.wait_event(lambda e: e.message_id == "o2")
        assert env.body.status == "Failed"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


# -- Get15118EVCertificate -------------------------------------------------------------------

EV = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "gAB="}


async def test_ev_certificates_without_a_provider_fail(make_gateway: MakeGateway) -> None:
    ws = await (await make_gateway()).connect("CP1", protocols=P201)
    assert await call(ws, "Get15118EVCertificate", EV, mid="e1") == [
        3, "e1", {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "NoProvider"}}]


async def test_the_test_provider_answers_its_deterministic_stand_in(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(contract_cert_provider="test")
    ws = await gw.connect("CP1", protocols=P201)
    want = fake_exi_response(ProviderRequest("CP1", EV["iso15118SchemaVersion"], "Install", "gAB="))
    assert await call(ws, "Get15118EVCertificate", EV, mid="e2") == [3, "e2", {"status": "Accepted", "exiResponse": want}]
    env = await gw.wait_event(lambda e: e.message_id == "e2")
    assert env.body == EvCertificateRequest(iso15118_schema_version=EV["iso15118SchemaVersion"], action="Install",
                                            exi_request="gAB=", status="Accepted")


async def test_an_http_provider_is_asked_and_its_answer_relayed(make_gateway: MakeGateway) -> None:
    asked: list[dict[str, Any]] = []

    async def provide(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body)
        if body["action"] == "Update":
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"status": "Accepted", "exi_response": "UFJPVklERUQ="})

    runner, base = await serve(lambda app: app.router.add_post("/ev", provide))
    try:
        gw = await make_gateway(contract_cert_provider=base + "/ev")
        ws = await gw.connect("CP1", protocols=P201)
        assert await call(ws, "Get15118EVCertificate", EV, mid="e3") == [
            3, "e3", {"status": "Accepted", "exiResponse": "UFJPVklERUQ="}]
        assert await call(ws, "Get15118EVCertificate", {**EV, "action": "Update"}, mid="e4") == [
            3, "e4", {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "ProviderFailed"}}]
        assert asked[0] == {"station_id": "CP1", "iso15118_schema_version": EV["iso15118SchemaVersion"],
                            "action": "Install", "exi_request": "gAB="}
    finally:
        await runner.cleanup()


# -- the certificate commands ----------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
HASH = {"hash_algorithm": "SHA256", "issuer_name_hash": "a1" * 32, "issuer_key_hash": "b2" * 32, "serial_number": "1f2e"}
HASH_OCPP = {"hashAlgorithm": "SHA256", "issuerNameHash": "a1" * 32, "issuerKeyHash": "b2" * 32, "serialNumber": "1f2e"}

# (protocols, command type, params, expected CALL payload, the station's answer, expected result response)
COMMANDS: list[tuple[tuple[str, ...], str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (P16, "CertificateSigned", {"certificate_chain": PEM, "certificate_type": "ChargingStationCertificate"},
     {"certificateChain": PEM}, {"status": "Accepted"}, {"status": "Accepted"}),
    (P201, "CertificateSigned", {"certificate_chain": PEM, "certificate_type": "ChargingStationCertificate"},
     {"certificateChain": PEM, "certificateType": "ChargingStationCertificate"}, {"status": "Rejected"},
     {"status": "Rejected"}),
    (P16, "InstallCertificate", {"certificate_type": "CSMSRootCertificate", "certificate": PEM},
     {"certificateType": "CentralSystemRootCertificate", "certificate": PEM}, {"status": "Accepted"},
     {"status": "Accepted"}),
    (P201, "InstallCertificate", {"certificate_type": "V2GRootCertificate", "certificate": PEM},
     {"certificateType": "V2GRootCertificate", "certificate": PEM}, {"status": "Failed"}, {"status": "Failed"}),
    (P16, "DeleteCertificate", HASH, {"certificateHashData": HASH_OCPP}, {"status": "Accepted"}, {"status": "Accepted"}),
    (P201, "DeleteCertificate", HASH, {"certificateHashData": HASH_OCPP}, {"status": "NotFound"}, {"status": "NotFound"}),
    (P16, "GetInstalledCertificateIds", {"certificate_types": ["ManufacturerRootCertificate"]},
     {"certificateType": "ManufacturerRootCertificate"}, {"status": "Accepted", "certificateHashData": [HASH_OCPP]},
     {"status": "Accepted", "certificate_hash_data": [HASH]}),
    (P201, "GetInstalledCertificateIds", {},
     {}, {"status": "Accepted", "certificateHashDataChain": [{"certificateType": "CSMSRootCertificate",
                                                              "certificateHashData": HASH_OCPP}]},
     {"status": "Accepted", "certificate_hash_data_chain": [{"certificate_type": "CSMSRootCertificate",
                                                             "certificate_hash_data": HASH}]}),
]


@pytest.mark.parametrize("protocols, command_type, params, sent, answer, result", COMMANDS,
                         ids=[f"{c[0][0]}-{c[1]}" for c in COMMANDS])
async def test_a_certificate_command_round_trips_to_the_station(
        gw: Gateway, protocols: tuple[str, ...], command_type: str, params: dict[str, Any], sent: dict[str, Any],
        answer: dict[str, Any], result: dict[str, Any]) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", command_type, params)
    frame = await recv(ws)
    assert frame[0] == 2 and frame[2] == command_type and frame[3] == sent
    await ws.send_str(orjson.dumps([3, frame[1], answer]).decode())
    env = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert isinstance(env.body, CommandResult)
    assert env.body.status == answer["status"] and orjson.loads(env.body.response_json) == result


async def test_a_16_station_asked_for_every_type_at_once_gets_nothing_and_the_result_says_why(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=P16)
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "GetInstalledCertificateIds", {})
    env = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert isinstance(env.body, CommandResult) and env.body.status != "Accepted"
    assert "exactly one certificate type" in env.body.error_description
    assert (await call(ws, "Heartbeat", {}, mid="hb"))[:2] == [3, "hb"]  # no CALL was sent before it
