"""POST /stations/{id}/reports sends GetBaseReport / GetReport (2.0.1) or GetConfiguration
(1.6) and answers 202; GET .../reports/{request_id} and GET .../variables read the device
model stage's documents; every view matches its OpenAPI schema."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import jsonschema

from services.api.openapi import openapi_document
from services.api.openapi_operations import SCHEMAS, VIEW_SCHEMAS
from services.common import kinds
from services.common.codec import Command
from services.common.events import CommandResult
from services.sessions.documents import station_status_to_doc
from services.sessions.domain import StationStatus
from services.stations.documents import inventory_to_doc, report_doc_id, report_to_doc
from services.stations.domain.device_model import (
    Entry,
    Inventory,
    add_report_part,
    configuration_request_id,
    entry_key,
    report_requested,
)

from .builders import Api, FakeGateway, answering

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
_DOC = openapi_document()
_COMPONENTS = {**_DOC["components"], "schemas": {**SCHEMAS, **_DOC["components"]["schemas"]}}


def valid(value: Any, schema: str) -> None:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _COMPONENTS}
    jsonschema.Draft202012Validator(root).validate(value)


def test_my_view_schemas_are_closed() -> None:
    for name in VIEW_SCHEMAS:
        schema = _COMPONENTS["schemas"][name]
        assert schema.get("additionalProperties") is False, name
        assert set(schema.get("required", ())) <= set(schema["properties"]), name


async def _station(api: Api, station_id: str = "CP-1", version: str = "2.0.1") -> None:
    await api.a_station(station_id)
    await api.connected(station_id, "gateway-3")
    status = StationStatus(station_id, connected=True, epoch=1, gateway_id="gateway-3", ocpp_version=version)
    await api.rt.store.put_doc(kinds.STATION_STATUS, station_id, station_status_to_doc(status))


async def test_a_base_report_is_requested_with_a_request_id_and_answered_202(api: Api) -> None:
    await _station(api)
    gw = await FakeGateway(api.rt, "gateway-3", answering("Accepted")).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/reports", {"report_base": "SummaryInventory"})
        assert status == 202, body
        [(_, cmd)] = gw.received
        params = json.loads(cmd.params_json)
        assert cmd.command_type == "GetBaseReport" and params == {"request_id": body["request_id"],
                                                                   "report_base": "SummaryInventory"}
        assert body == {"request_id": body["request_id"], "command_id": cmd.command_id, "status": "Accepted",
                        "report": f"/api/v1/stations/CP-1/reports/{body['request_id']}"}
        valid(body, "ReportAccepted")
        status, body = await api.post("/api/v1/stations/CP-1/reports", {
            "component_criteria": ["Problem", "Active"],
            "component_variables": [{"component": {"name": "EVSE", "evse": {"id": 1, "connector_id": 1}},
                                     "variable": {"name": "Power"}}, {"component": {"name": "OCPPCommCtrlr"}}],
        })
        assert status == 202, body
        cmd = gw.received[-1][1]
        assert cmd.command_type == "GetReport"
        assert json.loads(cmd.params_json)["component_criteria"] == ["Problem", "Active"]
    finally:
        await gw.stop()


async def test_a_16_station_gets_get_configuration_and_its_report_id_is_derived(api: Api) -> None:
    await _station(api, version="1.6")
    gw = await FakeGateway(api.rt, "gateway-3", answering("Accepted", {"configuration_key": []})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/reports", {
            "component_variables": [{"component": {"name": "x"}, "variable": {"name": "HeartbeatInterval"}}]})
        assert status == 202, body
        [(_, cmd)] = gw.received
        assert cmd.command_type == "GetConfiguration" and json.loads(cmd.params_json) == {"keys": ["HeartbeatInterval"]}
        assert body["request_id"] == configuration_request_id(cmd.command_id)
        status, body = await api.post("/api/v1/stations/CP-1/reports", {"report_base": "FullInventory"})
        assert status == 202 and json.loads(gw.received[-1][1].params_json) == {}
    finally:
        await gw.stop()


async def test_report_requests_that_cannot_be_sent(api: Api) -> None:
    status, _ = await api.post("/api/v1/stations/NOPE/reports", {"report_base": "FullInventory"})
    assert status == 404
    await api.a_station("CP-2")
    status, body = await api.post("/api/v1/stations/CP-2/reports", {"report_base": "FullInventory"})
    assert status == 409 and body["status"] == "StationOffline"
    bad = [
        ({"report_base": "Everything"}, "report_base"),
        ({"report_base": "FullInventory", "component_criteria": ["Active"]}, "report_base"),
        ({"component_criteria": []}, "component_criteria"),
        ({"component_criteria": ["Broken"]}, "component_criteria"),
        ({"component_variables": [{"variable": {"name": "V"}}]}, "component_variables[0].component"),
        ({"component_variables": [{"component": {"name": "C", "evse": {"id": -1}}}]},
         "component_variables[0].component.evse"),
        ({"whatever": 1}, "whatever"),
    ]
    for payload, field in bad:
        status, body = await api.post("/api/v1/stations/CP-2/reports", payload)
        assert status == 400 and field in body["details"], (payload, body)


async def test_a_station_answer_other_than_accepted_is_still_202(api: Api) -> None:
    await _station(api)

    def refuse(cmd: Command) -> CommandResult:
        return CommandResult(cmd.command_id, cmd.command_type, "EmptyResultSet", '{"status": "EmptyResultSet"}')

    gw = await FakeGateway(api.rt, "gateway-3", refuse).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/reports", {})
        assert status == 202 and body["status"] == "EmptyResultSet"
        assert json.loads(gw.received[0][1].params_json)["report_base"] == "FullInventory"
    finally:
        await gw.stop()


async def test_a_report_and_the_variables_are_served_from_the_documents(api: Api) -> None:
    await api.a_station("CP-1")
    status, _ = await api.get("/api/v1/stations/CP-1/reports/5")
    assert status == 404
    report = report_requested(None, "CP-1", 5, report_base="FullInventory", command_id="c", at=T0)
    report = add_report_part(report, 1, False, [Entry(entry_key("A", "B"))], T0)
    await api.rt.store.put_doc(kinds.REPORT, report_doc_id("CP-1", 5), report_to_doc(report, version=1), parent="CP-1")
    status, body = await api.get("/api/v1/stations/CP-1/reports/5")
    assert status == 200 and body == {"request_id": 5, "status": "assembling", "station_status": None, "parts": 1,
                                      "items": 1, "requested_at": "2026-12-01T10:00:00.000Z", "completed_at": None}
    valid(body, "Report")
    assert (await api.get("/api/v1/stations/CP-1/reports/x"))[0] == 404
    assert (await api.get("/api/v1/stations/NOPE/reports/5"))[0] == 404

    status, body = await api.get("/api/v1/stations/CP-1/variables")
    assert status == 200 and body == {"items": [], "next": None}
    entries = [
        Entry(entry_key("EVSE", "Power", evse_id=1, connector_id=1), "11000", mutability="ReadOnly", persistent=True,
              unit="W", data_type="decimal", min_limit=0.0, max_limit=22000.0, source="report", updated_at=T0),
        Entry(entry_key("EVSE", "Power", evse_id=2), "7000", source="event", updated_at=T0),
        Entry(entry_key("", "HeartbeatInterval"), "300", mutability="ReadWrite", source="get_configuration"),
        Entry(entry_key("OCPPCommCtrlr", "HeartbeatInterval", attribute_type="Target"), None, source="set_variables",
              values_list="1,2"),
    ]
    inv = Inventory("CP-1", {e.key: e for e in entries})
    await api.rt.store.put_doc(kinds.DEVICE_MODEL, "CP-1", inventory_to_doc(inv), version=1)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = "/api/v1/stations/CP-1/variables?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body = await api.get(path)
        assert status == 200, body
        valid(body, "VariablePage")
        seen += body["items"]
        cursor = body["next"]
        if cursor is None:
            break
    assert [(x["component"], x["variable"], x["evse_id"]) for x in seen] == [
        ("", "HeartbeatInterval", None), ("EVSE", "Power", 1), ("EVSE", "Power", 2),
        ("OCPPCommCtrlr", "HeartbeatInterval", None)]
    assert seen[1]["connector_id"] == 1 and seen[1]["max_limit"] == 22000.0 and seen[1]["persistent"] is True
    status, body = await api.get("/api/v1/stations/CP-1/variables?component=EVSE&evse_id=2")
    assert [x["value"] for x in body["items"]] == ["7000"]
    status, body = await api.get("/api/v1/stations/CP-1/variables?variable=HeartbeatInterval")
    assert len(body["items"]) == 2
    for query, field in (("evse_id=x", "evse_id"), ("limit=0", "limit"), ("cursor=bm9wZQ", "cursor")):
        status, body = await api.get(f"/api/v1/stations/CP-1/variables?{query}")
        assert status == 422 and field in body["details"], (query, body)
    assert (await api.get("/api/v1/stations/NOPE/variables"))[0] == 404
