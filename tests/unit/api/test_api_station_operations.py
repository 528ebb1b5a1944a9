"""Station operations in the REST API (issue 9, ADR 016), on the in-memory stack: the
merged station state, its history and commands, firmware updates, log requests and
downloads, and uptime. Every answer is checked against its OpenAPI schema."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

import jsonschema

from services.api.context import CTX
from services.api.documents import log_upload_from_doc, log_upload_to_doc
from services.api.openapi import openapi_document
from services.common import kinds
from services.common.codec import Command
from services.common.events import CommandResult, Envelope, FirmwareStatus
from services.common.ocpp.commands import to_ocpp
from services.common.ocpp_version import OcppVersion
from services.common.store.port import Station, StationEventRow
from services.common.timeutil import parse_ocpp, to_ocpp as ts
from services.sessions.documents import station_status_to_doc
from services.sessions.domain import Boot, ConnectorState, Disconnect, StationStatus
from services.stations.codec import event_json, history_row, outage_row
from services.stations.documents import command_to_doc, station_ops_to_doc
from services.stations.domain.commands import CommandRecord
from services.stations.domain.ops import (
    ChargingLimit,
    Connectivity,
    FirmwareState,
    LogState,
    MeterReading,
    OpenOutage,
    Outage,
    StationOps,
)
from tests.support.clock import FixedClock

from .builders import Api, FakeGateway

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
_DOC = openapi_document()


def _valid(value: Any, schema: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


def _clock(api: Api, now: datetime = NOW) -> FixedClock:
    clock = FixedClock(now)
    assert api.service.app is not None
    api.service.app[CTX].clock = clock
    return clock


def event_json_of(row: StationEventRow) -> dict[str, Any]:
    return dict(row.body)


def _row(station: str, at: datetime, event_id: str, type_: str, data: dict[str, Any], **meta: Any) -> StationEventRow:
    return StationEventRow(station, at, event_id, type_, {"action": meta.get("action", ""), "gateway_id": "gateway-3",
                                                          "station_time": meta.get("station_time"), "data": data})


def answering_as(version: str, status: str = "Accepted", seen: list[Command] | None = None,
                 response: dict[str, Any] | None = None) -> Callable[[Command], CommandResult]:
    """A gateway that builds the frame for `version` (the request it reports back) and answers `status`."""

    def answer(cmd: Command) -> CommandResult:
        if seen is not None:
            seen.append(cmd)
        action, payload = to_ocpp(cmd.command_type, json.loads(cmd.params_json), version)
        return CommandResult(cmd.command_id, cmd.command_type, status,
                             json.dumps(response if response is not None else {"status": status}),
                             ocpp_action=action, request_json=json.dumps(payload))

    return answer


async def _gateway(api: Api, station: str, answer: Callable[[Command], CommandResult]) -> FakeGateway:
    await api.connected(station, "gateway-3")
    return await FakeGateway(api.rt, "gateway-3", answer).start()


# -- GET /stations/{id} -------------------------------------------------------------------


async def test_a_station_merges_ownership_status_and_operations(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-2")
    at = parse_ocpp("2026-11-28T09:00:00Z")
    status = StationStatus(
        "CP-1", connected=True, epoch=2, gateway_id="gateway-2", ocpp_version=OcppVersion.V16,
        boot=Boot(vendor="V", model="M", firmware_version="1.0", reason="PowerUp", at=at),
        connectors={"0/0": ConnectorState("Available", at=at), "2/2": ConnectorState("Faulted", "GroundFailure", at=at),
                    "1/1": ConnectorState("Charging", at=at)},
        last_heartbeat=at + timedelta(minutes=5),
        last_disconnect=Disconnect(1, 1006, "abnormal", at - timedelta(hours=1)),
    )
    await api.rt.store.put_doc(kinds.STATION_STATUS, "CP-1", station_status_to_doc(status))
    ops = StationOps(
        "CP-1",
        connectivity=Connectivity(epoch=2, disconnected_epoch=1, connected_at=at, remote_addr="10.0.0.7",
                                  security_profile=2, gateway_id="gateway-2"),
        availability={"0": "Operative", "2": "Inoperative"},
        firmware=FirmwareState("Downloading", request_id=None, location="https://fw/1.bin", requested_at=at,
                               updated_at=at + timedelta(minutes=1)),
        log=LogState("Uploaded", request_id=77, log_type="DiagnosticsLog", requested_at=at, updated_at=at),
        outage=OpenOutage("faulted", at),
        meters={"0/Voltage/L1": MeterReading(230.5, "V", at)},
        charging_limits={"1": ChargingLimit("EMS", True, 16.0, "A", at)},
    )
    await api.rt.store.put_doc(kinds.STATION_OPS, "CP-1", station_ops_to_doc(ops))
    _, station = await api.get("/api/v1/stations/CP-1")
    _valid(station, "Station")
    assert station["connection"] == {"connected": True, "gateway_id": "gateway-2", "since": ts(at),
                                     "remote": "10.0.0.7", "security_profile": 2}
    assert station["boot"] == station["last_boot"] and station["boot"]["firmware_version"] == "1.0"
    assert station["last_heartbeat"] == "2026-11-28T09:05:00.000Z"
    assert [e["id"] for e in station["evses"]] == [0, 1, 2]
    assert station["evses"][2] == {"id": 2, "connectors": [{"id": 2, "status": "Faulted", "since": ts(at),
                                                            "error_code": "GroundFailure", "info": "",
                                                            "vendor_error_code": ""}]}
    assert station["availability"] == {"station": "Operative", "evses": {"2": "Inoperative"}}
    assert station["firmware"] == {"status": "Downloading", "request_id": None, "location": "https://fw/1.bin",
                                   "signed": False, "requested_at": ts(at), "updated_at": "2026-11-28T09:01:00.000Z"}
    assert station["log"]["file"] is None  # no upload slot holds the file
    assert station["security_profile"] == 1  # stored (the builder's default); the connection's is above
    assert station["outage"] == {"cause": "faulted", "since": ts(at)}
    assert station["meters"] == [{"evse_id": 0, "measurand": "Voltage", "phase": "L1", "value": 230.5, "unit": "V",
                                  "at": ts(at)}]
    assert station["charging_limits"] == [{"evse_id": 1, "source": "EMS", "is_grid_critical": True, "limit": 16.0,
                                           "unit": "A", "at": ts(at)}]
    assert station["last_disconnect"] == {"close_code": 1006, "reason": "abnormal", "at": "2026-11-28T08:00:00.000Z"}
    _, listing = await api.get("/api/v1/stations")
    assert listing["items"] == [station]  # the listing reads the same documents, in batches


async def test_a_station_without_operations_shows_empty_parts(api: Api) -> None:
    created = await api.a_station("CP-2")
    _valid(created, "Station")
    assert created["connection"] == {"connected": False, "gateway_id": None, "since": None, "remote": None,
                                     "security_profile": None}
    assert (created["firmware"], created["log"], created["outage"], created["boot"]) == (None, None, None, None)
    assert created["evses"] == [] and created["meters"] == [] and created["charging_limits"] == []
    assert created["availability"] == {"station": None, "evses": {}}
    assert created["connection"]["security_profile"] is None and created["last_heartbeat"] is None


async def test_an_unreadable_operations_document_does_not_hide_the_station(api: Api) -> None:
    await api.a_station("CP-3")
    await api.rt.store.put_doc(kinds.STATION_OPS, "CP-3", {"no": "station id"})
    status, station = await api.get("/api/v1/stations/CP-3")
    assert status == 200 and station["firmware"] is None


# -- GET /stations/{id}/events ---------------------------------------------------------------


async def _history(api: Api) -> list[StationEventRow]:
    t = parse_ocpp("2026-11-28T10:00:00Z")
    rows = [
        _row("CP-1", t, "e1", "StationConnected", {"epoch": 1, "remote_addr": "10.0.0.7"}),
        _row("CP-1", t + timedelta(seconds=1), "e2", "FirmwareStatus", {"status": "Downloading", "request_id": 5},
             action="FirmwareStatusNotification", station_time="2026-11-28T10:00:00.900Z"),
        _row("CP-1", t + timedelta(seconds=2), "e3", "LogStatus", {"status": "Uploading", "request_id": 9},
             action="LogStatusNotification"),
        _row("CP-1", t + timedelta(seconds=2), "e4", "FirmwareStatus", {"status": "Installed", "request_id": 5},
             action="FirmwareStatusNotification"),
        _row("CP-1", t + timedelta(seconds=3), "e5", "Outage",
             {"cause": "offline", "start": ts(t), "end": ts(t + timedelta(seconds=3)), "duration_s": 3.0}),
        _row("CP-OTHER", t + timedelta(seconds=4), "x1", "FirmwareStatus", {"status": "Installed"}),
    ]
    await api.rt.store.append_station_events(rows)
    return rows


async def test_events_are_newest_first_and_paged_by_an_opaque_cursor(api: Api) -> None:
    await api.a_station("CP-1")
    await _history(api)
    status, page = await api.get("/api/v1/stations/CP-1/events?limit=2")
    assert status == 200, page
    _valid(page, "StationEventPage")
    assert [e["event_id"] for e in page["items"]] == ["e5", "e4"]
    assert page["next"] and set(page["next"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    _, rest = await api.get(f"/api/v1/stations/CP-1/events?limit=2&cursor={page['next']}")
    assert [e["event_id"] for e in rest["items"]] == ["e3", "e2"]
    _, last = await api.get(f"/api/v1/stations/CP-1/events?limit=2&cursor={rest['next']}")
    assert [e["event_id"] for e in last["items"]] == ["e1"] and last["next"] is None
    firmware = rest["items"][1]
    assert firmware == {"event_id": "e2", "type": "FirmwareStatus", "action": "FirmwareStatusNotification",
                        "received_at": "2026-11-28T10:00:01.000Z", "station_time": "2026-11-28T10:00:00.900Z",
                        "gateway_id": "gateway-3", "data": {"status": "Downloading", "request_id": 5}}


async def test_events_filter_by_types_and_time(api: Api) -> None:
    await api.a_station("CP-1")
    await _history(api)
    _, page = await api.get("/api/v1/stations/CP-1/events?type=FirmwareStatus,LogStatus")
    assert [e["event_id"] for e in page["items"]] == ["e4", "e3", "e2"] and page["next"] is None
    _, page = await api.get("/api/v1/stations/CP-1/events?type=Outage")
    assert [e["type"] for e in page["items"]] == ["Outage"]
    since, until = quote("2026-11-28T10:00:01Z"), quote("2026-11-28T10:00:03Z")
    _, page = await api.get(f"/api/v1/stations/CP-1/events?since={since}&until={until}")
    assert [e["event_id"] for e in page["items"]] == ["e4", "e3", "e2"]
    _, page = await api.get("/api/v1/stations/CP-1/events?type=SecurityEvent")
    assert page == {"items": [], "next": None}


async def test_events_refuse_what_they_cannot_read_with_422(api: Api) -> None:
    await api.a_station("CP-1")
    for query, field in [
        ("cursor=not-a-cursor", "cursor"), ("cursor=" + "A" * 600, "cursor"), ("cursor=WzEsMl0", "cursor"),
        ("since=yesterday", "since"), ("until=2026-13-01", "until"), ("limit=0", "limit"), ("limit=x", "limit"),
        ("limit=1001", "limit"), ("type=Teleported", "type"), ("type=Firmware%20Status", "type"),
        ("since=2026-11-28T10:00:00Z&until=2026-11-28T09:00:00Z", "until"),
    ]:
        status, body = await api.get(f"/api/v1/stations/CP-1/events?{query}")
        assert status == 422, (query, body)
        assert field in body["details"], (query, body)


async def test_the_stations_processors_rows_are_served_as_they_were_written(api: Api) -> None:
    await api.a_station("CP-1")
    received = parse_ocpp("2026-11-28T10:00:00.123Z")
    env = Envelope("ev-9", "CP-1", received, FirmwareStatus("Installed", 5), gateway_id="gateway-1",
                   ocpp_version="2.0.1", station_time=parse_ocpp("2026-11-28T10:00:00Z"),
                   action="FirmwareStatusNotification")
    row = history_row(env)
    assert row is not None
    outage = outage_row("CP-1", Outage("faulted", received - timedelta(minutes=5), received + timedelta(seconds=1)))
    await api.rt.store.append_station_events([row, outage])
    _, page = await api.get("/api/v1/stations/CP-1/events")
    _valid(page, "StationEventPage")
    assert page["items"] == [event_json_of(outage), event_json(env)]


async def test_events_of_an_unknown_station_are_404(api: Api) -> None:
    status, body = await api.get("/api/v1/stations/NOPE/events")
    assert status == 404 and "error" in body


# -- GET /stations/{id}/commands -------------------------------------------------------------


async def test_commands_page_the_issued_rows_with_their_records(api: Api) -> None:
    await api.a_station("CP-1")
    t = parse_ocpp("2026-11-28T10:00:00Z")
    rows = [
        _row("CP-1", t + timedelta(seconds=i), f"ev-{i}", "CommandIssued",
             {"command_id": f"c{i}", "command_type": "Reset", "ocpp_action": "Reset",
              "payload_json": json.dumps({"type": "Soft"}), "issuer": "api"})
        for i in range(3)
    ]
    await api.rt.store.append_station_events([*rows, _row("CP-1", t, "s1", "StationConnected", {"epoch": 1})])
    for i in (0, 2):  # c1 has no record (yet): shown from its row
        record = CommandRecord(f"c{i}", "CP-1", "Reset", ocpp_action="Reset", payload={"type": "Soft"},
                               status="Accepted", response={"status": "Accepted"}, issued_at=t + timedelta(seconds=i),
                               completed_at=t + timedelta(seconds=i, milliseconds=300), version=2)
        await api.rt.store.put_doc(kinds.COMMAND, f"c{i}", command_to_doc(record), parent="CP-1", version=2)
    status, page = await api.get("/api/v1/stations/CP-1/commands?limit=2")
    assert status == 200, page
    _valid(page, "CommandRecordPage")
    assert [c["command_id"] for c in page["items"]] == ["c2", "c1"]
    assert page["items"][0]["status"] == "Accepted" and page["items"][0]["response"] == {"status": "Accepted"}
    assert page["items"][1] == {
        "command_id": "c1", "station_id": "CP-1", "command_type": "Reset", "ocpp_action": "Reset",
        "payload": {"type": "Soft"}, "status": "Pending", "response": None, "error_code": "", "error_description": "",
        "issued_at": "2026-11-28T10:00:01.000Z", "completed_at": None, "expired_at": None, "late_reply": False,
        "updated_at": None,
    }
    _, rest = await api.get(f"/api/v1/stations/CP-1/commands?limit=2&cursor={page['next']}")
    assert [c["command_id"] for c in rest["items"]] == ["c0"] and rest["next"] is None
    _valid(rest, "CommandRecordPage")
    assert (await api.get("/api/v1/stations/CP-1/commands?cursor=%%%"))[0] == 422
    assert (await api.get("/api/v1/stations/NOPE/commands"))[0] == 404


# -- POST /stations/{id}/firmware ------------------------------------------------------------


async def test_a_201_firmware_update_gets_a_request_id_picked_by_the_api(api: Api) -> None:
    await api.a_station("CP-1")
    seen: list[Command] = []
    gw = await _gateway(api, "CP-1", answering_as("2.0.1", seen=seen))
    try:
        status, body = await api.post("/api/v1/stations/CP-1/firmware", {
            "location": "https://fw.example/2.bin", "retrieve_at": "2026-12-01T01:00:00+01:00",
            "install_at": "2026-12-01T02:00:00Z", "retries": 3, "retry_interval": 60})
    finally:
        await gw.stop()
    assert status == 202, body
    _valid(body, "FirmwareAccepted")
    [cmd] = seen
    params = json.loads(cmd.params_json)
    assert cmd.command_type == "UpdateFirmware" and body["command_id"] == cmd.command_id
    assert body["request_id"] == params["request_id"] and 0 < body["request_id"] < 2**31
    assert params["retrieve_date"] == "2026-12-01T00:00:00.000Z" and params["install_date"] == "2026-12-01T02:00:00.000Z"
    assert body["status"] == "Accepted"


async def test_a_16_firmware_update_has_no_request_id_unless_signed(api: Api) -> None:
    await api.a_station("CP-1")
    seen: list[Command] = []
    gw = await _gateway(api, "CP-1", answering_as("1.6", seen=seen, response={}))
    try:
        status, plain = await api.post("/api/v1/stations/CP-1/firmware", {"location": "https://fw.example/2.bin"})
        assert status == 202, plain
        status, signed = await api.post("/api/v1/stations/CP-1/firmware", {
            "location": "https://fw.example/2.bin", "signing_certificate": "-----BEGIN CERTIFICATE-----",
            "signature": "c2lnbmF0dXJl"})
        assert status == 202, signed
    finally:
        await gw.stop()
    assert plain["request_id"] is None and plain["status"] == "Accepted"
    assert isinstance(signed["request_id"], int)
    action, payload = to_ocpp("UpdateFirmware", json.loads(seen[1].params_json), "1.6")
    assert action == "SignedUpdateFirmware" and payload["requestId"] == signed["request_id"]
    assert payload["firmware"]["signature"] == "c2lnbmF0dXJl"


async def test_firmware_requests_are_validated_and_need_a_known_connected_station(api: Api) -> None:
    await api.a_station("CP-1")
    for body, field in [({}, "location"), ({"location": 5}, "location"),
                        ({"location": "x", "retrieve_at": "soon"}, "retrieve_at"),
                        ({"location": "x", "retries": -1}, "retries"),
                        ({"location": "x", "signature": "s"}, "signing_certificate"),
                        ({"location": "x", "version": "2"}, "version")]:
        status, answer = await api.post("/api/v1/stations/CP-1/firmware", body)
        assert status == 400 and field in answer["details"], (body, answer)
    assert (await api.post("/api/v1/stations/NOPE/firmware", {"location": "x"}))[0] == 404
    status, answer = await api.post("/api/v1/stations/CP-1/firmware", {"location": "x"})
    assert status == 409 and answer["status"] == "StationOffline"


# -- logs --------------------------------------------------------------------------------


async def _request_log(api: Api, station: str, version: str, body: dict[str, Any],
                       seen: list[Command]) -> tuple[int, dict[str, Any]]:
    gw = await _gateway(api, station, answering_as(version, seen=seen))
    try:
        return await api.post(f"/api/v1/stations/{station}/logs", body)
    finally:
        await gw.stop()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def _gateway_receives(api: Api, slot_id: str, content: bytes, *, name: str = "diag.tar.gz") -> None:
    """What the gateway's upload endpoint does: store the file, mark the slot received (version 2)."""
    slot = log_upload_from_doc(await api.rt.store.get_doc(kinds.LOG_UPLOAD, slot_id) or {})
    info = await api.rt.files.write_file(slot.file_id, _chunks(content[:5], content[5:]), max_bytes=slot.max_bytes,
                                         content_type="application/gzip", name=name)
    doc = {**log_upload_to_doc(slot), "status": "received", "size": info.size, "sha256": info.sha256,
           "content_type": "application/gzip", "name": name, "received_at": ts(NOW), "version": 2}
    assert await api.rt.store.put_doc(kinds.LOG_UPLOAD, slot_id, doc, parent=slot.station_id, version=2)


