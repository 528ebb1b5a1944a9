"""Get15118EVCertificate (OCPP 2.0.1 M01/M02): the contract-certificate provider port.

An EV asks, through the station, for a contract certificate to be installed or updated
(ISO 15118-2 CertificateInstallationReq / CertificateUpdateReq, EXI-encoded, base64). The
CSMS does not speak ISO 15118 or hold a V2G/mobility-operator PKI: it relays the request to
a provider that does (a Hubject-style contract certificate pool, the e-mobility
operator's backend) and relays the answer. `CSMS_CONTRACT_CERT_PROVIDER` picks it:

- `none` (default): every request is `Failed` (statusInfo `NoProvider`).
- `test`: **NOT an ISO 15118 implementation.** It answers `Accepted` with an exiResponse
  derived deterministically from the request (base64 of `CSMS-TEST-PROVIDER` and a SHA-256
  of schema version, action and exiRequest). No EV can use it: it exists to test the
  plumbing (station -> gateway -> provider -> answer, the recorded event) end to end.
- an `http://` or `https://` URL: the request is POSTed as JSON `{station_id,
  iso15118_schema_version, action, exi_request}`; the provider answers 200 with JSON
  `{status: "Accepted"|"Failed", exi_response}`. Anything else (another status code, bad
  JSON, a response longer than the schema's 7500 characters, no answer within
  `CSMS_PKI_TIMEOUT_S`) is `Failed` with a reason code; the provider is never retried
  inside the call (the EV's own timeout is short).

The handler (`actions`) publishes the request with the status answered either way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson

from services.common.errors import ConfigError

__all__ = [
    "ContractCertificateProvider",
    "EvCertificateAnswer",
    "EvCertificateRequest",
    "HttpProvider",
    "MAX_EXI_RESPONSE_CHARS",
    "NoProvider",
    "PostJson",
    "TestProvider",
    "contract_certificate_provider",
    "fake_exi_response",
    "provider_answer",
]

log = logging.getLogger("csms.gateway.contract_certs")

# Get15118EVCertificateResponse.exiResponse maxLength.
MAX_EXI_RESPONSE_CHARS = 7500
_MAX_BODY_BYTES = 64 << 10
_TEST_MARK = b"CSMS-TEST-PROVIDER"

# post_json(url, body, timeout_s) -> (HTTP status, response body)
PostJson = Callable[[str, dict[str, Any], float], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class EvCertificateRequest:
    station_id: str
    iso15118_schema_version: str
    action: str          # Install / Update
    exi_request: str     # base64 EXI, as the station sent it


@dataclass(frozen=True, slots=True)
class EvCertificateAnswer:
    """`Accepted` + exi_response, or `Failed` + reason (statusInfo.reasonCode, <= 20 chars)."""

    status: str
    exi_response: str = ""
    reason: str | None = None

    @classmethod
    def failed(cls, reason: str) -> "EvCertificateAnswer":
        return cls("Failed", "", reason)


class ContractCertificateProvider(Protocol):
    async def get(self, request: EvCertificateRequest) -> EvCertificateAnswer: ...


class NoProvider:
    """`none`: no contract certificate service; every request is Failed."""

    async def get(self, request: EvCertificateRequest) -> EvCertificateAnswer:
        return EvCertificateAnswer.failed("NoProvider")


class TestProvider:
    """`test`: NOT ISO 15118. A deterministic stand-in that answers Accepted with
    base64("CSMS-TEST-PROVIDER:" + sha256(schema version, action, exiRequest)) so tests and
    demos can see the request travel and an answer come back. Never use it with real EVs."""

    __test__ = False  # not a pytest class, whatever its name

    async def get(self, request: EvCertificateRequest) -> EvCertificateAnswer:
        return EvCertificateAnswer("Accepted", fake_exi_response(request))


def fake_exi_response(request: EvCertificateRequest) -> str:
    """The TEST provider's exiResponse for a request (pure; see `TestProvider`)."""
    digest = hashlib.sha256(
        "\x00".join((request.iso15118_schema_version, request.action, request.exi_request)).encode()
    ).digest()
    return base64.b64encode(_TEST_MARK + b":" + digest).decode("ascii")


class HttpProvider:
    """An http(s) provider: POST JSON, read `{status, exi_response}` (module docstring)."""

    __slots__ = ("_url", "_timeout_s", "_post")

    def __init__(self, url: str, *, timeout_s: float, post: PostJson | None = None) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._post = post or http_post_json

    async def get(self, request: EvCertificateRequest) -> EvCertificateAnswer:
        body = {"station_id": request.station_id, "iso15118_schema_version": request.iso15118_schema_version,
                "action": request.action, "exi_request": request.exi_request}
        try:
            async with asyncio.timeout(self._timeout_s):
                status, raw = await self._post(self._url, body, self._timeout_s)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("station=%s contract certificate provider %s failed: %s", request.station_id,
                        urlsplit(self._url).hostname, type(exc).__name__)
            return EvCertificateAnswer.failed("ProviderFailed")
        if status != 200:
            log.warning("station=%s contract certificate provider answered HTTP %d", request.station_id, status)
            return EvCertificateAnswer.failed("ProviderFailed")
        return provider_answer(raw)


def provider_answer(raw: bytes) -> EvCertificateAnswer:
    """A provider's JSON body -> the answer: `{status: Accepted|Failed, exi_response}`;
    anything else is Failed (BadResponse)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return EvCertificateAnswer.failed("BadResponse")
    if not isinstance(data, dict):
        return EvCertificateAnswer.failed("BadResponse")
    status, exi = data.get("status"), data.get("exi_response", "")
    if status not in ("Accepted", "Failed") or not isinstance(exi, str) or len(exi) > MAX_EXI_RESPONSE_CHARS:
        return EvCertificateAnswer.failed("BadResponse")
    if status == "Accepted" and not exi:
        return EvCertificateAnswer.failed("BadResponse")
    return EvCertificateAnswer(status, exi, None if status == "Accepted" else "ProviderRejected")


async def http_post_json(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=orjson.dumps(body), allow_redirects=False,
                                headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.content.read(_MAX_BODY_BYTES + 1)
            if len(raw) > _MAX_BODY_BYTES:
                raise ValueError("provider response too large")
            return resp.status, raw


def contract_certificate_provider(setting: str, *, timeout_s: float) -> ContractCertificateProvider:
    """The provider `CSMS_CONTRACT_CERT_PROVIDER` names; ConfigError for anything else."""
    value = setting.strip()
    if value in ("", "none"):
        return NoProvider()
    if value == "test":
        log.warning("CSMS_CONTRACT_CERT_PROVIDER=test: Get15118EVCertificate gets TEST answers no EV can use")
        return TestProvider()
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return HttpProvider(value, timeout_s=timeout_s)
    raise ConfigError("CSMS_CONTRACT_CERT_PROVIDER must be none, test or an http(s) URL")
