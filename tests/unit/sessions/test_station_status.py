"""Station status (pure): merged in any order, idempotent, and stored in the document it
always was (the API and operators read it). Command records moved to the stations
processor: tests/unit/stations/test_commands.py."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import permutations
from typing import Any

import orjson

from services.common import events as ev
from services.sessions.documents import station_status_from_doc, station_status_to_doc
from services.sessions.domain import StationStatus, apply_status

from .builders import NOW, STATION, an_envelope, at


def status_of(*events: ev.Envelope, status: StationStatus | None = None) -> StationStatus:
    for e in events:
        status = apply_status(status, e, NOW)
    assert status is not None
    return status


def status_after(*events: ev.Envelope) -> dict[str, Any]:
    """The stored document after `events`."""
    return station_status_to_doc(status_of(*events))


def connected(epoch: int, minute: float = 0, gateway: str = "gateway-0") -> ev.Envelope:
    return an_envelope(ev.StationConnected(epoch=epoch, subprotocol="ocpp2.0.1"), station_time=None,
                       received_at=at(minute), gateway_id=gateway)


def disconnected(epoch: int, minute: float = 1) -> ev.Envelope:
    return an_envelope(ev.StationDisconnected(epoch=epoch, close_code=1006), station_time=None, received_at=at(minute))


def connector(status: str, minute: float, connector_id: int = 1) -> ev.Envelope:
    return an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=connector_id, status=status), station_time=at(minute),
                       received_at=at(minute))


def test_a_connected_station_shows_its_epoch_gateway_and_version() -> None:
    doc = status_after(connected(3, gateway="gateway-2"))
    assert (doc["connected"], doc["epoch"], doc["gateway_id"], doc["ocpp_version"]) == (True, 3, "gateway-2", "2.0.1")
    assert doc["station_id"] == STATION and doc["last_seen"] == "2026-11-28T10:00:00.000Z"


def test_a_disconnect_of_the_current_epoch_disconnects() -> None:
    assert status_after(connected(3), disconnected(3))["connected"] is False


def test_a_disconnect_of_an_older_epoch_is_ignored() -> None:
    doc = status_after(connected(3), connected(4, 1, "gateway-1"), disconnected(3, 2))
    assert (doc["connected"], doc["epoch"], doc["gateway_id"]) == (True, 4, "gateway-1")


def test_a_newer_connection_reconnects_after_a_disconnect() -> None:
    assert status_after(connected(3), disconnected(3), connected(4, 5))["connected"] is True


def test_a_redelivered_connect_after_its_own_disconnect_stays_disconnected() -> None:
    assert status_after(connected(3), disconnected(3), connected(3))["connected"] is False


def test_the_connection_state_does_not_depend_on_the_order_of_events() -> None:
    events = [connected(3), disconnected(3, 2), connected(4, 3), connected(2, 4)]
    results = {repr(sorted((k, v) for k, v in status_after(*p).items() if k not in ("version", "updated_at")))
               for p in permutations(events)}
    assert len(results) == 1


def test_the_last_boot_is_kept_with_its_time() -> None:
    first = an_envelope(ev.StationBooted(vendor="ACME", model="A1", firmware_version="1.0"), received_at=at(0))
    second = an_envelope(ev.StationBooted(vendor="ACME", model="A1", firmware_version="1.1", reason="FirmwareUpdate"),
                         received_at=at(10))
    doc = status_after(second, first)
    assert doc["boot"]["firmware_version"] == "1.1"
    assert doc["boot"]["at"] == "2026-11-28T10:10:00.000Z"


def test_connector_statuses_ignore_older_station_timestamps() -> None:
    doc = status_after(connector("Occupied", 10), connector("Available", 5), connector("Faulted", 7, connector_id=2))
    assert doc["connectors"]["1/1"]["status"] == "Occupied"
    assert doc["connectors"]["1/1"]["at"] == "2026-11-28T10:10:00.000Z"
    assert doc["connectors"]["1/2"]["status"] == "Faulted"


def test_a_heartbeat_moves_last_heartbeat_and_last_seen() -> None:
    doc = status_after(connected(1), an_envelope(ev.Heartbeat(), received_at=at(5)))
    assert doc["last_heartbeat"] == doc["last_seen"] == "2026-11-28T10:05:00.000Z"


def test_applying_a_status_event_twice_changes_nothing() -> None:
    for e in (connected(1), disconnected(1), connector("Available", 1), an_envelope(ev.Heartbeat()),
              an_envelope(ev.StationBooted(vendor="V", model="M"))):
        once = status_of(e)
        assert apply_status(once, e, NOW + timedelta(hours=1)) is once


def test_authorizations_move_last_seen_only_once_a_minute() -> None:
    status = status_of(connected(1))
    auth = ev.Authorization(id_token="T", status="Accepted")
    assert apply_status(status, an_envelope(auth, received_at=at(0.5)), NOW) is status
    later = apply_status(status, an_envelope(auth, received_at=at(2)), NOW)
    assert later is not None and later.last_seen == at(2)


def test_session_and_command_events_are_not_status_events() -> None:
    assert apply_status(None, an_envelope(ev.MeterValues(transaction_id="1")), NOW) is None
    assert apply_status(None, an_envelope(ev.CommandIssued(command_id="c", command_type="Reset")), NOW) is None


# -- the stored documents: the format of before ------------------------------------------
# Written by the processor before the station status was a value (the previous
# `apply_status` built this document directly).
STORED_STATUS = (
    '{"station_id":"CS-1","connected":false,"epoch":3,"disconnected_epoch":3,"gateway_id":"gateway-2",'
    '"ocpp_version":"2.0.1","last_seen":"2026-11-28T10:03:00.000Z","last_disconnect":{"epoch":3,"close_code":1006,'
    '"reason":"gone","at":"2026-11-28T10:03:00.000Z"},"boot":{"vendor":"ACME","model":"A1","serial_number":"S-1",'
    '"firmware_version":"1.1","reason":"PowerUp","registration_status":"Accepted","interval":300,"iccid":"","imsi":"",'
    '"meter_type":"","meter_serial_number":"","at":"2026-11-28T10:00:15.000Z"},"connectors":{"1/1":{"status":"Occupied",'
    '"error_code":"NoError","info":"","vendor_error_code":"","at":"2026-11-28T10:01:00.000Z"},"2/1":{"status":"Faulted",'
    '"error_code":"","info":"x","vendor_error_code":"V7","at":"2026-11-28T10:00:30.000Z"}},'
    '"last_heartbeat":"2026-11-28T10:02:00.000Z","version":6,"updated_at":"2026-11-28T12:00:00.004Z"}'
)



def _status_events() -> list[ev.Envelope]:
    return [
        connected(3, 0, "gateway-2"),
        an_envelope(ev.StationBooted(vendor="ACME", model="A1", serial_number="S-1", firmware_version="1.1",
                                     reason="PowerUp", registration_status="Accepted", interval=300), received_at=at(0.25)),
        an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Occupied", error_code="NoError"), station_time=at(1)),
        an_envelope(ev.ConnectorStatus(evse_id=2, connector_id=1, status="Faulted", info="x", vendor_error_code="V7"),
                    station_time=at(0.5)),
        an_envelope(ev.Heartbeat(), received_at=at(2)),
        an_envelope(ev.StationDisconnected(epoch=3, close_code=1006, reason="gone"), station_time=None, received_at=at(3)),
    ]


def test_the_station_status_document_is_written_byte_for_byte_as_before() -> None:
    status = None
    for e in _status_events():
        status = apply_status(status, e, NOW + timedelta(microseconds=4321))
    assert status is not None
    assert orjson.dumps(station_status_to_doc(status)).decode() == STORED_STATUS


def test_a_stored_station_status_loads_and_writes_back_unchanged() -> None:
    doc = json.loads(STORED_STATUS)
    status = station_status_from_doc(doc)
    assert (status.connected, status.epoch, status.boot and status.boot.firmware_version) == (False, 3, "1.1")
    assert status.connectors["2/1"].vendor_error_code == "V7" and status.last_heartbeat == at(2)
    assert orjson.dumps(station_status_to_doc(status)).decode() == STORED_STATUS
    # and the merge goes on from it as from the value it was written from
    again = apply_status(status, connected(4, 5), NOW)
    assert again is not None and (again.connected, again.version) == (True, 7)


def test_a_status_document_of_an_older_version_without_the_newer_fields_loads() -> None:
    old = {"station_id": STATION, "connected": True, "epoch": 1, "gateway_id": "gateway-0", "ocpp_version": "1.6",
           "last_seen": "2026-11-28T10:00:00.000Z", "boot": {"vendor": "V", "model": "M", "at": "2026-11-28T10:00:00.000Z"},
           "connectors": {"1/1": {"status": "Available", "error_code": "", "info": "", "at": "2026-11-28T10:00:00.000Z"}},
           "last_heartbeat": None, "version": 2, "updated_at": "2026-11-28T10:00:00.000Z"}
    status = station_status_from_doc(old)
    assert (status.disconnected_epoch, status.last_disconnect, status.connectors["1/1"].vendor_error_code) == (0, None, "")
    assert status.boot is not None and status.boot.vendor == "V"
