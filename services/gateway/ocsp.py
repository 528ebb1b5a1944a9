"""GetCertificateStatus (OCPP 2.0.1 M06): an OCSP answer for a certificate the station holds.

A station cannot always reach an OCSP responder itself (ISO 15118 certificates, a station
behind a private APN), so it relays the OCSP request data (hash algorithm, issuer name and
key hashes, serial) and the CSMS answers with the DER OCSPResponse, base64. Where the
answer comes from (ADR 017 §3), in this order:

1. `CSMS_OCSP_RESPONDER_URL` set: the request is forwarded there (an operator's responder
   wins for every issuer).
2. The issuer is the built-in CA (its name and key hashes match `ca.pem`) and the OCSP
   delegate (`ocsp.pem`, `ocsp.key` in `CSMS_CA_DIR`) is there: the gateway answers itself
   from the `certificate` documents (services/certificates/documents.py `ocsp_status`:
   revoked -> revoked, present -> good, absent -> unknown), signed by the delegate (the
   gateway never holds the CA's key).
3. Another issuer, the request names a `responderURL`, and `CSMS_OCSP_FOLLOW_STATION_URL` is
   on: forwarded there. Off by default: the URL is the station's choice, so following it lets
   any authenticated station make the gateway send POSTs to addresses of its choosing
   (internal ones included), even if it can read nothing back.
4. Otherwise: Failed.

Forwarding builds a DER OCSP request from the hashes (`OCSPRequestBuilder.add_certificate_by_hash`)
and POSTs it (`application/ocsp-request`) within `CSMS_PKI_TIMEOUT_S`. The URL may come
from the station, so only http(s) is followed and only a well-formed, *successful* OCSP
response that fits the answer (5500 base64 characters) is passed back: anything else is
Failed, so the gateway cannot be used to read other documents. Every failure is an answer
(Failed with a reason code), never an exception: the station asked a question, not the
gateway a favour. The store read of step 2 runs under the same timeout.

`CertificateStatusService.status` is the port the handler uses (`actions`); the transport
(`Post`) and the document lookup are injected, so the decisions are unit-tested without a
network (tests/unit/gateway_actions/test_ocsp.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from services.certificates.documents import Certificates, ocsp_status
from services.common import pki
from services.common.store.port import Store
from services.common.timeutil import Clock

__all__ = [
    "CertificateStatus",
    "CertificateStatusService",
    "Delegate",
    "MAX_OCSP_RESULT_CHARS",
    "Post",
    "StatusAnswer",
    "build_ocsp_request",
    "http_post",
    "issued_by",
    "load_ca_material",
    "store_lookup",
    "usable_ocsp_response",
]

log = logging.getLogger("csms.gateway.ocsp")

# GetCertificateStatusResponse.ocspResult maxLength (base64 of the DER response).
MAX_OCSP_RESULT_CHARS = 5500
# Largest responder body read: a response that fits the answer is far smaller.
_MAX_BODY_BYTES = 64 << 10

# post(url, der_request, timeout_s) -> the response body (raises on any failure)
Post = Callable[[str, bytes, float], Awaitable[bytes]]
# a serial of our CA (lowercase hex, no leading zeros) -> (its OCSP state: good / revoked /
# unknown, the revocation time)
CertificateLookup = Callable[[str], Awaitable[tuple[str, datetime | None]]]


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """The handler's answer: `Accepted` with `ocsp_result` (base64 DER) or `Failed`
    with `reason` (statusInfo.reasonCode, at most 20 characters)."""

    status: str
    ocsp_result: str | None = None
    reason: str | None = None

    @classmethod
    def failed(cls, reason: str) -> "StatusAnswer":
        return cls("Failed", None, reason)


class CertificateStatus(Protocol):
    """The port the GetCertificateStatus handler uses."""

    async def status(self, request: Mapping[str, Any]) -> StatusAnswer: ...


@dataclass(frozen=True, slots=True)
class Delegate:
    """The OCSP delegate: a certificate with EKU OCSPSigning issued by the CA, and its key."""

    cert: x509.Certificate
    key: pki.PrivateKey


# -- pure parts ----------------------------------------------------------------------------

def _hash_bytes(request: Mapping[str, Any], name: str) -> bytes:
    value = request.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is missing")
    return bytes.fromhex(value)


def build_ocsp_request(request: Mapping[str, Any]) -> bytes:
    """The DER OCSP request of an OCPP OCSPRequestDataType; ValueError when the hashes are
    not hex, the serial is not hex or the algorithm is not SHA256/384/512."""
    algorithm = pki.HASH_ALGORITHMS.get(str(request.get("hashAlgorithm")))
    if algorithm is None:
        raise ValueError(f"unsupported hash algorithm {request.get('hashAlgorithm')!r}")
    serial = int(str(request.get("serialNumber", "")).strip(), 16)
    if serial < 0:
        raise ValueError("negative serial")
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _hash_bytes(request, "issuerNameHash"), _hash_bytes(request, "issuerKeyHash"), serial, algorithm(),
    )
    return builder.build().public_bytes(Encoding.DER)


def usable_ocsp_response(body: bytes) -> str | None:
    """The answer's ocspResult for a responder's body: base64 of a well-formed, successful
    OCSP response that fits the schema's 5500 characters, else None."""
    try:
        response = ocsp.load_der_ocsp_response(body)
    except ValueError:
        return None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return None
    text = base64.b64encode(body).decode("ascii")
    return text if len(text) <= MAX_OCSP_RESULT_CHARS else None


