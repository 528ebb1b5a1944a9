"""What a simulated station does for security profiles 2 and 3 (issue 11, ADR 017).

A real charger keeps a Basic-auth password and, for profile 3, a key pair and a client
certificate the CSMS's CA signed. The simulator does the same, so `csms simulate` can
show (and the end-to-end tests can drive) the whole life of those credentials:

- TLS: a `wss://` URL connects with TLS, trusting `--tls-ca` (else the system's CAs),
  presenting a client certificate when it has one (`--client-cert`/`--client-key`, or the
  one the CSMS signed after a CSR);
- a new password from the CSMS (1.6 ChangeConfiguration `AuthorizationKey`, 2.0.1
  SetVariables `SecurityCtrlr.BasicAuthPassword`) is accepted when OCPP's 16-40
  characters allow it and used from the next connection on (the CSMS accepts both until
  then);
- asked for a CSR (2.0.1 TriggerMessage SignChargingStationCertificate, 1.6
  ExtendedTriggerMessage SignChargePointCertificate), it makes a new key and a CSR with
  CN = its id and sends SignCertificate; the CertificateSigned that follows is accepted
  only when its first certificate holds that key and names the station (A02.FR.xx: a
  station checks what it installs), and then stored.

Everything here is pure except `tls_context` (the `ssl` module loads certificates from
files only).
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["PASSWORD_MIN", "PASSWORD_MAX", "Credentials", "password_acceptable", "new_csr", "check_signed", "tls_context"]

PASSWORD_MIN, PASSWORD_MAX = 16, 40   # OCPP: BasicAuthPassword / AuthorizationKey length


@dataclass
class Credentials:
    """A station's security material, kept across reconnects and reboots."""
    password: str | None = None            # in use (None: the spec's)
    next_password: str | None = None       # set by the CSMS, used from the next connection
    csr_key_pem: str | None = None         # key of the last CSR sent, waiting for its certificate
    certificate_pem: str | None = None     # the chain the CSMS signed (installed)
    certificate_key_pem: str | None = None
    sign_status: str | None = None         # the CSMS's answer to the last SignCertificate
    signed_status: str | None = None       # our answer to the last CertificateSigned

    def password_for_connect(self, default: str) -> str:
        return self.next_password or self.password or default

    def connected_with(self, password: str) -> None:
        """A connection with `password` was accepted: a pending one is now the password."""
        if self.next_password is not None and password == self.next_password:
            self.password, self.next_password = self.next_password, None


def password_acceptable(value: object) -> bool:
    return isinstance(value, str) and PASSWORD_MIN <= len(value) <= PASSWORD_MAX and value.isprintable() and ":" not in value


def new_csr(station_id: str, organization: str = "CSMS-Sim") -> tuple[str, str]:
    """(CSR PEM with CN = station id, its private key PEM): an EC P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, station_id),
        ]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem.decode("ascii")


def _public_der(key_pem: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_signed(chain_pem: str, key_pem: str | None, station_id: str) -> str | None:
    """None when `chain_pem` may be installed (its first certificate holds the key of our
    last CSR and names this station), else why not."""
    if key_pem is None:
        return "no CSR outstanding"
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        return "unreadable chain"
    if not chain:
        return "empty chain"
    leaf = chain[0]
    if leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != _public_der(key_pem):
        return "not the key of our CSR"
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != station_id:
        return "CN is not the station id"
    return None


def tls_context(
    ca_file: str | None,
    cert_file: str | None = None,
    key_file: str | None = None,
    *,
    cert_pem: str | None = None,
    key_pem: str | None = None,
) -> ssl.SSLContext:
    """A client TLS context (TLS 1.2+) trusting `ca_file` (None: the system's CAs), with a
    client certificate from files or from PEM text (PEM text wins: it is the certificate
    the CSMS signed last)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_pem and key_pem:
        with tempfile.TemporaryDirectory() as folder:
            cert_path, key_path = Path(folder) / "client.pem", Path(folder) / "client.key"
            cert_path.write_text(cert_pem)
            key_path.touch(mode=0o600)
            key_path.write_text(key_pem)
            context.load_cert_chain(cert_path, key_path)
    elif cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
