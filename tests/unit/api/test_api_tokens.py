"""Tokens: create, read, replace, list, delete."""

from __future__ import annotations

from .builders import Api


async def test_a_token_is_created_accepted_by_default_and_read_back(api: Api) -> None:
    status, body = await api.post("/api/v1/tokens", {"id_token": "RFID1"})
    assert status == 201
    assert body["id_token"] == "RFID1" and body["status"] == "Accepted"
    status, body = await api.get("/api/v1/tokens/RFID1")
    assert status == 200 and body["status"] == "Accepted"


async def test_a_token_keeps_expiry_and_group(api: Api) -> None:
    status, body = await api.post(
        "/api/v1/tokens",
        {"id_token": "RFID2", "status": "Blocked", "expires_at": "2027-01-01T00:00:00+01:00", "group_id": "fleet"},
    )
    assert status == 201
    assert body["expires_at"] == "2026-12-31T23:00:00.000Z" and body["group_id"] == "fleet"
    assert body["status"] == "Blocked"


async def test_a_duplicate_token_is_a_409(api: Api) -> None:
    await api.post("/api/v1/tokens", {"id_token": "RFID1"})
    assert (await api.post("/api/v1/tokens", {"id_token": "RFID1"}))[0] == 409


async def test_bad_token_fields_are_400_with_details(api: Api) -> None:
    status, body = await api.post(
        "/api/v1/tokens", {"id_token": "x" * 37, "status": "Maybe", "expires_at": "tomorrow"}
    )
    assert status == 400
    assert set(body["details"]) == {"id_token", "status", "expires_at"}
    assert (await api.post("/api/v1/tokens", {"status": "Accepted"}))[0] == 400


async def test_put_creates_then_replaces_a_token(api: Api) -> None:
    status, body = await api.call("PUT", "/api/v1/tokens/RFID3", {"status": "Accepted"})
    assert status == 201
    status, body = await api.call("PUT", "/api/v1/tokens/RFID3", {"id_token": "RFID3", "status": "Expired"})
    assert status == 200 and body["status"] == "Expired"
    status, body = await api.call("PUT", "/api/v1/tokens/RFID3", {"id_token": "OTHER"})
    assert status == 400


async def test_tokens_are_listed_and_deleted(api: Api) -> None:
    for t in ("A", "B"):
        await api.post("/api/v1/tokens", {"id_token": t})
    _, body = await api.get("/api/v1/tokens")
    assert sorted(t["id_token"] for t in body["items"]) == ["A", "B"]
    assert (await api.call("DELETE", "/api/v1/tokens/A"))[0] == 204
    assert (await api.get("/api/v1/tokens/A"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/tokens/A"))[0] == 404