async def _station_reports(api: Api, station: str, request_id: int | None, status: str, command_id: str = "") -> None:
    ops = StationOps(station, log=LogState(status, request_id=request_id, log_type="DiagnosticsLog",
                                           requested_at=NOW, command_id=command_id, updated_at=NOW))
    await api.rt.store.put_doc(kinds.STATION_OPS, station, station_ops_to_doc(ops))


async def test_a_log_request_creates_a_one_time_slot_and_the_file_downloads_byte_for_byte(api: Api) -> None:
    _clock(api)
    await api.a_station("CP-1")
    seen: list[Command] = []
    status, body = await _request_log(api, "CP-1", "2.0.1", {"log_type": "SecurityLog", "from": "2026-11-27T00:00:00Z"},
                                      seen)
    assert status == 202, body
    _valid(body, "LogAccepted")
    assert body["upload_expires_at"] == ts(NOW + timedelta(seconds=3600))
    [cmd] = seen
    params = json.loads(cmd.params_json)
    assert cmd.command_type == "GetLog" and params["log_type"] == "SecurityLog"
    assert params["start_time"] == "2026-11-27T00:00:00.000Z" and params["request_id"] == body["request_id"]
    # the URL holds the token; the store holds only its hash
    prefix = "http://127.0.0.1:9000/uploads/"
    assert params["location"].startswith(prefix) and params["location"].endswith("/")
    token = params["location"][len(prefix):-1]
    slot_id = hashlib.sha256(token.encode()).hexdigest()
    doc = await api.rt.store.get_doc(kinds.LOG_UPLOAD, slot_id)
    assert doc is not None and token not in json.dumps(doc)
    assert doc["status"] == "waiting" and doc["version"] == 1 and doc["token_sha256"] == slot_id
    assert doc["file_id"] == f"logs/CP-1/{body['request_id']}" and doc["max_bytes"] == 50 << 20
    assert doc["command_id"] == body["command_id"] and doc["expires_at"] == body["upload_expires_at"]

    path = f"/api/v1/stations/CP-1/logs/{body['request_id']}"
    status, answer = await api.get(path)
    assert status == 409, answer  # nothing uploaded yet
    content = bytes(range(256)) * 40 + b"\x00end"
    await _gateway_receives(api, slot_id, content)
    await _station_reports(api, "CP-1", body["request_id"], "Uploading")
    assert (await api.get(path))[0] == 409  # received, but the station has not said Uploaded
    _, listing = await api.get("/api/v1/stations/CP-1/logs")
    _valid(listing, "LogUploadList")
    assert listing["items"] == [{"request_id": body["request_id"], "log_type": "SecurityLog", "status": "Uploading",
                                 "requested_at": ts(NOW), "received": True, "size": len(content),
                                 "sha256": hashlib.sha256(content).hexdigest()}]

    await _station_reports(api, "CP-1", body["request_id"], "Uploaded")
    async with api.http.get(api.base + path, headers={"Authorization": "Bearer k"}) as r:
        assert r.status == 200
        got = await r.read()
        assert r.headers["Content-Type"] == "application/gzip"
        assert r.headers["Content-Disposition"].startswith('attachment; filename="diag.tar.gz"')
        assert int(r.headers["Content-Length"]) == len(content)
    assert got == content
    _, station = await api.get("/api/v1/stations/CP-1")
    assert station["log"]["file"] == path and station["log"]["status"] == "Uploaded"
    _valid(station, "Station")


