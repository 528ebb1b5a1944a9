"""The charging profile routes (services/api/routes_charging_profiles.py) on a real API, the
charging profiles fold on the same memory bus, and a fake gateway answering commands: the
CSMS's record with filters, a 2.0.1 station's own list assembled from report parts, a 1.6
station's record with its note, the composite schedule normalized from both versions, and
bad input answered 400 (every bad parameter named), never a 500. Every 200 is checked
against the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import jsonschema
import pytest

from services.api.openapi import openapi_document
from services.api.wiring import build_api
from services.common import events as ev
from services.common import kinds, topics
from services.common.bus.memory import MemoryBus
from services.common.codec import Command, encode_event, event_headers
from services.common.config import Settings
from services.common.processor import Processor
from services.common.runtime import Runtime, bootstrap
from services.common.store.sqlite import SqliteStore
from services.sessions.documents import station_status_to_doc
from services.sessions.domain.station_status import StationStatus
from services.stations.drivers import GROUP, DriversStage
from services.stations.drivers import charging_profiles
from services.stations.drivers.charging_profiles import ChargingProfilesFold
from tests.unit.api.builders import API_KEY, Api, FakeGateway

from .test_domain import req16, req201

UTC = timezone.utc
_DOC = openapi_document()
PATH = "/api/v1/stations/{}/charging-profiles"


def valid(value: Any, schema: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(api_key=API_KEY, host="127.0.0.1", api_port=0, command_timeout_s=1.5, events_partitions=4,
                        commands_partitions=8)
    rt = bootstrap(settings, bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/a.db"), pepper=b"p")
    await rt.start()
    await rt.store.migrate()
    service = build_api(rt)
    await service.start()
    stage = Processor("test-drivers", rt.bus, topics.EVENTS, GROUP, DriversStage([charging_profiles.build(rt)]).handle_batch,
                      max_records=100)
    await stage.start()
    http = aiohttp.ClientSession()
    try:
        yield Api(rt=rt, service=service, http=http)
    finally:
        await http.close()
        await stage.stop()
        await service.stop()
        await rt.close()


async def a_station(api: Api, sid: str, version: str) -> None:
    await api.a_station(sid)
    await api.connected(sid, "gateway-3")
    status = StationStatus(sid, connected=True, epoch=1, gateway_id="gateway-3", ocpp_version=version)
    await api.rt.store.put_doc(kinds.STATION_STATUS, sid, station_status_to_doc(status))


async def publish(rt: Runtime, station: str, body: ev.Body) -> None:
    env = ev.Envelope(str(uuid.uuid4()), station, datetime.now(UTC), body, gateway_id="gateway-3", ocpp_version="2.0.1")
    await rt.bus.publish(topics.EVENTS, station, encode_event(env), event_headers(env))


def accepted(command_type: str, request: dict[str, Any], cid: str | None = None) -> ev.Envelope:
    return ev.Envelope(str(uuid.uuid4()), "ST1", datetime.now(UTC), ev.CommandResult(
        cid or str(uuid.uuid4()), command_type, "Accepted", '{"status": "Accepted"}', ocpp_action="SetChargingProfile",
        request_json=json.dumps(request)))


def gateway(api: Api, answer: Callable[[Command], ev.CommandResult | None]) -> FakeGateway:
    return FakeGateway(api.rt, "gateway-3", answer)


async def test_the_csms_record_with_filters_and_expiry(api: Api) -> None:
    await a_station(api, "ST1", "2.0.1")
    status, body = await api.get(PATH.format("ST1"))
    assert status == 200 and body == {"items": [], "source": "csms", "request_id": None, "note": None}
    fold = ChargingProfilesFold(api.rt.store, api.rt.clock)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = req201(9, evse=3)
    expired["chargingProfile"]["validTo"] = past
    await fold.apply([
        accepted("SetChargingProfile", req201(1, evse=1), cid="op"),
        accepted("SetChargingLimit", req201(2, evse=2, purpose="TxProfile", tx="T-2"), cid="sc"),
        accepted("SetChargingProfile", req201(3, evse=0, purpose="ChargingStationMaxProfile")),
    ])
    # written after: the fold drops it at its next write, the API on read
    await fold.apply([accepted("SetChargingProfile", expired)])
    status, body = await api.get(PATH.format("ST1"))
    assert status == 200, body
    valid(body, "StationChargingProfileList")
    assert [(p["evse_id"], p["id"], p["source"]) for p in body["items"]] == [
        (0, 3, "operator"), (1, 1, "operator"), (2, 2, "smart_charging")]
    tx = body["items"][2]
    assert tx["transaction_id"] == "T-2" and tx["command_id"] == "sc" and tx["installed_at"].endswith("Z")
    assert tx["schedules"][0]["periods"] == [{"start_period": 0, "limit": 11000.0, "number_phases": None, "phase_to_use": 2}]
    _, by_evse = await api.get(PATH.format("ST1") + "?evse_id=2&source=csms")
    assert [p["id"] for p in by_evse["items"]] == [2]
    _, by_purpose = await api.get(PATH.format("ST1") + "?purpose=ChargePointMaxProfile")  # the 1.6 name of the same
    assert [p["id"] for p in by_purpose["items"]] == [3]
    _, limited = await api.get(PATH.format("ST1") + "?limit=1")
    assert len(limited["items"]) == 1


async def test_bad_queries_are_400s_naming_every_field_and_unknown_stations_404(api: Api) -> None:
    await a_station(api, "ST1", "1.6")
    status, body = await api.get(PATH.format("ST1") + "?source=both&evse_id=-1&purpose=Max&limit=0")
    assert status == 400 and set(body["details"]) == {"source", "evse_id", "purpose", "limit"}, body
    status, body = await api.get("/api/v1/stations/ST1/composite-schedule?duration=0&evse_id=x&charging_rate_unit=kW")
    assert status == 400 and set(body["details"]) == {"duration", "evse_id", "charging_rate_unit"}, body
    status, body = await api.get("/api/v1/stations/ST1/composite-schedule")
    assert status == 400 and "duration" in body["details"]
    status, body = await api.get("/api/v1/stations/ST1/composite-schedule?duration=99999999999999999999999")
    assert status == 400 and "duration" in body["details"]
    assert (await api.get(PATH.format("NOPE")))[0] == 404
    assert (await api.get("/api/v1/stations/NOPE/composite-schedule?duration=60"))[0] == 404


async def test_a_16_station_cannot_report_so_its_view_is_the_csms_record(api: Api) -> None:
    await a_station(api, "ST1", "1.6")
    gw = await gateway(api, lambda cmd: None).start()
    try:
        await ChargingProfilesFold(api.rt.store, api.rt.clock).apply([accepted("SetChargingProfile", req16(5))])
        status, body = await api.get(PATH.format("ST1") + "?source=station")
        assert status == 200, body
        valid(body, "StationChargingProfileList")
        assert body["source"] == "csms" and "1.6" in body["note"] and [p["id"] for p in body["items"]] == [5]
        assert gw.received == []  # nothing was asked
    finally:
        await gw.stop()


def _report_part(rid: int, tbc: bool, evse: int, *pids: int) -> ev.ChargingProfilesReport:
    return ev.ChargingProfilesReport(rid, "EMS", evse, tbc, tuple(
        ev.ChargingProfile(pid, 1, "TxDefaultProfile", "Absolute",
                           schedules=(ev.ChargingSchedule("A", id=1, periods=(ev.SchedulePeriod(0, 20.0, 3),)),))
        for pid in pids))


async def test_a_201_station_reports_its_profiles_in_parts(api: Api) -> None:
    await a_station(api, "ST1", "2.0.1")
    tasks: list[asyncio.Task[None]] = []

    def answer(cmd: Command) -> ev.CommandResult:
        params = json.loads(cmd.params_json)
        rid = params["request_id"]
        assert params["charging_profile"] == {"charging_profile_purpose": "TxDefaultProfile"} and params["evse_id"] == 1

        async def report() -> None:
            await publish(api.rt, "ST1", _report_part(rid, True, 1, 11, 12))
            await asyncio.sleep(0.2)
            await publish(api.rt, "ST1", _report_part(rid, False, 1, 13))

        tasks.append(asyncio.create_task(report()))
        return ev.CommandResult(cmd.command_id, cmd.command_type, "Accepted", '{"status": "Accepted"}',
                                ocpp_action="GetChargingProfiles", request_json=json.dumps({"requestId": rid}))

    gw = await gateway(api, answer).start()
    try:
        status, body = await api.get(PATH.format("ST1") + "?source=station&evse_id=1&purpose=TxDefaultProfile")
        assert status == 200, body
        valid(body, "StationChargingProfileList")
        assert body["source"] == "station" and body["note"] is None and isinstance(body["request_id"], int)
        assert [(p["id"], p["source"], p["installed_at"]) for p in body["items"]] == [
            (11, "EMS", None), (12, "EMS", None), (13, "EMS", None)]
        assert body["items"][0]["schedules"][0]["periods"][0] == {
            "start_period": 0, "limit": 20.0, "number_phases": 3, "phase_to_use": None}
    finally:
        await asyncio.gather(*tasks)
        await gw.stop()


async def test_no_profiles_refusals_and_a_report_that_never_comes(api: Api) -> None:
    await a_station(api, "ST1", "2.0.1")
    answers = iter(["NoProfiles", "Rejected", "Accepted"])

    def answer(cmd: Command) -> ev.CommandResult:
        status = next(answers)
        return ev.CommandResult(cmd.command_id, cmd.command_type, status, json.dumps({"status": status}),
                                ocpp_action="GetChargingProfiles")

    gw = await gateway(api, answer).start()
    try:
        status, body = await api.get(PATH.format("ST1") + "?source=station")
        assert status == 200 and body["items"] == [] and body["source"] == "station", body
        status, body = await api.get(PATH.format("ST1") + "?source=station")
        assert status == 409 and body["status"] == "Rejected", body
        status, body = await api.get(PATH.format("ST1") + "?source=station")  # Accepted, then nothing
        assert status == 504 and body["status"] == "Timeout" and body["parts_received"] == 0, body
    finally:
        await gw.stop()
    await api.rt.store.release_station("ST1", "gateway-3", 1)
    status, body = await api.get(PATH.format("ST1") + "?source=station")
    assert status == 409 and body["status"] == "StationOffline", body


async def test_the_composite_schedule_in_both_versions_is_one_shape(api: Api) -> None:
    await a_station(api, "ST1", "1.6")
    answers = {
        "1.6": {"status": "Accepted", "connector_id": 1, "schedule_start": "2026-12-01T10:00:00.000Z",
                "charging_schedule": {"duration": 600, "charging_rate_unit": "A", "min_charging_rate": 6.0,
                                      "charging_schedule_period": [{"start_period": 0, "limit": 16.0, "number_phases": 3},
                                                                   {"start_period": 300, "limit": 8.0}]}},
        "2.0.1": {"status": "Accepted", "schedule": {
            "evse_id": 1, "duration": 600, "schedule_start": "2026-12-01T10:00:00.000Z", "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 16.0, "number_phases": 3},
                                         {"start_period": 300, "limit": 8.0}, {"junk": True}]}},
    }
    chosen = ["1.6"]
    sent: list[dict[str, Any]] = []

    def answer(cmd: Command) -> ev.CommandResult:
        sent.append(json.loads(cmd.params_json))
        response = answers[chosen[0]]
        return ev.CommandResult(cmd.command_id, cmd.command_type, str(response["status"]), json.dumps(response),
                                ocpp_action="GetCompositeSchedule")

    gw = await gateway(api, answer).start()
    try:
        shapes = []
        for version in ("1.6", "2.0.1"):
            chosen[0] = version
            status, body = await api.get("/api/v1/stations/ST1/composite-schedule?duration=600&evse_id=1&charging_rate_unit=A")
            assert status == 200, body
            valid(body, "CompositeScheduleAnswer")
            assert body["status"] == "Accepted" and body["evse_id"] == 1
            shapes.append(body["schedule"])
        assert shapes[0]["periods"] == shapes[1]["periods"] == [
            {"start_period": 0, "limit": 16.0, "number_phases": 3, "phase_to_use": None},
            {"start_period": 300, "limit": 8.0, "number_phases": None, "phase_to_use": None}]
        assert shapes[0]["schedule_start"] == shapes[1]["schedule_start"] == "2026-12-01T10:00:00.000Z"
        assert shapes[0]["min_charging_rate"] == 6.0 and shapes[1]["min_charging_rate"] is None
        assert sent[0] == {"duration": 600, "evse_id": 1, "charging_rate_unit": "A"}
        answers["1.6"] = {"status": "Rejected"}
        chosen[0] = "1.6"
        status, body = await api.get("/api/v1/stations/ST1/composite-schedule?duration=60")
        assert status == 200 and body["status"] == "Rejected" and body["schedule"] is None and body["evse_id"] == 0
        valid(body, "CompositeScheduleAnswer")
    finally:
        await gw.stop()
