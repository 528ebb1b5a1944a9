"""TLS for the station listener and what a connection proves (security profiles 2 and 3, issue 11).

`server_context` builds the `wss://` listener's context (docs/security.md "Station
connections"): TLS 1.2 minimum, the TLS 1.2 suites OCPP allows (ECDHE with ECDSA or RSA,
and static RSA, all AES-GCM; TLS 1.3 suites are OpenSSL's, all AEAD), client
certificates requested but not required and, when one is presented, verified by OpenSSL
against the client CA bundle (chain and validity): a bad certificate fails the TLS
handshake, so the handshake code only ever sees verified certificates on a direct socket.
Unreadable files are a `ConfigError` naming the variable: a gateway that cannot serve
TLS must not start and quietly serve `ws://` only.

`transport_of` turns one request into `auth.Transport`: TLS (a direct TLS socket, or
`X-Forwarded-Proto: https` from a trusted proxy) and the client certificate's CN and
serial. A certificate passed on by a trusted proxy in `CSMS_CLIENT_CERT_HEADER` was
verified by the proxy, but the gateway checks it again against the same bundle and the
clock (`pki.verify_chain`); one that fails, or a header that holds no certificate at
all, is refused (403 `certificate_invalid`), never silently downgraded to Basic auth.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from services.common import pki
from services.common.config import Settings
from services.common.errors import ConfigError
from services.gateway.auth import Transport
from services.gateway.proxies import Forwarded

__all__ = ["TLS12_CIPHERS", "ClientTrust", "client_trust", "listener_context", "server_context", "client_ca_path", "load_trust", "transport_of", "Refusal"]

log = logging.getLogger("csms.gateway.tls")

# OCPP 2.0.1 A00.FR.318/319 and the 1.6 security whitepaper: TLS 1.2 with these suites
# (OpenSSL names); TLS 1.3 is allowed as well (its suites are not configured here).
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
])


def _readable(path: str, variable: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path!r} ({exc.strerror or exc})") from exc


def client_ca_path(tls_client_ca: str, ca_dir: str) -> str:
    """The bundle client certificates must chain to: CSMS_TLS_CLIENT_CA, else the built-in
    CA's `ca.pem` in CSMS_CA_DIR when it exists, else "" (no client certificates)."""
    if tls_client_ca:
        return tls_client_ca
    if ca_dir:
        candidate = Path(ca_dir) / "ca.pem"
        if candidate.is_file():
            return str(candidate)
    return ""


def load_trust(path: str) -> list[x509.Certificate]:
    """Every certificate of the client CA bundle at `path` ([] for ""); ConfigError when it
    is unreadable or holds no certificate."""
    if not path:
        return []
    data = _readable(path, "CSMS_TLS_CLIENT_CA")
    try:
        certs = pki.load_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"CSMS_TLS_CLIENT_CA: {path!r} is not a PEM certificate bundle ({exc})") from exc
    if not certs:
        raise ConfigError(f"CSMS_TLS_CLIENT_CA: {path!r} holds no certificate")
    return certs


def listener_context(settings: Settings) -> ssl.SSLContext | None:
    """The `wss://` context from the settings, or None when CSMS_TLS_CERT/KEY are unset."""
    cert, key = settings.tls_cert or "", settings.tls_key or ""
    if not cert and not key:
        return None
    if not cert or not key:
        missing = "CSMS_TLS_KEY" if cert else "CSMS_TLS_CERT"
        raise ConfigError(f"{missing} is not set: CSMS_TLS_CERT and CSMS_TLS_KEY go together")
    return server_context(cert, key, client_ca_path(settings.tls_client_ca, settings.ca_dir))


def server_context(cert_path: str, key_path: str, client_ca: str) -> ssl.SSLContext:
    """The `wss://` listener's context; `client_ca` "" = no client certificates asked for."""
    _readable(cert_path, "CSMS_TLS_CERT")
    _readable(key_path, "CSMS_TLS_KEY")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"CSMS_TLS_CERT/CSMS_TLS_KEY: {cert_path!r} and {key_path!r} are not a certificate and its key ({exc})") from exc
    if client_ca:
        _readable(client_ca, "CSMS_TLS_CLIENT_CA")
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"CSMS_TLS_CLIENT_CA: {client_ca!r} is not a PEM certificate bundle ({exc})") from exc
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
        log.warning("no client CA (CSMS_TLS_CLIENT_CA unset, no ca.pem in CSMS_CA_DIR): "
                    "client certificates are not requested, security profile 3 is unavailable")
    return context


@dataclass(frozen=True, slots=True)
class ClientTrust:
    """The client CA bundle, for certificates a trusted proxy passes on in a header."""

    certificates: tuple[x509.Certificate, ...] = ()


def client_trust(settings: Settings) -> ClientTrust:
    """The client CA bundle from the settings (CSMS_TLS_CLIENT_CA, else CSMS_CA_DIR/ca.pem)."""
    return ClientTrust(tuple(load_trust(client_ca_path(settings.tls_client_ca, settings.ca_dir))))


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request presented a certificate that cannot be believed: 403 `reason`."""

    reason: str
    detail: str = ""


def _identity(cert: x509.Certificate, tls: bool) -> Transport:
    return Transport(tls=tls, client_cert_cn=pki.certificate_identity(cert), client_cert_serial=pki.serial_hex(cert))


def transport_of(peer_der: bytes | None, direct_tls: bool, fwd: Forwarded, trust: ClientTrust,
                 now: datetime) -> Transport | Refusal:
    """What the connection proves. `peer_der`: the certificate OpenSSL verified on a direct
    TLS socket (None without one); `fwd`: the forwarded view (services/gateway/proxies.py),
    whose `client_cert` is set only when a trusted proxy passed one on (that certificate is
    the station's; a certificate on the direct socket would then be the proxy's own) and
    whose `client_cert_error` says that header held something else than a certificate."""
    if fwd.client_cert_error:
        return Refusal("certificate_invalid", fwd.client_cert_error)
    if fwd.client_cert is not None:
        try:
            cert = pki.load_certificate(fwd.client_cert)
        except ValueError:
            return Refusal("certificate_invalid", "unreadable")
        reason = pki.verify_chain(cert, list(trust.certificates), now) if trust.certificates else "no client CA"
        if reason is not None:
            return Refusal("certificate_invalid", reason)
        # The proxy took the certificate from its own TLS handshake: the client used TLS.
        return _identity(cert, True)
    if direct_tls:
        if peer_der is None:
            return Transport(tls=True, client_cert_cn=None, client_cert_serial=None)
        try:
            return _identity(pki.load_certificate(peer_der), True)
        except ValueError:  # OpenSSL accepted it; cryptography cannot read it
            return Refusal("certificate_invalid", "unreadable")
    return Transport(tls=fwd.https, client_cert_cn=None, client_cert_serial=None)
