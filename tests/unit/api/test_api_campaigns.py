"""/api/v1/firmware-campaigns: create (201, 409 on an existing id, 422 without stations,
400 on bad fields), list (paged), get, cancel; the views match their OpenAPI schemas."""

from __future__ import annotations

from services.common import kinds
from services.stations.documents import campaign_from_doc, campaign_to_doc
from services.stations.domain.campaigns import ACTIVE

from .builders import Api
from .test_api_device_model import valid


async def test_create_get_list_and_cancel_a_campaign(api: Api) -> None:
    for s in ("CP-1", "CP-2"):
        await api.a_station(s)
    status, body = await api.post("/api/v1/firmware-campaigns", {
        "id": "fw-1", "stations": ["CP-2", "CP-1", "CP-2"], "location": "https://fw/2.0.bin", "version": "2.0",
        "max_in_flight": 1, "stop_on_failure_ratio": 0.5, "retrieve_at": "2026-12-01T10:00:00Z",
    })
    assert status == 201, body
    valid(body, "FirmwareCampaign")
    assert body["status"] == "running" and [s["station_id"] for s in body["stations"]] == ["CP-2", "CP-1"]
    assert body["progress"] == {"total": 2, "pending": 2, "in_flight": 0, "succeeded": 0, "failed": 0}
    assert body["max_in_flight"] == 1 and body["stop_on_failure_ratio"] == 0.5 and body["version"] == "2.0"
    doc = await api.rt.store.get_doc(kinds.FIRMWARE_CAMPAIGN, "fw-1")
    assert doc is not None and doc["revision"] == 1
    assert [d["id"] for d in await api.rt.store.list_docs(kinds.FIRMWARE_CAMPAIGN, parent=ACTIVE)] == ["fw-1"]

    status, again = await api.post("/api/v1/firmware-campaigns", {"id": "fw-1", "stations": ["CP-1"], "location": "x"})
    assert status == 409, again
    status, other = await api.post("/api/v1/firmware-campaigns", {"stations": ["CP-1"], "location": "x"})
    assert status == 201 and other["id"] and other["version"] is None and other["max_in_flight"] == 10
    assert other["stop_on_failure_ratio"] == 0.2

    status, got = await api.get("/api/v1/firmware-campaigns/fw-1")
    assert status == 200 and got == body
    assert (await api.get("/api/v1/firmware-campaigns/nope"))[0] == 404

    status, page = await api.get("/api/v1/firmware-campaigns?limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next"]
    valid(page, "FirmwareCampaignPage")
    status, rest = await api.get(f"/api/v1/firmware-campaigns?limit=1&cursor={page['next']}")
    assert status == 200 and rest["next"] is None
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {"fw-1", other["id"]}
    assert (await api.get("/api/v1/firmware-campaigns?cursor=garbage"))[0] == 422

    status, cancelled = await api.post("/api/v1/firmware-campaigns/fw-1/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    valid(cancelled, "FirmwareCampaign")
    doc = await api.rt.store.get_doc(kinds.FIRMWARE_CAMPAIGN, "fw-1")
    assert doc is not None and doc["revision"] == 2 and doc["status"] == "cancelled"
    assert "fw-1" not in [d["id"] for d in await api.rt.store.list_docs(kinds.FIRMWARE_CAMPAIGN, parent=ACTIVE)]
    status, same = await api.post("/api/v1/firmware-campaigns/fw-1/cancel")
    assert status == 200 and same["status"] == "cancelled"
    assert (await api.post("/api/v1/firmware-campaigns/nope/cancel"))[0] == 404


async def test_a_completed_campaign_cannot_be_cancelled(api: Api) -> None:
    await api.a_station("CP-1")
    status, _ = await api.post("/api/v1/firmware-campaigns", {"id": "fw", "stations": ["CP-1"], "location": "x"})
    assert status == 201
    doc = await api.rt.store.get_doc(kinds.FIRMWARE_CAMPAIGN, "fw")
    assert doc is not None
    done = campaign_from_doc({**doc, "status": "completed", "revision": 2})
    await api.rt.store.put_doc(kinds.FIRMWARE_CAMPAIGN, "fw", campaign_to_doc(done), parent="done", version=2)
    status, body = await api.post("/api/v1/firmware-campaigns/fw/cancel")
    assert status == 409, body


async def test_a_campaign_of_a_site(api: Api) -> None:
    status, _ = await api.post("/api/v1/sites", {"id": "site-1", "grid_limit_a": 100})
    assert status == 201
    status, body = await api.post("/api/v1/firmware-campaigns", {"site_id": "site-1", "location": "x"})
    assert status == 422 and "stations" in body["details"]
    await api.a_station("CP-B", site_id="site-1")
    await api.a_station("CP-A", site_id="site-1")
    await api.a_station("CP-C")
    status, body = await api.post("/api/v1/firmware-campaigns", {"site_id": "site-1", "location": "x"})
    assert status == 201 and [s["station_id"] for s in body["stations"]] == ["CP-A", "CP-B"]
    status, body = await api.post("/api/v1/firmware-campaigns", {"site_id": "nope", "location": "x"})
    assert status == 422 and "site_id" in body["details"]


async def test_invalid_campaigns(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/firmware-campaigns", {"stations": [], "location": "x"})
    assert status == 422 and "stations" in body["details"]
    status, body = await api.post("/api/v1/firmware-campaigns", {"stations": ["CP-1", "CP-9"], "location": "x"})
    assert status == 422 and "CP-9" in body["error"]
    cases = [
        ({"stations": ["CP-1"]}, "location"),
        ({"location": "x"}, "stations"),
        ({"stations": ["CP-1"], "site_id": "s", "location": "x"}, "stations"),
        ({"stations": "CP-1", "location": "x"}, "stations"),
        ({"stations": ["bad id!"], "location": "x"}, "stations[0]"),
        ({"stations": ["CP-1"], "location": "x", "max_in_flight": 0}, "max_in_flight"),
        ({"stations": ["CP-1"], "location": "x", "stop_on_failure_ratio": 1.5}, "stop_on_failure_ratio"),
        ({"stations": ["CP-1"], "location": "x", "retrieve_at": "soon"}, "retrieve_at"),
        ({"stations": ["CP-1"], "location": "x", "signature": "s"}, "signature"),
        ({"stations": ["CP-1"], "location": "x", "id": "a/b"}, "id"),
        ({"stations": ["CP-1"], "location": "x", "colour": "red"}, "colour"),
    ]
    for payload, field in cases:
        status, body = await api.post("/api/v1/firmware-campaigns", payload)
        assert status == 400 and field in body["details"], (payload, body)