async def test_a_16_diagnostics_request_is_get_diagnostics_matched_by_its_command(api: Api) -> None:
    await api.a_station("CP-1")
    seen: list[Command] = []
    status, body = await _request_log(api, "CP-1", "1.6", {}, seen)
    assert status == 202, body
    [cmd] = seen
    assert cmd.command_type == "GetDiagnostics"
    action, payload = to_ocpp(cmd.command_type, json.loads(cmd.params_json), "1.6")
    assert action == "GetDiagnostics" and payload["location"].startswith("http://127.0.0.1:9000/uploads/")
    # 1.6 DiagnosticsStatusNotification carries no request id: the log state names the command
    await _station_reports(api, "CP-1", None, "Uploading", command_id=body["command_id"])
    _, listing = await api.get("/api/v1/stations/CP-1/logs")
    assert [(i["log_type"], i["status"], i["received"]) for i in listing["items"]] == [
        ("DiagnosticsLog", "Uploading", False)]
    [slot] = await api.rt.store.list_docs(kinds.LOG_UPLOAD, parent="CP-1")
    await _gateway_receives(api, slot["token_sha256"], b"diagnostics", name="diag.zip")
    await _station_reports(api, "CP-1", None, "Uploaded", command_id=body["command_id"])
    _, station = await api.get("/api/v1/stations/CP-1")
    path = f"/api/v1/stations/CP-1/logs/{body['request_id']}"
    assert station["log"]["request_id"] == body["request_id"] and station["log"]["file"] == path
    async with api.http.get(api.base + path, headers={"Authorization": "Bearer k"}) as r:
        assert r.status == 200 and await r.read() == b"diagnostics"


