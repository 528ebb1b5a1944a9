"""Smart charging through `csms run`: three 1.6 stations of a 32 A site share it, and
get more when one of them stops charging."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import websockets
from ocpp.v16 import call as call16

from services.simulator.station import Station16, StationSpec, now_z
from services.simulator.stats import Stats
from tests.e2e.conftest import Server, basic
from tests.support.waiting import eventually

TOKEN = "E2ETOKEN01"


def _get(d: dict[str, Any], snake: str, camel: str) -> Any:
    return d[snake] if snake in d else d[camel]


def profile_of(payload: dict[str, Any]) -> tuple[str, float]:
    """(purpose, limit) of a SetChargingProfile the station received (the ocpp library hands
    the handler snake_case keys; camelCase is accepted too)."""
    profile = _get(payload, "cs_charging_profiles", "csChargingProfiles")
    schedule = _get(profile, "charging_schedule", "chargingSchedule")
    period = _get(schedule, "charging_schedule_period", "chargingSchedulePeriod")[0]
    return str(_get(profile, "charging_profile_purpose", "chargingProfilePurpose")), float(period["limit"])


def latest_tx_limit(spec: StationSpec) -> float | None:
    limit = None
    for action, payload in list(spec.received):
        if action == "SetChargingProfile":
            purpose, value = profile_of(payload)
            if purpose == "TxProfile":
                limit = value
    return limit


def fail_safe_limits(spec: StationSpec) -> list[float]:
    return [
        profile_of(p)[1] for a, p in list(spec.received)
        if a == "SetChargingProfile" and profile_of(p)[0] == "TxDefaultProfile"
    ]


class ChargingStation:
    """A connected 1.6 station (the simulator's Station16) that starts a session and keeps
    charging until told to stop."""

    def __init__(self, cp: Station16) -> None:
        self.cp = cp

    @property
    def spec(self) -> StationSpec:
        return self.cp.spec

    async def start_charging(self) -> int:
        result = await self.cp.timed(call16.StartTransaction(connector_id=1, id_tag=TOKEN, meter_start=1000, timestamp=now_z()))
        assert result.id_tag_info["status"] == "Accepted", result
        self.cp.active_tx = result.transaction_id
        await self.cp.status(1, "Charging")
        return int(result.transaction_id)

    async def stop_charging(self) -> None:
        assert self.cp.active_tx is not None
        await self.cp.timed(call16.StopTransaction(
            meter_stop=4000, timestamp=now_z(), transaction_id=self.cp.active_tx, reason="EVDisconnected", id_tag=TOKEN,
        ))
        self.cp.active_tx = None
        await self.cp.status(1, "Finishing")


@asynccontextmanager
async def connected(csms: Server, station_id: str, password: str) -> AsyncIterator[ChargingStation]:
    spec = StationSpec(station_id=station_id, password=password, protocol="1.6", url=csms.ocpp_url, id_token=TOKEN)
    async with websockets.connect(
        f"{csms.ocpp_url}/{station_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": basic(station_id, password)},
        open_timeout=15,
        ping_interval=None,
    ) as ws:
        cp = Station16(spec, ws, Stats())
        reader = asyncio.create_task(cp.start())
        try:
            await cp.boot()
            await cp.status(1, "Available")
            yield ChargingStation(cp)
        finally:
            reader.cancel()


async def a_site_with_stations(csms: Server, site_id: str, count: int) -> list[tuple[str, str]]:
    await csms.api("POST", "/api/v1/sites", {"id": site_id, "grid_limit_a": 32, "phases": 3}, expect=201)
    await csms.register_token(TOKEN)
    stations = []
    for i in range(count):
        station_id = f"{site_id}-CS{i}"
        stations.append((station_id, await csms.register_station(station_id, site_id=site_id)))
    return stations


async def all_profiled(stations: list[ChargingStation], expected: list[float] | None = None) -> bool:
    limits = [latest_tx_limit(s.spec) for s in stations]
    if any(limit is None for limit in limits):
        return False
    if expected is not None:
        return sorted(limits) == sorted(expected)  # type: ignore[type-var]
    return sum(limits) <= 32  # type: ignore[arg-type]


async def test_three_16_stations_share_a_32_a_site_and_the_others_get_more_when_one_stops(csms: Server, unique_id: str) -> None:
    site_id = f"{unique_id}-SITE"
    (id_a, pw_a), (id_b, pw_b), (id_c, pw_c) = await a_site_with_stations(csms, site_id, 3)
    async with connected(csms, id_a, pw_a) as a, connected(csms, id_b, pw_b) as b, connected(csms, id_c, pw_c) as c:
        everyone = [a, b, c]
        for station in everyone:
            await station.start_charging()

        await eventually(
            lambda: all_profiled(everyone), 20, interval=0.1, what="a profile at every station",
            detail=lambda: [s.spec.received for s in everyone],
        )
        # Once the three are in, the allocation settles on an even split of the 32 A.
        await eventually(
            lambda: all_profiled(everyone, [10.6, 10.7, 10.7]), 20, interval=0.1, what="an even split of 32 A",
            detail=lambda: [latest_tx_limit(s.spec) for s in everyone],
        )
        limits = [latest_tx_limit(s.spec) for s in everyone]
        assert sum(limits) <= 32  # type: ignore[arg-type]
        # Each station also got its fail-safe when it booted (the site's 32 A over 3 stations).
        for station in everyone:
            assert fail_safe_limits(station.spec) and max(fail_safe_limits(station.spec)) <= 32 / 3

        await c.stop_charging()

        await eventually(
            lambda: all_profiled([a, b], [16.0, 16.0]), 20, interval=0.1, what="16 A each for the two left",
            detail=lambda: [latest_tx_limit(s.spec) for s in (a, b)],
        )
        assert latest_tx_limit(a.spec) + latest_tx_limit(b.spec) <= 32  # type: ignore[operator]
    assert f"site={site_id} allocation after" in csms.log()


async def test_an_outside_cap_on_the_site_lowers_the_profiles_of_its_stations(csms: Server, unique_id: str) -> None:
    site_id = f"{unique_id}-SITE"
    (id_a, pw_a), (id_b, pw_b) = await a_site_with_stations(csms, site_id, 2)
    async with connected(csms, id_a, pw_a) as a, connected(csms, id_b, pw_b) as b:
        await a.start_charging()
        await b.start_charging()
        limits = lambda: [latest_tx_limit(s.spec) for s in (a, b)]  # noqa: E731
        await eventually(lambda: all_profiled([a, b], [16.0, 16.0]), 20, interval=0.1, what="16 A each", detail=limits)

        await csms.api("PUT", f"/api/v1/sites/{site_id}/limit", {"limit_a": 12}, expect=200)

        await eventually(lambda: all_profiled([a, b], [6.0, 6.0]), 20, interval=0.1, what="6 A each under the cap", detail=limits)

        await csms.api("PUT", f"/api/v1/sites/{site_id}/limit", {"limit_a": None}, expect=200)

        await eventually(lambda: all_profiled([a, b], [16.0, 16.0]), 20, interval=0.1, what="16 A each again", detail=limits)
