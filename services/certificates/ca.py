"""The certificate authority port and its two adapters (ADR 017).

`CertificateAuthority.sign(station_id, csr_pem, certificate_type) -> Issued` is all the
processor needs. `LocalCA` is the built-in CA: a directory holding

    ca.pem / ca.key       the CA certificate and its key (key 0600, directory 0700)
    ocsp.pem / ocsp.key   an OCSP signing delegate issued by the CA (EKU OCSPSigning):
                          GetCertificateStatus answers are signed with it, so the CA key
                          is only used to issue certificates

It copies nothing from a CSR but its public key and CN: subject = CN station id (plus the
CA's O, if it has one), EKU clientAuth, key usage, SKI/AKI, a random 128-bit serial, the
configured lifetime. Signing runs in a thread (an RSA signature takes milliseconds).
`HttpCA` forwards the CSR to an external CA (POST JSON `{station_id, csr,
certificate_type}` -> `{certificate_chain}`), for operators with their own PKI.

`init_ca`, `issue_server_certificate` and `issue_station_certificate` are the sync tools
behind `csms ca` (services/certificates/cli.py). Keys are written 0600 and never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common import pki
from services.common.timeutil import Clock, utcnow

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "OCSP_CERT",
    "OCSP_KEY",
    "CAError",
    "CertificateAuthority",
    "HttpCA",
    "Issued",
    "LocalCA",
    "authority_from_settings",
    "ensure_ocsp_delegate",
    "has_ca",
    "init_ca",
    "issue_server_certificate",
    "issue_station_certificate",
    "issued_from_chain",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
OCSP_CERT = "ocsp.pem"
OCSP_KEY = "ocsp.key"

_UTC = timezone.utc
# Issued certificates start a little in the past: a station whose clock is a few minutes
# behind must not see its new certificate as not yet valid.
_BACKDATE = timedelta(minutes=5)


class CAError(Exception):
    """The CA could not sign (unreadable files, external CA down or answering nonsense)."""


@dataclass(frozen=True, slots=True)
class Issued:
    chain_pem: str            # the station certificate then the CA (what CertificateSigned carries)
    serial: str               # pki.serial_hex
    not_before: datetime
    not_after: datetime
    subject: str              # RFC 4514 text
    fingerprint_sha256: str
    pem: str                  # the station certificate alone


class CertificateAuthority(Protocol):
    async def sign(self, station_id: str, csr_pem: str, certificate_type: str) -> Issued: ...

    def ca_certificate(self) -> x509.Certificate: ...


def issued_from_chain(chain_pem: str) -> Issued:
    """The `Issued` of a PEM chain whose first certificate is the station's."""
    certs = pki.load_certificates(chain_pem.encode())
    if not certs:
        raise CAError("the CA answered no certificate")
    leaf = certs[0]
    return Issued(
        chain_pem=chain_pem if chain_pem.endswith("\n") else chain_pem + "\n",
        serial=pki.serial_hex(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        subject=leaf.subject.rfc4514_string(),
        fingerprint_sha256=pki.fingerprint_sha256(leaf),
        pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
    )


# ------------------------------------------------------------------ files

def has_ca(ca_dir: Path) -> bool:
    return (ca_dir / CA_CERT).exists() or (ca_dir / CA_KEY).exists()


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 (never overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_public(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: pki.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_key(path: Path) -> pki.PrivateKey:
    return pki.load_private_key(path.read_bytes())


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: what every OCPP 2.0.1 / 1.6-security station must support (A00.FR.3xx)
    return ec.generate_private_key(ec.SECP256R1())


def _serial() -> int:
    # a 128-bit positive number (127 random bits, the top one set so every serial has the
    # same length): 17 DER octets, within RFC 5280's 20
    return secrets.randbits(128) | (1 << 127)


def _start(now: datetime) -> datetime:
    return now.astimezone(_UTC).replace(microsecond=0) - _BACKDATE


def init_ca(ca_dir: Path, *, cn: str = "CSMS CA", organization: str = "", days: int = 3650,
            clock: Clock = utcnow) -> x509.Certificate:
    """Create a CA (and its OCSP delegate) in `ca_dir` (created 0700). Refuses when the
    directory already holds a CA (FileExistsError)."""
    if has_ca(ca_dir):
        raise FileExistsError(f"{ca_dir} already holds a CA ({CA_CERT}); not overwriting it")
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    key = _new_key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attrs)
    start = _start(clock())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_dir / CA_KEY, _key_pem(key))
    _write_public(ca_dir / CA_CERT, _cert_pem(cert))
    _init_ocsp(ca_dir, cert, key, days=days, clock=clock)
    return cert


def _init_ocsp(ca_dir: Path, ca_cert: x509.Certificate, ca_key: pki.PrivateKey, *, days: int, clock: Clock) -> None:
    """The OCSP signing delegate (RFC 6960 §4.2.2.2): EKU OCSPSigning, id-pkix-ocsp-nocheck."""
    key = _new_key()
    start = _start(clock())
    not_after = min(start + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        _leaf_builder(ca_cert, key.public_key(), _subject("CSMS OCSP responder", ca_cert), start, not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(_key_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    for name in (OCSP_KEY, OCSP_CERT):
        path = ca_dir / name
        if path.exists():
            path.unlink()
    _write_private(ca_dir / OCSP_KEY, _key_pem(key))
    _write_public(ca_dir / OCSP_CERT, _cert_pem(cert))


def ensure_ocsp_delegate(ca_dir: Path, *, days: int = 3650, clock: Clock = utcnow) -> None:
    """Give a CA made elsewhere (no ocsp.pem) its OCSP delegate."""
    if (ca_dir / OCSP_CERT).exists() and (ca_dir / OCSP_KEY).exists():
        return
    cert, key = _ca_material(ca_dir)
    _init_ocsp(ca_dir, cert, key, days=days, clock=clock)


def _subject(cn: str, ca_cert: x509.Certificate) -> x509.Name:
    """CN = `cn`, plus the CA's O if it has one (never anything from a CSR but its CN)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    org = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if org:
        value = org[0].value
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, value if isinstance(value, str) else value.decode()))
    return x509.Name(attrs)


def _key_usage(*, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _leaf_builder(ca_cert: x509.Certificate, public_key: Any, subject: x509.Name,
                  not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    aki_source = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(aki_source), critical=False)
    )


def _client_certificate(ca_cert: x509.Certificate, ca_key: pki.PrivateKey, public_key: Any, station_id: str,
                        *, days: int, now: datetime) -> x509.Certificate:
    start = _start(now)
    not_after = min(start + timedelta(days=days), ca_cert.not_valid_after_utc)
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    return (
        _leaf_builder(ca_cert, public_key, _subject(station_id, ca_cert), start, not_after)
        .add_extension(_key_usage(key_encipherment=rsa_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


class LocalCA:
    """The built-in CA of `ca_dir` (files: module docstring)."""

    def __init__(self, ca_dir: Path | str, validity_days: int = 365, clock: Clock = utcnow) -> None:
        self.ca_dir = Path(ca_dir)
        self.validity_days = validity_days
        self._clock = clock
        self._cert: x509.Certificate | None = None
        self._key: pki.PrivateKey | None = None

    def _load(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        if self._cert is None or self._key is None:
            try:
                self._cert = pki.load_certificate((self.ca_dir / CA_CERT).read_bytes())
                self._key = _load_key(self.ca_dir / CA_KEY)
            except (OSError, ValueError) as exc:
                raise CAError(f"cannot read the CA in {self.ca_dir}: {type(exc).__name__}") from None
        return self._cert, self._key

    def ca_certificate(self) -> x509.Certificate:
        return self._load()[0]

    def ocsp_responder(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        """The OCSP delegate's certificate and key (for `pki.ocsp_response`)."""
        try:
            return (pki.load_certificate((self.ca_dir / OCSP_CERT).read_bytes()), _load_key(self.ca_dir / OCSP_KEY))
        except (OSError, ValueError) as exc:
            raise CAError(f"cannot read the OCSP delegate in {self.ca_dir}: {type(exc).__name__}") from None

    def sign_sync(self, station_id: str, csr_pem: str) -> Issued:
        ca_cert, ca_key = self._load()
        try:
            csr = pki.load_csr(csr_pem)
        except ValueError:
            raise CAError("unreadable CSR") from None
        cert = _client_certificate(ca_cert, ca_key, csr.public_key(), station_id, days=self.validity_days, now=self._clock())
        chain = (_cert_pem(cert) + _cert_pem(ca_cert)).decode()
        return issued_from_chain(chain)

    async def sign(self, station_id: str, csr_pem: str, certificate_type: str) -> Issued:
        return await asyncio.to_thread(self.sign_sync, station_id, csr_pem)


class HttpCA:
    """An external CA behind the port: POST `{station_id, csr, certificate_type}` as JSON
    to `url`, answer `{certificate_chain}` (PEM, station certificate first)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, ca_pem: bytes | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._ca_pem = ca_pem
        self._last_chain: list[x509.Certificate] = []

    def ca_certificate(self) -> x509.Certificate:
        if self._ca_pem:
            return pki.load_certificate(self._ca_pem)
        if len(self._last_chain) > 1:
            return self._last_chain[-1]
        raise CAError("the external CA's certificate is not known yet")

    async def sign(self, station_id: str, csr_pem: str, certificate_type: str) -> Issued:
        import aiohttp

        body = {"station_id": station_id, "csr": csr_pem, "certificate_type": certificate_type}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
                async with session.post(self.url, json=body) as resp:
                    text = await resp.text()
                    if resp.status != 200:
                        raise CAError(f"external CA answered HTTP {resp.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise CAError(f"external CA unreachable: {type(exc).__name__}") from None
        try:
            chain = json.loads(text)["certificate_chain"]
            if not isinstance(chain, str):
                raise TypeError("certificate_chain")
            issued = issued_from_chain(chain)
            self._last_chain = pki.load_certificates(chain.encode())
        except (ValueError, KeyError, TypeError) as exc:
            raise CAError(f"external CA answered no certificate chain ({type(exc).__name__})") from None
        leaf = self._last_chain[0]
        if pki.certificate_identity(leaf) != station_id or leaf.public_key() != pki.load_csr(csr_pem).public_key():
            raise CAError("external CA answered a certificate for another station or key")
        return issued


def authority_from_settings(settings: Any, clock: Clock = utcnow) -> CertificateAuthority | None:
    """`HttpCA` when CSMS_CA_URL is set, else `LocalCA` when CSMS_CA_DIR holds a CA, else
    None (no CA: the processor signs nothing)."""
    if settings.ca_url:
        return HttpCA(settings.ca_url)
    if settings.ca_dir and (Path(settings.ca_dir) / CA_CERT).exists():
        return LocalCA(Path(settings.ca_dir), settings.cert_validity_days, clock)
    return None


# ------------------------------------------------------------------ csms ca tools

def _ca_material(ca_dir: Path) -> tuple[x509.Certificate, pki.PrivateKey]:
    return LocalCA(ca_dir)._load()


def issue_server_certificate(ca_dir: Path, host: str, ips: list[str], *, days: int = 365,
                             clock: Clock = utcnow) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a TLS server certificate for CSMS_TLS_CERT/KEY: CN = host,
    SANs = host and the addresses, EKU serverAuth."""
    ca_cert, ca_key = _ca_material(ca_dir)
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(host)]
    for ip in ips:
        sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
    start = _start(clock())
    not_after = min(start + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        _leaf_builder(ca_cert, key.public_key(), _subject(host, ca_cert), start, not_after)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert) + _cert_pem(ca_cert), _key_pem(key)


def issue_station_certificate(ca_dir: Path, station_id: str, *, days: int = 365,
                              clock: Clock = utcnow) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a station client certificate made without a CSR (to
    provision a profile-3 station)."""
    ca_cert, ca_key = _ca_material(ca_dir)
    key = _new_key()
    cert = _client_certificate(ca_cert, ca_key, key.public_key(), station_id, days=days, now=clock())
    return _cert_pem(cert) + _cert_pem(ca_cert), _key_pem(key)


def write_pair(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Write a certificate (0644) and its key (0600); refuses to overwrite either."""
    for path in (cert_path, key_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwriting it")
    _write_private(key_path, key_pem)
    _write_public(cert_path, cert_pem)
