"""2.0.1 device model and 1.6 configuration, as a CSMS sees them over the wire."""

from __future__ import annotations

import re
from typing import Any

from tests.simulator.conftest import Sim, StartStation
from tests.simulator.fake_csms import FakeCsms
from tests.support.waiting import eventually

UTC_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def report_parts(csms: FakeCsms, sim: Sim, request_id: int) -> list[dict[str, Any]]:
    """Every NotifyReport part of `request_id`, once the last one (tbc false) has come."""
    def parts() -> list[dict[str, Any]]:
        return [r.payload for r in csms.calls(sim.id, "NotifyReport") if r.payload["requestId"] == request_id]

    await eventually(lambda: any(not p.get("tbc", False) for p in parts()), 10, what=f"report {request_id} complete",
                     detail=lambda: csms.actions(sim.id))
    return parts()


def items(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for p in parts for item in p["reportData"]]


def find(report: list[dict[str, Any]], component: str, variable: str, **evse: int) -> dict[str, Any]:
    for item in report:
        c = item["component"]
        if c["name"] == component and item["variable"]["name"] == variable and (not evse or c.get("evse") == evse):
            return item
    raise AssertionError(f"{component}.{variable} not in the report")


async def test_a_full_inventory_comes_in_numbered_parts_after_the_answer(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-REPORT", "2.0.1", report_items_per_part=4)
    assert await sim.result("GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"}) == {"status": "Accepted"}
    parts = await report_parts(csms, sim, 7)

    assert len(parts) >= 3
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p.get("tbc", False) for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(1 <= len(p["reportData"]) <= 4 for p in parts)
    assert len({p["generatedAt"] for p in parts}) == 1 and UTC_MS.match(parts[0]["generatedAt"])
    # the reply went out before the first part
    order = csms.order(sim.id)
    assert order.index(("result", "GetBaseReport")) < order.index(("call", "NotifyReport"))

    report = items(parts)
    heartbeat = find(report, "OCPPCommCtrlr", "HeartbeatInterval")
    assert heartbeat["variableAttribute"][0] | {"persistent": True} == {
        "type": "Actual", "value": "300", "mutability": "ReadWrite", "persistent": True, "constant": False,
    }
    assert heartbeat["variableCharacteristics"]["unit"] == "s"
    assert heartbeat["variableCharacteristics"]["dataType"] == "integer"
    power = find(report, "EVSE", "Power", id=1)
    assert {a["type"] for a in power["variableAttribute"]} == {"Actual", "MaxSet"}
    assert power["variableCharacteristics"]["maxLimit"] == 11000
    assert find(report, "Connector", "AvailabilityState", id=1, connectorId=1)["variableAttribute"][0]["value"] == "Available"
    assert find(report, "SecurityCtrlr", "SecurityProfile")["variableAttribute"][0]["mutability"] == "ReadOnly"
    assert find(report, "FirmwareCtrlr", "FirmwareVersion")["variableAttribute"][0]["value"] == "2.0.1-sim"
    # 1.6-only keys are not 2.0.1 variables
    assert not [i for i in report if i["variable"]["name"] == "NumberOfConnectors"]


async def test_set_variables_changes_what_get_variables_and_reports_return(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-VARS", "2.0.1")
    result = await sim.result("SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "60"},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}, "attributeValue": "2"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}, "attributeValue": "soon"},
        {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "1"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}, "attributeValue": "1"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "1", "attributeType": "MaxSet"},
    ]})
    assert [r["attributeStatus"] for r in result["setVariableResult"]] == [
        "Accepted", "Rejected", "Rejected", "UnknownComponent", "UnknownVariable", "NotSupportedAttributeType",
    ]
    got = await sim.result("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}, "attributeType": "MaxSet"},
        {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage", "instance": "GetReport"}},
    ]})
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in got["getVariableResult"]] == [
        ("Accepted", "60"), ("Accepted", "1"), ("Accepted", "11000"), ("Accepted", "4"),
    ]
    assert await sim.result("GetBaseReport", {"requestId": 8, "reportBase": "ConfigurationInventory"}) == {"status": "Accepted"}
    report = items(await report_parts(csms, sim, 8))
    assert find(report, "OCPPCommCtrlr", "HeartbeatInterval")["variableAttribute"][0]["value"] == "60"
    assert all(any(a["mutability"] != "ReadOnly" for a in i["variableAttribute"]) for i in report)


