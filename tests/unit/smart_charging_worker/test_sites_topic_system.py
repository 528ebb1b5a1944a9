"""Site changes on their own topic, through the whole embedded system (ADR 015): the API
publishes `SiteUpdated` on csms.sites.v1 after storing the site, smart charging lowers
the profiles of the site's sessions, and the sessions processor - which sees only
station events now - writes no `site:` station-status document."""

from __future__ import annotations

from typing import Any, AsyncIterator

import aiohttp
import pytest

from services.api.service import ApiService
from services.api.wiring import build_api
from services.common import codec, sites_codec, topics
from services.common.bus.port import Record
from services.common.kinds import SITE_STATE, STATION_STATUS
from services.sessions.handlers import GROUP as SESSIONS_GROUP
from services.sessions.wiring import build_sessions
from tests.support import eventually

from .builders import booted, latest_limits, started
from .conftest import World, open_world

API_KEY = "sites-topic-test-key"


class System:
    """The API, the sessions processor and smart charging on one MemoryBus + in-memory store."""

    def __init__(self, world: World, api: ApiService, http: aiohttp.ClientSession) -> None:
        self.world, self.api, self.http = world, api, http

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.api.port}{path}"
        async with self.http.request(method, url, json=body, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            return r.status, (await r.json() if r.status != 204 else None)

    async def settled(self) -> None:
        await eventually(lambda: self.world.bus.lag(SESSIONS_GROUP, topics.EVENTS) == 0, 5.0, interval=0.005,
                         what="the sessions processor consumed csms.events.v1")
        await self.world.settled()


@pytest.fixture
async def system() -> AsyncIterator[System]:
    async with open_world(api_key=API_KEY, host="127.0.0.1", api_port=0) as world:
        sessions, api = build_sessions(world.rt), build_api(world.rt)
        await sessions.start()
        await world.service.start()
        await api.start()
        http = aiohttp.ClientSession()
        try:
            yield System(world, api, http)
        finally:
            await http.close()
            await api.stop()
            await sessions.stop()


def records(world: World, topic: str) -> list[Record]:
    return [r for part in world.bus._topic(topic) for r in part.records]


async def test_a_site_change_reaches_its_sessions_through_csms_sites_v1_and_makes_no_station_status(system: System) -> None:
    world = system.world
    assert (await system.call("POST", "/api/v1/sites", {"id": "SITE1", "grid_limit_a": 32}))[0] == 201
    for station_id in ("CS-A", "CS-B"):
        status, _ = await system.call("POST", "/api/v1/stations", {"id": station_id, "password": "p" * 20, "site_id": "SITE1"})
        assert status == 201
        await world.rt.store.claim_station(station_id, "gateway-0")
    await world.publish(booted("CS-A"), booted("CS-B"), started("CS-A", "1"), started("CS-B", "2"))
    await system.settled()
    assert latest_limits(world.sent()) == {"CS-A": 16.0, "CS-B": 16.0}

    assert (await system.call("PUT", "/api/v1/sites/SITE1/limit", {"limit_a": 12}))[0] == 200
    await system.settled()

    assert latest_limits(world.sent()) == {"CS-A": 6.0, "CS-B": 6.0}  # smart charging reacted
    changes = [sites_codec.decode_site_updated(r.value) for r in records(world, topics.SITES)]
    assert [(c.site_id, c.deleted, (c.site or {}).get("external_limit_a")) for c in changes][-1] == ("SITE1", False, 12)
    assert [r.key for r in records(world, topics.SITES)] == [b"SITE1"] * len(changes)
    events = [codec.decode_event(r.value) for r in records(world, topics.EVENTS)]
    assert events and not [e for e in events if e.station_id.startswith("site:")]  # station events only
    status_ids = {d["station_id"] for d in await world.rt.store.list_docs(STATION_STATUS)}
    assert {"CS-A", "CS-B"} <= status_ids  # the sessions processor did write station statuses...
    assert not [s for s in status_ids if s.startswith("site:")]  # ...and none for a site

    assert (await system.call("DELETE", "/api/v1/sites/SITE1"))[0] == 204
    await system.settled()
    assert await world.rt.store.get_doc(SITE_STATE, "SITE1") is None
    assert sites_codec.decode_site_updated(records(world, topics.SITES)[-1].value).deleted
    status_ids = {d["station_id"] for d in await world.rt.store.list_docs(STATION_STATUS)}
    assert not [s for s in status_ids if s.startswith("site:")]
