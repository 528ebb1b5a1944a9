"""Keys, CSRs and a CA directory for the certificate tests (no files but the CA's)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from services.common import pki

__all__ = ["csr_pem", "ec_key", "rsa_key", "tampered", "new_ca_dir"]

_RSA_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    # RSA key generation is slow: one key per size per test run
    if bits not in _RSA_CACHE:
        _RSA_CACHE[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_CACHE[bits]


def csr_pem(cn: str, key: pki.PrivateKey | None = None, *, org: str = "", extra_san: str = "") -> str:
    key = key if key is not None else ec_key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if extra_san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(extra_san)]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def tampered(pem: str) -> str:
    """The CSR with its last signature byte changed: still parses, no longer verifies."""
    csr = x509.load_pem_x509_csr(pem.encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


def new_ca_dir(root: Path, *, org: str = "") -> Path:
    from services.certificates.ca import init_ca

    ca_dir = root / "ca"
    init_ca(ca_dir, cn="Test CA", organization=org, days=3650)
    return ca_dir
