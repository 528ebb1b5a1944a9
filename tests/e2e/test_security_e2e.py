"""Security end to end (issue 11, ADR 017, docs/security.md) against `csms run` with TLS.

One `csms run` serves `ws://` and `wss://` (a server certificate from a test CA the
stations trust); its built-in CA (created on first start in the state directory) is the
CA client certificates must chain to (`CSMS_TLS_CLIENT_CA` unset = the built-in CA), so
the profile-3 certificates here are issued by the CSMS's own CA: read from its files by
the test, or obtained through a CSR round trip as a real station does. Stations are raw
OCPP-J clients (tests/support/ocpp_raw.py) so every handshake answer is seen as sent.

Authentication failures come through a trusted proxy (`CSMS_TRUSTED_PROXIES` =
127.0.0.1, with `X-Forwarded-For` naming a documentation address per test), so one
test's failures cannot slow the address every other test connects from.

Covered: profile 2 over wss and its refusal on ws (403), profile 3 with a CSMS-issued
certificate, wrong-CA / expired / not-yet-valid certificates failing the TLS handshake,
CN mismatch (403), the CSR round trip in 1.6 and 2.0.1 then a profile-3 reconnect and
certificate revocation, raising a profile (pending until used), trust anchors, OCSP answers
from the CSMS's CA, password rotation without a dropped session, revocation closing the
socket within 1 s (disable, delete, password reset, profile raise), a viewer key, lockout
that cannot be turned on a station or its neighbours, /metrics off the OCPP ports, bad API
input answered 400, the simulator over TLS, and API credential throttling.

At the end the server's whole log is searched for every password, Authorization value
and API key the tests used: none may appear.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from services.simulator.station import StationSpec, StationState, run_station
from services.simulator.stats import Stats
from tests.e2e.conftest import CSMS, Server, free_port, start_server, stop_server
from tests.support.certs import CA, Issued, client_context, issue, make_ca, make_csr, write_pem
from tests.support.ocpp_raw import RawStation, basic_auth, handshake_status
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

V16, V201 = "ocpp1.6", "ocpp2.0.1"
PROXY_HEADER = "X-Forwarded-For"


@dataclass
class Secure:
    server: Server
    wss_url: str
    server_ca: CA                      # signed the CSMS's server certificate; stations trust it
    csms_ca: CA                        # the CSMS's built-in CA (client certificates chain to it)
    secrets: set[str] = field(default_factory=set)   # every credential the tests used

    @property
    def ws_url(self) -> str:
        return self.server.ocpp_url

    def tls(self, client: Issued | None = None) -> Any:
        return client_context(self.server_ca, client)

    def remember(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    async def station(self, sid: str, *, profile: int, password: bool = True) -> str | None:
        """Register `sid` with `profile`; its password (None for a password-less profile-3 one)."""
        body: dict[str, Any] = {"id": sid, "security_profile": profile}
        pw: str | None = None
        if password:
            pw = "pw-" + uuid.uuid4().hex[:24]     # 27 characters: within OCPP's 16-40
            body["password"] = pw
            self.remember(pw, basic_auth(sid, pw))
        await self.server.api("POST", "/api/v1/stations", body, expect=201)
        return pw


def _load_ca(ca_dir: Path) -> CA:
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    return CA(cert, key)  # type: ignore[arg-type]  # the built-in CA's key is EC or RSA


@pytest.fixture(scope="module")
def sec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    tmp = tmp_path_factory.mktemp("security")
    server_ca = make_ca("Test server CA")
    cert_path, key_path = write_pem(tmp / "tls", "server", issue(server_ca, "localhost", server=True, client=False))
    tls_port = free_port()
    server = start_server(tmp, {
        "CSMS_TLS_CERT": str(cert_path),
        "CSMS_TLS_KEY": str(key_path),
        "CSMS_OCPP_TLS_PORT": str(tls_port),
        "CSMS_TRUSTED_PROXIES": "127.0.0.1/32",
        "CSMS_AUTH_SLOW_MAX_S": "2",
        "CSMS_COMMAND_TIMEOUT": "10",
    })
    secure = Secure(server, f"wss://127.0.0.1:{tls_port}/ocpp", server_ca, _load_ca(server.state_dir / "ca"))
    secure.remember(server.api_key)
    try:
        yield secure
    finally:
        stop_server(server)
    log = server.log()
    assert "Traceback" not in log, log[-6000:]
    leaked = sorted(s for s in secure.secrets if s in log)
    assert not leaked, f"credentials in the log: {[s[:6] + '...' for s in leaked]}"


def _says(body: str, code: str) -> bool:
    """The refusal names `code` (docs/security.md's `security_profile`; the gateway may
    write it as words: "security profile")."""
    return code in body or code.replace("_", " ") in body


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def _source() -> dict[str, str]:
    """A fresh address behind the trusted proxy (198.18.0.0/15, for benchmarks)."""
    n = uuid.uuid4().int
    return {PROXY_HEADER: f"198.18.{n % 250}.{(n >> 8) % 250 + 1}"}


async def _boot(st: RawStation) -> None:
    if st.protocol == V16:
        answer = await st.call("BootNotification", {"chargePointVendor": "Sec", "chargePointModel": "E2E"})
    else:
        answer = await st.call("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "E2E", "vendorName": "Sec"}})
    assert answer["status"] == "Accepted", answer


async def _connection_profile(sec: Secure, sid: str) -> Any:
    _, body = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
    return (body.get("connection") or {}).get("security_profile")


async def _connected(sec: Secure, sid: str, profile: int) -> None:
    """The API shows `sid` connected with `profile` (a previous session of the station may
    still be shown for a moment after it closed)."""
    async def shown() -> bool:
        return await _connection_profile(sec, sid) == profile

    await eventually(shown, 5, what=f"{sid} connected with profile {profile}",
                     detail=lambda: _connection_profile(sec, sid))


# --- profiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [V16, V201])
async def test_a_profile_2_station_connects_over_wss_with_basic_auth(sec: Secure, protocol: str) -> None:
    sid = _id("P2")
    pw = await sec.station(sid, profile=2)
    st = RawStation(sec.wss_url, sid, pw, protocol, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        await _connected(sec, sid, 2)
        _, body = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
        assert body["security_profile"] == 2
    finally:
        await st.close()


async def test_a_profile_2_station_is_refused_on_plain_ws(sec: Secure) -> None:
    sid = _id("P2WS")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    answer = await handshake_status(f"{sec.ws_url}/{sid}", authorization=basic_auth(sid, pw))
    assert answer.status == 403, answer
    assert _says(answer.body, "security_profile"), answer
    # the same credentials over wss:// are fine
    ok = await handshake_status(f"{sec.wss_url}/{sid}", authorization=basic_auth(sid, pw), ssl=sec.tls())
    assert ok.status == 101, ok


async def test_a_profile_3_station_connects_with_a_certificate_of_the_csms_ca(sec: Secure) -> None:
    sid = _id("P3")
    await sec.station(sid, profile=3, password=False)
    st = RawStation(sec.wss_url, sid, None, V201, ssl=sec.tls(issue(sec.csms_ca, sid)))
    await st.connect()
    try:
        await _boot(st)
        await _connected(sec, sid, 3)
    finally:
        await st.close()
    # without the certificate a password-less profile-3 station has nothing to show
    refused = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls())
    assert refused.status in (401, 403), refused


@pytest.mark.parametrize("which", ["wrong_ca", "expired", "not_yet_valid"])
async def test_a_bad_client_certificate_fails_the_tls_handshake(sec: Secure, which: str) -> None:
    sid = _id("P3BAD")
    await sec.station(sid, profile=3, password=False)
    now = dt.datetime.now(dt.timezone.utc)
    if which == "wrong_ca":
        cert = issue(make_ca("Somebody else's CA"), sid)
    elif which == "expired":
        cert = issue(sec.csms_ca, sid, not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=1))
    else:
        cert = issue(sec.csms_ca, sid, not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=30))
    with pytest.raises((OSError, ConnectionError)):   # ssl.SSLError is an OSError
        answer = await handshake_status(f"{sec.wss_url}/{sid}", protocol=V201, ssl=sec.tls(cert))
        pytest.fail(f"the TLS handshake succeeded: {answer}")


async def test_a_certificate_for_another_station_is_refused_403(sec: Secure) -> None:
    sid = _id("P3CN")
    await sec.station(sid, profile=3, password=False)
    answer = await handshake_status(f"{sec.wss_url}/{sid}", protocol=V201, ssl=sec.tls(issue(sec.csms_ca, sid + "X")))
    assert answer.status == 403, answer
    assert _says(answer.body, "certificate_identity"), answer


# --- CSR round trip ------------------------------------------------------------------------

def _accepting_certificates(st: RawStation) -> tuple[RawStation, list[dict[str, Any]]]:
    """`st` answering CertificateSigned Accepted, and the payloads it was sent."""
    signed: list[dict[str, Any]] = []

    async def on_signed(payload: dict[str, Any]) -> dict[str, Any]:
        signed.append(payload)
        return {"status": "Accepted"}

    st.handlers["CertificateSigned"] = on_signed
    return st, signed


def _chain(pem_text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem_text.encode())


@pytest.mark.parametrize("protocol", [V16, V201])
async def test_a_csr_round_trip_then_the_station_connects_as_profile_3(sec: Secure, protocol: str) -> None:
    sid = _id("CSR")
    pw = await sec.station(sid, profile=2)
    st, signed = _accepting_certificates(RawStation(sec.wss_url, sid, pw, protocol, ssl=sec.tls()))
    await st.connect()
    csr, key = make_csr(sid)
    try:
        await _boot(st)
        request: dict[str, Any] = {"csr": csr}
        if protocol == V201:
            request["certificateType"] = "ChargingStationCertificate"
        assert await st.call("SignCertificate", request) == {"status": "Accepted"}
        payload = await eventually(lambda: signed and signed[0], 15, what="CertificateSigned",
                                   detail=lambda: (st.received, sec.server.log()[-3000:]))
        chain = _chain(payload["certificateChain"])
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == sid
        leaf.verify_directly_issued_by(sec.csms_ca.cert)
        assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
        now = dt.datetime.now(dt.timezone.utc)
        assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc
        serial = format(leaf.serial_number, "x")

        async def installed() -> Any:
            _, body = await sec.server.api("GET", f"/api/v1/stations/{sid}/certificates", expect=200)
            items = [c for c in body["items"] if c["serial"] == serial]
            return items and items[0]["status"] == "installed" and items[0]

        cert = await eventually(installed, 10, what="the certificate installed")
        assert cert["certificate_type"] in ("ChargingStationCertificate", "ChargePointCertificate"), cert
        assert cert["fingerprint_sha256"]
    finally:
        await st.close()

    p3 = RawStation(sec.wss_url, sid, None, protocol, ssl=sec.tls(Issued(leaf, key)))
    await p3.connect()
    try:
        await _boot(p3)
        await _connected(sec, sid, 3)
        # revoking the certificate closes the socket it authenticated, and it is refused after
        _, revoked = await sec.server.api("POST", f"/api/v1/stations/{sid}/certificates/{serial}/revoke",
                                          {"reason": "keyCompromise"}, expect=200)
        assert revoked["status"] == "revoked" and revoked["serial"] == serial, revoked
        await asyncio.wait_for(p3.closed.wait(), 1.5)
    finally:
        await p3.close()
    refused = await handshake_status(f"{sec.wss_url}/{sid}", protocol=protocol, ssl=sec.tls(Issued(leaf, key)))
    assert refused.status == 403 and _says(refused.body, "certificate_revoked"), refused


async def test_a_csr_for_another_station_is_rejected(sec: Secure) -> None:
    sid = _id("CSRX")
    pw = await sec.station(sid, profile=2)
    st = RawStation(sec.wss_url, sid, pw, V201, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        csr, _ = make_csr("SOMEONE-ELSE")
        answer = await st.call("SignCertificate", {"csr": csr, "certificateType": "ChargingStationCertificate"})
        assert answer["status"] == "Rejected", answer
    finally:
        await st.close()


async def test_raising_the_profile_of_a_16_station_is_pending_until_it_connects_with_it(sec: Secure) -> None:
    sid = _id("RAISE")
    pw = await sec.station(sid, profile=1)
    assert pw is not None
    st = RawStation(sec.ws_url, sid, pw, V16)
    await st.connect()
    try:
        await _boot(st)
        await _connected(sec, sid, 1)
        _, body = await sec.server.api("POST", f"/api/v1/stations/{sid}/security-profile", {"profile": 2}, expect=200)
        assert body["status"] == "Accepted" and body["pending_security_profile"] == 2, body
        sent = [p for a, p in st.received if a == "ChangeConfiguration"]
        assert sent and sent[-1] == {"key": "SecurityProfile", "value": "2"}, st.received
        _, shown = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
        assert shown["security_profile"] == 1 and shown["pending_security_profile"] == 2, shown
        assert not st.closed.is_set()   # a raise through the station's own command revokes nothing yet
    finally:
        await st.close()
    p2 = RawStation(sec.wss_url, sid, pw, V16, ssl=sec.tls())
    await p2.connect()
    try:
        await _boot(p2)
        await _connected(sec, sid, 2)
    finally:
        await p2.close()

    async def stored() -> bool:
        _, shown = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
        return bool(shown["security_profile"] == 2 and shown["pending_security_profile"] in (None, 0))

    await eventually(stored, 5, what="profile 2 stored once the station used it")
    downgrade = await handshake_status(f"{sec.ws_url}/{sid}", authorization=basic_auth(sid, pw))
    assert downgrade.status == 403, downgrade


async def test_trust_anchors_are_listed_installed_and_deleted_through_the_station(sec: Secure) -> None:
    sid = _id("TRUST")
    pw = await sec.station(sid, profile=2)
    st = RawStation(sec.wss_url, sid, pw, V201, ssl=sec.tls())
    anchor = {"hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64, "issuerKeyHash": "b" * 64, "serialNumber": "1f2e"}

    async def installed_ids(payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": "CSMSRootCertificate", "certificateHashData": anchor},
        ]}

    st.handlers["GetInstalledCertificateIds"] = installed_ids
    await st.connect()
    try:
        await _boot(st)
        await _connected(sec, sid, 2)
        _, listed = await sec.server.api("GET", f"/api/v1/stations/{sid}/trust-anchors", expect=200)
        assert listed["retrieved_at"], listed
        assert [(i["certificate_type"], i["serial_number"]) for i in listed["items"]] == [("CSMSRootCertificate", "1f2e")], listed
        _, cached = await sec.server.api("GET", f"/api/v1/stations/{sid}/trust-anchors?cached=true", expect=200)
        assert cached["items"] == listed["items"]
        _, inst = await sec.server.api("POST", f"/api/v1/stations/{sid}/trust-anchors",
                                       {"certificate_type": "CSMSRootCertificate", "certificate": sec.csms_ca.pem}, expect=200)
        assert inst["status"] == "Accepted", inst
        sent = [p for a, p in st.received if a == "InstallCertificate"]
        assert sent and sent[-1]["certificateType"] == "CSMSRootCertificate" and "BEGIN CERTIFICATE" in sent[-1]["certificate"]
        _, deleted = await sec.server.api("DELETE", f"/api/v1/stations/{sid}/trust-anchors/1f2e", expect=200)
        assert deleted["status"] == "Accepted", deleted
        sent = [p for a, p in st.received if a == "DeleteCertificate"]
        assert sent and sent[-1]["certificateHashData"] == anchor, sent
        await sec.server.api("DELETE", f"/api/v1/stations/{sid}/trust-anchors/ffff", expect=404)
    finally:
        await st.close()


async def test_get_certificate_status_is_answered_from_the_csms_ca(sec: Secure) -> None:
    """A 2.0.1 station asks about a certificate the CSMS's CA issued (OCSP request data);
    the CSMS answers from its own records with a signed OCSP response: good, then revoked."""
    sid = _id("OCSP")
    pw = await sec.station(sid, profile=2)
    st, signed = _accepting_certificates(RawStation(sec.wss_url, sid, pw, V201, ssl=sec.tls()))
    await st.connect()
    try:
        await _boot(st)
        csr, _ = make_csr(sid)
        assert (await st.call("SignCertificate", {"csr": csr, "certificateType": "ChargingStationCertificate"}))["status"] == "Accepted"
        payload = await eventually(lambda: signed and signed[0], 15, what="CertificateSigned")
        leaf = _chain(payload["certificateChain"])[0]
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, sec.csms_ca.cert, hashes.SHA256()).build()
        data = {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": request.issuer_name_hash.hex(),
            "issuerKeyHash": request.issuer_key_hash.hex(),
            "serialNumber": format(leaf.serial_number, "x"),
            "responderURL": "http://ocsp.invalid/",
        }
        answer = await st.call("GetCertificateStatus", {"ocspRequestData": data})
        assert answer["status"] == "Accepted", answer
        response = ocsp.load_der_ocsp_response(base64.b64decode(answer["ocspResult"]))
        assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.serial_number
        serial = format(leaf.serial_number, "x")

        async def recorded() -> bool:
            _, body = await sec.server.api("GET", f"/api/v1/stations/{sid}/certificates", expect=200)
            return any(c["serial"] == serial and c["status"] == "installed" for c in body["items"])

        await eventually(recorded, 10, what="the certificate recorded")
        # revoking a station's certificate closes its socket (docs/security.md), whatever it
        # authenticated with; it comes back with its password and asks again
        await sec.server.api("POST", f"/api/v1/stations/{sid}/certificates/{serial}/revoke", {}, expect=200)
        await asyncio.wait_for(st.closed.wait(), 1.5)
    finally:
        await st.close()
    st = RawStation(sec.wss_url, sid, pw, V201, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        again = await st.call("GetCertificateStatus", {"ocspRequestData": data})
        assert again["status"] == "Accepted", again
        revoked = ocsp.load_der_ocsp_response(base64.b64decode(again["ocspResult"]))
        assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    finally:
        await st.close()


async def test_get_15118_ev_certificate_without_a_provider_fails_honestly(sec: Secure) -> None:
    sid = _id("EV")
    pw = await sec.station(sid, profile=2)
    st = RawStation(sec.wss_url, sid, pw, V201, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        answer = await st.call("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
                                                          "action": "Install", "exiRequest": "AAAA"})
        assert answer["status"] == "Failed" and answer["exiResponse"] == "", answer
    finally:
        await st.close()


# --- password rotation ---------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [V16, V201])
async def test_password_rotation_keeps_the_session_and_the_next_connection_uses_the_new_one(sec: Secure, protocol: str) -> None:
    sid = _id("ROT")
    old = await sec.station(sid, profile=2)
    assert old is not None
    st = RawStation(sec.wss_url, sid, old, protocol, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        # the API picks the message by the version it shows for the connection
        await _connected(sec, sid, 2)
        status, body = await sec.server.api("POST", f"/api/v1/stations/{sid}/password", {}, expect=200)
        new = body["password"]
        sec.remember(new, basic_auth(sid, new))
        assert body["status"] == "Accepted" and body["pending"] is True, body
        assert 16 <= len(new) <= 40
        if protocol == V16:
            sent = [p for a, p in st.received if a == "ChangeConfiguration"]
            assert sent and sent[-1]["key"] == "AuthorizationKey", st.received
            assert sent[-1]["value"] == new.encode().hex(), "the new password, hex-encoded as the 1.6 security whitepaper says"
        else:
            sent = [p for a, p in st.received if a == "SetVariables"]
            assert sent, st.received
            item = sent[-1]["setVariableData"][0]
            assert (item["component"]["name"], item["variable"]["name"]) == ("SecurityCtrlr", "BasicAuthPassword")
            assert item["attributeValue"] == new
        _, shown = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
        assert shown["password_rotation_pending"] is True
        # the session survived the rotation
        assert (await st.call("Heartbeat", {}))["currentTime"]
        assert not st.closed.is_set()
    finally:
        await st.close()
    again = RawStation(sec.wss_url, sid, new, protocol, ssl=sec.tls())
    await again.connect()
    try:
        await _boot(again)
    finally:
        await again.close()
    refused = await handshake_status(f"{sec.wss_url}/{sid}", protocol=protocol, ssl=sec.tls(),
                                     authorization=basic_auth(sid, old), headers=_source())
    assert refused.status == 401, refused
    _, shown = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
    assert shown["password_rotation_pending"] is False

    # the new password went to the station, but no record made of the command holds it: the
    # command record, the station history and the device model show it redacted
    async def rotation_recorded() -> bool:
        _, commands = await sec.server.api("GET", f"/api/v1/stations/{sid}/commands", expect=200)
        return any(c.get("ocpp_action") in ("ChangeConfiguration", "SetVariables") and c.get("status") == "Accepted"
                   for c in commands["items"])

    await eventually(rotation_recorded, 10, what="the rotation's command record")
    for path in (f"/api/v1/stations/{sid}/commands", f"/api/v1/stations/{sid}/events?limit=1000",
                 f"/api/v1/stations/{sid}/variables"):
        status, body = await sec.server.api("GET", path)
        text = json.dumps(body)
        assert new not in text and new.encode().hex() not in text, f"{path} shows the rotated password"


async def test_a_rotation_the_station_rejects_keeps_the_old_password(sec: Secure) -> None:
    sid = _id("ROTNO")
    old = await sec.station(sid, profile=2)
    assert old is not None
    st = RawStation(sec.wss_url, sid, old, V16, ssl=sec.tls())

    async def reject(payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Rejected"}

    st.handlers["ChangeConfiguration"] = reject
    await st.connect()
    try:
        await _boot(st)
        status, body = await sec.server.api("POST", f"/api/v1/stations/{sid}/password", {})
        assert status == 409 and body.get("status") == "Rejected", (status, body)
        assert "password" not in body or not body["password"]
    finally:
        await st.close()
    ok = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), authorization=basic_auth(sid, old))
    assert ok.status == 101, ok


# --- revocation ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["disable", "delete", "password_reset", "raise_profile"])
async def test_revocation_closes_the_open_socket_within_a_second(sec: Secure, how: str) -> None:
    sid = _id("REV")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    st = RawStation(sec.wss_url, sid, pw, V16, ssl=sec.tls())
    await st.connect()
    try:
        await _boot(st)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if how == "disable":
            await sec.server.api("PATCH", f"/api/v1/stations/{sid}", {"enabled": False}, expect=200)
        elif how == "delete":
            await sec.server.api("DELETE", f"/api/v1/stations/{sid}", expect=(200, 204))
        elif how == "password_reset":
            reset = "reset-" + uuid.uuid4().hex[:20]
            sec.remember(reset)
            await sec.server.api("PATCH", f"/api/v1/stations/{sid}", {"password": reset}, expect=200)
        else:
            await sec.server.api("PATCH", f"/api/v1/stations/{sid}", {"security_profile": 3}, expect=200)
        await asyncio.wait_for(st.closed.wait(), 1.0 + 0.5)   # 1 s, plus the API call's own round trip
        assert loop.time() - t0 < 1.5
        assert st.close_code == 1008, st.close_code
    finally:
        await st.close()
    answer = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), authorization=basic_auth(sid, pw), headers=_source())
    expected = {"disable": 403, "delete": 404, "password_reset": 401, "raise_profile": 403}[how]
    assert answer.status == expected, answer
    if how == "disable":
        assert _says(answer.body, "disabled"), answer
    if how == "raise_profile":
        assert _says(answer.body, "security_profile"), answer


# --- operator roles ------------------------------------------------------------------------

async def test_a_viewer_key_reads_stations_but_cannot_send_commands(sec: Secure) -> None:
    sid = _id("VIEW")
    await sec.station(sid, profile=2)
    status, created = await sec.server.api("POST", "/api/v1/api-keys", {"name": "e2e viewer", "role": "viewer"}, expect=201)
    key = created["key"]
    sec.remember(key)
    assert created["role"] == "viewer" and key.startswith(f"csms_{created['id']}_")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.get(f"{sec.server.api_url}/api/v1/stations/{sid}") as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{sec.server.api_url}/api/v1/whoami") as r:
            assert r.status == 200 and (await r.json())["role"] == "viewer"
        async with http.post(f"{sec.server.api_url}/api/v1/stations/{sid}/commands", json={"type": "Reset", "params": {"type": "Soft"}}) as r:
            assert r.status == 403, await r.text()
            assert "viewer" in (await r.json())["error"]
        async with http.post(f"{sec.server.api_url}/api/v1/api-keys", json={"name": "escalate", "role": "admin"}) as r:
            assert r.status == 403
    _, listed = await sec.server.api("GET", "/api/v1/api-keys", expect=200)
    mine = [k for k in listed["items"] if k["id"] == created["id"]]
    assert mine and "key" not in mine[0] and "secret_hmac" not in mine[0]


async def test_a_revoked_key_is_refused(sec: Secure) -> None:
    _, created = await sec.server.api("POST", "/api/v1/api-keys", {"name": "short-lived", "role": "operator"}, expect=201)
    sec.remember(created["key"])
    await sec.server.api("DELETE", f"/api/v1/api-keys/{created['id']}", expect=200)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {created['key']}"}) as http:
        async with http.get(f"{sec.server.api_url}/api/v1/stations") as r:
            assert r.status == 401
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


# --- lockout -------------------------------------------------------------------------------

async def test_requests_without_credentials_never_lock_a_station_out(sec: Secure) -> None:
    sid = _id("NOCRED")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    source = _source()
    for _ in range(5 + 2):   # past CSMS_AUTH_FAIL_LIMIT (5)
        answer = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), headers=source)
        assert answer.status == 401 and _says(answer.body, "missing_credentials"), answer
    ok = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), authorization=basic_auth(sid, pw), headers=source)
    assert ok.status == 101, ok


async def test_failures_from_one_address_do_not_lock_out_another_station_behind_it(sec: Secure) -> None:
    victim, neighbour = _id("LOCKA"), _id("LOCKB")
    await sec.station(victim, profile=2)
    pw = await sec.station(neighbour, profile=2)
    assert pw is not None
    nat = _source()
    statuses = []
    for i in range(30):
        answer = await handshake_status(f"{sec.wss_url}/{victim}", ssl=sec.tls(), headers=nat,
                                        authorization=basic_auth(victim, f"wrong-password-{i:04d}"))
        statuses.append(answer.status)
        if answer.status in (401, 429) and "retry-after" in answer.headers:
            assert 0 < int(answer.headers["retry-after"]) <= 60
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[:5] == [401] * 5
    # the neighbour's correct password gets in: at once, or after the Retry-After of a
    # slowed (never locked) address
    for _attempt in range(3):
        answer = await handshake_status(f"{sec.wss_url}/{neighbour}", ssl=sec.tls(), headers=nat,
                                        authorization=basic_auth(neighbour, pw))
        if answer.status != 429:
            break
        await asyncio.sleep(int(answer.headers.get("retry-after", "1")))   # what the station is told to do
    assert answer.status == 101, answer


async def test_a_locked_station_and_source_gets_retry_after_but_another_source_gets_in(sec: Secure) -> None:
    sid = _id("LOCKS")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    attacker = _source()
    for i in range(5):
        answer = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), headers=attacker,
                                        authorization=basic_auth(sid, f"not-the-password-{i}"))
        assert answer.status == 401, answer
    locked = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), headers=attacker, authorization=basic_auth(sid, pw))
    assert locked.status in (401, 429) and "retry-after" in locked.headers, locked
    ok = await handshake_status(f"{sec.wss_url}/{sid}", ssl=sec.tls(), headers=_source(), authorization=basic_auth(sid, pw))
    assert ok.status == 101, ok


async def test_unknown_station_is_404(sec: Secure) -> None:
    answer = await handshake_status(f"{sec.wss_url}/{_id('NOSUCH')}", ssl=sec.tls(), headers=_source(),
                                    authorization=basic_auth("NOSUCH", "x" * 20))
    assert answer.status in (401, 404), answer


# --- hardening -----------------------------------------------------------------------------

async def test_metrics_are_not_served_on_the_ocpp_ports(sec: Secure) -> None:
    ocpp_http = sec.ws_url.replace("ws://", "http://").rsplit("/ocpp", 1)[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ocpp_http}/metrics") as r:
            assert r.status == 404, r.status
        async with http.get(sec.wss_url.replace("wss://", "https://").rsplit("/ocpp", 1)[0] + "/metrics", ssl=sec.tls()) as r:
            assert r.status == 404, r.status
        async with http.get(f"{sec.server.api_url}/metrics") as r:   # csms run: the API port serves them
            assert r.status == 200


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(("method", "path", "raw"), [
    ("POST", "/api/v1/stations", _deep(100_000)),
    ("POST", "/api/v1/stations", '{"id": ' + _deep(5_000) + "}"),
    ("POST", "/api/v1/tariffs", '{"id": "T-BAD", "currency": "EUR", "price_per_kwh": 1e-999999}'),
    ("POST", "/api/v1/tariffs", '{"id": "T-BAD2", "currency": "EUR", "price_per_kwh": "1e999999"}'),
    ("POST", "/api/v1/tariffs", '{"id": "T-BAD3", "currency": "EUR", "price_per_kwh": 1e400}'),
    ("POST", "/api/v1/stations", '{"id": "CP-NL\\n", "password": "abcdefghijklmnop1234"}'),
    ("POST", "/api/v1/stations", '{"id": "CP-SHORTPW", "password": "short"}'),
    ("POST", "/api/v1/stations", '{"id": "CP-PROFILE9", "password": "abcdefghijklmnop1234", "security_profile": 9}'),
    ("POST", "/api/v1/stations", '{"id": "CP-PING", "password": "abcdefghijklmnop1234", "ws_ping_interval_s": -1}'),
    ("POST", "/api/v1/tokens", '{"id_token": "TOK-Y0", "status": "Accepted", "expiry_date": "0000-01-01T00:00:00Z"}'),
    ("POST", "/api/v1/api-keys", '{"name": "x", "role": "root"}'),
    ("POST", "/api/v1/api-keys", '{"name": "x", "role": "viewer", "expires_at": "0000-01-01T00:00:00Z"}'),
    ("POST", "/api/v1/stations", "not json"),
    ("POST", "/api/v1/stations", '"a string"'),
])
async def test_bad_api_bodies_answer_400(sec: Secure, method: str, path: str, raw: str) -> None:
    async with aiohttp.ClientSession(headers=sec.server.headers) as http:
        async with http.request(method, f"{sec.server.api_url}{path}", data=raw.encode(),
                                headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
            assert r.status == 400, (r.status, text[:500])
            assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("query", [
    "/api/v1/stations/CP1%0A",
    "/api/v1/stations/E2EQ/events?since=0000-01-01T00:00:00Z",
    "/api/v1/stations/E2EQ/events?since=99999-01-01T00:00:00Z",
    "/api/v1/stations?limit=1e999",
    "/api/v1/audit?since=0000-01-01T00:00:00Z",
])
async def test_bad_api_queries_answer_4xx_never_500(sec: Secure, query: str) -> None:
    # 422 is the API's answer to an invalid query parameter (docs/api.md)
    async with aiohttp.ClientSession(headers=sec.server.headers) as http:
        async with http.get(f"{sec.server.api_url}{query}") as r:
            assert r.status in (400, 404, 422), (r.status, (await r.text())[:500])


# --- the simulator over TLS ------------------------------------------------------------------

async def test_csms_simulate_over_wss_with_a_client_certificate(sec: Secure, tmp_path: Path) -> None:
    """`csms simulate --url wss://... --tls-ca ... --client-cert ...` as a process: the
    stations register, connect as profile 3 and charge."""
    ca_file = tmp_path / "server-ca.pem"
    ca_file.write_text(sec.server_ca.pem)
    prefix = _id("SIMTLS")
    cert_file, key_file = write_pem(tmp_path, "sim", issue(sec.csms_ca, f"{prefix}00000"))
    proc = await asyncio.create_subprocess_exec(
        str(CSMS), "simulate", "--url", sec.wss_url, "--api-url", sec.server.api_url, "--api-key", sec.server.api_key,
        "--stations", "1", "--prefix", prefix, "--protocol", "2.0.1", "--meter-values", "1", "--interval", "0.05",
        "--tls-ca", str(ca_file), "--client-cert", str(cert_file), "--client-key", str(key_file), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["stations_ok"] == 1 and summary["stations_failed"] == 0, summary


async def test_a_simulated_station_gets_a_certificate_and_reconnects_as_profile_3(sec: Secure, tmp_path: Path) -> None:
    """The simulator's CSR round trip against the real CSMS: renew -> TriggerMessage ->
    SignCertificate -> CertificateSigned (installed), then the next connection presents it."""
    ca_file = tmp_path / "server-ca.pem"
    ca_file.write_text(sec.server_ca.pem)
    sid = _id("SIMCSR")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    spec = StationSpec(sid, pw, "2.0.1", sec.wss_url, sessions=0, hold_s=120, tls_ca=str(ca_file), firmware_step_s=0.05)
    state = StationState.for_spec(spec)
    task = asyncio.create_task(run_station(spec, Stats(), state))
    try:
        await _connected(sec, sid, 2)
        _, renewed = await sec.server.api("POST", f"/api/v1/stations/{sid}/certificates/renew", {}, expect=202)
        assert renewed["status"] == "Accepted", renewed
        await eventually(lambda: state.credentials.certificate_pem, 15, what="the simulator installed its certificate",
                         detail=lambda: (spec.received[-5:], state.credentials))

        async def installed() -> Any:
            _, body = await sec.server.api("GET", f"/api/v1/stations/{sid}/certificates", expect=200)
            return [c for c in body["items"] if c["status"] == "installed"]

        await eventually(installed, 10, what="the CSMS shows it installed")
        state.reboot.set()    # the next connection presents the new certificate
        await _connected(sec, sid, 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_a_simulated_station_takes_a_rotated_password_into_its_next_connection(sec: Secure, tmp_path: Path, protocol: str) -> None:
    ca_file = tmp_path / "server-ca.pem"
    ca_file.write_text(sec.server_ca.pem)
    sid = _id("SIMPWD")
    pw = await sec.station(sid, profile=2)
    assert pw is not None
    spec = StationSpec(sid, pw, protocol, sec.wss_url, sessions=0, hold_s=120, tls_ca=str(ca_file), firmware_step_s=0.05)
    state = StationState.for_spec(spec)
    task = asyncio.create_task(run_station(spec, Stats(), state))
    try:
        await _connected(sec, sid, 2)
        _, body = await sec.server.api("POST", f"/api/v1/stations/{sid}/password", {}, expect=200)
        sec.remember(body["password"], basic_auth(sid, body["password"]))
        assert body["status"] == "Accepted" and state.credentials.next_password == body["password"], body
        state.reboot.set()

        async def rotated() -> bool:
            _, shown = await sec.server.api("GET", f"/api/v1/stations/{sid}", expect=200)
            return shown["password_rotation_pending"] is False and state.credentials.password == body["password"]

        await eventually(rotated, 10, what="the station reconnected with its new password")
        await _connected(sec, sid, 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# last in the file: if the API does not take the address from X-Forwarded-For, this
# throttles 127.0.0.1 for a minute
async def test_the_api_refuses_wrong_keys_and_throttles_a_source(sec: Secure) -> None:
    headers = {"Authorization": "Bearer csms_nokey_" + "x" * 20, **_source()}
    async with aiohttp.ClientSession(headers=headers) as http:
        statuses = []
        for _ in range(25):
            async with http.get(f"{sec.server.api_url}/api/v1/stations") as r:
                statuses.append(r.status)
        assert statuses[0] == 401 and 429 in statuses, statuses
