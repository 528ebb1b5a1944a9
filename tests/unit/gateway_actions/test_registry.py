from __future__ import annotations

import pytest

from services.gateway.actions import is_csms_to_station, station_actions

from .builders import a_harness

ACTIONS = a_harness().actions  # handlers built from fake ports
handler_for = ACTIONS.handler_for

ACTIONS_16 = {
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification", "StopTransaction",
    "SecurityEventNotification", "SignCertificate", "LogStatusNotification", "SignedFirmwareStatusNotification",
}
ACTIONS_201 = {
    "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
    "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
    "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
    "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
    "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
}


def test_every_16_station_action_has_a_handler() -> None:
    assert station_actions("1.6") == ACTIONS_16


def test_every_201_station_action_has_a_handler() -> None:
    assert station_actions("2.0.1") == ACTIONS_201


def test_21_uses_the_201_handlers_and_adds_its_own() -> None:
    assert ACTIONS_201 < station_actions("2.1")
    assert handler_for("2.1", "TransactionEvent") is handler_for("2.0.1", "TransactionEvent")
    assert handler_for("2.1", "VatNumberValidation") is not None and handler_for("2.0.1", "VatNumberValidation") is None


@pytest.mark.parametrize("version, action", [
    ("1.6", "heartbeat"), ("1.6", "Foo"), ("1.6", "TransactionEvent"), ("2.0.1", "StartTransaction"),
    ("2.0.1", "Reset"), ("1.5", "Heartbeat"),
])
def test_unknown_wrong_version_or_wrong_direction_actions_have_no_handler(version: str, action: str) -> None:
    assert handler_for(version, action) is None


@pytest.mark.parametrize("version, action", [
    ("1.6", "Reset"), ("1.6", "RemoteStartTransaction"), ("1.6", "GetConfiguration"), ("1.6", "CertificateSigned"),
    ("2.0.1", "Reset"), ("2.0.1", "RequestStartTransaction"), ("2.0.1", "GetVariables"), ("2.1", "AFRRSignal"),
])
def test_csms_to_station_actions_are_recognised_as_such(version: str, action: str) -> None:
    assert is_csms_to_station(version, action)


@pytest.mark.parametrize("version, action", [
    ("1.6", "Heartbeat"), ("1.6", "DataTransfer"), ("1.6", "Foo"), ("1.6", "reset"), ("1.6", "RequestStartTransaction"),
    ("2.0.1", "TransactionEvent"), ("2.0.1", "RemoteStartTransaction"), ("2.1", "NotifyPeriodicEventStream"),
    ("1.5", "Reset"),
])
def test_station_side_and_unknown_actions_are_not_csms_to_station(version: str, action: str) -> None:
    assert not is_csms_to_station(version, action)
