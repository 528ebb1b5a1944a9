"""The upload endpoint's decisions with fake slots (services/gateway/uploads.py): the loser of
a race never replaces the winner's file, a store outage is 503, a bad slot is 404.
(The endpoint on a real gateway: tests/integration_inproc/gateway/test_uploads.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.errors import StoreUnavailable
from services.common.store.files import DirectoryFiles
from services.gateway.uploads import Uploads, slot_id

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
TOKEN = "t" * 32


class FakeSlots:
    def __init__(self, doc: dict[str, Any] | None, *, wins: bool = True, fail: Exception | None = None) -> None:
        self.doc, self.wins, self.fail = doc, wins, fail
        self.filled: list[tuple[str, dict[str, Any], str]] = []

    async def get_slot(self, slot: str) -> dict[str, Any] | None:
        if self.fail is not None:
            raise self.fail
        return self.doc if slot == slot_id(TOKEN) else None

    async def fill_slot(self, slot: str, doc: dict[str, Any], *, parent: str) -> bool:
        self.filled.append((slot, doc, parent))
        return self.wins


def a_doc(**kw: Any) -> dict[str, Any]:
    return {"station_id": "CP1", "request_id": 3, "max_bytes": 1000, "status": "waiting", "version": 1,
            "expires_at": "2026-12-02T13:00:00.000Z", "file_id": "logs/CP1/3", **kw}


@pytest.fixture
async def files(tmp_path: Path) -> DirectoryFiles:
    return DirectoryFiles(tmp_path / "files", clock=lambda: NOW)


async def client_for(slots: FakeSlots, files: DirectoryFiles, now: datetime = NOW) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    Uploads(slots=slots, files=files, clock=lambda: now).register(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def content(files: DirectoryFiles, file_id: str) -> bytes:
    out = b""
    async for chunk in files.read_file(file_id):
        out += chunk
    return out


async def test_the_loser_of_a_race_gets_410_and_the_winners_file_stays(files: DirectoryFiles) -> None:
    async for client in client_for(FakeSlots(a_doc(), wins=True), files):
        assert (await client.put(f"/uploads/{TOKEN}/a.log", data=b"winner")).status == 201
    slots = FakeSlots(a_doc(), wins=False)  # passed the check, then another upload filled the slot first
    async for client in client_for(slots, files):
        assert (await client.put(f"/uploads/{TOKEN}/b.log", data=b"loser")).status == 410
    assert await content(files, "logs/CP1/3") == b"winner"
    assert sorted(p.name for p in files.path.iterdir() if not p.name.startswith(".")) == ["logs%2FCP1%2F3"]  # no attempt left


async def test_the_slot_written_back_is_version_2_with_the_file_facts(files: DirectoryFiles) -> None:
    slots = FakeSlots(a_doc(log_type="SecurityLog"))
    async for client in client_for(slots, files):
        resp = await client.post(f"/uploads/{TOKEN}/sec.log", data=b"hello", headers={"Content-Type": "text/plain"})
        assert resp.status == 201
    [(slot, doc, parent)] = slots.filled
    assert (slot, parent) == (slot_id(TOKEN), "CP1")
    assert {k: doc[k] for k in ("status", "size", "content_type", "name", "received_at", "version", "log_type", "file_id")} == {
        "status": "received", "size": 5, "content_type": "text/plain", "name": "sec.log",
        "received_at": "2026-12-02T12:00:00.000Z", "version": 2, "log_type": "SecurityLog", "file_id": "logs/CP1/3"}


@pytest.mark.parametrize("doc, status", [
    (a_doc(status="received", version=2), 410),
    (a_doc(version=2), 410),
    (a_doc(expires_at="2026-12-02T12:00:00.000Z"), 410),  # expires_at is not inside the window
    (a_doc(expires_at="soon"), 404),
    (a_doc(max_bytes=None), 404),
    (a_doc(station_id=""), 404),
    (None, 404),
])
async def test_slots_that_cannot_take_an_upload(files: DirectoryFiles, doc: dict[str, Any] | None, status: int) -> None:
    slots = FakeSlots(doc)
    async for client in client_for(slots, files):
        assert (await client.put(f"/uploads/{TOKEN}", data=b"x")).status == status
    assert slots.filled == [] and await files.file_info("logs/CP1/3") is None


async def test_a_store_outage_is_503_with_retry_after(files: DirectoryFiles) -> None:
    async for client in client_for(FakeSlots(a_doc(), fail=StoreUnavailable("down")), files):
        resp = await client.put(f"/uploads/{TOKEN}", data=b"x")
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"


async def test_a_content_length_past_the_limit_is_refused_before_reading(files: DirectoryFiles) -> None:
    slots = FakeSlots(a_doc(max_bytes=4))
    async for client in client_for(slots, files):
        assert (await client.put(f"/uploads/{TOKEN}", data=b"12345")).status == 413
        assert (await client.put(f"/uploads/{TOKEN}", data=b"1234")).status == 201
    assert await content(files, "logs/CP1/3") == b"1234"


def test_the_slot_id_is_the_tokens_sha256() -> None:
    assert slot_id("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
