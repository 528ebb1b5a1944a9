"""Certificate checks every part needs: pure functions over `cryptography` objects.

The certificates processor checks a station's CSR (`check_csr`) before it signs it; the
gateway checks a client certificate's identity (`certificate_identity`, `serial_hex`) and
answers GetCertificateStatus with `ocsp_response`; the API computes OCPP hash data
(`hash_data`) for trust-anchor deletion. None of them logs or returns key material.

Serials are text everywhere in the CSMS: lowercase hex without leading zeros
(`serial_hex`), which is also the `certificate` document id (docs/security.md).
Hash data follows OCPP's CertificateHashDataType, computed as OCSP's CertID is (RFC 6960:
the hash of the issuer's DER name and of its public key's bit string), so a station's
GetInstalledCertificateIds answer and ours compare equal.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

__all__ = [
    "HASH_ALGORITHMS",
    "PrivateKey",
    "certificate_identity",
    "check_csr",
    "fingerprint_sha256",
    "hash_data",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "load_private_key",
    "normalize_serial",
    "ocsp_response",
    "serial_hex",
    "verify_chain",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

# OCPP HashAlgorithmEnumType -> the hash.
HASH_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}

# The curves a station key may use (OCPP 2.0.1 A00.FR.3xx: secp256r1, secp384r1).
_EC_CURVES = ("secp256r1", "secp384r1")

_UTC = timezone.utc


def _der_from_text(data: bytes, label: bytes) -> bytes | None:
    """DER from unarmoured base64 (some 1.6 firmware sends its CSR without the PEM
    armour); None when it is not base64."""
    text = b"".join(data.split())
    if not text or label in data:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def load_csr(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """A CSR from PEM (or bare base64 DER); raises ValueError when unreadable."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_csr(data.strip())
    der = _der_from_text(data, b"-----")
    if der is None:
        raise ValueError("not a PEM or base64 CSR")
    return x509.load_der_x509_csr(der)


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode(errors="replace")


