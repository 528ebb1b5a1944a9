"""The display messages and customer information routes (ADR 018) on a real ApiService,
the memory bus and SQLite, with the two folds of the `stations-drivers` stage running and
a fake gateway answering as a 2.0.1 station (the OCPP request it reports back is built by
the real command vocabulary, and a station's follow-up messages are published as the
gateway publishes them). Every answer is checked against the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
from services.common.ocpp.commands import to_ocpp
from services.common.ocpp_version import OcppVersion
from services.common.processor import Processor
from services.common.runtime import bootstrap
from services.common.store.sqlite import SqliteStore
from services.sessions.documents import station_status_to_doc
from services.sessions.domain import StationStatus
from services.stations.drivers import DriversStage, customer_information, display_messages
from tests.unit.api.builders import API_KEY, Api, FakeGateway

UTC = timezone.utc
_DOC = openapi_document()
Json = dict[str, Any]
# action -> (request payload -> (answer payload, follow-up events the station sends))
Behaviour = Callable[[Json], tuple[Json, list[ev.Body]]]


def _valid(value: Any, schema: str) -> None:
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
                                    ).validate(value)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(api_key=API_KEY, host="127.0.0.1", api_port=0, command_timeout_s=2.0,
                        events_partitions=4, commands_partitions=8)
    rt = bootstrap(settings, bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/a.db"), pepper=b"p")
    await rt.start()
    await rt.store.migrate()
    stage = DriversStage([display_messages.build(rt), customer_information.build(rt)])
    drivers = Processor("test-drivers", rt.bus, topics.EVENTS, "test-drivers", stage.handle_batch)
    await drivers.start()
    service = build_api(rt)
    await service.start()
    http = aiohttp.ClientSession()
    try:
        yield Api(rt=rt, service=service, http=http)
    finally:
        await http.close()
        await service.stop()
        await drivers.stop()
        await rt.close()


@dataclass
class Station201:
    """What a 2.0.1 station answers each action (default Accepted), and what it sends after."""

    api: Api
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    sent: list[tuple[str, Json]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def answer(self, cmd: Command) -> ev.CommandResult:
        action, payload = to_ocpp(cmd.command_type, json.loads(cmd.params_json), "2.0.1")
        self.sent.append((action, payload))
        behaviour = self.behaviours.get(action)
        response, follow = behaviour(payload) if behaviour else ({"status": "Accepted"}, [])
        if follow:
            self.tasks.append(asyncio.ensure_future(self._send(cmd.station_id, follow)))
        return ev.CommandResult(cmd.command_id, cmd.command_type, str(response.get("status", "Accepted")),
                                json.dumps(response), ocpp_action=action, request_json=json.dumps(payload))

    async def _send(self, station_id: str, bodies: list[ev.Body]) -> None:
        await asyncio.sleep(0.05)  # after the answer, as a station sends them
        for body in bodies:
            env = ev.Envelope(str(uuid.uuid4()), station_id, datetime.now(UTC), body, gateway_id="gateway-3",
                              ocpp_version="2.0.1")
            await self.api.rt.bus.publish(topics.EVENTS, station_id, encode_event(env), event_headers(env))


async def _station(api: Api, sid: str = "CP-1", version: OcppVersion = OcppVersion.V201) -> None:
    await api.a_station(sid)
    await api.connected(sid, "gateway-3")
    status = StationStatus(sid, connected=True, epoch=1, gateway_id="gateway-3", ocpp_version=version)
    await api.rt.store.put_doc(kinds.STATION_STATUS, sid, station_status_to_doc(status))


async def _gateway(api: Api, station: Station201) -> FakeGateway:
    return await FakeGateway(api.rt, "gateway-3", station.answer).start()


def _status(status: str) -> Behaviour:
    return lambda payload: ({"status": status}, [])


MSG = {"priority": "InFront", "message": {"format": "UTF8", "content": "Welcome", "language": "en"}}


# -- display messages ------------------------------------------------------------------------

async def test_a_message_is_set_listed_and_cleared_with_generated_ids(api: Api) -> None:
    await _station(api)
    station = Station201(api)
    gw = await _gateway(api, station)
    try:
        status, first = await api.post("/api/v1/stations/CP-1/display-messages",
                                       {**MSG, "state": "Idle", "start_at": "2026-12-01T10:00:00Z",
                                        "end_at": "2099-01-01T00:00:00Z"})
        assert status == 200, first
        _valid(first, "DisplayMessageSet")
        assert first["status"] == "Accepted" and first["message"]["id"] == 1
        assert first["message"]["set_at"] is not None and first["message"]["command_id"] == first["command_id"]
        assert station.sent[0] == ("SetDisplayMessage", {"message": {
            "id": 1, "priority": "InFront", "state": "Idle", "startDateTime": "2026-12-01T10:00:00.000Z",
            "endDateTime": "2099-01-01T00:00:00.000Z",
            "message": {"format": "UTF8", "content": "Welcome", "language": "en"}}})
        status, second = await api.post("/api/v1/stations/CP-1/display-messages",
                                        {"priority": "NormalCycle", "message": {"format": "ASCII", "content": "2"}})
        assert status == 200 and second["message"]["id"] == 2, second
        status, chosen = await api.post("/api/v1/stations/CP-1/display-messages", {**MSG, "id": 40})
        assert status == 200 and chosen["message"]["id"] == 40

        status, listed = await api.get("/api/v1/stations/CP-1/display-messages")
        assert status == 200, listed
        _valid(listed, "DisplayMessageList")
        assert [m["id"] for m in listed["items"]] == [1, 2, 40] and listed["source"] == "csms"
        assert listed["items"][0]["message"] == {"format": "UTF8", "content": "Welcome", "language": "en"}
        _, only = await api.get("/api/v1/stations/CP-1/display-messages?priority=InFront&limit=1")
        assert [m["id"] for m in only["items"]] == [1]

        status, cleared = await api.call("DELETE", "/api/v1/stations/CP-1/display-messages/1")
        assert status == 200 and cleared["status"] == "Accepted", cleared
        _valid(cleared, "DisplayMessageCleared")
        assert station.sent[-1] == ("ClearDisplayMessage", {"id": 1})
        _, listed = await api.get("/api/v1/stations/CP-1/display-messages")
        assert [m["id"] for m in listed["items"]] == [2, 40]
        # the generated id never reuses one the record holds
        _, third = await api.post("/api/v1/stations/CP-1/display-messages", MSG)
        assert third["message"]["id"] == 41
    finally:
        await gw.stop()


async def test_a_refused_message_is_answered_but_not_recorded(api: Api) -> None:
    await _station(api)
    station = Station201(api, {"SetDisplayMessage": _status("NotSupportedMessageFormat")})
    gw = await _gateway(api, station)
    try:
        status, body = await api.post("/api/v1/stations/CP-1/display-messages",
                                      {"priority": "AlwaysFront", "message": {"format": "HTML", "content": "<b>x</b>"}})
        assert status == 200 and body["status"] == "NotSupportedMessageFormat", body
        _valid(body, "DisplayMessageSet")
        assert body["message"]["set_at"] is None
        _, listed = await api.get("/api/v1/stations/CP-1/display-messages")
        assert listed["items"] == []
        assert await api.rt.store.get_doc(kinds.DISPLAY_MESSAGES, "CP-1") is None
    finally:
        await gw.stop()


async def test_clearing_a_message_the_station_does_not_have_is_404_with_its_status(api: Api) -> None:
    await _station(api)
    gw = await _gateway(api, Station201(api, {"ClearDisplayMessage": _status("Unknown")}))
    try:
        status, body = await api.call("DELETE", "/api/v1/stations/CP-1/display-messages/9")
        assert status == 404 and body["status"] == "Unknown" and body["command_id"], body
        status, body = await api.call("DELETE", "/api/v1/stations/CP-1/display-messages/nine")
        assert status == 404, body
    finally:
        await gw.stop()


def _report(request_id: int, tbc: bool, *messages: ev.DisplayMessage) -> ev.DisplayMessagesReport:
    return ev.DisplayMessagesReport(request_id, tbc, messages)


async def test_the_stations_own_messages_are_asked_and_assembled_from_parts(api: Api) -> None:
    await _station(api)

    def get(payload: Json) -> tuple[Json, list[ev.Body]]:
        rid = payload["requestId"]
        return {"status": "Accepted"}, [
            _report(rid, True, ev.DisplayMessage(1, "InFront", "UTF8", "one", state="Charging")),
            _report(rid, False, ev.DisplayMessage(7, "NormalCycle", "URI", "https://x", language="de")),
        ]

    station = Station201(api, {"GetDisplayMessages": get})
    gw = await _gateway(api, station)
    try:
        status, body = await api.get("/api/v1/stations/CP-1/display-messages?source=station&priority=InFront&id=1,7")
        assert status == 200, body
        _valid(body, "DisplayMessageList")
        action, payload = station.sent[-1]
        assert action == "GetDisplayMessages" and payload["id"] == [1, 7] and payload["priority"] == "InFront"
        assert body["request_id"] == payload["requestId"] and body["status"] == "Accepted" and body["complete"]
        assert [(m["id"], m["state"], m["message"]["language"], m["set_at"]) for m in body["items"]] == [
            (1, "Charging", None, None), (7, None, "de", None)]
        station.behaviours["GetDisplayMessages"] = _status("Unknown")
        status, body = await api.get("/api/v1/stations/CP-1/display-messages?source=station")
        assert status == 200 and body["items"] == [] and body["status"] == "Unknown" and body["complete"], body
    finally:
        await gw.stop()


async def test_bad_display_message_input_is_400_naming_every_field_and_sends_nothing(api: Api) -> None:
    await _station(api)
    station = Station201(api)
    gw = await _gateway(api, station)
    try:
        status, body = await api.post("/api/v1/stations/CP-1/display-messages", {
            "priority": "Top", "message": {"format": "PDF", "content": "x" * 513, "extra": 1},
            "start_at": "2026-12-01T10:00:00Z", "end_at": "2026-12-01T09:00:00Z", "id": -1, "colour": "red"})
        assert status == 400, body
        assert set(body["details"]) >= {"priority", "message.format", "message.content", "message.extra", "end_at",
                                        "id", "colour"}, body
        status, body = await api.post("/api/v1/stations/CP-1/display-messages", {"priority": "InFront"})
        assert status == 400 and "message" in body["details"], body
        for query in ("source=elsewhere", "priority=Top", "state=Asleep", "id=a,b", "limit=0"):
            status, body = await api.get(f"/api/v1/stations/CP-1/display-messages?{query}")
            assert status == 400, (query, body)
        status, body = await api.post("/api/v1/stations/NOPE/display-messages", MSG)
        assert status == 404, body
        assert station.sent == []
    finally:
        await gw.stop()


async def test_an_offline_station_is_409(api: Api) -> None:
    await api.a_station("CP-2")
    status, body = await api.post("/api/v1/stations/CP-2/display-messages", MSG)
    assert status == 409 and body["status"] == "StationOffline", body
    status, body = await api.post("/api/v1/stations/CP-2/customer-information",
                                  {"customer_identifier": "c", "report": True})
    assert status == 409 and body["status"] == "StationOffline", body


async def test_an_ocpp_16_station_has_neither_feature(api: Api) -> None:
    await _station(api, "CP-16", OcppVersion.V16)
    station = Station201(api)
    gw = await _gateway(api, station)
    try:
        for method, path, payload in (
            ("POST", "/api/v1/stations/CP-16/display-messages", MSG),
            ("GET", "/api/v1/stations/CP-16/display-messages?source=station", None),
            ("DELETE", "/api/v1/stations/CP-16/display-messages/1", None),
            ("POST", "/api/v1/stations/CP-16/customer-information", {"id_token": "T", "report": True}),
        ):
            status, body = await api.call(method, path, payload)
            assert status == 400 and body["status"] == "NotSupported", (path, body)
        assert station.sent == []
    finally:
        await gw.stop()
    # a station never seen connected: its gateway says its version lacks the command
    await api.a_station("CP-X")
    await api.connected("CP-X", "gateway-3")

    def lacking(cmd: Command) -> ev.CommandResult:
        return ev.CommandResult(cmd.command_id, cmd.command_type, "NotSupported", "{}",
                                error_description=f"{cmd.command_type} is not available for OCPP 1.6")

    gw = await FakeGateway(api.rt, "gateway-3", lacking).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-X/display-messages", MSG)
        assert status == 400 and body["status"] == "NotSupported", body
    finally:
        await gw.stop()


# -- customer information --------------------------------------------------------------------

async def test_customer_information_is_requested_and_its_parts_assembled(api: Api) -> None:
    await _station(api)

    def info(payload: Json) -> tuple[Json, list[ev.Body]]:
        rid = payload["requestId"]
        return {"status": "Accepted"}, [
            ev.CustomerInformationPart(rid, 2, "[3]", False, datetime(2026, 12, 1, 10, 0, 2, tzinfo=UTC)),
            ev.CustomerInformationPart(rid, 0, "[1]", True, datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
            ev.CustomerInformationPart(rid, 0, "[1]", True, datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
            ev.CustomerInformationPart(rid, 1, "[2]", True, datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)),
        ]

    station = Station201(api, {"CustomerInformation": info})
    gw = await _gateway(api, station)
    try:
        status, accepted = await api.post("/api/v1/stations/CP-1/customer-information",
                                          {"customer_identifier": "cust-42", "report": True})
        assert status == 202, accepted
        _valid(accepted, "CustomerInformationAccepted")
        action, payload = station.sent[-1]
        assert action == "CustomerInformation" and payload == {
            "requestId": accepted["request_id"], "report": True, "clear": False, "customerIdentifier": "cust-42"}
        path = f"/api/v1/stations/CP-1/customer-information/{accepted['request_id']}"
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            status, got = await api.get(path)
            assert status == 200, got  # recorded before POST answered
            if got["status"] == "complete" or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        _valid(got, "CustomerInformation")
        assert got["status"] == "complete" and got["data"] == "[1][2][3]" and got["parts"] == 3, got
        assert got["generated_at"] == "2026-12-01T10:00:00.000Z" and got["identifier"] == "cust-42"
        assert got["station_status"] == "Accepted" and got["command_id"] == accepted["command_id"]

        station.behaviours["CustomerInformation"] = _status("Rejected")
        status, refused = await api.post("/api/v1/stations/CP-1/customer-information", {
            "customer_certificate": {"hash_algorithm": "SHA256", "issuer_name_hash": "aa", "issuer_key_hash": "bb",
                                     "serial_number": "0c"}, "clear": True})
        assert status == 202 and refused["status"] == "Rejected", refused
        _, sent = station.sent[-1]
        assert sent["customerCertificate"] == {"hashAlgorithm": "SHA256", "issuerNameHash": "aa",
                                               "issuerKeyHash": "bb", "serialNumber": "0c"}
        status, listed = await api.get("/api/v1/stations/CP-1/customer-information")
        assert status == 200, listed
        _valid(listed, "CustomerInformationList")
        by_id = {i["request_id"]: i for i in listed["items"]}
        assert by_id[refused["request_id"]]["status"] == "rejected"
        assert by_id[refused["request_id"]]["identifier_type"] == "customer_certificate"
        assert by_id[accepted["request_id"]]["data_length"] == 9 and "data" not in by_id[accepted["request_id"]]
    finally:
        await gw.stop()


async def test_bad_customer_information_input_is_400_and_unknown_requests_404(api: Api) -> None:
    await _station(api)
    station = Station201(api)
    gw = await _gateway(api, station)
    try:
        for body, field_name in (
            ({"report": True}, "id_token"),
            ({"id_token": "T", "customer_identifier": "c", "report": True}, "id_token"),
            ({"id_token": "T"}, "report"),
            ({"id_token": "T", "report": False, "clear": False}, "report"),
            ({"id_token": "T", "report": "yes"}, "report"),
            ({"customer_identifier": "c", "id_token_type": "ISO14443", "report": True}, "id_token_type"),
            ({"id_token": "T" * 37, "report": True}, "id_token"),
            ({"customer_certificate": {"hash_algorithm": "MD5"}, "report": True}, "customer_certificate.hash_algorithm"),
            ({"customer_identifier": "c", "report": True, "other": 1}, "other"),
        ):
            status, answer = await api.post("/api/v1/stations/CP-1/customer-information", body)
            assert status == 400 and field_name in answer["details"], (body, answer)
        assert station.sent == []
        for path in ("/api/v1/stations/CP-1/customer-information/123", "/api/v1/stations/CP-1/customer-information/x",
                     "/api/v1/stations/NOPE/customer-information"):
            status, answer = await api.get(path)
            assert status == 404, (path, answer)
    finally:
        await gw.stop()
