"""Command records (pure): merged in any order, idempotent, and stored in the document they
always were (moved from the sessions processor with the record, ADR 016: a document it
wrote loads, and the stations processor writes the same bytes)."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import orjson

from services.common import events as ev
from services.stations.documents import command_from_doc, command_to_doc
from services.stations.domain import CommandRecord, apply_command
from tests.unit.sessions.builders import NOW, STATION, an_envelope, at


def issued(minute: float = 0) -> ev.Envelope:
    return an_envelope(ev.CommandIssued(command_id="cmd-1", command_type="RemoteStop", ocpp_action="RequestStopTransaction",
                                        payload_json='{"transactionId": "tx-1"}'), received_at=at(minute))


def result(status: str, minute: float, response: str = "{}") -> ev.Envelope:
    return an_envelope(ev.CommandResult(command_id="cmd-1", command_type="RemoteStop", status=status,
                                        response_json=response), received_at=at(minute))


def command_of(*events: ev.Envelope) -> CommandRecord:
    record = None
    for e in events:
        record = apply_command(record, e, NOW)
    assert record is not None
    return record


def command_after(*events: ev.Envelope) -> dict[str, Any]:
    """The stored document after `events`."""
    return command_to_doc(command_of(*events))


def test_an_issued_command_is_pending_until_its_result_arrives() -> None:
    doc = command_after(issued())
    assert (doc["status"], doc["station_id"], doc["command_type"], doc["completed_at"]) == ("Pending", STATION, "RemoteStop", None)
    assert doc["payload"] == {"transactionId": "tx-1"}

    done = command_after(issued(), result("Accepted", 0.1, '{"status": "Accepted"}'))
    assert done["status"] == "Accepted" and done["response"] == {"status": "Accepted"}
    assert done["issued_at"] == "2026-11-28T10:00:00.000Z" and done["completed_at"] == "2026-11-28T10:00:06.000Z"


def test_a_result_before_its_issue_record_is_correlated_all_the_same() -> None:
    assert command_after(result("Accepted", 1), issued(0)) == {
        **command_after(issued(0), result("Accepted", 1)), "version": 2
    }


def test_a_late_reply_after_a_timeout_is_recorded() -> None:
    for order in permutations([issued(0), result("Timeout", 0.5), result("Accepted", 2)]):
        doc = command_after(*order)
        assert doc["status"] == "Accepted"
        assert doc["late_reply"] is True
        assert doc["expired_at"] == "2026-11-28T10:00:30.000Z"


def test_applying_a_command_event_twice_changes_nothing() -> None:
    record = command_of(issued(), result("Rejected", 1))
    assert apply_command(record, result("Rejected", 1), NOW) is record
    assert apply_command(record, issued(), NOW) is record


def test_other_events_are_not_command_events() -> None:
    assert apply_command(None, an_envelope(ev.Heartbeat()), NOW) is None


# -- the stored document: the format of before -------------------------------------------
# Written by the sessions processor before station status and command records were values
# (the previous `apply_command` built this document directly).
STORED_COMMAND = (
    '{"command_id":"cmd-1","station_id":"CS-1","command_type":"RemoteStop","ocpp_action":"RequestStopTransaction",'
    '"payload":{"transactionId":"tx-1"},"status":"Accepted","response":{"status":"Accepted"},"error_code":"",'
    '"error_description":"","issued_at":"2026-11-28T10:00:00.000Z","completed_at":"2026-11-28T10:02:00.000Z",'
    '"expired_at":"2026-11-28T10:00:30.000Z","late_reply":true,"version":3,"updated_at":"2026-11-28T12:00:00.000Z"}'
)


def test_the_command_record_document_is_written_byte_for_byte_as_before_and_loads_back() -> None:
    record = command_of(result("Timeout", 0.5), issued(0), result("Accepted", 2, '{"status": "Accepted"}'))
    assert orjson.dumps(command_to_doc(record)).decode() == STORED_COMMAND
    loaded = command_from_doc(json.loads(STORED_COMMAND))
    assert loaded == record
    assert command_from_doc({**json.loads(STORED_COMMAND), "expired_at": None}).expired_at is None
