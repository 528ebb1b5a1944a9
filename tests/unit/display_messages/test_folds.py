"""The display messages and customer information folds of the `stations-drivers` stage
(ADR 018) on the memory bus and SQLite: results and parts recorded, a batch handed twice
gives the same documents, junk is logged, counted and skipped."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY

from services.common import events as ev
from services.common import kinds, topics
from services.common.codec import encode_event, event_headers
from services.common.processor import Processor
from services.common.runtime import Runtime
from services.stations.drivers import DriversStage, customer_information, display_messages
from services.stations.drivers import customer_information_documents as cid
from services.stations.drivers.display_messages_documents import record_from_doc, report_from_doc
from tests.support.runtime import a_runtime, running
from tests.support.waiting import eventually

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _env(body: ev.Body, at: float = 0.0, station: str = "CP-1") -> ev.Envelope:
    return ev.Envelope(str(uuid.uuid4()), station, T0 + timedelta(seconds=at), body, gateway_id="gateway-0",
                       ocpp_version="2.0.1")


def _result(command_type: str, status: str, request: Mapping[str, object], command_id: str | None = None) -> ev.CommandResult:
    return ev.CommandResult(command_id or str(uuid.uuid4()), command_type, status, json.dumps({"status": status}),
                            ocpp_action=command_type, request_json=json.dumps(request))


def _set(mid: int, status: str = "Accepted", content: str = "hi") -> ev.CommandResult:
    return _result("SetDisplayMessage", status, {"message": {
        "id": mid, "priority": "NormalCycle", "message": {"format": "UTF8", "content": content}}})


def _failed(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"outcome": "failed"}) or 0.0


async def test_display_message_results_and_a_report_are_recorded_idempotently() -> None:
    async with running(a_runtime()) as rt:
        fold = display_messages.build(rt)
        failed = _failed("csms_display_messages_records_total")
        get_request = {"requestId": 31}
        batch = [
            _env(_set(1)),
            _env(_set(2, content="two")),
            _env(_set(3, status="NotSupportedMessageFormat")),        # refused: not recorded
            _env(_result("ClearDisplayMessage", "Accepted", {"id": 2}), at=1),
            _env(_result("ClearDisplayMessage", "Unknown", {"id": 1}), at=1),  # the station had none: nothing
            _env(ev.CommandResult("c-x", "SetDisplayMessage", "Accepted", "{}", ocpp_action="SetDisplayMessage",
                                  request_json='{"message": {"id": "bad"}}'), at=1),  # junk: skipped
            _env(ev.CommandResult("c-y", "SetDisplayMessage", "StationOffline", "{}")),  # never sent
            _env(_result("GetDisplayMessages", "Accepted", get_request), at=2),
            _env(ev.DisplayMessagesReport(31, True, (ev.DisplayMessage(1, "NormalCycle", "UTF8", "hi"),)), at=3),
            _env(ev.DisplayMessagesReport(31, False, (ev.DisplayMessage(9, "InFront", "ASCII", "own"),)), at=3),
            _env(ev.Heartbeat()),
        ]
        await fold.apply(batch)
        record = record_from_doc(await rt.store.get_doc(kinds.DISPLAY_MESSAGES, "CP-1") or {})
        assert sorted(record.messages) == [1] and 2 in record.cleared
        report = report_from_doc(await rt.store.get_doc(kinds.DISPLAY_MESSAGES_REPORT, "CP-1/31") or {})
        assert report.complete and report.station_status == "Accepted" and sorted(report.messages) == [1, 9]
        assert _failed("csms_display_messages_records_total") == failed + 1
        # the bus hands the batch again: the same documents (contents; the version moves on)
        await fold.apply(batch)
        again = record_from_doc(await rt.store.get_doc(kinds.DISPLAY_MESSAGES, "CP-1") or {})
        assert again.messages == record.messages and again.cleared == record.cleared
        assert report_from_doc(await rt.store.get_doc(kinds.DISPLAY_MESSAGES_REPORT, "CP-1/31") or {}).messages \
            == report.messages


async def test_a_message_past_its_end_leaves_the_record_on_the_next_write() -> None:
    async with running(a_runtime()) as rt:  # the fixed clock of the test runtime
        fold = display_messages.build(rt)
        now = rt.clock()
        ended = _result("SetDisplayMessage", "Accepted", {"message": {
            "id": 4, "priority": "NormalCycle", "endDateTime": (now - timedelta(seconds=1)).isoformat(),
            "message": {"format": "UTF8", "content": "old"}}})
        await fold.apply([_env(ended), _env(_set(5))])
        record = record_from_doc(await rt.store.get_doc(kinds.DISPLAY_MESSAGES, "CP-1") or {})
        assert sorted(record.messages) == [5]


async def test_customer_information_parts_out_of_order_and_twice_assemble() -> None:
    async with running(a_runtime()) as rt:
        fold = customer_information.build(rt)
        failed = _failed("csms_customer_information_records_total")
        request = {"requestId": 12, "report": True, "clear": False, "customerIdentifier": "cust-1"}
        await fold.apply([_env(_result("CustomerInformation", "Accepted", request, "cmd-1"))])
        doc = await rt.store.get_doc(kinds.CUSTOMER_INFORMATION, "CP-1/12")
        assert doc is not None and cid.status_of(cid.from_doc(doc)) == cid.REQUESTED
        parts = [_env(ev.CustomerInformationPart(12, 2, "c", False, T0), 3),
                 _env(ev.CustomerInformationPart(12, 0, "a", True, T0), 1),
                 _env(ev.CustomerInformationPart(12, -4, "x", True, T0), 1),  # junk: skipped
                 _env(ev.CustomerInformationPart(12, 0, "a", True, T0), 2)]
        await fold.apply(parts)
        c = cid.from_doc(await rt.store.get_doc(kinds.CUSTOMER_INFORMATION, "CP-1/12") or {})
        assert cid.status_of(c) == cid.ASSEMBLING and cid.data_of(c) == "ac"
        await fold.apply([_env(ev.CustomerInformationPart(12, 1, "b", True, T0), 4)])
        await fold.apply(parts)  # redelivered
        c = cid.from_doc(await rt.store.get_doc(kinds.CUSTOMER_INFORMATION, "CP-1/12") or {})
        assert cid.status_of(c) == cid.COMPLETE and cid.data_of(c) == "abc"
        assert (c.identifier_type, c.identifier, c.report, c.clear) == ("customer_identifier", "cust-1", True, False)
        assert _failed("csms_customer_information_records_total") == failed + 2


async def _publish(rt: Runtime, env: ev.Envelope) -> None:
    await rt.bus.publish(topics.EVENTS, env.station_id, encode_event(env), event_headers(env))


async def test_the_stage_skips_undecodable_records_and_folds_the_rest() -> None:
    async with running(a_runtime()) as rt:
        stage = DriversStage([display_messages.build(rt), customer_information.build(rt)])
        proc = Processor("test-drivers", rt.bus, topics.EVENTS, "test-drivers", stage.handle_batch)
        await proc.start()
        try:
            await rt.bus.publish(topics.EVENTS, "CP-1", b"\x00junk", [("ce_type", b"csms.events.v1.CommandResult")])
            await _publish(rt, _env(_set(6)))
            await _publish(rt, _env(_result("CustomerInformation", "Rejected", {"requestId": 5, "report": True,
                                                                                "clear": False}), 1))

            async def both() -> bool:
                rec = await rt.store.get_doc(kinds.DISPLAY_MESSAGES, "CP-1")
                ci_doc = await rt.store.get_doc(kinds.CUSTOMER_INFORMATION, "CP-1/5")
                return rec is not None and ci_doc is not None and cid.status_of(cid.from_doc(ci_doc)) == cid.REJECTED

            await eventually(both, 5, what="both folds wrote")
        finally:
            await proc.stop()
