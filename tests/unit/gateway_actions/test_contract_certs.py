"""The contract-certificate providers (services/gateway/contract_certs.py): the TEST provider's
deterministic answer, and the HTTP provider's request, answer and failures (a fake post; over
a socket: tests/integration_inproc/gateway/test_certificates_over_ws.py)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from services.gateway.contract_certs import (
    MAX_EXI_RESPONSE_CHARS,
    EvCertificateAnswer,
    EvCertificateRequest,
    HttpProvider,
    NoProvider,
    TestProvider,
    fake_exi_response,
    provider_answer,
)

REQUEST = EvCertificateRequest("CP-1", "urn:iso:15118:2:2013:MsgDef", "Install", "gAB=")


async def test_none_fails_every_request() -> None:
    assert await NoProvider().get(REQUEST) == EvCertificateAnswer("Failed", "", "NoProvider")


async def test_the_test_provider_is_deterministic_marked_and_depends_on_the_request() -> None:
    first = await TestProvider().get(REQUEST)
    assert first == await TestProvider().get(REQUEST) and first.status == "Accepted" and first.reason is None
    assert base64.b64decode(first.exi_response).startswith(b"CSMS-TEST-PROVIDER:")
    others = {fake_exi_response(EvCertificateRequest("CP-1", REQUEST.iso15118_schema_version, "Update", "gAB=")),
              fake_exi_response(EvCertificateRequest("CP-1", REQUEST.iso15118_schema_version, "Install", "gAC=")),
              fake_exi_response(EvCertificateRequest("CP-1", "urn:iso:15118:20", "Install", "gAB="))}
    assert first.exi_response not in others and len(others) == 3


class FakePostJson:
    def __init__(self, status: int = 200, body: Any = None, error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else orjson.dumps(
            body if body is not None else {"status": "Accepted", "exi_response": "AAEC"})
        self.error = error
        self.delay_s = delay_s
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, bytes]:
        self.calls.append((url, body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a provider that does not answer in time
        if self.error is not None:
            raise self.error
        return self.status, self.body


async def test_the_http_provider_posts_the_request_and_relays_the_answer() -> None:
    post = FakePostJson()
    answer = await HttpProvider("https://pki.example/ev", timeout_s=1.0, post=post).get(REQUEST)
    assert answer == EvCertificateAnswer("Accepted", "AAEC")
    assert post.calls == [("https://pki.example/ev", {"station_id": "CP-1", "iso15118_schema_version": REQUEST.iso15118_schema_version,
                                                      "action": "Install", "exi_request": "gAB="})]


@pytest.mark.parametrize("post, expected", [
    (FakePostJson(body={"status": "Failed", "exi_response": ""}), EvCertificateAnswer("Failed", "", "ProviderRejected")),
    (FakePostJson(status=500), EvCertificateAnswer.failed("ProviderFailed")),
    (FakePostJson(error=OSError("refused")), EvCertificateAnswer.failed("ProviderFailed")),
    (FakePostJson(delay_s=5.0), EvCertificateAnswer.failed("ProviderFailed")),
    (FakePostJson(body=b"<html>"), EvCertificateAnswer.failed("BadResponse")),
])
async def test_the_http_providers_failures_are_failed_answers(post: FakePostJson, expected: EvCertificateAnswer) -> None:
    assert await HttpProvider("https://pki.example/ev", timeout_s=0.05, post=post).get(REQUEST) == expected


@pytest.mark.parametrize("body", [
    [], {"status": "Maybe", "exi_response": "x"}, {"status": "Accepted"}, {"status": "Accepted", "exi_response": 5},
    {"status": "Accepted", "exi_response": "A" * (MAX_EXI_RESPONSE_CHARS + 1)},
])
def test_an_answer_that_is_not_status_and_exi_response_is_a_bad_response(body: Any) -> None:
    assert provider_answer(orjson.dumps(body)) == EvCertificateAnswer.failed("BadResponse")