def issued_by(request: Mapping[str, Any], ca: x509.Certificate) -> bool:
    """Whether the request's issuer name and key hashes are those of `ca` (compared in the
    request's own hash algorithm; case-insensitive hex)."""
    algorithm = pki.HASH_ALGORITHMS.get(str(request.get("hashAlgorithm")))
    name, key = request.get("issuerNameHash"), request.get("issuerKeyHash")
    if algorithm is None or not isinstance(name, str) or not isinstance(key, str):
        return False
    # A CertID's name hash is of the issuer's subject (what the certificates it issued carry
    # as their issuer); the key hash is of the issuer's public key bit string, which
    # OCSPRequestBuilder computes from its issuer argument (RFC 6960).
    digest = hashes.Hash(algorithm())
    digest.update(ca.subject.public_bytes())
    own_key = ocsp.OCSPRequestBuilder().add_certificate(ca, ca, algorithm()).build().issuer_key_hash
    return name.lower() == digest.finalize().hex() and key.lower() == own_key.hex()


def _web_url(url: object) -> str | None:
    """`url` when it is an absolute http(s) URL with a host, else None."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


# -- the service ---------------------------------------------------------------------------

class CertificateStatusService:
    """Answers GetCertificateStatus in the order of the module docstring."""

    __slots__ = ("_forward_url", "_ca", "_delegate", "_lookup", "_post", "_clock", "_timeout_s", "_follow_station_url")

    def __init__(self, *, forward_url: str = "", ca: x509.Certificate | None = None, delegate: Delegate | None = None,
                 lookup: CertificateLookup | None = None, post: Post | None = None, clock: Clock,
                 timeout_s: float = 5.0, follow_station_url: bool = False) -> None:
        self._forward_url = forward_url
        self._follow_station_url = follow_station_url
        self._ca = ca
        self._delegate = delegate if lookup is not None else None
        self._lookup = lookup
        self._post = post or http_post
        self._clock = clock
        self._timeout_s = timeout_s

    async def status(self, request: Mapping[str, Any]) -> StatusAnswer:
        if self._forward_url:
            return await self._forward(self._forward_url, request)
        ours = self._ca is not None and issued_by(request, self._ca)
        if ours:
            if self._delegate is None:
                return StatusAnswer.failed("NoOCSPDelegate")
            return await self._answer_locally(request)
        responder = _web_url(request.get("responderURL")) if self._follow_station_url else None
        if responder is not None:
            return await self._forward(responder, request)
        return StatusAnswer.failed("NoResponder")

    async def _forward(self, url: str, request: Mapping[str, Any]) -> StatusAnswer:
        if _web_url(url) is None:
            return StatusAnswer.failed("BadResponderURL")
        try:
            der = build_ocsp_request(request)
        except (ValueError, TypeError):
            return StatusAnswer.failed("InvalidRequest")
        try:
            async with asyncio.timeout(self._timeout_s):
                body = await self._post(url, der, self._timeout_s)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            # The URL may carry credentials or come from the station: log its host only.
            log.warning("OCSP responder %s failed: %s", urlsplit(url).hostname, type(exc).__name__)
            return StatusAnswer.failed("ResponderFailed")
        result = usable_ocsp_response(body)
        if result is None:
            log.warning("OCSP responder %s sent no usable response", urlsplit(url).hostname)
            return StatusAnswer.failed("BadResponse")
        return StatusAnswer("Accepted", result)

    async def _answer_locally(self, request: Mapping[str, Any]) -> StatusAnswer:
        assert self._delegate is not None and self._lookup is not None and self._ca is not None
        state: tuple[str, datetime | None] = ("unknown", None)
        serial = str(request.get("serialNumber", "")).strip().lower()
        try:
            key = format(int(serial, 16), "x")
        except ValueError:
            key = None  # pki.ocsp_response answers MALFORMED_REQUEST; nothing to look up
        if key is not None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    state = await self._lookup(key)
            except Exception as exc:  # the store's errors vary by adapter: every one is Failed
                log.warning("certificate lookup for OCSP failed: %s", type(exc).__name__)
                return StatusAnswer.failed("StoreUnavailable")
        der = pki.ocsp_response(
            dict(request), status_of=lambda _serial: state[0], issuer=self._ca,
            responder_cert=self._delegate.cert, responder_key=self._delegate.key, now=self._clock(),
            revoked_at=lambda _serial: state[1],
        )
        result = usable_ocsp_response(der)
        return StatusAnswer("Accepted", result) if result is not None else StatusAnswer.failed("InvalidRequest")


async def http_post(url: str, der: bytes, timeout_s: float) -> bytes:
    """POST a DER OCSP request; the body of a 200 answer (at most 64 KiB), else raises."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=der, allow_redirects=False, headers={
            "Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response",
        }) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status)
            body = await resp.content.read(_MAX_BODY_BYTES + 1)
            if len(body) > _MAX_BODY_BYTES:
                raise ValueError("OCSP response too large")
            return body


