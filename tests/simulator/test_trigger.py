"""TriggerMessage: Accepted and the message sent for what the station can send; Rejected or
NotImplemented, honestly, for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.conftest import StartStation
from tests.simulator.fake_csms import FakeCsms
from tests.support.waiting import eventually


async def triggered(csms: FakeCsms, station_id: str, action: str, before: int) -> dict[str, Any]:
    """The first `action` the station sent after it had sent `before` of them."""
    await eventually(lambda: len(csms.calls(station_id, action)) > before, what=f"a triggered {action}",
                     detail=lambda: csms.actions(station_id))
    return csms.calls(station_id, action)[before].payload


@pytest.mark.parametrize(("requested", "sent", "expected"), [
    ("Heartbeat", "Heartbeat", {}),
    ("StatusNotification", "StatusNotification", {"connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
    ("MeterValues", "MeterValues", {"evseId": 1}),
    ("FirmwareStatusNotification", "FirmwareStatusNotification", {"status": "Idle"}),
    ("LogStatusNotification", "LogStatusNotification", {"status": "Idle"}),
])
async def test_201_trigger_sends_the_message(csms: FakeCsms, station: StartStation, requested: str, sent: str, expected: dict[str, Any]) -> None:
    sim = await station(f"CP-TRG-{requested}", "2.0.1")
    before = len(csms.calls(sim.id, sent))
    assert await sim.result("TriggerMessage", {"requestedMessage": requested}) == {"status": "Accepted"}
    payload = await triggered(csms, sim.id, sent, before)
    assert {k: payload[k] for k in expected} == expected
    if sent == "MeterValues":
        assert payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    order = csms.order(sim.id)
    assert order.index(("result", "TriggerMessage")) < len(order) - 1 - order[::-1].index(("call", sent))


@pytest.mark.parametrize(("requested", "status"), [
    ("BootNotification", "Rejected"),          # F06.FR.17: its boot was accepted already
    ("TransactionEvent", "Rejected"),          # no transaction running
    ("SignV2GCertificate", "NotImplemented"),
    ("PublishFirmwareStatusNotification", "NotImplemented"),
])
async def test_201_trigger_refuses_what_it_cannot_send(csms: FakeCsms, station: StartStation, requested: str, status: str) -> None:
    sim = await station(f"CP-TRGNO-{requested}", "2.0.1")
    sent_before, heartbeats = len(csms.received), len(csms.calls(sim.id, "Heartbeat"))
    assert await sim.result("TriggerMessage", {"requestedMessage": requested}) == {"status": status}
    # a message triggered after it is the only thing the station sent since
    assert await sim.result("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    await triggered(csms, sim.id, "Heartbeat", heartbeats)
    assert [r.action for r in csms.received[sent_before:] if r.station == sim.id] == ["Heartbeat"]


async def test_201_trigger_transaction_event_while_charging(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-TRG-TX", "2.0.1", sessions=1, meter_values=1, interval_s=30)
    started = await triggered(csms, sim.id, "TransactionEvent", 0)
    assert started["eventType"] == "Started"
    assert await sim.result("TriggerMessage", {"requestedMessage": "TransactionEvent"}) == {"status": "Accepted"}
    update = await triggered(csms, sim.id, "TransactionEvent", 1)
    assert (update["eventType"], update["triggerReason"]) == ("Updated", "Trigger")
    assert update["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]


async def test_201_trigger_for_an_unknown_evse_is_rejected(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-TRG-EVSE", "2.0.1")
    assert await sim.result("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 2}}) == {"status": "Rejected"}
    assert await sim.result("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}) == {"status": "Accepted"}


@pytest.mark.parametrize(("requested", "expected"), [
    ("BootNotification", {"chargePointVendor": "CSMS-Sim", "firmwareVersion": "1.0.0"}),
    ("Heartbeat", {}),
    ("StatusNotification", {"connectorId": 1, "status": "Available"}),
    ("MeterValues", {"connectorId": 1}),
    ("FirmwareStatusNotification", {"status": "Idle"}),
    ("DiagnosticsStatusNotification", {"status": "Idle"}),
])
async def test_16_trigger_sends_the_message(csms: FakeCsms, station: StartStation, requested: str, expected: dict[str, Any]) -> None:
    sim = await station(f"CP-TRG16-{requested}", "1.6")
    before = len(csms.calls(sim.id, requested))
    assert await sim.result("TriggerMessage", {"requestedMessage": requested}) == {"status": "Accepted"}
    payload = await triggered(csms, sim.id, requested, before)
    assert {k: payload[k] for k in expected} == expected


async def test_16_trigger_for_a_connector_it_does_not_have_is_rejected(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-TRG16-CONN", "1.6")
    assert await sim.result("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 3}) == {"status": "Rejected"}


async def test_16_extended_trigger(csms: FakeCsms, station: StartStation) -> None:
    sim = await station("CP-XTRG16", "1.6")
    assert await sim.result("ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"}) == {"status": "Accepted"}
    assert await triggered(csms, sim.id, "LogStatusNotification", 0) == {"status": "Idle"}
    assert await sim.result("ExtendedTriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}) == {"status": "Accepted"}
    assert await triggered(csms, sim.id, "SignedFirmwareStatusNotification", 0) == {"status": "Idle"}
    # a CSR when asked: tests/simulator/test_security.py
    assert await sim.result("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}) == {"status": "Accepted"}
    await triggered(csms, sim.id, "SignCertificate", 0)
