"""Security on the distributed setup (issue 11, ADR 017): Kafka + Cassandra, two gateway
processes serving ws:// and wss://, the API and the certificates processor (the only
process holding the CA key), each its own `csms <role>`.

- Revocation bites across gateways: a station connected to gateway-1 that is disabled (or
  deleted) through the API loses its socket within 1 s, and both gateways refuse it at
  once, including gateway-0 that had the station in its auth cache a moment ago (no 10-s
  cache window).
- A CSR round trip through the certificates processor: SignCertificate on a gateway, the
  CSR over Kafka, signed by the CA in CSMS_CA_DIR, CertificateSigned back through the
  command topic, the certificate recorded in Cassandra and shown installed by the API.
- A profile-3 station with a certificate from `csms ca issue-station-cert` connects to
  the other gateway (both gateways verify against the same CA).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.integration.conftest import CSMS, Cluster, free_port, new_cluster
from tests.support.certs import CA, Issued, client_context, issue, make_ca, make_csr, write_pem
from tests.support.ocpp_raw import RawStation, basic_auth, handshake_status
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

GATEWAYS = ("gateway-0", "gateway-1")


class SecureCluster:
    def __init__(self, cluster: Cluster, server_ca: CA, ca_dir: Path, tls_ports: dict[str, int]) -> None:
        self.c, self.server_ca, self.ca_dir, self.tls_ports = cluster, server_ca, ca_dir, tls_ports

    def ws(self, gateway: str) -> str:
        return self.c.ocpp_url(gateway)

    def wss(self, gateway: str) -> str:
        return f"wss://127.0.0.1:{self.tls_ports[gateway]}/ocpp"

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.ca_dir / "ca.pem").read_bytes())

    async def station(self, sid: str, profile: int = 1) -> str:
        pw = "pw-" + uuid.uuid4().hex[:24]
        await self.c.api("POST", "/api/v1/stations", {"id": sid, "password": pw, "security_profile": profile}, expect=201)
        return pw

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log()[-2500:]}" for name, p in self.c.procs.items())


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    tmp = tmp_path_factory.mktemp("security-cluster")
    ca_dir = tmp / "ca"
    init = subprocess.run([CSMS, "ca", "init", "--dir", str(ca_dir), "--cn", "IT CA"], capture_output=True, timeout=60)
    assert init.returncode == 0, init.stdout + init.stderr
    server_ca = make_ca("IT server CA")
    cert_path, key_path = write_pem(tmp / "tls", "server", issue(server_ca, "localhost", server=True, client=False))
    c = new_cluster(tmp, roles=("api", "certificates"), extra_env={
        "CSMS_CA_DIR": str(ca_dir),
        "CSMS_TLS_CERT": str(cert_path),
        "CSMS_TLS_KEY": str(key_path),
    })
    tls_ports: dict[str, int] = {}
    try:
        for name in GATEWAYS:
            tls_ports[name] = free_port()
            c.spawn(name, "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": name, "CSMS_OCPP_TLS_PORT": str(tls_ports[name])})
        for name in GATEWAYS:
            c.wait_ready(c.procs[name])
        yield SecureCluster(c, server_ca, ca_dir, tls_ports)
    finally:
        c.stop_all()
    for name, proc in c.procs.items():
        assert "Traceback" not in proc.log(), f"{name}:\n{proc.log()[-5000:]}"


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


async def _boot(st: RawStation) -> None:
    answer = await st.call("BootNotification", {"chargePointVendor": "IT", "chargePointModel": "Sec"})
    assert answer["status"] == "Accepted", answer


async def _warm_cache(sc: SecureCluster, sid: str, pw: str, gateway: str) -> None:
    """Connect once to `gateway` and leave: it now has the station in its auth cache."""
    st = RawStation(sc.ws(gateway), sid, pw)
    await st.connect()
    await _boot(st)
    await st.close()


@pytest.mark.parametrize("how", ["disable", "delete"])
async def test_revocation_closes_the_socket_on_the_other_gateway_and_both_refuse_at_once(sc: SecureCluster, how: str) -> None:
    sid = _id("DREV")
    pw = await sc.station(sid)
    await _warm_cache(sc, sid, pw, "gateway-0")
    st = RawStation(sc.ws("gateway-1"), sid, pw)
    await st.connect()
    try:
        await _boot(st)
        loop = asyncio.get_running_loop()
        if how == "disable":
            await sc.c.api("PATCH", f"/api/v1/stations/{sid}", {"enabled": False}, expect=200)
        else:
            await sc.c.api("DELETE", f"/api/v1/stations/{sid}", expect=(200, 204))
        t_done = loop.time()
        try:
            await asyncio.wait_for(st.closed.wait(), 1.0)
        except TimeoutError:
            pytest.fail(f"the socket on gateway-1 was still open 1 s after the {how}\n{sc.logs()}")
        assert loop.time() - t_done <= 1.0
        assert st.close_code == 1008, st.close_code
    finally:
        await st.close()
    expected = 403 if how == "disable" else 404
    for gateway in GATEWAYS:   # at once: no waiting for a cache to expire
        answer = await handshake_status(f"{sc.ws(gateway)}/{sid}", authorization=basic_auth(sid, pw))
        assert answer.status == expected, (gateway, answer)


async def test_a_password_reset_closes_the_socket_and_the_old_password_is_refused_everywhere(sc: SecureCluster) -> None:
    sid = _id("DPWD")
    pw = await sc.station(sid)
    await _warm_cache(sc, sid, pw, "gateway-1")
    st = RawStation(sc.ws("gateway-0"), sid, pw)
    await st.connect()
    try:
        await _boot(st)
        new = "reset-" + uuid.uuid4().hex[:20]
        await sc.c.api("PATCH", f"/api/v1/stations/{sid}", {"password": new}, expect=200)
        await asyncio.wait_for(st.closed.wait(), 1.0)
    finally:
        await st.close()
    for gateway in GATEWAYS:
        old = await handshake_status(f"{sc.ws(gateway)}/{sid}", authorization=basic_auth(sid, pw))
        assert old.status == 401, (gateway, old)
        ok = await handshake_status(f"{sc.ws(gateway)}/{sid}", authorization=basic_auth(sid, new))
        assert ok.status == 101, (gateway, ok)


async def test_a_csr_round_trip_through_the_certificates_processor(sc: SecureCluster) -> None:
    sid = _id("DCSR")
    pw = await sc.station(sid, profile=2)
    st = RawStation(sc.wss("gateway-0"), sid, pw, "ocpp2.0.1", ssl=client_context(sc.server_ca))
    signed: list[dict[str, Any]] = []

    async def on_signed(payload: dict[str, Any]) -> dict[str, Any]:
        signed.append(payload)
        return {"status": "Accepted"}

    st.handlers["CertificateSigned"] = on_signed
    await st.connect()
    csr, key = make_csr(sid)
    try:
        boot = await st.call("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "IT", "vendorName": "Sec"}})
        assert boot["status"] == "Accepted"
        assert await st.call("SignCertificate", {"csr": csr, "certificateType": "ChargingStationCertificate"}) == {"status": "Accepted"}
        payload = await eventually(lambda: signed and signed[0], 30, what="CertificateSigned through Kafka", detail=sc.logs)
        leaf = x509.load_pem_x509_certificates(payload["certificateChain"].encode())[0]
        leaf.verify_directly_issued_by(sc.ca_cert)
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == sid
        assert leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        serial = format(leaf.serial_number, "x")

        async def installed() -> Any:
            _, body = await sc.c.api("GET", f"/api/v1/stations/{sid}/certificates", expect=200)
            return [c for c in body["items"] if c["serial"] == serial and c["status"] == "installed"]

        await eventually(installed, 20, what="the certificate recorded as installed", detail=sc.logs)
    finally:
        await st.close()
    # the station comes back as profile 3 on the other gateway
    p3 = RawStation(sc.wss("gateway-1"), sid, None, "ocpp2.0.1", ssl=client_context(sc.server_ca, Issued(leaf, key)))
    await p3.connect()
    try:
        boot = await p3.call("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "IT", "vendorName": "Sec"}})
        assert boot["status"] == "Accepted"
    finally:
        await p3.close()


async def test_profile_3_with_a_certificate_from_csms_ca_issue_station_cert(sc: SecureCluster, tmp_path: Path) -> None:
    sid = _id("DP3")
    await sc.c.api("POST", "/api/v1/stations", {"id": sid, "security_profile": 3}, expect=201)
    cert_file, key_file = tmp_path / "cp.pem", tmp_path / "cp.key"
    issued = subprocess.run([CSMS, "ca", "--dir", str(sc.ca_dir), "issue-station-cert", sid, "--out-cert", str(cert_file),
                             "--out-key", str(key_file)], capture_output=True, timeout=60)
    assert issued.returncode == 0, issued.stdout + issued.stderr
    cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key_file.stat().st_mode & 0o077 == 0, "the key file is 0600"
    client = Issued(cert, key)  # type: ignore[arg-type]
    for gateway in GATEWAYS:
        answer = await handshake_status(f"{sc.wss(gateway)}/{sid}", ssl=client_context(sc.server_ca, client))
        assert answer.status == 101, (gateway, answer)
        plain = await handshake_status(f"{sc.ws(gateway)}/{sid}", authorization=basic_auth(sid, "x" * 20))
        assert plain.status in (401, 403), (gateway, plain)
    # a certificate of the right CA for another station: 403 on both
    other = issue(CA(sc.ca_cert, serialization.load_pem_private_key((sc.ca_dir / "ca.key").read_bytes(), password=None)),  # type: ignore[arg-type]
                  sid + "X", not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    for gateway in GATEWAYS:
        answer = await handshake_status(f"{sc.wss(gateway)}/{sid}", ssl=client_context(sc.server_ca, other))
        assert answer.status == 403, (gateway, answer)
