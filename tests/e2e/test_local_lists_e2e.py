"""Local authorization lists end to end (issue 10, ADR 018 §2) against `csms run`, with raw
OCPP-J stations (tests/support/ocpp_raw.py: hand-built frames, no simulator).

- 1.6: the station says `SendLocalListMaxLength` = 1000 when the CSMS asks (GetConfiguration);
  an explicit list of 2,500 entries arrives as exactly three SendLocalList (Full 1000,
  Differential 1000, Differential 500, one version), then GetLocalListVersion confirms it;
  one entry changed gives one Differential with just that entry and a new version.
- 2.0.1: the same with `LocalAuthListCtrlr.ItemsPerMessage` (GetVariables) and a list that
  follows a group of 2,500 tokens; a token changed through /api/v1/tokens reaches it as a
  one-entry Differential.
- A station answering Failed, then VersionMismatch, gets the list again as a Full update.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.support.ocpp_raw import RawStation
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

V16, V201 = "ocpp1.6", "ocpp2.0.1"
PASSWORD = "local-list-e2e-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("local-lists"), {
        "CSMS_LOCAL_LIST_TICK_S": "0.5", "CSMS_LOCAL_LIST_RETRY_S": "1", "CSMS_COMMAND_TIMEOUT": "10",
    })
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.log(), srv.log()[-5000:]


class ListStation:
    """A raw station keeping a local list the way the specification says."""

    def __init__(self, server: Server, sid: str, protocol: str, max_len: int) -> None:
        self.raw = RawStation(server.ocpp_url, sid, PASSWORD, protocol)
        self.version = 0
        self.entries: dict[str, Any] = {}
        self.answers: list[str | None] = []  # SendLocalList answers to give first (None: apply it); then apply
        self.max_len = max_len
        self.raw.handlers.update({"SendLocalList": self.send_local_list, "GetLocalListVersion": self.get_version,
                                  "GetConfiguration": self.get_configuration, "GetVariables": self.get_variables})

    @property
    def is_16(self) -> bool:
        return self.raw.protocol == V16

    async def send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        forced = self.answers.pop(0) if self.answers else None
        if forced is not None:
            return {"status": forced}
        version = p["listVersion"] if self.is_16 else p["versionNumber"]
        if p["updateType"] == "Full":
            self.entries = {}
        for e in p.get("localAuthorizationList", []):
            key = e["idTag"] if self.is_16 else e["idToken"]["idToken"]
            info = e.get("idTagInfo") if self.is_16 else e.get("idTokenInfo")
            if info is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = info
        self.version = version
        return {"status": "Accepted"}

    async def get_version(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"listVersion": self.version} if self.is_16 else {"versionNumber": self.version}

    async def get_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        assert p.get("key") == ["SendLocalListMaxLength"], p
        return {"configurationKey": [{"key": "SendLocalListMaxLength", "readonly": True, "value": str(self.max_len)}]}

    async def get_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        (item,) = p["getVariableData"]
        assert item["component"]["name"] == "LocalAuthListCtrlr" and item["variable"]["name"] == "ItemsPerMessage"
        return {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": str(self.max_len),
                                       "component": {"name": "LocalAuthListCtrlr"},
                                       "variable": {"name": "ItemsPerMessage"}}]}

    def sent(self, action: str = "SendLocalList") -> list[dict[str, Any]]:
        return [p for a, p in self.raw.received if a == action]

    async def start(self) -> None:
        await self.raw.connect()
        if self.is_16:
            answer = await self.raw.call("BootNotification", {"chargePointVendor": "LL", "chargePointModel": "E2E"})
        else:
            answer = await self.raw.call("BootNotification", {"reason": "PowerUp",
                                                              "chargingStation": {"model": "E2E", "vendorName": "LL"}})
        assert answer["status"] == "Accepted", answer


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def _shape(station: ListStation, p: dict[str, Any]) -> tuple[str, int, int]:
    version = p["listVersion"] if station.is_16 else p["versionNumber"]
    return p["updateType"], len(p.get("localAuthorizationList", [])), version


async def _confirmed(server: Server, sid: str, version: int, station: ListStation) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        _, view = await server.api("GET", f"/api/v1/stations/{sid}/local-list", expect=200)
        return view if view["status"] == "in_sync" and view["confirmed_version"] == version else None

    return await eventually(probe, 30, interval=0.2, what=f"{sid} confirms version {version}",
                            detail=lambda: (station.raw.actions_received(), server.log()[-3000:]))


async def test_a_16_station_gets_2500_entries_in_three_messages_then_a_differential(server: Server) -> None:
    sid = _id("LL16")
    await server.register_station(sid, PASSWORD)
    station = ListStation(server, sid, V16, 1000)
    entries = [{"id_token": f"T{i:05d}", "status": "Accepted"} for i in range(2500)]
    status, view = await server.api("PUT", f"/api/v1/stations/{sid}/local-list", {"entries": entries})
    assert status == 201 and view["desired_version"] == 1, view
    await station.start()
    try:
        view = await _confirmed(server, sid, 1, station)
        assert view["max_per_message"] == 1000 and view["entry_count"] == 2500
        assert len(station.sent("GetConfiguration")) == 1
        assert [_shape(station, p) for p in station.sent()] == [("Full", 1000, 1), ("Differential", 1000, 1),
                                                                ("Differential", 500, 1)]
        assert len(station.entries) == 2500 and station.version == 1
        assert station.raw.actions_received()[-1] == "GetLocalListVersion"
        # one entry changed: one Differential with just it, a new version
        entries[42] = {"id_token": "T00042", "status": "Blocked", "expires_at": "2027-06-01T00:00:00Z"}
        status, view = await server.api("PUT", f"/api/v1/stations/{sid}/local-list", {"entries": entries})
        assert status == 200 and view["desired_version"] == 2
        await _confirmed(server, sid, 2, station)
        last = station.sent()[-1]
        assert len(station.sent()) == 4
        assert last == {"listVersion": 2, "updateType": "Differential", "localAuthorizationList": [
            {"idTag": "T00042", "idTagInfo": {"status": "Blocked", "expiryDate": "2027-06-01T00:00:00.000Z"}}]}
        assert station.entries["T00042"]["status"] == "Blocked" and len(station.entries) == 2500
    finally:
        await station.raw.close()


async def _tokens(server: Server, group: str, n: int) -> None:
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            await server.api("POST", "/api/v1/tokens", {"id_token": f"{group}-{i:04d}", "group_id": group}, expect=201)

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_a_201_station_follows_a_group_of_2500_tokens_and_a_token_change(server: Server) -> None:
    sid = _id("LL2")
    group = _id("G")
    await server.register_station(sid, PASSWORD)
    await _tokens(server, group, 2500)
    await _tokens(server, _id("OTHER"), 3)  # not in the list
    station = ListStation(server, sid, V201, 1000)
    status, view = await server.api("PUT", f"/api/v1/stations/{sid}/local-list", {"sync": [group]})
    assert status == 201 and view["entry_count"] == 2500, view
    await station.start()
    try:
        await _confirmed(server, sid, 1, station)
        assert len(station.sent("GetVariables")) == 1
        assert [_shape(station, p) for p in station.sent()] == [("Full", 1000, 1), ("Differential", 1000, 1),
                                                                ("Differential", 500, 1)]
        assert set(station.entries) == {f"{group}-{i:04d}" for i in range(2500)}
        # a token of the group blocked through the tokens API
        token = f"{group}-0007"
        await server.api("PUT", f"/api/v1/tokens/{token}", {"status": "Blocked", "group_id": group}, expect=200)
        await _confirmed(server, sid, 2, station)
        assert len(station.sent()) == 4
        assert station.sent()[-1] == {"versionNumber": 2, "updateType": "Differential", "localAuthorizationList": [
            {"idToken": {"idToken": token, "type": "Central"},
             "idTokenInfo": {"status": "Blocked", "groupIdToken": {"idToken": group, "type": "Central"}}}]}
        assert station.entries[token]["status"] == "Blocked"
    finally:
        await station.raw.close()


@pytest.mark.parametrize("protocol", [V16, V201])
async def test_failed_and_version_mismatch_are_retried_as_full(server: Server, protocol: str) -> None:
    sid = _id("LLF")
    await server.register_station(sid, PASSWORD)
    station = ListStation(server, sid, protocol, 2)
    station.answers = ["Failed", None, "VersionMismatch"]  # Full fails; Full ok then Differential mismatches
    entries = [{"id_token": f"F{i}"} for i in range(3)]
    await server.api("PUT", f"/api/v1/stations/{sid}/local-list", {"entries": entries}, expect=201)
    await station.start()
    try:
        await _confirmed(server, sid, 1, station)
        shapes = [_shape(station, p) for p in station.sent()]
        assert shapes == [("Full", 2, 1), ("Full", 2, 1), ("Differential", 1, 1), ("Full", 2, 1), ("Differential", 1, 1)]
        assert set(station.entries) == {"F0", "F1", "F2"}
        _, view = await server.api("GET", f"/api/v1/stations/{sid}/local-list", expect=200)
        assert view["attempts"] == 0 and view["last_error"] is None
    finally:
        await station.raw.close()
