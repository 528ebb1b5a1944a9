from __future__ import annotations

from datetime import timedelta
from itertools import permutations
from typing import Any

from services.common import events as ev
from services.sessions.domain import apply_command, apply_status

from .builders import NOW, STATION, an_envelope, at


def status_after(*events: ev.Envelope, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    for e in events:
        doc = apply_status(doc, e, NOW)
    assert doc is not None
    return doc


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
        once = status_after(e)
        assert apply_status(once, e, NOW + timedelta(hours=1)) == once


def test_authorizations_move_last_seen_only_once_a_minute() -> None:
    doc = status_after(connected(1))
    auth = ev.Authorization(id_token="T", status="Accepted")
    assert apply_status(doc, an_envelope(auth, received_at=at(0.5)), NOW) == doc
    assert apply_status(doc, an_envelope(auth, received_at=at(2)), NOW)["last_seen"] == "2026-11-28T10:02:00.000Z"


def test_session_and_command_events_are_not_status_events() -> None:
    assert apply_status(None, an_envelope(ev.MeterValues(transaction_id="1")), NOW) is None
    assert apply_status(None, an_envelope(ev.CommandIssued(command_id="c", command_type="Reset")), NOW) is None


# -- command records -----------------------------------------------------------
def issued(minute: float = 0) -> ev.Envelope:
    return an_envelope(ev.CommandIssued(command_id="cmd-1", command_type="RemoteStop", ocpp_action="RequestStopTransaction",
                                        payload_json='{"transactionId": "tx-1"}'), received_at=at(minute))


def result(status: str, minute: float, response: str = "{}") -> ev.Envelope:
    return an_envelope(ev.CommandResult(command_id="cmd-1", command_type="RemoteStop", status=status,
                                        response_json=response), received_at=at(minute))


def command_after(*events: ev.Envelope) -> dict[str, Any]:
    doc = None
    for e in events:
        doc = apply_command(doc, e, NOW)
    assert doc is not None
    return doc


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
    doc = command_after(issued(), result("Rejected", 1))
    assert apply_command(doc, result("Rejected", 1), NOW) == doc
    assert apply_command(doc, issued(), NOW) == doc
