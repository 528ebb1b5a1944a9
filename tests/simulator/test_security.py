"""The simulated station's security side (issue 11): TLS and client certificates, a new
password from the CSMS used from the next connection on, and the CSR round trip
(SignCertificate -> CertificateSigned), against the fake CSMS served over TLS where it
matters."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
from pathlib import Path
from typing import AsyncIterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from services.simulator.cli import add_arguments, build_specs, check_tls_arguments
from services.simulator.security import Credentials, check_signed, new_csr, password_acceptable
from services.simulator.station import StationSpec, StationState, run_station
from services.simulator.stats import Stats
from tests.simulator.conftest import StartStation
from tests.simulator.fake_csms import FakeCsms
from tests.support.certs import CA, issue, make_ca, pem, server_context, write_pem
from tests.support.waiting import eventually


def sign(ca: CA, csr_pem: str, *, cn: str | None = None) -> str:
    """What a CSMS's CA does with a CSR: a certificate for its key (subject CN `cn` if given)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = dt.datetime.now(dt.timezone.utc)
    subject = csr.subject if cn is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject).public_key(csr.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30)).sign(ca.key, hashes.SHA256())
    )
    return pem(cert) + ca.pem


# --- pure ------------------------------------------------------------------------------------

def test_password_length_is_ocpps_16_to_40() -> None:
    assert password_acceptable("a" * 16) and password_acceptable("a" * 40)
    assert not password_acceptable("a" * 15) and not password_acceptable("a" * 41)
    assert not password_acceptable(None) and not password_acceptable("with:colon-16chars")


def test_a_new_password_is_used_from_the_next_connection_then_kept() -> None:
    creds = Credentials()
    assert creds.password_for_connect("old-password-0001") == "old-password-0001"
    creds.next_password = "new-password-0002"
    assert creds.password_for_connect("old-password-0001") == "new-password-0002"
    creds.connected_with("new-password-0002")
    assert (creds.password, creds.next_password) == ("new-password-0002", None)
    assert creds.password_for_connect("old-password-0001") == "new-password-0002"


