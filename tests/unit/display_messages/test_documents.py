"""The pure rules of display messages and customer information (ADR 018): a result or
part applied twice, or late, changes nothing; parts assemble in seqNo order whatever
their arrival order; the data kept is bounded."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

import pytest

from services.common import events as ev
from services.stations.drivers import customer_information_documents as ci
from services.stations.drivers.display_messages_documents import (
    DisplayMessageRecord,
    MessageRecord,
    MessagesReport,
    active,
    add_report_part,
    answer_report,
    message_from_ocpp,
    next_message_id,
    record_clear,
    record_from_doc,
    record_set,
    record_to_doc,
    report_from_doc,
    report_to_doc,
)

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _msg(mid: int, content: str = "hello", **kw: object) -> MessageRecord:
    return message_from_ocpp({"id": mid, "priority": "NormalCycle",
                              "message": {"format": "UTF8", "content": content}, **kw})


def test_a_message_info_as_sent_is_read_with_its_times() -> None:
    m = message_from_ocpp({"id": 7, "priority": "InFront", "state": "Charging", "transactionId": "tx-1",
                           "startDateTime": "2026-12-01T10:00:00.000Z", "endDateTime": "2026-12-01T11:00:00Z",
                           "message": {"format": "URI", "content": "https://x", "language": "de"}})
    assert (m.id, m.priority, m.state, m.transaction_id, m.format, m.content, m.language) == (
        7, "InFront", "Charging", "tx-1", "URI", "https://x", "de")
    assert m.start_at == T0 and m.end_at == T0 + timedelta(hours=1)
    for bad in ({"priority": "InFront", "message": {}}, {"id": "7", "priority": "InFront", "message": {}},
                {"id": 7, "priority": "InFront"}, {"id": 7, "message": {"format": "UTF8", "content": ""}}):
        with pytest.raises(ValueError):
            message_from_ocpp(bad)


def test_set_and_clear_are_idempotent_and_a_late_set_does_not_undo_a_clear() -> None:
    rec = DisplayMessageRecord("CP-1")
    once = record_set(rec, _msg(1), "c1", T0)
    assert record_set(once, _msg(1), "c1", T0) is once   # the same result again
    cleared = record_clear(once, 1, T0 + timedelta(seconds=5))
    assert 1 not in cleared.messages
    assert record_clear(cleared, 1, T0 + timedelta(seconds=5)) is cleared
    # the set redelivered after its clear: still cleared
    assert record_set(cleared, _msg(1), "c1", T0) is cleared
    # a newer set of the same id is recorded again
    again = record_set(cleared, _msg(1, "new"), "c2", T0 + timedelta(seconds=9))
    assert again.messages[1].content == "new" and again.messages[1].command_id == "c2"
    # an older set does not replace a newer one
    assert record_set(again, _msg(1, "old"), "c0", T0 + timedelta(seconds=7)) is again


def test_any_order_of_the_same_results_gives_the_same_record() -> None:
    steps = [("set", 1, "a", 0), ("set", 2, "b", 1), ("clear", 1, "", 2), ("set", 1, "c", 3), ("clear", 2, "", 4)]
    finals = set()
    for order in itertools.permutations(steps):
        rec = DisplayMessageRecord("CP-1")
        for kind, mid, content, t in order:
            at = T0 + timedelta(seconds=t)
            rec = record_set(rec, _msg(mid, content), content, at) if kind == "set" else record_clear(rec, mid, at)
        finals.add(tuple(sorted((m.id, m.content) for m in rec.messages.values())))
    assert finals == {((1, "c"),)}


def test_next_id_is_one_more_than_the_highest_used() -> None:
    assert next_message_id(None) == 1
    rec = record_set(record_set(DisplayMessageRecord("CP-1"), _msg(4), "a", T0), _msg(9), "b", T0)
    assert next_message_id(rec) == 10
    full = record_set(rec, _msg(2**31 - 1), "c", T0)
    assert next_message_id(full) == 1


def test_messages_past_their_end_are_not_active() -> None:
    msgs = [_msg(1, endDateTime="2026-12-01T10:00:00Z"), _msg(2, endDateTime="2026-12-01T10:00:01Z"), _msg(3)]
    assert [m.id for m in active(msgs, T0)] == [2, 3]


def test_the_record_and_a_report_round_trip_through_their_documents() -> None:
    rec = record_clear(record_set(DisplayMessageRecord("CP-1"), _msg(1, endDateTime="2026-12-02T00:00:00Z"), "c1", T0),
                       5, T0 + timedelta(milliseconds=1500))
    assert record_from_doc(record_to_doc(rec)) == rec
    rep = add_report_part(MessagesReport("CP-1", 77), "e1", ev.DisplayMessagesReport(77, True, (
        ev.DisplayMessage(3, "InFront", "UTF8", "x", start=T0),)), T0)
    assert report_from_doc(report_to_doc(rep)) == rep


def test_a_report_completes_with_its_last_part_or_an_unknown_answer() -> None:
    rep = answer_report(MessagesReport("CP-1", 5), "Accepted", "c1", T0)
    assert not rep.complete
    part1 = ev.DisplayMessagesReport(5, True, (ev.DisplayMessage(1, "NormalCycle", "UTF8", "a"),))
    part2 = ev.DisplayMessagesReport(5, False, (ev.DisplayMessage(2, "InFront", "UTF8", "b"),))
    rep = add_report_part(rep, "e1", part1, T0)
    assert add_report_part(rep, "e1", part1, T0) is rep   # redelivered
    rep = add_report_part(rep, "e2", part2, T0)
    assert rep.complete and sorted(rep.messages) == [1, 2] and rep.parts == 2
    unknown = answer_report(MessagesReport("CP-1", 6), "Unknown", "c2", T0)
    assert unknown.complete and not unknown.messages


# -- customer information -----------------------------------------------------------------

def _request(**kw: object) -> dict[str, object]:
    return {"requestId": 9, "report": True, "clear": False, "idToken": {"idToken": "TOK-1", "type": "ISO14443"}, **kw}


def test_parts_in_any_order_and_repeated_assemble_in_seq_order() -> None:
    parts = [(0, "alpha-", True), (1, "beta-", True), (2, "gamma", False)]
    for order in itertools.permutations(parts + [parts[1]]):
        c = ci.answer(ci.CustomerInformation("CP-1", 9), "Accepted", "cmd", _request(), T0)
        assert ci.status_of(c) == ci.REQUESTED
        for seq, data, tbc in order:
            c = ci.add_part(c, seq, data, tbc, T0, T0)
        assert ci.status_of(c) == ci.COMPLETE and ci.data_of(c) == "alpha-beta-gamma" and len(c.parts) == 3
        assert ci.from_doc(ci.to_doc(c)) == c


def test_status_follows_the_answer_and_the_parts() -> None:
    base = ci.CustomerInformation("CP-1", 9)
    assert ci.status_of(ci.answer(base, "Rejected", "cmd", _request(), T0)) == ci.REJECTED
    assert ci.status_of(ci.answer(base, "Invalid", "cmd", _request(), T0)) == ci.REJECTED
    c = ci.add_part(base, 1, "b", False, None, T0)           # the last part before the first
    assert ci.status_of(c) == ci.ASSEMBLING
    assert ci.status_of(ci.add_part(c, 0, "a", True, None, T0)) == ci.COMPLETE
    with pytest.raises(ValueError):
        ci.add_part(base, -1, "x", False, None, T0)


def test_the_customer_is_named_once_whichever_identifier() -> None:
    assert ci.identifier_of_request(_request()) == ("id_token", "TOK-1")
    assert ci.identifier_of_request({"customerIdentifier": "cust-9"}) == ("customer_identifier", "cust-9")
    assert ci.identifier_of_request({"customerCertificate": {"serialNumber": "0a1b"}}) == ("customer_certificate", "0a1b")
    answered = ci.answer(ci.CustomerInformation("CP-1", 9), "Accepted", "cmd", _request(), T0)
    assert ci.answer(answered, "Accepted", "cmd", _request(), T0 + timedelta(seconds=3)) is answered


def test_data_beyond_the_bound_is_dropped_and_said() -> None:
    chunk = "x" * 512
    c = ci.CustomerInformation("CP-1", 9)
    n = ci.MAX_DATA_CHARS // 512 + 3
    order = list(range(n))
    random.Random(4).shuffle(order)
    for seq in order:
        c = ci.add_part(c, seq, chunk, seq != n - 1, None, T0)
    assert c.truncated and c.data_chars <= ci.MAX_DATA_CHARS and ci.status_of(c) == ci.COMPLETE
    assert len(c.parts) == n