def check_csr(csr_pem: str, station_id: str, *, min_rsa_bits: int) -> str | None:
    """None when the CSR may be signed for `station_id`, else the reason: `unreadable`,
    `bad signature`, `CN ... is not the station id`, `weak key` (RSA below
    `min_rsa_bits`), `unsupported key type` (not RSA, not EC P-256/P-384)."""
    try:
        csr = load_csr(csr_pem)
    except (ValueError, TypeError):
        return "unreadable"
    try:
        if not csr.is_signature_valid:
            return "bad signature"
    except (ValueError, TypeError):  # pragma: no cover - unknown signature algorithm
        return "bad signature"
    try:
        cn = _cn(csr.subject)
    except ValueError:
        return "unreadable"
    if cn != station_id:
        return f"CN {cn!r} is not the station id"
    try:
        key = csr.public_key()
    except (ValueError, TypeError):
        return "unsupported key type"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < min_rsa_bits:
            return f"weak key (RSA {key.key_size} < {min_rsa_bits} bits)"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            return f"unsupported key type (EC {key.curve.name})"
        return None
    return "unsupported key type"


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """The first certificate of PEM text or DER bytes; raises ValueError when unreadable."""
    if b"-----BEGIN" in pem_or_der:
        return x509.load_pem_x509_certificate(pem_or_der.strip())
    return x509.load_der_x509_certificate(pem_or_der)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (a chain, a trust bundle); [] when none."""
    if b"-----BEGIN CERTIFICATE" not in pem:
        return []
    return x509.load_pem_x509_certificates(pem)


def certificate_identity(cert: x509.Certificate) -> str | None:
    """The subject CN (a station certificate's station id), or None."""
    try:
        return _cn(cert.subject)
    except ValueError:
        return None


def serial_hex(cert: x509.Certificate) -> str:
    """The serial as the CSMS writes it: lowercase hex, no leading zeros."""
    return format(cert.serial_number, "x")


def normalize_serial(text: str) -> str | None:
    """A serial as stations and OCPP messages write it (any case, leading zeros, colons)
    in the CSMS's form (`serial_hex`); None when it is not hex."""
    cleaned = text.strip().replace(":", "").lower()
    if not cleaned or len(cleaned) > 64:
        return None
    try:
        value = int(cleaned, 16)
    except ValueError:
        return None
    return format(value, "x") if value >= 0 else None


def load_private_key(pem: bytes) -> PrivateKey:
    """An unencrypted PEM private key (the CA's files: `ca.key`, `ocsp.key`); raises
    ValueError when unreadable or not an RSA/EC/EdDSA key. Never log what it reads."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise ValueError("unsupported private key type")
    return key


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def hash_data(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256") -> dict[str, str]:
    """OCPP CertificateHashDataType of `cert` (issued by `issuer`): the hashes of an OCSP
    CertID, lowercase hex, and the serial as `serial_hex`."""
    algo = HASH_ALGORITHMS.get(algorithm)
    if algo is None:
        raise ValueError(f"unsupported hash algorithm {algorithm!r}")
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo()).build()
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": serial_hex(cert),
    }


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=_UTC) if dt.tzinfo is None else dt


def verify_chain(cert: x509.Certificate, trust: list[x509.Certificate], now: datetime) -> str | None:
    """None when `cert` is within its validity at `now` and directly issued (name and
    signature) by a certificate in `trust` that is valid at `now`; else the reason:
    `not yet valid`, `expired`, `unknown issuer`, `bad signature`, `issuer expired`."""
    now = _aware(now)
    if now < cert.not_valid_before_utc:
        return "not yet valid"
    if now > cert.not_valid_after_utc:
        return "expired"
    candidates = [t for t in trust if t.subject == cert.issuer]
    if not candidates:
        return "unknown issuer"
    reason = "bad signature"
    for issuer in candidates:
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        if not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
            reason = "issuer expired"
            continue
        return None
    return reason


def _hex_bytes(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("hash must be hex text")
    return bytes.fromhex(value)


def ocsp_response(
    request: dict[str, object],
    *,
    status_of: Callable[[str], str],
    issuer: x509.Certificate,
    responder_cert: x509.Certificate,
    responder_key: PrivateKey,
    now: datetime,
    revoked_at: Callable[[str], datetime | None] | None = None,
    next_update_s: float = 3600.0,
) -> bytes:
    """A DER OCSP response for one OCPP OCSPRequestDataType (`hashAlgorithm`,
    `issuerNameHash`, `issuerKeyHash`, `serialNumber`), signed by the delegate
    `responder_cert`/`responder_key` (EKU OCSPSigning, issued by `issuer`).

    `status_of(serial_hex)` answers `good`, `revoked` or `unknown`; a request for another
    issuer is `unknown` without asking. `revoked_at(serial_hex)` gives the revocation time
    (else `now`). A malformed request is a `MALFORMED_REQUEST` response, not an error."""
    now = _aware(now)
    try:
        algorithm = str(request.get("hashAlgorithm", "SHA256"))
        algo_cls = HASH_ALGORITHMS.get(algorithm)
        if algo_cls is None:
            raise ValueError(algorithm)
        name_hash = _hex_bytes(request.get("issuerNameHash"))
        key_hash = _hex_bytes(request.get("issuerKeyHash"))
        serial_text = normalize_serial(str(request.get("serialNumber", "")))
        if serial_text is None:
            raise ValueError("serialNumber")
        serial = int(serial_text, 16)
    except (ValueError, TypeError):
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(Encoding.DER)
    # A CertID hashes the issuer's subject name and its public key's bit string
    # (RFC 6960). OCSPRequestBuilder hashes the key of its issuer argument; the name we
    # hash ourselves (its certificate argument's issuer field would be the CA's issuer).
    own_name_hash = _digest(algo_cls(), issuer.subject.public_bytes())
    own_key_hash = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, algo_cls()).build().issuer_key_hash
    key = format(serial, "x")
    if name_hash != own_name_hash or key_hash != own_key_hash:
        state = "unknown"
    else:
        state = status_of(key)
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED}.get(state, ocsp.OCSPCertStatus.UNKNOWN)
    revocation_time = None
    if cert_status is ocsp.OCSPCertStatus.REVOKED:
        revocation_time = (revoked_at(key) if revoked_at else None) or now
        revocation_time = _aware(revocation_time).astimezone(_UTC).replace(tzinfo=None)
    this_update = now.astimezone(_UTC).replace(tzinfo=None, microsecond=0)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=algo_cls(),
            cert_status=cert_status,
            this_update=this_update,
            next_update=this_update + timedelta(seconds=next_update_s),
            revocation_time=revocation_time,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_cert)
        .certificates([responder_cert])
    )
    sign_hash: hashes.HashAlgorithm | None = None
    if not isinstance(responder_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        sign_hash = hashes.SHA256()
    return builder.sign(responder_key, sign_hash).public_bytes(Encoding.DER)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()

