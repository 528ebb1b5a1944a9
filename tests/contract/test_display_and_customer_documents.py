"""The display messages and customer information folds (ADR 018) on every store adapter
(SQLite always, Cassandra with CSMS_INFRA=1): the documents they write read back the
same, a batch handed twice changes nothing, and a station's requests list by parent."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone

from services.common import events as ev
from services.common import kinds
from services.common.store.port import Store
from services.stations.drivers import customer_information_documents as cid
from services.stations.drivers.customer_information import CustomerInformationFold
from services.stations.drivers.display_messages import DisplayMessagesFold
from services.stations.drivers.display_messages_documents import record_from_doc, report_from_doc

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def _env(station: str, body: ev.Body, at: float = 0.0) -> ev.Envelope:
    return ev.Envelope(str(uuid.uuid4()), station, T0 + timedelta(seconds=at), body, ocpp_version="2.0.1")


def _result(command_type: str, request: dict[str, object], status: str = "Accepted") -> ev.CommandResult:
    return ev.CommandResult(str(uuid.uuid4()), command_type, status, json.dumps({"status": status}),
                            ocpp_action=command_type, request_json=json.dumps(request))


async def test_display_messages_fold_on_the_store(store: Store) -> None:
    station = "DM" + secrets.token_hex(5)
    fold = DisplayMessagesFold(store, lambda: T0)
    batch = [
        _env(station, _result("SetDisplayMessage", {"message": {"id": 1, "priority": "InFront", "endDateTime":
             "2026-12-02T00:00:00.000Z", "message": {"format": "UTF8", "content": "ä €"}}})),
        _env(station, _result("SetDisplayMessage", {"message": {"id": 2, "priority": "NormalCycle",
             "message": {"format": "ASCII", "content": "b"}}}), 1),
        _env(station, _result("ClearDisplayMessage", {"id": 2}), 2),
        _env(station, _result("GetDisplayMessages", {"requestId": 8}), 3),
        _env(station, ev.DisplayMessagesReport(8, False, (ev.DisplayMessage(1, "InFront", "UTF8", "ä €"),)), 4),
    ]
    for _ in range(2):  # handed twice
        await fold.apply(batch)
        record = record_from_doc(await store.get_doc(kinds.DISPLAY_MESSAGES, station) or {})
        assert sorted(record.messages) == [1] and record.messages[1].content == "ä €"
        assert record.messages[1].end_at == datetime(2026, 12, 2, tzinfo=timezone.utc)
        report = report_from_doc(await store.get_doc(kinds.DISPLAY_MESSAGES_REPORT, f"{station}/8") or {})
        assert report.complete and sorted(report.messages) == [1] and report.parts == 1


async def test_customer_information_fold_on_the_store(store: Store) -> None:
    station = "CI" + secrets.token_hex(5)
    fold = CustomerInformationFold(store)
    request = {"requestId": 3, "report": True, "clear": False, "customerIdentifier": "c-1"}
    batch = [
        _env(station, _result("CustomerInformation", request)),
        _env(station, ev.CustomerInformationPart(3, 1, "world", False, T0), 2),
        _env(station, ev.CustomerInformationPart(3, 0, "hello ", True, T0), 1),
        _env(station, _result("CustomerInformation", {**request, "requestId": 4}, "Invalid"), 3),
    ]
    for _ in range(2):
        await fold.apply(batch)
    docs = await store.list_docs(kinds.CUSTOMER_INFORMATION, parent=station)
    by_id = {d["request_id"]: cid.from_doc(d) for d in docs}
    assert set(by_id) == {3, 4}
    assert cid.status_of(by_id[3]) == cid.COMPLETE and cid.data_of(by_id[3]) == "hello world"
    assert cid.status_of(by_id[4]) == cid.REJECTED
