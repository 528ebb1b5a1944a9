"""GetCertificateStatus's answerer (services/gateway/ocsp.py): where the answer comes from,
what is passed back, and every failure as a Failed answer with its reason. No network: the
responder is a fake `post`, the store a dict (over sockets:
tests/integration_inproc/gateway/test_certificates_over_ws.py)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from services.common import pki
from services.common.errors import StoreError
from services.gateway.ocsp import (
    CertificateStatusService,
    Delegate,
    StatusAnswer,
    build_ocsp_request,
    issued_by,
    load_ca_material,
    store_lookup,
    usable_ocsp_response,
)
from tests.support.certs import CA, Issued, issue, make_ca, write_pem

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
REVOKED_AT = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca("CSMS test CA")


@pytest.fixture(scope="module")
def delegate(ca: CA) -> Issued:
    return issue(ca, "CSMS OCSP responder", client=False)


@pytest.fixture(scope="module")
def station(ca: CA) -> Issued:
    return issue(ca, "CP-1")


def request_of(cert: Issued, issuer: CA, algorithm: str = "SHA256", **extra: Any) -> dict[str, Any]:
    return {**pki.hash_data(cert.cert, issuer.cert, algorithm), **extra}


def good_response(serial: int = 1) -> bytes:
    """A successful OCSP response from some other responder (for the fake post)."""
    other = make_ca("Other CA")
    signer = issue(other, "Other OCSP", client=False)
    return (ocsp.OCSPResponseBuilder()
            .add_response_by_hash(b"\x01" * 32, b"\x02" * 32, serial, hashes.SHA256(), ocsp.OCSPCertStatus.GOOD,
                                  NOW.replace(tzinfo=None), None, None, None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
            .sign(signer.key, hashes.SHA256()).public_bytes(Encoding.DER))


class FakePost:
    def __init__(self, answer: bytes | Exception | None = None, delay_s: float = 0.0) -> None:
        self.answer = answer if answer is not None else good_response()
        self.delay_s = delay_s
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, url: str, der: bytes, timeout_s: float) -> bytes:
        self.calls.append((url, der))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a responder that does not answer in time
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class FakeDocs:
    """The certificate lookup: serial -> (state, revocation time); unknown when absent."""

    def __init__(self, states: dict[str, tuple[str, datetime | None]] | None = None, error: Exception | None = None,
                 delay_s: float = 0.0) -> None:
        self.states = states or {}
        self.error = error
        self.delay_s = delay_s
        self.asked: list[str] = []

    async def __call__(self, serial: str) -> tuple[str, datetime | None]:
        self.asked.append(serial)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a store that does not answer in time
        if self.error is not None:
            raise self.error
        return self.states.get(serial, ("unknown", None))


def service(ca: CA | None = None, delegate: Issued | None = None, *, docs: FakeDocs | None = None,
            post: FakePost | None = None, forward_url: str = "", timeout_s: float = 2.0,
            follow_station_url: bool = True) -> CertificateStatusService:
    return CertificateStatusService(
        forward_url=forward_url, ca=None if ca is None else ca.cert,
        delegate=None if delegate is None else Delegate(delegate.cert, delegate.key),
        lookup=docs or FakeDocs(), post=post or FakePost(), clock=lambda: NOW, timeout_s=timeout_s,
        follow_station_url=follow_station_url,
    )


def decoded(answer: StatusAnswer) -> ocsp.OCSPResponse:
    assert answer.status == "Accepted" and answer.ocsp_result is not None and answer.reason is None, answer
    return ocsp.load_der_ocsp_response(base64.b64decode(answer.ocsp_result))


# -- pure parts ------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_the_ocsp_request_carries_the_stations_hashes_and_serial(ca: CA, station: Issued, algorithm: str) -> None:
    data = request_of(station, ca, algorithm)
    req = ocsp.load_der_ocsp_request(build_ocsp_request(data))
    assert req.issuer_name_hash.hex() == data["issuerNameHash"] and req.issuer_key_hash.hex() == data["issuerKeyHash"]
    assert req.serial_number == station.cert.serial_number and req.hash_algorithm.name == algorithm.lower()


@pytest.mark.parametrize("bad", [
    {"hashAlgorithm": "MD5"}, {"issuerNameHash": "zz"}, {"issuerKeyHash": None}, {"serialNumber": "xyz"},
    {"serialNumber": "-5"},
])
def test_a_request_that_is_not_hex_hashes_and_a_hex_serial_builds_nothing(ca: CA, station: Issued, bad: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        build_ocsp_request({**request_of(station, ca), **bad})


def test_only_a_successful_ocsp_response_is_passed_back() -> None:
    body = good_response()
    assert usable_ocsp_response(body) == base64.b64encode(body).decode()
    unauthorized = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(Encoding.DER)
    assert usable_ocsp_response(unauthorized) is None
    assert usable_ocsp_response(b"<html>internal admin page</html>") is None
    assert usable_ocsp_response(b"") is None


def test_issued_by_compares_the_issuers_name_and_key_hashes(ca: CA, station: Issued) -> None:
    assert issued_by(request_of(station, ca), ca.cert)
    assert issued_by(request_of(station, ca, "SHA512"), ca.cert)
    upper = {k: v.upper() if k.startswith("issuer") else v for k, v in request_of(station, ca).items()}
    assert issued_by(upper, ca.cert)  # hex is case-insensitive
    other = make_ca("CSMS test CA")  # same name, another key
    assert not issued_by(request_of(issue(other, "CP-1"), other), ca.cert)
    assert not issued_by({**request_of(station, ca), "hashAlgorithm": "MD5"}, ca.cert)


# -- the built-in CA's answers -----------------------------------------------------------

@pytest.mark.parametrize("state, expected", [
    (("good", None), ocsp.OCSPCertStatus.GOOD),
    (("revoked", REVOKED_AT), ocsp.OCSPCertStatus.REVOKED),
    (None, ocsp.OCSPCertStatus.UNKNOWN),
])
async def test_our_ca_answers_from_the_certificate_documents_signed_by_the_delegate(
        ca: CA, delegate: Issued, station: Issued, state: tuple | None, expected: ocsp.OCSPCertStatus) -> None:
    serial = pki.serial_hex(station.cert)
    docs = FakeDocs({serial: state} if state else {})
    post = FakePost()
    answer = await service(ca, delegate, docs=docs, post=post).status(request_of(station, ca, responderURL="http://x"))
    response = decoded(answer)
    assert response.certificate_status is expected and response.serial_number == station.cert.serial_number
    assert docs.asked == [serial] and post.calls == []  # the station's responderURL is not used for our CA
    assert response.certificates[0] == delegate.cert  # signed by the delegate, which it carries
    key = delegate.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))  # raises if not
    if expected is ocsp.OCSPCertStatus.REVOKED:
        assert response.revocation_time_utc == REVOKED_AT


async def test_our_ca_without_its_delegate_fails(ca: CA, station: Issued) -> None:
    post = FakePost()
    answer = await service(ca, None, post=post).status(request_of(station, ca, responderURL="http://x"))
    assert answer == StatusAnswer("Failed", None, "NoOCSPDelegate") and post.calls == []


@pytest.mark.parametrize("docs, reason", [
    (FakeDocs(error=StoreError("down")), "StoreUnavailable"),
    (FakeDocs(error=OSError("reset")), "StoreUnavailable"),
    (FakeDocs(delay_s=5.0), "StoreUnavailable"),
])
async def test_a_store_that_fails_or_hangs_is_a_failed_answer(ca: CA, delegate: Issued, station: Issued,
                                                             docs: FakeDocs, reason: str) -> None:
    answer = await service(ca, delegate, docs=docs, timeout_s=0.05).status(request_of(station, ca))
    assert answer == StatusAnswer.failed(reason)


async def test_a_serial_that_is_not_hex_gets_a_malformed_request_answer_without_a_lookup(
        ca: CA, delegate: Issued, station: Issued) -> None:
    docs = FakeDocs()
    answer = await service(ca, delegate, docs=docs).status(request_of(station, ca, serialNumber="not-hex"))
    # pki answers MALFORMED_REQUEST, which is no certificate status: Failed
    assert answer == StatusAnswer.failed("InvalidRequest") and docs.asked == []


# -- forwarding ------------------------------------------------------------------------

async def test_a_configured_responder_answers_for_every_issuer(ca: CA, delegate: Issued, station: Issued) -> None:
    post = FakePost()
    docs = FakeDocs()
    answer = await service(ca, delegate, docs=docs, post=post, forward_url="http://ocsp.operator/").status(
        request_of(station, ca, responderURL="http://station.choice/"))
    assert answer.status == "Accepted" and base64.b64decode(answer.ocsp_result or "") == post.answer
    [(url, der)] = post.calls
    assert url == "http://ocsp.operator/" and docs.asked == []
    assert ocsp.load_der_ocsp_request(der).serial_number == station.cert.serial_number


async def test_another_issuer_goes_to_the_stations_responder_url(ca: CA, delegate: Issued) -> None:
    other = make_ca("V2G Root")
    cert = issue(other, "EVSE-1")
    post = FakePost()
    answer = await service(ca, delegate, post=post).status(request_of(cert, other, responderURL="https://ocsp.v2g/"))
    assert answer.status == "Accepted" and [u for u, _ in post.calls] == ["https://ocsp.v2g/"]


async def test_the_stations_responder_url_is_not_followed_unless_configured(ca: CA, delegate: Issued) -> None:
    other = make_ca("V2G Root")
    post = FakePost()
    answer = await service(ca, delegate, post=post, follow_station_url=False).status(
        request_of(issue(other, "EVSE-1"), other, responderURL="http://10.0.0.1/internal"))
    assert answer == StatusAnswer.failed("NoResponder") and post.calls == []


@pytest.mark.parametrize("url", ["", "ftp://ocsp.v2g/", "file:///etc/passwd", "http://", "not a url"])
async def test_without_a_usable_responder_url_another_issuer_fails(ca: CA, url: str) -> None:
    other = make_ca("V2G Root")
    post = FakePost()
    answer = await service(ca, post=post).status(request_of(issue(other, "EVSE-1"), other, responderURL=url))
    assert answer == StatusAnswer.failed("NoResponder") and post.calls == []


@pytest.mark.parametrize("post, reason", [
    (FakePost(OSError("connection refused")), "ResponderFailed"),
    (FakePost(ValueError("OCSP response too large")), "ResponderFailed"),
    (FakePost(delay_s=5.0), "ResponderFailed"),
    (FakePost(b"<html>an internal page</html>"), "BadResponse"),
    (FakePost(ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(Encoding.DER)),
     "BadResponse"),
])
async def test_a_responder_that_fails_hangs_or_answers_nonsense_is_a_failed_answer(
        ca: CA, station: Issued, post: FakePost, reason: str) -> None:
    answer = await service(post=post, forward_url="http://ocsp.operator/", timeout_s=0.05).status(request_of(station, ca))
    assert answer == StatusAnswer.failed(reason)


async def test_hashes_that_are_not_hex_are_not_forwarded(ca: CA, station: Issued) -> None:
    post = FakePost()
    answer = await service(post=post, forward_url="http://ocsp.operator/").status(
        request_of(station, ca, issuerKeyHash="not hex"))
    assert answer == StatusAnswer.failed("InvalidRequest") and post.calls == []


async def test_nothing_configured_and_no_url_fails(ca: CA, station: Issued) -> None:
    assert await service().status(request_of(station, ca)) == StatusAnswer.failed("NoResponder")


# -- the CA directory ------------------------------------------------------------------

def test_the_ca_directory_gives_the_ca_and_the_delegate(tmp_path: Path, ca: CA, delegate: Issued) -> None:
    write_pem(tmp_path, "ca", ca)
    (tmp_path / "ca.key").unlink()  # a gateway never needs the CA's key
    write_pem(tmp_path, "ocsp", delegate)
    cert, dlg = load_ca_material(str(tmp_path))
    assert cert == ca.cert and dlg is not None and dlg.cert == delegate.cert


def test_a_missing_or_foreign_delegate_is_not_used(tmp_path: Path, ca: CA) -> None:
    assert load_ca_material("") == (None, None)
    assert load_ca_material(str(tmp_path / "nothing")) == (None, None)
    write_pem(tmp_path, "ca", ca)
    assert load_ca_material(str(tmp_path)) == (ca.cert, None)
    foreign = issue(make_ca("Someone else"), "OCSP", client=False)
    write_pem(tmp_path, "ocsp", foreign)
    assert load_ca_material(str(tmp_path)) == (ca.cert, None)
    (tmp_path / "ocsp.key").write_text("garbage")
    assert load_ca_material(str(tmp_path)) == (ca.cert, None)


# -- the store lookup ------------------------------------------------------------------

class DictStore:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return self.docs.get((kind, doc_id))


async def test_the_store_lookup_reads_the_certificate_documents_through_their_mapper(station: Issued) -> None:
    from services.certificates.documents import Certificate, to_doc
    from services.common import kinds

    store = DictStore()
    lookup = store_lookup(store)  # type: ignore[arg-type]
    serial = pki.serial_hex(station.cert)
    assert await lookup(serial) == ("unknown", None)
    cert = Certificate(serial=serial, station_id="CP-1", certificate_type="ChargingStationCertificate", status="installed",
                       subject="CN=CP-1", not_before=NOW, not_after=NOW, fingerprint_sha256="", pem="", issued_at=NOW)
    store.docs[(kinds.CERTIFICATE, serial)] = to_doc(cert)
    assert await lookup(serial) == ("good", None)
    store.docs[(kinds.CERTIFICATE, serial)] = to_doc(replace(cert, status="revoked", revoked_at=REVOKED_AT))
    assert await lookup(serial) == ("revoked", REVOKED_AT)