async def test_get_report_filters_and_answers_empty_or_not_supported(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-FILTER", "2.0.1")
    status = await sim.result("GetReport", {"requestId": 11, "componentVariable": [{"component": {"name": "EVSE", "evse": {"id": 1}}}]})
    assert status == {"status": "Accepted"}
    report = items(await report_parts(csms, sim, 11))
    assert {i["component"]["name"] for i in report} == {"EVSE"}
    assert {i["variable"]["name"] for i in report} == {"Available", "AvailabilityState", "Power"}

    status = await sim.result("GetReport", {"requestId": 12, "componentCriteria": ["Available"],
                                            "componentVariable": [{"component": {"name": "Connector"}, "variable": {"name": "AvailabilityState"}}]})
    assert status == {"status": "Accepted"}
    report = items(await report_parts(csms, sim, 12))
    assert [(i["component"], i["variable"]["name"]) for i in report] == [({"name": "Connector", "evse": {"id": 1, "connectorId": 1}}, "AvailabilityState")]

    assert await sim.result("GetReport", {"requestId": 13, "componentCriteria": ["Problem"]}) == {"status": "EmptyResultSet"}
    assert await sim.result("GetReport", {"requestId": 14, "componentVariable": [{"component": {"name": "Nope"}}]}) == {"status": "EmptyResultSet"}
    assert await sim.result("GetBaseReport", {"requestId": 15, "reportBase": "EverythingPlease"}) == {"status": "NotSupported"}
    assert await sim.result("GetBaseReport", {"requestId": 16, "reportBase": "SummaryInventory"}) == {"status": "Accepted"}
    summary = items(await report_parts(csms, sim, 16))
    assert {i["variable"]["name"] for i in summary} == {"AvailabilityState"}
    assert {r.payload["requestId"] for r in csms.calls(sim.id, "NotifyReport")} == {11, 12, 16}


async def test_set_network_profile_is_kept_and_never_downgrades_security(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-NET", "2.0.1")
    profile = {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example/ocpp",
               "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}
    assert await sim.result("SetNetworkProfile", {"configurationSlot": 2, "connectionData": profile}) == {"status": "Accepted"}
    assert sim.state.model.network_profiles[2]["ocpp_csms_url"] == "wss://csms.example/ocpp"
    weaker = profile | {"securityProfile": 0}
    assert await sim.result("SetNetworkProfile", {"configurationSlot": 3, "connectionData": weaker}) == {"status": "Rejected"}
    assert 3 not in sim.state.model.network_profiles


async def test_16_configuration_is_the_same_model(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-CONF16", "1.6")
    every = await sim.result("GetConfiguration", {})
    keys = {k["key"]: k for k in every["configurationKey"]}
    assert keys["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    assert keys["SecurityProfile"]["readonly"] is True
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "1"}
    assert "unknownKey" not in every

    assert await sim.result("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}) == {"status": "Accepted"}
    assert await sim.result("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "often"}) == {"status": "Rejected"}
    assert await sim.result("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}) == {"status": "Rejected"}
    assert await sim.result("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}) == {"status": "NotSupported"}
    some = await sim.result("GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
    assert some == {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}], "unknownKey": ["NoSuchKey"]}


async def test_a_datatransfer_after_boot_when_asked(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-DT", "2.0.1", data_transfer=("com.example.sim", "hello", "payload:1"))
    await eventually(lambda: csms.calls(sim.id, "DataTransfer"), what="a DataTransfer")
    assert csms.calls(sim.id, "DataTransfer")[0].payload == {"vendorId": "com.example.sim", "messageId": "hello", "data": "payload:1"}
    await eventually(lambda: sim.state.data_transfer_status == "Accepted", what="the answer kept")


async def test_201_change_availability_updates_the_model_and_says_so(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-AVAIL", "2.0.1", connectors=2)
    before = len(csms.calls(sim.id, "StatusNotification"))
    assert await sim.result("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 2}}) == {"status": "Accepted"}
    await eventually(lambda: len(csms.calls(sim.id, "StatusNotification")) > before, what="a StatusNotification")
    sent = csms.calls(sim.id, "StatusNotification")[before].payload
    assert (sent["connectorId"], sent["connectorStatus"]) == (2, "Unavailable")
    got = await sim.result("GetVariables", {"getVariableData": [
        {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": c}}, "variable": {"name": "AvailabilityState"}} for c in (1, 2)
    ]})
    assert [r["attributeValue"] for r in got["getVariableResult"]] == ["Available", "Unavailable"]
    assert await sim.result("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2}}) == {"status": "Rejected"}


async def test_16_change_availability_is_scheduled_while_charging(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-AVAIL16", "1.6", sessions=1, meter_values=1, interval_s=30)
    await eventually(lambda: csms.calls(sim.id, "StartTransaction"), what="a transaction")
    assert await sim.result("ChangeAvailability", {"connectorId": 9, "type": "Inoperative"}) == {"status": "Rejected"}
    await eventually(lambda: csms.calls(sim.id, "StatusNotification")[-1].payload["status"] == "Charging", what="charging status")
    assert await sim.result("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}) == {"status": "Scheduled"}