def test_csr_names_the_station_and_a_signed_chain_is_checked() -> None:
    ca = make_ca()
    csr_pem, key_pem = new_csr("CP-CSR-1")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-CSR-1"
    assert check_signed(sign(ca, csr_pem), key_pem, "CP-CSR-1") is None
    assert check_signed(sign(ca, csr_pem), None, "CP-CSR-1") == "no CSR outstanding"
    other_csr, _ = new_csr("CP-CSR-1")
    assert check_signed(sign(ca, other_csr), key_pem, "CP-CSR-1") == "not the key of our CSR"
    assert check_signed(sign(ca, csr_pem, cn="CP-OTHER"), key_pem, "CP-CSR-1") == "CN is not the station id"
    assert check_signed("garbage", key_pem, "CP-CSR-1") in ("unreadable chain", "empty chain")


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_cli_tls_options(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(make_ca().pem)
    args = _args("--url", "wss://127.0.0.1:9443/ocpp", "--tls-ca", str(ca_file), "--stations", "1")
    assert check_tls_arguments(args) is None
    spec = build_specs(args)[0]
    assert (spec.tls_ca, spec.client_cert, spec.client_key) == (str(ca_file), None, None)
    assert check_tls_arguments(_args("--tls-ca", str(ca_file))) == "--tls-ca/--client-cert/--client-key need a wss:// --url"
    assert check_tls_arguments(_args("--url", "wss://h/ocpp", "--client-key", str(ca_file))) == "--client-key needs --client-cert"
    assert "no such file" in (check_tls_arguments(_args("--url", "wss://h/ocpp", "--tls-ca", str(tmp_path / "nope"))) or "")


# --- against the fake CSMS -----------------------------------------------------------------

@pytest.mark.parametrize(("protocol", "trigger", "requested"), [
    ("2.0.1", "TriggerMessage", "SignChargingStationCertificate"),
    ("1.6", "ExtendedTriggerMessage", "SignChargePointCertificate"),
])
async def test_asked_for_a_csr_it_signs_up_and_installs_the_certificate(
    csms: FakeCsms, station: StartStation, protocol: str, trigger: str, requested: str,
) -> None:
    ca = make_ca()
    sim = await station(f"CP-CSR-{protocol}", protocol)
    assert await sim.result(trigger, {"requestedMessage": requested}) == {"status": "Accepted"}
    call = await eventually(lambda: csms.calls(sim.id, "SignCertificate"), what="SignCertificate",
                            detail=lambda: csms.actions(sim.id))
    payload = call[0].payload
    if protocol == "2.0.1":
        assert payload["certificateType"] == "ChargingStationCertificate"
    csr = x509.load_pem_x509_csr(payload["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == sim.id
    await eventually(lambda: sim.state.credentials.sign_status == "Accepted", what="the SignCertificate answer")
    # a chain for another key is refused, ours is installed
    other, _ = new_csr(sim.id)
    assert await sim.result("CertificateSigned", {"certificateChain": sign(ca, other)}) == {"status": "Rejected"}
    assert sim.state.credentials.certificate_pem is None
    chain = sign(ca, payload["csr"])
    assert await sim.result("CertificateSigned", {"certificateChain": chain}) == {"status": "Accepted"}
    assert sim.state.credentials.certificate_pem == chain and sim.state.credentials.certificate_key_pem


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_a_new_password_is_used_on_the_next_connection(csms: FakeCsms, station: StartStation, protocol: str) -> None:
    sim = await station(f"CP-PWD-{protocol}", protocol)
    new = "rotated-password-1234"
    if protocol == "1.6":
        # the whitepaper's encoding: the password hex-encoded
        short = await sim.result("ChangeConfiguration", {"key": "AuthorizationKey", "value": b"short".hex()})
        assert short == {"status": "Rejected"}
        not_hex = await sim.result("ChangeConfiguration", {"key": "AuthorizationKey", "value": new})
        assert not_hex == {"status": "Rejected"}
        assert await sim.result("ChangeConfiguration", {"key": "AuthorizationKey", "value": new.encode().hex()}) == {"status": "Accepted"}
        config = await sim.result("GetConfiguration", {})
        assert all(k["key"] != "AuthorizationKey" for k in config["configurationKey"])
    else:
        item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": new}
        answer = await sim.result("SetVariables", {"setVariableData": [item]})
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert new not in repr(sim.spec.received)        # recorded masked
    first = csms.connection(sim.id, 0)
    assert first is not None and first.authorization is not None
    sim.state.reboot.set()                            # the next connection
    second = await eventually(lambda: csms.connection(sim.id, 1), 10, what="a reconnect")
    assert second.authorization == "Basic " + base64.b64encode(f"{sim.id}:{new}".encode()).decode()


# --- over TLS --------------------------------------------------------------------------------

@pytest.fixture
async def tls_csms(tmp_path: Path) -> AsyncIterator[tuple[FakeCsms, CA, Path]]:
    server_ca, client_ca = make_ca("sim server CA"), make_ca("sim client CA")
    server = FakeCsms()
    await server.start(server_context(client_ca, issue(server_ca, "localhost", server=True, client=False)))
    ca_file = tmp_path / "server-ca.pem"
    ca_file.write_text(server_ca.pem)
    try:
        yield server, client_ca, ca_file
    finally:
        await server.stop()


async def _run(spec: StationSpec) -> tuple[StationState, asyncio.Task[bool]]:
    state = StationState.for_spec(spec)
    return state, asyncio.create_task(run_station(spec, Stats(), state))


async def test_over_wss_with_and_without_a_client_certificate(tls_csms: tuple[FakeCsms, CA, Path], tmp_path: Path) -> None:
    csms, client_ca, ca_file = tls_csms
    cert_file, key_file = write_pem(tmp_path, "cp", issue(client_ca, "CP-TLS-3"))
    specs = [
        StationSpec("CP-TLS-2", "pw-0123456789abcdef", "2.0.1", csms.ocpp_url, sessions=0, hold_s=30, tls_ca=str(ca_file)),
        StationSpec("CP-TLS-3", "", "1.6", csms.ocpp_url, sessions=0, hold_s=30, tls_ca=str(ca_file),
                    client_cert=str(cert_file), client_key=str(key_file)),
    ]
    tasks = [(await _run(s))[1] for s in specs]
    try:
        for s in specs:
            await eventually(lambda: "Heartbeat" in csms.actions(s.station_id), 10, what=f"{s.station_id} booted")
        p2, p3 = csms.connection("CP-TLS-2"), csms.connection("CP-TLS-3")
        assert p2 is not None and p2.peer_cn is None and p2.authorization is not None
        assert p3 is not None and p3.peer_cn == "CP-TLS-3" and p3.authorization is None   # no password: no header
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_after_a_csr_round_trip_the_next_wss_connection_presents_the_new_certificate(tls_csms: tuple[FakeCsms, CA, Path]) -> None:
    csms, client_ca, ca_file = tls_csms
    spec = StationSpec("CP-TLS-CSR", "pw-0123456789abcdef", "2.0.1", csms.ocpp_url, sessions=0, hold_s=30, tls_ca=str(ca_file),
                       firmware_step_s=0.01)
    state, task = await _run(spec)
    try:
        await eventually(lambda: "Heartbeat" in csms.actions(spec.station_id), 10, what="booted")
        conn = csms.connection(spec.station_id)
        assert conn is not None and conn.peer_cn is None
        assert await conn.result("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}) == {"status": "Accepted"}
        sent = await eventually(lambda: csms.calls(spec.station_id, "SignCertificate"), what="SignCertificate")
        chain = sign(client_ca, sent[0].payload["csr"])
        assert await conn.result("CertificateSigned", {"certificateChain": chain, "certificateType": "ChargingStationCertificate"}) == {"status": "Accepted"}
        state.reboot.set()
        again = await eventually(lambda: csms.connection(spec.station_id, 1), 10, what="a reconnect")
        assert again.peer_cn == spec.station_id
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        assert state.credentials.certificate_pem is not None and leaf.serial_number
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
