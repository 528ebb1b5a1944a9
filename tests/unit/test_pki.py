"""services/common/pki.py: CSR checks, certificate identity, hash data, chains, OCSP."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp

from services.certificates.ca import LocalCA, init_ca, issue_station_certificate
from services.common import pki
from tests.unit.certificates.builders import csr_pem, ec_key, new_ca_dir, rsa_key, tampered

UTC = timezone.utc
def now() -> datetime:
    """Now, when asked (a module-level constant goes stale in a long test run)."""
    return datetime.now(UTC)


# -- check_csr ---------------------------------------------------------------------------
def test_a_p256_csr_with_the_station_id_as_cn_is_acceptable() -> None:
    assert pki.check_csr(csr_pem("CS-1"), "CS-1", min_rsa_bits=2048) is None


def test_a_p384_csr_is_acceptable() -> None:
    assert pki.check_csr(csr_pem("CS-1", ec_key(ec.SECP384R1())), "CS-1", min_rsa_bits=2048) is None


def test_an_rsa_2048_csr_is_acceptable() -> None:
    assert pki.check_csr(csr_pem("CS-1", rsa_key(2048)), "CS-1", min_rsa_bits=2048) is None


def test_a_csr_for_another_station_is_refused() -> None:
    reason = pki.check_csr(csr_pem("CS-2"), "CS-1", min_rsa_bits=2048)
    assert reason is not None and "CN" in reason and "CS-2" in reason


def test_a_weak_rsa_key_is_refused_under_the_configured_minimum() -> None:
    pem = csr_pem("CS-1", rsa_key(1024))
    assert pki.check_csr(pem, "CS-1", min_rsa_bits=2048) == "weak key (RSA 1024 < 2048 bits)"
    assert pki.check_csr(pem, "CS-1", min_rsa_bits=1024) is None


def test_a_csr_whose_signature_does_not_verify_is_refused() -> None:
    assert pki.check_csr(tampered(csr_pem("CS-1")), "CS-1", min_rsa_bits=2048) == "bad signature"


@pytest.mark.parametrize("garbage", ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "%%%"])
def test_garbage_is_unreadable(garbage: str) -> None:
    assert pki.check_csr(garbage, "CS-1", min_rsa_bits=2048) == "unreadable"


def test_other_key_types_and_curves_are_unsupported() -> None:
    assert pki.check_csr(csr_pem("CS-1", ed25519.Ed25519PrivateKey.generate()), "CS-1", min_rsa_bits=2048) == "unsupported key type"
    reason = pki.check_csr(csr_pem("CS-1", ec_key(ec.SECP521R1())), "CS-1", min_rsa_bits=2048)
    assert reason is not None and reason.startswith("unsupported key type")


def test_a_csr_without_pem_armour_is_read_as_base64_der() -> None:
    pem = csr_pem("CS-1")
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert pki.check_csr(base64.b64encode(der).decode(), "CS-1", min_rsa_bits=2048) is None


# -- certificates ------------------------------------------------------------------------
@pytest.fixture()
def ca_dir(tmp_path: Path) -> Path:
    return new_ca_dir(tmp_path)


def _station_cert(ca_dir: Path, station_id: str = "CS-1", **kw: object) -> x509.Certificate:
    chain, _key = issue_station_certificate(ca_dir, station_id, **kw)  # type: ignore[arg-type]
    return pki.load_certificate(chain)


def test_load_certificate_reads_pem_and_der_and_identity_is_the_cn(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pki.load_certificate(der) == cert
    assert pki.load_certificate(cert.public_bytes(serialization.Encoding.PEM)) == cert
    assert pki.certificate_identity(cert) == "CS-1"
    with pytest.raises(ValueError):
        pki.load_certificate(b"not a certificate")


def test_serial_hex_is_lowercase_without_leading_zeros(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    text = pki.serial_hex(cert)
    assert text == text.lower() and not text.startswith("0") and int(text, 16) == cert.serial_number


def test_hash_data_is_the_ocsp_cert_id(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    ca_cert = LocalCA(ca_dir).ca_certificate()
    data = pki.hash_data(cert, ca_cert)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(ca_cert.subject.public_bytes())
    assert data == {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": digest.finalize().hex(),
        "issuerKeyHash": data["issuerKeyHash"],
        "serialNumber": pki.serial_hex(cert),
    }
    assert len(data["issuerKeyHash"]) == 64
    assert len(pki.hash_data(cert, ca_cert, "SHA384")["issuerNameHash"]) == 96
    with pytest.raises(ValueError):
        pki.hash_data(cert, ca_cert, "MD5")


def test_verify_chain(ca_dir: Path, tmp_path: Path) -> None:
    cert = _station_cert(ca_dir, days=10)
    ca_cert = LocalCA(ca_dir).ca_certificate()
    assert pki.verify_chain(cert, [ca_cert], now()) is None
    assert pki.verify_chain(cert, [ca_cert], now() + timedelta(days=11)) == "expired"
    assert pki.verify_chain(cert, [ca_cert], now() - timedelta(days=1)) == "not yet valid"
    assert pki.verify_chain(cert, [], now()) == "unknown issuer"
    # another CA with the same name: the name matches, the signature does not
    impostor = init_ca(tmp_path / "other", cn="Test CA")
    assert pki.verify_chain(cert, [impostor], now()) == "bad signature"
    assert pki.verify_chain(cert, [impostor, ca_cert], now()) is None


# -- OCSP --------------------------------------------------------------------------------
def _ocsp(ca_dir: Path, request: dict[str, object], status: str) -> ocsp.OCSPResponse:
    local = LocalCA(ca_dir)
    responder_cert, responder_key = local.ocsp_responder()
    der = pki.ocsp_response(
        request, status_of=lambda serial: status, issuer=local.ca_certificate(),
        responder_cert=responder_cert, responder_key=responder_key, now=now(),
    )
    return ocsp.load_der_ocsp_response(der)


def test_ocsp_response_says_good_or_revoked_signed_by_the_delegate(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    local = LocalCA(ca_dir)
    request = pki.hash_data(cert, local.ca_certificate())
    seen: list[str] = []
    responder_cert, responder_key = local.ocsp_responder()

    def status_of(serial: str) -> str:
        seen.append(serial)
        return "good"

    good = ocsp.load_der_ocsp_response(pki.ocsp_response(
        request, status_of=status_of, issuer=local.ca_certificate(),
        responder_cert=responder_cert, responder_key=responder_key, now=now()))
    assert seen == [pki.serial_hex(cert)]
    assert good.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert good.serial_number == cert.serial_number
    # signed by the delegate, which the CA issued for OCSP signing
    assert good.certificates[0] == responder_cert
    assert isinstance(responder_cert.public_key(), ec.EllipticCurvePublicKey)
    responder_cert.public_key().verify(good.signature, good.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, union-attr]
    eku = responder_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING in eku
    assert pki.verify_chain(responder_cert, [local.ca_certificate()], now()) is None

    revoked = _ocsp(ca_dir, request, "revoked")
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_time_utc is not None


def test_ocsp_for_another_issuer_is_unknown_without_asking(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    request = dict(pki.hash_data(cert, LocalCA(ca_dir).ca_certificate()), issuerKeyHash="00" * 32)
    response = _ocsp(ca_dir, request, "good")
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_a_malformed_ocsp_request_is_a_malformed_request_response(ca_dir: Path) -> None:
    response = _ocsp(ca_dir, {"hashAlgorithm": "SHA256", "issuerNameHash": "zz", "issuerKeyHash": "00",
                              "serialNumber": "1"}, "good")
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_normalize_serial_accepts_what_stations_write() -> None:
    assert pki.normalize_serial("00AB:CD") == "abcd"
    assert pki.normalize_serial("  1F ") == "1f"
    assert pki.normalize_serial("0") == "0"
    assert pki.normalize_serial("xyz") is None and pki.normalize_serial("") is None


def test_load_private_key_reads_the_ca_keys(ca_dir: Path) -> None:
    key = pki.load_private_key((ca_dir / "ocsp.key").read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError):
        pki.load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_an_ocsp_serial_with_leading_zeros_and_upper_case_is_the_same_serial(ca_dir: Path) -> None:
    cert = _station_cert(ca_dir)
    request = pki.hash_data(cert, LocalCA(ca_dir).ca_certificate())
    request["serialNumber"] = "00" + request["serialNumber"].upper()
    seen: list[str] = []
    local = LocalCA(ca_dir)
    responder_cert, responder_key = local.ocsp_responder()
    pki.ocsp_response(request, status_of=lambda s: seen.append(s) or "good", issuer=local.ca_certificate(),
                      responder_cert=responder_cert, responder_key=responder_key, now=now())
    assert seen == [pki.serial_hex(cert)]
