"""Commands from the REST API reach stations of both versions, translated, and the answers come back."""

from __future__ import annotations

import asyncio
from typing import Any

from services.simulator.stats import Stats
from services.simulator.station import StationSpec, run_station
from tests.e2e.conftest import Server
from tests.support.waiting import eventually


async def connected_station(csms: Server, station_id: str, protocol: str) -> tuple[StationSpec, asyncio.Task[bool]]:
    password = await csms.register_station(station_id)
    await csms.register_token("E2ETOKEN01")
    spec = StationSpec(station_id=station_id, password=password, protocol=protocol, url=csms.ocpp_url,
                       id_token="E2ETOKEN01", sessions=0, hold_s=30)
    task = asyncio.create_task(run_station(spec, Stats()))

    async def is_connected() -> bool:
        _, body = await csms.api("GET", f"/api/v1/stations/{station_id}")
        return bool(body.get("connected"))

    await eventually(is_connected, 15, interval=0.1, what=f"{station_id} to show as connected")
    return spec, task


async def command(csms: Server, station_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    return await csms.api("POST", f"/api/v1/stations/{station_id}/commands", body)


async def test_commands_reach_a_16_station_in_its_own_vocabulary(csms: Server, unique_id: str) -> None:
    spec, task = await connected_station(csms, unique_id, "1.6")
    try:
        status, body = await command(csms, unique_id, {"type": "RemoteStart", "id_token": "E2ETOKEN01", "connector_id": 1})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "Reset", "reset_type": "Soft"})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "GetConfiguration", "keys": ["HeartbeatInterval"]})
        assert status == 200, body
        assert body["response"]["configuration_key"][0]["key"] == "HeartbeatInterval"
        status, body = await command(csms, unique_id, {"type": "ChangeConfiguration", "key": "HeartbeatInterval", "value": "60"})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "UnlockConnector", "connector_id": 1})
        assert status == 200 and body["status"] == "Unlocked", body
        status, body = await command(csms, unique_id, {"type": "TriggerMessage", "requested_message": "Heartbeat"})
        assert status == 200 and body["status"] == "Accepted", body
        received = [a for a, _ in spec.received]
        assert received[:6] == ["RemoteStartTransaction", "Reset", "GetConfiguration", "ChangeConfiguration", "UnlockConnector", "TriggerMessage"]
        assert spec.received[1][1] == {"type": "Soft"}
    finally:
        task.cancel()


async def test_commands_reach_a_201_station_translated_to_201(csms: Server, unique_id: str) -> None:
    spec, task = await connected_station(csms, unique_id, "2.0.1")
    try:
        status, body = await command(csms, unique_id, {"type": "RemoteStart", "id_token": "E2ETOKEN01", "evse_id": 1})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "Reset", "reset_type": "Hard"})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "GetVariables", "variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}]})
        assert status == 200 and body["status"] == "Accepted", body
        status, body = await command(csms, unique_id, {"type": "ChangeAvailability", "availability": "Inoperative", "evse_id": 1})
        assert status == 200 and body["status"] == "Accepted", body
        actions = [a for a, _ in spec.received]
        assert actions[:4] == ["RequestStartTransaction", "Reset", "GetVariables", "ChangeAvailability"]
        assert spec.received[1][1]["type"] == "Immediate"
        assert spec.received[3][1]["operational_status"] == "Inoperative"
    finally:
        task.cancel()


async def test_a_command_for_a_disconnected_station_says_station_offline(csms: Server, unique_id: str) -> None:
    await csms.register_station(unique_id)
    status, body = await command(csms, unique_id, {"type": "Reset", "reset_type": "Soft"})
    assert 400 <= status < 600
    assert body["status"] == "StationOffline"


async def test_a_command_with_missing_parameters_is_a_400(csms: Server, unique_id: str) -> None:
    await csms.register_station(unique_id)
    status, body = await command(csms, unique_id, {"type": "Reset"})
    assert status == 400, body