async def test_log_requests_that_never_reach_the_station_leave_no_slot(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations/CP-1/logs", {})
    assert status == 409 and body["status"] == "StationOffline"
    assert await api.rt.store.list_docs(kinds.LOG_UPLOAD, parent="CP-1") == []
    for bad, field in [({"log_type": "KernelLog"}, "log_type"), ({"from": "then"}, "from"),
                       ({"from": "2026-11-28T00:00:00Z", "to": "2026-11-27T00:00:00Z"}, "to"), ({"x": 1}, "x")]:
        status, answer = await api.post("/api/v1/stations/CP-1/logs", bad)
        assert status == 400 and field in answer["details"], (bad, answer)
    assert (await api.post("/api/v1/stations/NOPE/logs", {}))[0] == 404


async def test_a_received_log_whose_file_is_not_in_place_is_409_then_404(api: Api) -> None:
    clock = _clock(api)
    await api.a_station("CP-1")
    status, body = await _request_log(api, "CP-1", "2.0.1", {}, [])
    assert status == 202, body
    [doc] = await api.rt.store.list_docs(kinds.LOG_UPLOAD, parent="CP-1")
    received = {**doc, "status": "received", "size": 3, "sha256": "00", "received_at": ts(NOW), "version": 2}
    await api.rt.store.put_doc(kinds.LOG_UPLOAD, doc["token_sha256"], received, parent="CP-1", version=2)
    await _station_reports(api, "CP-1", body["request_id"], "Uploaded")
    path = f"/api/v1/stations/CP-1/logs/{body['request_id']}"
    status, answer = await api.get(path)
    assert status == 409 and "retry" in answer["error"]  # the gateway is still moving the file into place
    clock.advance(minutes=5)
    assert (await api.get(path))[0] == 404


async def test_log_downloads_of_unknown_requests_are_404(api: Api) -> None:
    await api.a_station("CP-1")
    assert (await api.get("/api/v1/stations/CP-1/logs/123"))[0] == 404
    assert (await api.get("/api/v1/stations/CP-1/logs/abc"))[0] == 404
    assert (await api.get("/api/v1/stations/NOPE/logs/1"))[0] == 404
    assert (await api.get("/api/v1/stations/NOPE/logs"))[0] == 404


# -- uptime ------------------------------------------------------------------------------


def _outage(station: str, cause: str, start: str, end: str, event_id: str) -> StationEventRow:
    s, e = parse_ocpp(start), parse_ocpp(end)
    return _row(station, e, event_id, "Outage",
                {"cause": cause, "start": ts(s), "end": ts(e), "duration_s": (e - s).total_seconds()})


async def _station_created(api: Api, station_id: str, created: str, site_id: str | None = None) -> None:
    await api.rt.store.put_station(Station(station_id, "", created_at=parse_ocpp(created), site_id=site_id))


async def test_station_availability_over_a_window(api: Api) -> None:
    _clock(api, parse_ocpp("2026-11-28T12:00:00Z"))
    await _station_created(api, "CP-1", "2026-11-01T00:00:00Z")
    await api.rt.store.append_station_events([
        _outage("CP-1", "offline", "2026-11-27T22:00:00Z", "2026-11-28T01:00:00Z", "o1"),  # clipped at the start
        _outage("CP-1", "faulted", "2026-11-28T03:00:00Z", "2026-11-28T04:00:00Z", "o2"),
        _outage("CP-1", "offline", "2026-11-20T03:00:00Z", "2026-11-20T04:00:00Z", "old"),
    ])
    ops = StationOps("CP-1", outage=OpenOutage("unavailable", parse_ocpp("2026-11-28T10:00:00Z")))
    await api.rt.store.put_doc(kinds.STATION_OPS, "CP-1", station_ops_to_doc(ops))
    status, body = await api.get("/api/v1/stations/CP-1/availability?from=2026-11-28T00:00:00Z&to=2026-11-28T12:00:00Z")
    assert status == 200, body
    _valid(body, "StationAvailability")
    assert body["outages"] == [
        {"cause": "offline", "start": "2026-11-28T00:00:00.000Z", "end": "2026-11-28T01:00:00.000Z", "duration_s": 3600.0},
        {"cause": "faulted", "start": "2026-11-28T03:00:00.000Z", "end": "2026-11-28T04:00:00.000Z", "duration_s": 3600.0},
        {"cause": "unavailable", "start": "2026-11-28T10:00:00.000Z", "end": None, "duration_s": 7200.0},
    ]
    assert (body["up_s"], body["down_s"]) == (8 * 3600, 4 * 3600)
    assert body["uptime_percent"] == 66.67
    assert body["failures"] == 2 and body["mtbf_s"] == 4 * 3600  # o2 and the open one started in the window
    assert body["mttr_s"] == 2 * 3600  # o1 (3 h whole) and o2 (1 h) ended in it
    assert (body["from"], body["to"]) == ("2026-11-28T00:00:00.000Z", "2026-11-28T12:00:00.000Z")


async def test_availability_defaults_to_the_last_30_days_from_the_stations_creation(api: Api) -> None:
    _clock(api, parse_ocpp("2026-11-28T12:00:00Z"))
    await _station_created(api, "CP-1", "2026-11-28T06:00:00Z")
    status, body = await api.get("/api/v1/stations/CP-1/availability")
    assert status == 200, body
    assert body["from"] == "2026-10-29T12:00:00.000Z" and body["to"] == "2026-11-28T12:00:00.000Z"
    assert (body["up_s"], body["down_s"], body["uptime_percent"], body["outages"]) == (6 * 3600, 0, 100.0, [])
    assert body["mtbf_s"] is None and body["mttr_s"] is None


async def test_availability_refuses_bad_windows(api: Api) -> None:
    await api.a_station("CP-1")
    for query, field in [("from=soon", "from"), ("to=later", "to"),
                         ("from=2026-11-28T00:00:00Z&to=2026-11-27T00:00:00Z", "to")]:
        status, body = await api.get(f"/api/v1/stations/CP-1/availability?{query}")
        assert status == 422 and field in body["details"], (query, body)
        status, body = await api.get(f"/api/v1/kpis/availability?{query}")
        assert status == 422 and field in body["details"], (query, body)
    assert (await api.get("/api/v1/stations/NOPE/availability"))[0] == 404


async def test_site_kpis_sum_the_stations(api: Api) -> None:
    _clock(api, parse_ocpp("2026-11-28T12:00:00Z"))
    for sid in ("A", "B"):
        await _station_created(api, sid, "2026-11-01T00:00:00Z", site_id="S1")
    await _station_created(api, "ELSEWHERE", "2026-11-01T00:00:00Z", site_id="S2")
    await api.rt.store.append_station_events([
        _outage("A", "offline", "2026-11-28T01:00:00Z", "2026-11-28T03:00:00Z", "a1"),
        _outage("ELSEWHERE", "offline", "2026-11-28T01:00:00Z", "2026-11-28T11:00:00Z", "e1"),
    ])
    window = "from=2026-11-28T00:00:00Z&to=2026-11-28T12:00:00Z"
    status, body = await api.get(f"/api/v1/kpis/availability?site_id=S1&{window}")
    assert status == 200, body
    _valid(body, "AvailabilityKpis")
    assert body["site_id"] == "S1" and body["stations"] == 2
    assert body["uptime_percent"] == round(100 * 22 / 24, 2)
    assert body["failures"] == 1 and body["mtbf_s"] == 22 * 3600 and body["mttr_s"] == 2 * 3600
    assert sorted(body["items"], key=lambda i: i["station_id"]) == [
        {"station_id": "A", "uptime_percent": round(100 * 10 / 12, 2), "failures": 1, "mttr_s": 7200.0},
        {"station_id": "B", "uptime_percent": 100.0, "failures": 0, "mttr_s": None},
    ]
    _, everyone = await api.get(f"/api/v1/kpis/availability?{window}")
    assert everyone["stations"] == 3 and everyone["site_id"] is None and everyone["failures"] == 2
    _, nobody = await api.get(f"/api/v1/kpis/availability?site_id=NONE&{window}")
    assert nobody["stations"] == 0 and nobody["items"] == [] and nobody["mttr_s"] is None
    _valid(nobody, "AvailabilityKpis")
