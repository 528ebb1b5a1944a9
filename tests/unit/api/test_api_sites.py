"""Sites, their outside limit, and the SiteUpdated notification for smart charging."""

from __future__ import annotations

import json

from services.api.context import CTX
from services.common.events import Notification

from .builders import Api, EventTap, a_tariff_body


async def test_a_site_is_created_with_three_phases_by_default(api: Api) -> None:
    status, body = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 200})
    assert status == 201
    assert (body["id"], body["grid_limit_a"], body["phases"], body["external_limit_a"]) == ("S1", 200, 3, None)
    assert (await api.get("/api/v1/sites/S1"))[1]["grid_limit_a"] == 200
    _, listing = await api.get("/api/v1/sites")
    assert [s["id"] for s in listing["items"]] == ["S1"]


async def test_invalid_sites_are_400_and_duplicates_409(api: Api) -> None:
    status, body = await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 0, "phases": 2})
    assert status == 400 and set(body["details"]) == {"grid_limit_a", "phases"}
    assert (await api.post("/api/v1/sites", {"id": "S1"}))[0] == 400
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10, "tariff_id": "nope"}))[0] == 400
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10}))[0] == 201
    assert (await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 10}))[0] == 409


async def test_a_site_takes_a_tariff_and_lets_it_go(api: Api) -> None:
    await api.post("/api/v1/tariffs", a_tariff_body(id="t1"))
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    status, body = await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": "t1", "grid_limit_a": 150})
    assert status == 200 and body["tariff_id"] == "t1" and body["grid_limit_a"] == 150
    status, body = await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": None})
    assert status == 200 and body["tariff_id"] is None
    assert (await api.call("PATCH", "/api/v1/sites/S1", {"tariff_id": "nope"}))[0] == 400
    assert (await api.call("PATCH", "/api/v1/sites/S9", {"grid_limit_a": 1}))[0] == 404


async def test_an_outside_limit_is_stored_and_published_as_site_updated(api: Api) -> None:
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    tap = await EventTap(api.rt).start()
    try:
        status, body = await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 40})
        assert status == 200 and body["external_limit_a"] == 40
        event = await tap.wait_for(lambda e: e.action == "SiteUpdated")
        assert event.station_id == "site:S1" and event.gateway_id == "api"
        assert isinstance(event.body, Notification)
        payload = json.loads(event.body.payload_json)
        assert payload["id"] == "S1" and payload["external_limit_a"] == 40
        assert event.headers["ce_type"] == "csms.events.v1.Notification"
        status, body = await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": None})
        assert status == 200 and body["external_limit_a"] is None
        assert (await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": -1}))[0] == 400
        assert (await api.call("PUT", "/api/v1/sites/S1/limit", {}))[0] == 400
        assert (await api.call("PUT", "/api/v1/sites/S9/limit", {"limit_a": 1}))[0] == 404
    finally:
        await tap.stop()


async def test_every_site_change_calls_the_overridable_hook(api: Api) -> None:
    seen: list[str] = []

    async def hook(site_id: str) -> None:
        seen.append(site_id)

    assert api.service.app is not None
    api.service.app[CTX].on_site_changed = hook
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    await api.post("/api/v1/sites", {"id": "S2", "grid_limit_a": 100})
    await api.call("PATCH", "/api/v1/sites/S1", {"phases": 1})
    await api.call("PUT", "/api/v1/sites/S1/limit", {"limit_a": 10})
    await api.a_station("CP-1", site_id="S1")
    await api.call("PATCH", "/api/v1/stations/CP-1", {"site_id": "S2"})
    await api.call("DELETE", "/api/v1/sites/S1")
    assert seen[:5] == ["S1", "S2", "S1", "S1", "S1"]
    assert sorted(seen[5:7]) == ["S1", "S2"]  # the station left S1 for S2
    assert seen[7:] == ["S1"]


async def test_a_deleted_site_is_gone_and_announced(api: Api) -> None:
    await api.post("/api/v1/sites", {"id": "S1", "grid_limit_a": 100})
    tap = await EventTap(api.rt).start()
    try:
        assert (await api.call("DELETE", "/api/v1/sites/S1"))[0] == 204
        event = await tap.wait_for(lambda e: e.station_id == "site:S1")
        assert json.loads(event.body.payload_json) == {"id": "S1", "deleted": True}  # type: ignore[union-attr]
    finally:
        await tap.stop()
    assert (await api.get("/api/v1/sites/S1"))[0] == 404
    assert (await api.call("DELETE", "/api/v1/sites/S1"))[0] == 404
