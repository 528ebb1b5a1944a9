"""The log upload endpoint on the gateway port (ADR 016 §4): a one-time slot by token, the
body (raw or multipart) byte for byte into the file store, 404 / 410 / 413, one upload wins."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from services.common import kinds
from services.common.timeutil import to_ocpp
from services.gateway.uploads import slot_id
from tests.integration_inproc.gateway.harness import Gateway, raw_http, status_of

TOKEN = "tok_" + "A1b2C3d4E5f6G7h8I9j0" * 2


async def a_slot(gw: Gateway, token: str = TOKEN, *, max_bytes: int = 1 << 20, ttl_s: float = 3600.0,
                 station: str = "CP1", request_id: int = 7, **extra: Any) -> str:
    """A slot as the API writes it (version 1)."""
    now = gw.rt.clock()
    sid = slot_id(token)
    doc = {
        "station_id": station, "request_id": request_id, "log_type": "DiagnosticsLog", "token_sha256": sid,
        "max_bytes": max_bytes, "created_at": to_ocpp(now), "expires_at": to_ocpp(now + timedelta(seconds=ttl_s)),
        "status": "waiting", "file_id": f"logs/{station}/{request_id}", "size": None, "sha256": None,
        "content_type": None, "name": None, "received_at": None, "version": 1, **extra,
    }
    assert await gw.store.put_doc(kinds.LOG_UPLOAD, sid, doc, parent=station, version=1)
    return sid


def url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


async def stored(gw: Gateway, file_id: str) -> bytes:
    out = b""
    async for chunk in gw.rt.files.read_file(file_id):
        out += chunk
    return out


async def test_a_raw_put_lands_byte_for_byte_and_fills_the_slot(gw: Gateway) -> None:
    sid = await a_slot(gw)
    data = os.urandom(600 * 1024 + 17)  # more than two of the store's 256 KiB chunks
    resp = await gw.session.put(url(gw, f"/uploads/{TOKEN}/diagnostics-CP1.tar.gz"), data=data,
                                headers={"Content-Type": "application/gzip"})
    assert resp.status == 201
    digest = hashlib.sha256(data).hexdigest()
    assert await resp.json() == {"size": len(data), "sha256": digest}
    assert await stored(gw, "logs/CP1/7") == data
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None
    assert (doc["status"], doc["size"], doc["sha256"], doc["content_type"], doc["name"], doc["version"]) == (
        "received", len(data), digest, "application/gzip", "diagnostics-CP1.tar.gz", 2)
    assert doc["received_at"].endswith("Z") and doc["station_id"] == "CP1" and doc["request_id"] == 7
    info = await gw.rt.files.file_info("logs/CP1/7")
    assert info is not None and (info.size, info.sha256, info.name) == (len(data), digest, "diagnostics-CP1.tar.gz")


async def test_a_second_upload_is_refused_and_the_first_kept(gw: Gateway) -> None:
    await a_slot(gw)
    assert (await gw.session.put(url(gw, f"/uploads/{TOKEN}"), data=b"first")).status == 201
    again = await gw.session.post(url(gw, f"/uploads/{TOKEN}/other.log"), data=b"second")
    assert again.status == 410
    assert await stored(gw, "logs/CP1/7") == b"first"


async def test_two_racing_uploads_one_wins_and_the_file_is_the_winners(gw: Gateway) -> None:
    sid = await a_slot(gw)
    bodies = [os.urandom(300 * 1024), os.urandom(300 * 1024)]
    answers = await asyncio.gather(*(gw.session.put(url(gw, f"/uploads/{TOKEN}/f{i}"), data=b) for i, b in enumerate(bodies)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201, 410]
    winner = bodies[[a.status for a in answers].index(201)]
    assert await stored(gw, "logs/CP1/7") == winner
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None and doc["sha256"] == hashlib.sha256(winner).hexdigest()


async def test_a_multipart_post_keeps_the_first_file_part(gw: Gateway) -> None:
    await a_slot(gw)
    data = os.urandom(70_000)
    form = aiohttp.FormData()
    form.add_field("note", "not the file")
    form.add_field("file", data, filename="security.log", content_type="text/x-log")
    form.add_field("file2", b"ignored", filename="second.log")
    resp = await gw.session.post(url(gw, f"/uploads/{TOKEN}/"), data=form)
    assert resp.status == 201
    assert await stored(gw, "logs/CP1/7") == data
    info = await gw.rt.files.file_info("logs/CP1/7")
    assert info is not None and (info.name, info.content_type) == ("security.log", "text/x-log")


async def test_a_multipart_body_without_a_file_part_is_refused(gw: Gateway) -> None:
    sid = await a_slot(gw)
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("note", "just text")
    form.add_field("other", "more text")
    assert (await gw.session.post(url(gw, f"/uploads/{TOKEN}"), data=form)).status == 400
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None and doc["status"] == "waiting"


@pytest.mark.parametrize("path", [f"/uploads/{'Z' * 40}", f"/uploads/{'Z' * 40}/x.log", "/uploads/short", "/uploads/bad%2Ftoken"])
async def test_an_unknown_token_is_404(gw: Gateway, path: str) -> None:
    await a_slot(gw)
    assert (await gw.session.put(url(gw, path), data=b"x")).status == 404


async def test_an_expired_slot_is_410_and_takes_nothing(gw: Gateway) -> None:
    sid = await a_slot(gw, ttl_s=-1)
    assert (await gw.session.put(url(gw, f"/uploads/{TOKEN}/x"), data=b"late")).status == 410
    assert await gw.rt.files.file_info("logs/CP1/7") is None
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None and doc["status"] == "waiting"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_past_the_slot_limit_is_413_and_the_slot_stays_open(gw: Gateway, chunked: bool) -> None:
    sid = await a_slot(gw, max_bytes=100_000)
    data = os.urandom(100_001)

    async def stream() -> Any:  # no Content-Length: the limit is found while streaming
        for i in range(0, len(data), 10_000):
            yield data[i:i + 10_000]

    resp = await gw.session.put(url(gw, f"/uploads/{TOKEN}/big"), data=stream() if chunked else data)
    assert resp.status == 413
    assert await gw.rt.files.file_info("logs/CP1/7") is None
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None and doc["status"] == "waiting"
    # the slot still takes an upload that fits
    assert (await gw.session.put(url(gw, f"/uploads/{TOKEN}/small"), data=data[:100_000])).status == 201
    assert await stored(gw, "logs/CP1/7") == data[:100_000]


async def test_an_empty_upload_is_a_file_of_zero_bytes(gw: Gateway) -> None:
    await a_slot(gw)
    assert (await gw.session.put(url(gw, f"/uploads/{TOKEN}/empty.log"), data=b"")).status == 201
    info = await gw.rt.files.file_info("logs/CP1/7")
    assert info is not None and info.size == 0 and info.sha256 == hashlib.sha256(b"").hexdigest()


async def test_the_endpoint_needs_no_station_credentials_and_only_takes_put_and_post(gw: Gateway) -> None:
    await a_slot(gw)
    assert (await gw.session.get(url(gw, f"/uploads/{TOKEN}"))).status == 405
    # no Authorization header at all: the token is the credential
    head = await raw_http(gw.port, (f"PUT /uploads/{TOKEN}/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                    "Connection: close\r\n\r\nabc").encode())
    assert status_of(head) == 201
    assert await stored(gw, "logs/CP1/7") == b"abc"


async def test_a_multipart_body_without_a_boundary_is_400_and_an_unterminated_last_part_is_kept(gw: Gateway) -> None:
    sid = await a_slot(gw)
    garbage = await gw.session.post(url(gw, f"/uploads/{TOKEN}"), data=b"no boundary here",
                                    headers={"Content-Type": "multipart/form-data"})
    assert garbage.status == 400
    doc = await gw.store.get_doc(kinds.LOG_UPLOAD, sid)
    assert doc is not None and doc["status"] == "waiting"
    # a station that stops without the closing boundary: its file part runs to the end of the body
    body = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.log\"\r\n\r\nabc"
    resp = await gw.session.post(url(gw, f"/uploads/{TOKEN}"), data=body,
                                 headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
    assert resp.status == 201
    assert await stored(gw, "logs/CP1/7") == b"abc"
