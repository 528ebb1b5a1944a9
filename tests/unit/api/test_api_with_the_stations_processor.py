"""The API reads what the stations processor writes: a 2.0.1 station's events folded by
the real `stations-state` handler (services/stations/handlers.py), then served by the
station view, its history, its commands, its logs and its uptime. A change to the
documents or history rows on either side fails here."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import jsonschema

from services.api.documents import log_upload_from_doc, log_upload_to_doc
from services.api.openapi import openapi_document
from services.common import events as ev
from services.common import kinds
from services.common.codec import Command
from services.common.ocpp.commands import to_ocpp
from services.common.store.port import Station
from services.common.timeutil import to_ocpp as ts
from services.stations.wiring import build_state_handler

from .builders import Api, FakeGateway
from .test_api_station_operations import answering_as

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
_DOC = openapi_document()


def _valid(value: Any, schema: str) -> None:
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
                                    ).validate(value)


def _env(body: ev.Body, at: datetime, action: str = "") -> ev.Envelope:
    return ev.Envelope(str(uuid.uuid4()), "CP-9", at, body, gateway_id="gateway-3", ocpp_version="2.0.1",
                       station_time=at, action=action)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_stations_operations_folded_by_the_stations_processor_are_served(api: Api) -> None:
    await api.rt.store.put_station(Station("CP-9", "", created_at=T0 - timedelta(days=1)))
    handler = build_state_handler(api.rt)
    await handler.handle_events([
        _env(ev.StationConnected(1, remote_addr="10.1.1.1", subprotocol="ocpp2.0.1", security_profile=2), T0),
        _env(ev.ConnectorStatus(1, 1, "Available"), T0 + timedelta(seconds=1), "StatusNotification"),
        _env(ev.ConnectorStatus(1, 1, "Faulted"), T0 + timedelta(hours=1), "StatusNotification"),
        _env(ev.ConnectorStatus(1, 1, "Available"), T0 + timedelta(hours=2), "StatusNotification"),
    ])

    # a log request through the API; the gateway publishes what it sent and the answer
    seen: list[Command] = []
    await api.connected("CP-9", "gateway-3")
    gw = await FakeGateway(api.rt, "gateway-3", answering_as("2.0.1", seen=seen)).start()
    try:
        status, accepted = await api.post("/api/v1/stations/CP-9/logs", {"log_type": "DiagnosticsLog"})
    finally:
        await gw.stop()
    assert status == 202, accepted
    [cmd] = seen
    action, payload = to_ocpp(cmd.command_type, json.loads(cmd.params_json), "2.0.1")
    sent = T0 + timedelta(hours=3)
    await handler.handle_events([
        _env(ev.CommandIssued(cmd.command_id, cmd.command_type, action, json.dumps(payload), "api"), sent),
        _env(ev.CommandResult(cmd.command_id, cmd.command_type, "Accepted", '{"status": "Accepted"}',
                              ocpp_action=action, request_json=json.dumps(payload)), sent + timedelta(seconds=1)),
        _env(ev.LogStatus("Uploading", accepted["request_id"]), sent + timedelta(seconds=2), "LogStatusNotification"),
    ])
    # the gateway's upload endpoint takes the file
    [doc] = await api.rt.store.list_docs(kinds.LOG_UPLOAD, parent="CP-9")
    slot = log_upload_from_doc(doc)
    content = b"2026-11-28 boot ok\n" * 100
    info = await api.rt.files.write_file(slot.file_id, _chunks(content), max_bytes=slot.max_bytes,
                                         content_type="text/plain", name="diag.log")
    await api.rt.store.put_doc(kinds.LOG_UPLOAD, slot.token_sha256, {
        **log_upload_to_doc(slot), "status": "received", "size": info.size, "sha256": info.sha256,
        "content_type": "text/plain", "name": "diag.log", "received_at": ts(sent), "version": 2,
    }, parent="CP-9", version=2)
    path = f"/api/v1/stations/CP-9/logs/{accepted['request_id']}"
    assert (await api.get(path))[0] == 409  # the station still says Uploading
    await handler.handle_events([
        _env(ev.LogStatus("Uploaded", accepted["request_id"]), sent + timedelta(seconds=3), "LogStatusNotification"),
    ])

    _, station = await api.get("/api/v1/stations/CP-9")
    _valid(station, "Station")
    assert station["connection"]["since"] == ts(T0) and station["connection"]["remote"] == "10.1.1.1"
    assert station["connection"]["security_profile"] == 2 and station["outage"] is None
    assert station["log"]["status"] == "Uploaded" and station["log"]["request_id"] == accepted["request_id"]
    assert station["log"]["file"] == path
    async with api.http.get(api.base + path, headers={"Authorization": "Bearer k"}) as r:
        assert r.status == 200 and await r.read() == content

    _, logs = await api.get("/api/v1/stations/CP-9/logs")
    assert [(i["status"], i["received"], i["size"]) for i in logs["items"]] == [("Uploaded", True, len(content))]

    _, history = await api.get("/api/v1/stations/CP-9/events?type=LogStatus")
    _valid(history, "StationEventPage")
    assert [e["data"]["status"] for e in history["items"]] == ["Uploaded", "Uploading"]
    assert history["items"][0]["action"] == "LogStatusNotification"

    _, commands = await api.get("/api/v1/stations/CP-9/commands")
    _valid(commands, "CommandRecordPage")
    [record] = commands["items"]
    assert record["command_id"] == cmd.command_id and record["status"] == "Accepted"
    assert record["ocpp_action"] == "GetLog" and record["payload"]["logType"] == "DiagnosticsLog"

    window = f"from={ts(T0)}&to={ts(T0 + timedelta(hours=4))}"
    _, uptime = await api.get(f"/api/v1/stations/CP-9/availability?{window}")
    _valid(uptime, "StationAvailability")
    assert uptime["outages"] == [{"cause": "faulted", "start": ts(T0 + timedelta(hours=1)),
                                  "end": ts(T0 + timedelta(hours=2)), "duration_s": 3600.0}]
    assert uptime["failures"] == 1 and uptime["mttr_s"] == 3600.0 and uptime["uptime_percent"] == 75.0
