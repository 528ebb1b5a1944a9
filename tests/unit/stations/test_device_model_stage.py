"""The device model stage on the memory bus and SQLite: a report requested, answered and
assembled from parts out of order; values from results; junk skipped, never stopping it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY

from services.common import kinds, topics
from services.common import events as ev
from services.common.codec import encode_event, event_headers
from services.common.runtime import Runtime
from services.stations.device_model import build_device_model
from services.stations.device_model_documents import inventory_from_doc, report_doc_id, report_from_doc
from services.stations.domain.device_model import configuration_request_id, entry_key
from tests.support.runtime import a_runtime, running
from tests.support.waiting import eventually

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


async def _publish(rt: Runtime, body: ev.Body, *, at: float = 0.0, station: str = "CP-1") -> None:
    env = ev.Envelope(str(uuid.uuid4()), station, T0 + timedelta(seconds=at), body, gateway_id="gateway-0",
                      ocpp_version="2.0.1")
    await rt.bus.publish(topics.EVENTS, station, encode_event(env), event_headers(env))


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("csms_device_model_records_total", {"outcome": outcome}) or 0.0


def _part(seq: int, tbc: bool, component: str, value: str) -> ev.ReportPart:
    return ev.ReportPart(42, seq, tbc, data=(ev.ReportDatum(
        ev.Component(component), ev.Variable("V"), (ev.VariableAttribute("Actual", value),)),))


async def test_a_report_and_values_reach_the_inventory_and_junk_is_skipped() -> None:
    async with running(a_runtime()) as rt:
        stage = build_device_model(rt)
        failed_before, undecodable_before = _count("failed"), _count("undecodable")
        await stage.start()
        try:
            payload = json.dumps({"requestId": 42, "reportBase": "FullInventory"})
            await _publish(rt, ev.CommandIssued("cmd-1", "GetBaseReport", "GetBaseReport", payload, "api"))
            await _publish(rt, ev.CommandResult("cmd-1", "GetBaseReport", "Accepted", '{"status": "Accepted"}',
                                                ocpp_action="GetBaseReport", request_json=payload), at=1)
            await rt.bus.publish(topics.EVENTS, "CP-1", b"\x00not protobuf",
                                 [("ce_type", b"csms.events.v1.ReportPart")])
            await _publish(rt, ev.Heartbeat(), at=1)
            # a result the fold cannot read (a component without a name): logged, counted, skipped
            await _publish(rt, ev.CommandResult("cmd-x", "GetVariables", "Accepted", json.dumps(
                {"get_variable_result": [{"attribute_status": "Accepted", "component": {}, "variable": {}}]})), at=1)
            await _publish(rt, _part(2, False, "C", "3"), at=2)
            await _publish(rt, _part(0, True, "A", "1"), at=3)
            await _publish(rt, _part(0, True, "A", "1"), at=3)  # redelivered
            await _publish(rt, _part(1, True, "B", "2"), at=4)

            async def report_done() -> bool:
                doc = await rt.store.get_doc(kinds.REPORT, report_doc_id("CP-1", 42))
                return doc is not None and doc["status"] == "complete"

            await eventually(report_done, what="report complete")
            assert _count("failed") >= failed_before + 1 and _count("undecodable") >= undecodable_before + 1
            doc = await rt.store.get_doc(kinds.REPORT, report_doc_id("CP-1", 42))
            assert doc is not None
            report = report_from_doc(doc)
            assert report.station_status == "Accepted" and report.items == 3 and report.seen == {0, 1, 2}
            assert report.requested_at == T0 and report.completed_at == T0 + timedelta(seconds=4)
            assert [d["request_id"] for d in await rt.store.list_docs(kinds.REPORT, parent="CP-1")] == [42]

            request = json.dumps({"setVariableData": [{"attributeValue": "9", "component": {"name": "A"},
                                                       "variable": {"name": "V"}}]})
            response = json.dumps({"set_variable_result": [{"attribute_status": "Accepted", "component": {"name": "A"},
                                                            "variable": {"name": "V"}}]})
            await _publish(rt, ev.CommandResult("cmd-2", "SetVariables", "Accepted", response,
                                                ocpp_action="SetVariables", request_json=request), at=5)
            await _publish(rt, ev.EventReport(0, events=(ev.EventDatum(
                1, "Delta", ev.Component("B"), ev.Variable("V"), actual_value="7"),)), at=6)

            async def values() -> dict[str, str | None] | None:
                d = await rt.store.get_doc(kinds.DEVICE_MODEL, "CP-1")
                if d is None:
                    return None
                inv = inventory_from_doc(d)
                got = {k[0]: e.value for k, e in inv.entries.items()}
                return got if got == {"A": "9", "B": "7", "C": "3"} else None

            assert await eventually(values, what="values applied")
            d = await rt.store.get_doc(kinds.DEVICE_MODEL, "CP-1")
            assert d is not None
            inv = inventory_from_doc(d)
            assert inv.entries[entry_key("A", "V")].source == "set_variables"
            assert inv.entries[entry_key("B", "V")].source == "event"
            assert inv.entries[entry_key("C", "V")].source == "report"
            assert inv.commands == {"cmd-1": 42} and inv.version >= 2

            # a later rejected report is `rejected`; the consumer is still going
            await _publish(rt, ev.CommandIssued("cmd-3", "GetBaseReport", "GetBaseReport",
                                                json.dumps({"requestId": 43, "reportBase": "SummaryInventory"})), at=7)
            await _publish(rt, ev.CommandResult("cmd-3", "GetBaseReport", "NotSupported", "{}",
                                                ocpp_action="GetBaseReport"), at=8)  # no request_json: found by command

            async def rejected() -> bool:
                doc = await rt.store.get_doc(kinds.REPORT, report_doc_id("CP-1", 43))
                return doc is not None and doc["status"] == "rejected"

            await eventually(rejected, what="report rejected")
        finally:
            await stage.stop()


async def test_a_16_get_configuration_answer_is_a_complete_report_and_the_inventory() -> None:
    async with running(a_runtime()) as rt:
        stage = build_device_model(rt)
        await stage.start()
        try:
            response = json.dumps({"configuration_key": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                                                         {"key": "NumberOfConnectors", "readonly": True, "value": "2"}],
                                   "unknown_key": ["Nope"]})
            await _publish(rt, ev.CommandResult("cmd-9", "GetConfiguration", "Accepted", response,
                                                ocpp_action="GetConfiguration", request_json="{}"))
            rid = configuration_request_id("cmd-9")

            async def report() -> dict[str, object] | None:
                return await rt.store.get_doc(kinds.REPORT, report_doc_id("CP-1", rid))

            doc = await eventually(report, what="configuration report")
            assert doc is not None and doc["status"] == "complete" and doc["items"] == 2 and doc["station_status"] == "Accepted"
            d = await rt.store.get_doc(kinds.DEVICE_MODEL, "CP-1")
            assert d is not None
            entries = inventory_from_doc(d).entries
            assert entries[entry_key("", "NumberOfConnectors")].mutability == "ReadOnly"
            assert entries[entry_key("", "HeartbeatInterval")].source == "get_configuration"
        finally:
            await stage.stop()
