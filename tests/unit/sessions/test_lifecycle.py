"""Lifecycle decisions (pure): which open sessions a new transaction, a boot, a connector
reported Available or the idle sweeper close; remote start and connector lookups."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.common import events as ev
from services.sessions.documents import open_sessions_to_doc
from services.sessions.domain import (
    ConnectorState,
    IndexEntry,
    OpenSessions,
    Plausibility,
    Session,
    abandon_envelope,
    abandon_event_id,
    abandons_for_boot,
    abandons_for_start,
    abandons_for_status,
    apply_remote_start,
    connector_from_status,
    index_entry,
    index_with,
    is_idle,
    RemoteStart,
    StationStatus,
    remote_start_of,
    remote_start_ref,
)

from .builders import NOW, V16, a_register, a_started, an_ended, an_envelope, at, meter_values, step

UTC = timezone.utc


def a_16_start(tx: str, connector: int, minute: float, **body: object) -> ev.Envelope:
    return a_started(
        transaction_id=tx, evse_id=connector, connector_id=connector, meter_start_wh=0, charging_state="",
        trigger_reason="", at_min=minute, env={**V16, "received_at": at(minute)}, **body,
    )


def indexed(*events: ev.Envelope) -> OpenSessions:
    index = None
    for e in events:
        s = step(None, e, NOW)
        assert s is not None
        index = index_with(index, "CS-1", {s.id: index_entry(s)}, NOW)
    assert index is not None
    return index


def test_the_index_keeps_open_sessions_only_and_is_unchanged_by_meter_values() -> None:
    s = step(None, a_16_start("1", 1, 0), NOW)
    index = index_with(None, "CS-1", {s.id: index_entry(s)}, NOW)
    assert index is not None and index.sessions[s.id] == IndexEntry("1", 1, 1, at(0), at(0))
    assert open_sessions_to_doc(index)["sessions"][s.id] == {
        "transaction_id": "1", "evse_id": 1, "connector_id": 1, "started_at": "2026-11-28T10:00:00.000Z",
        "received_at": "2026-11-28T10:00:00.000Z",
    }
    more = step(s, meter_values(a_register(5, 100), at_min=5, env=V16, transaction_id="1"), NOW)
    assert index_entry(more) == index_entry(s)
    assert index_with(index, "CS-1", {s.id: index_entry(more)}, NOW) is index

    ended = step(more, an_ended(transaction_id="1", env=V16, meter_stop_wh=10), NOW)
    assert index_entry(ended) is None
    emptied = index_with(index, "CS-1", {s.id: None}, NOW)
    assert emptied is not None and emptied.sessions == {} and emptied.version == index.version + 1
    assert index_with(None, "CS-1", {s.id: None}, NOW) is None


def test_a_new_transaction_abandons_the_older_open_sessions_of_its_connector_only() -> None:
    index = indexed(a_16_start("1", 1, 0), a_16_start("2", 2, 5))
    new = step(None, a_16_start("3", 1, 30), NOW)
    decisions = abandons_for_start(index, new)
    assert [(d.transaction_id, d.reason, d.at) for d in decisions] == [("1", "new_transaction", at(30))]
    # an offline-queued start of an older transaction does not close a newer one
    old = step(None, a_16_start("0", 1, -30), NOW)
    assert abandons_for_start(index, old) == []
    # a start does not abandon itself (a redelivered Start)
    first = step(None, a_16_start("1", 1, 0), NOW)
    assert abandons_for_start(index, first) == []


def test_a_201_start_naming_only_the_evse_matches_the_connectors_of_that_evse() -> None:
    index = indexed(a_started(transaction_id="A", evse_id=1, connector_id=2, at_min=0, env={"received_at": at(0)}))
    evse_only = step(None, a_started(transaction_id="B", evse_id=1, connector_id=0, at_min=10, env={"received_at": at(10)}), NOW)
    other_evse = step(None, a_started(transaction_id="C", evse_id=2, connector_id=2, at_min=10, env={"received_at": at(10)}), NOW)
    assert [d.transaction_id for d in abandons_for_start(index, evse_only)] == ["A"]
    assert abandons_for_start(index, other_evse) == []


def test_a_boot_abandons_every_session_received_before_it() -> None:
    index = indexed(a_16_start("1", 1, 0), a_16_start("2", 2, 5))
    boot = an_envelope(ev.StationBooted(vendor="V", model="M"), station_time=None, received_at=at(10))
    assert sorted((d.transaction_id, d.reason, d.at) for d in abandons_for_boot(index, boot)) == [
        ("1", "boot", at(10)), ("2", "boot", at(10)),
    ]
    early = an_envelope(ev.StationBooted(vendor="V", model="M"), station_time=None, received_at=at(1))
    assert [d.transaction_id for d in abandons_for_boot(index, early)] == ["1"]


def test_available_abandons_the_connectors_sessions_that_started_before_it() -> None:
    index = indexed(a_16_start("1", 1, 0), a_16_start("2", 2, 5))

    def status(text: str, connector: int, minute: float) -> ev.Envelope:
        return an_envelope(ev.ConnectorStatus(evse_id=connector, connector_id=connector, status=text), station_time=at(minute),
                           received_at=at(minute))

    assert [(d.transaction_id, d.reason) for d in abandons_for_status(index, status("AVAILABLE", 1, 20))] == [
        ("1", "connector_available")
    ]
    assert abandons_for_status(index, status("Available", 2, 1)) == []  # before that session started
    assert abandons_for_status(index, status("Finishing", 1, 20)) == []
    assert abandons_for_status(index, status("Available", 0, 20)) == []  # 1.6 connector 0: the station
    # a status dated 1970 counts at its receive time
    skewed = an_envelope(ev.ConnectorStatus(evse_id=2, connector_id=2, status="Available"),
                         station_time=datetime(1970, 1, 1, tzinfo=UTC), received_at=at(30))
    assert [(d.transaction_id, d.at) for d in abandons_for_status(index, skewed, Plausibility())] == [("2", at(30))]


def test_the_abandon_event_is_deterministic_per_session_and_reason() -> None:
    index = indexed(a_16_start("1", 1, 0))
    d = abandons_for_start(index, step(None, a_16_start("2", 1, 10), NOW))[0]
    one, two = abandon_envelope("CS-1", d, 1_200, NOW), abandon_envelope("CS-1", d, 1_200, NOW + timedelta(seconds=5))
    assert one.event_id == two.event_id == abandon_event_id(d.session_id, "new_transaction")
    assert abandon_event_id(d.session_id, "boot") != one.event_id
    assert isinstance(one.body, ev.SessionAbandoned) and one.body.energy_wh == 1_200
    assert (one.gateway_id, one.station_id, one.station_time) == ("sessions", "CS-1", at(10))


def test_idle_means_no_change_for_the_timeout() -> None:
    s = Session(id="s", station_id="CS-1", transaction_id="1", received_at=at(-5), updated_at=at(0))
    assert is_idle(s, at(0) + timedelta(hours=24), timedelta(hours=24))
    assert not is_idle(s, at(0) + timedelta(hours=23), timedelta(hours=24))
    assert not is_idle(replace(s, status="completed"), at(0) + timedelta(days=9), timedelta(hours=24))
    assert not is_idle(None, NOW, timedelta(hours=1))


def command_issued(payload: dict, *, command_id: str = "cmd-1", minute: float = 0, action: str = "RequestStartTransaction") -> ev.Envelope:  # type: ignore[type-arg]
    return an_envelope(
        ev.CommandIssued(command_id=command_id, command_type="RemoteStart", ocpp_action=action, payload_json=json.dumps(payload)),
        station_time=None, received_at=at(minute),
    )


def test_a_request_start_command_is_recorded_by_station_and_remote_start_id() -> None:
    issued = command_issued({"idToken": {"idToken": "RFID-9", "type": "ISO14443"}, "remoteStartId": 42, "evseId": 1})
    assert remote_start_ref(issued) == "CS-1/42"
    rs = apply_remote_start(None, issued, NOW)
    assert rs is not None
    assert (rs.id_token, rs.id_token_type, rs.evse_id, rs.command_id, rs.version) == ("RFID-9", "ISO14443", 1, "cmd-1", 1)
    assert apply_remote_start(rs, issued, NOW) is rs
    newer = apply_remote_start(rs, command_issued({"idToken": {"idToken": "B"}, "remoteStartId": 42}, command_id="cmd-2", minute=5), NOW)
    assert newer is not None and (newer.id_token, newer.version) == ("B", 2)
    assert remote_start_of(newer) == RemoteStart(id_token="B", issued_by="")
    assert apply_remote_start(newer, issued, NOW) is newer  # an older command does not win
    assert apply_remote_start(None, command_issued({"idTag": "X"}, action="RemoteStartTransaction"), NOW) is None
    assert remote_start_ref(command_issued({"idToken": {"idToken": "X"}})) is None


def test_the_connector_of_an_evse_comes_from_its_only_or_only_busy_connector() -> None:
    states = {"1/1": "Available", "2/1": "Available", "2/2": "Occupied", "3/1": "Occupied", "3/2": "Charging"}
    status = StationStatus("CS-1", connectors={key: ConnectorState(text) for key, text in states.items()})
    assert connector_from_status(status, 1) == 1
    assert connector_from_status(status, 2) == 2
    assert connector_from_status(status, 3) == 0  # two busy connectors: undecidable
    assert connector_from_status(status, 4) == 0
    assert connector_from_status(None, 1) == 0


def test_ties_an_available_in_the_starts_second_closes_it_and_two_equal_starts_close_only_the_earlier() -> None:
    index = indexed(a_16_start("1", 1, 0))
    same_second = an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Available"), station_time=at(0), received_at=at(0.5))
    assert [d.transaction_id for d in abandons_for_status(index, same_second)] == ["1"]

    a = a_started(transaction_id="A", evse_id=1, connector_id=1, at_min=10, env={"received_at": at(10)})
    b = a_started(transaction_id="B", evse_id=1, connector_id=1, at_min=10, env={"received_at": at(11)})
    both = indexed(a, b)
    assert [d.transaction_id for d in abandons_for_start(both, step(None, b, NOW))] == ["A"]
    assert abandons_for_start(both, step(None, a, NOW)) == []  # a redelivered A does not close B