# -- the built-in CA's files ---------------------------------------------------------------

def load_ca_material(ca_dir: str) -> tuple[x509.Certificate | None, Delegate | None]:
    """(the CA certificate, the OCSP delegate) from `CSMS_CA_DIR` (`ca.pem`; `ocsp.pem` +
    `ocsp.key`), each None when absent or unreadable (logged, never the key's content).
    A delegate the CA did not issue is not used: stations would reject its answers."""
    if not ca_dir:
        return None, None
    folder = Path(ca_dir)
    try:
        ca = pki.load_certificate((folder / "ca.pem").read_bytes())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        log.warning("CSMS_CA_DIR: ca.pem unreadable (%s)", type(exc).__name__)
        return None, None
    try:
        cert = pki.load_certificate((folder / "ocsp.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "ocsp.key").read_bytes(), password=None)
    except FileNotFoundError:
        return ca, None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("CSMS_CA_DIR: the OCSP delegate is unreadable (%s); GetCertificateStatus for our CA fails",
                    type(exc).__name__)
        return ca, None
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: all "not ours"
        log.warning("CSMS_CA_DIR: ocsp.pem is not issued by ca.pem; not used")
        return ca, None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                            ed448.Ed448PrivateKey)):
        log.warning("CSMS_CA_DIR: ocsp.key has an unsupported key type; not used")
        return ca, None
    return ca, Delegate(cert, key)


def store_lookup(store: Store) -> CertificateLookup:
    """A serial's state from its `certificate` document, read through the certificates
    service's mapper (`documents.ocsp_status`: revoked -> revoked, present -> good, absent
    -> unknown). A document the mapper cannot read raises (the answer is Failed)."""
    certificates = Certificates(store)

    async def lookup(serial: str) -> tuple[str, datetime | None]:
        cert = await certificates.get(serial)
        return ocsp_status(cert), None if cert is None else cert.revoked_at

    return lookup
