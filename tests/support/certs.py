"""A test PKI: certificate authorities, certificates, CSRs and `ssl` contexts built with
`cryptography` in memory (issue 11).

Security profiles 2 and 3 need real certificates on real sockets: a server certificate for
`wss://`, client certificates a station presents, and the bad ones a test must be able to
make on purpose (expired, not yet valid, from another CA, with the wrong CN). No test reads
a certificate from a checked-in file: fixed files expire, and a key in the repository is
one more thing a scanner flags. Every helper here is pure apart from `write_pem` (which
writes the files `ssl` and the settings need) and the context builders (which load them).

    ca = make_ca()
    server = issue(ca, "localhost", server=True, client=False)
    station = issue(ca, "CP-1")                       # a profile-3 station's certificate
    old = issue(ca, "CP-1", not_before=T - 60d, not_after=T - 1d)   # expired
    csr_pem, key = make_csr("CP-1")
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA",
    "Issued",
    "PrivateKey",
    "client_context",
    "issue",
    "key_pem",
    "make_ca",
    "make_csr",
    "new_key",
    "pem",
    "server_context",
    "write_pem",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
KeyType = Literal["ec", "rsa"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        return pem(self.cert)

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)


@dataclass(frozen=True)
class CA(Issued):
    """A certificate authority: a self-signed CA certificate and its key."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_key(key: KeyType = "ec", *, rsa_bits: int = 2048) -> PrivateKey:
    if key == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key type {key!r}")


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CSMS tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(
    cn: str = "Test CA",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key: KeyType = "ec",
) -> CA:
    """A self-signed CA valid from a day ago for ten years unless told otherwise."""
    now = _now()
    private = new_key(key)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False)
        .sign(private, hashes.SHA256())
    )
    return CA(cert, private)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue(
    ca: Issued,
    cn: str,
    *,
    days: int = 30,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key: KeyType = "ec",
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    client: bool = True,
    server: bool = False,
) -> Issued:
    """A leaf certificate with subject CN `cn` signed by `ca`.

    Valid from an hour ago for `days` days unless `not_before`/`not_after` say otherwise
    (both may be in the past: an expired certificate). A server certificate carries
    `server_names` as subject alternative names."""
    now = _now()
    start = not_before or now - dt.timedelta(hours=1)
    end = not_after or start + dt.timedelta(days=days)
    private = new_key(key)
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        builder = builder.add_extension(_san(server_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), private)


def make_csr(cn: str, key: KeyType = "ec", rsa_bits: int = 2048) -> tuple[str, PrivateKey]:
    """A PEM certificate signing request for subject CN `cn`, and its key."""
    private = new_key(key, rsa_bits=rsa_bits)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(cn))
        .sign(private, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), private


def write_pem(directory: Path | str, name: str, issued: Issued) -> tuple[Path, Path]:
    """Write `<name>.pem` (certificate) and `<name>.key` (PKCS#8 key) into `directory`."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / f"{name}.pem"
    key_path = folder / f"{name}.key"
    cert_path.write_text(issued.pem)
    key_path.write_text(issued.key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def _load_chain(context: ssl.SSLContext, issued: Issued) -> None:
    # `ssl` loads certificates and keys only from files.
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = write_pem(folder, "leaf", issued)
        context.load_cert_chain(cert_path, key_path)


def server_context(ca: Issued, issued: Issued) -> ssl.SSLContext:
    """A TLS server context presenting `issued`, asking for (not requiring) client
    certificates that chain to `ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, issued)
    context.load_verify_locations(cadata=pem(ca.cert))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(trust_ca: Issued, client_issued: Issued | None = None) -> ssl.SSLContext:
    """A TLS client context trusting `trust_ca` (host names checked), presenting
    `client_issued` when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=pem(trust_ca.cert))
    if client_issued is not None:
        _load_chain(context, client_issued)
    return context
