"""The station-operation bodies (ADR 016) are nested messages converted generically
(codec._ops_to_pb / _ops_from_pb): every body and nested type round-trips, absent optional
fields stay absent (None, not 0), and events.proto has no body the codec does not map."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.common import events as ev
from services.common.codec import _BODY_FIELD, decode_event, encode_event, events_pb2

T = datetime(2026, 12, 2, 15, 0, 0, 123000, tzinfo=timezone.utc)
SCHEDULE = ev.ChargingSchedule(
    "W", 1, T, 3600, (ev.SchedulePeriod(0, 11000.0, 3), ev.SchedulePeriod(900, 7400.5)), 1200.0,
    ev.SalesTariff(1, "day", 1, (ev.SalesTariffEntry(0, 600, 1, (ev.ConsumptionCost(0.0, (ev.Cost("RelativePricePercentage", 10, -1),)),)),)),
)
BODIES = [
    ev.DataTransfer("acme", "m1", '{"a":1}', "Accepted"),
    ev.FirmwareStatus("Installed", 7),
    ev.FirmwareStatus("Idle"),
    ev.FirmwareStatus("Downloading", 0),
    ev.LogStatus("Uploaded", None, True),
    ev.SecurityEvent("FirmwareUpdated", T, "x"),
    ev.ReportPart(5, 0, True, T, (
        ev.ReportDatum(ev.Component("EVSE", evse_id=1), ev.Variable("Power"),
                       (ev.VariableAttribute("Actual", "11000", "ReadOnly"), ev.VariableAttribute("MaxSet", None)),
                       ev.VariableCharacteristics("decimal", "W", None, 22000.0)),
        ev.ReportDatum(ev.Component("ChargingStation"), ev.Variable("Available"), (ev.VariableAttribute(value=""),)),
        ev.ReportDatum(ev.Component("Connector", "x", 0, 2), ev.Variable("Type", "i")),
    )),
    ev.EventReport(0, False, T, (ev.EventDatum(1, "Delta", ev.Component("Connector", evse_id=1, connector_id=1),
                                               ev.Variable("AvailabilityState"), T, None, "Faulted", cleared=True,
                                               variable_monitoring_id=0),)),
    ev.MonitoringReportPart(3, 1, False, None, (ev.MonitoringDatum(ev.Component("EVSE", evse_id=2), ev.Variable("Power"),
                                                                   (ev.VariableMonitor(4, 100.5, "Delta", 5, True),)),)),
    ev.ReservationStatus(9, "Expired"),
    ev.ChargingLimitSet("EMS", False, 1, (SCHEDULE,)),
    ev.ChargingLimitSet("SO"),
    ev.ChargingLimitCleared("EMS", 2),
    ev.ChargingProfilesReport(4, "CSO", 0, True, (ev.ChargingProfile(1, 0, "TxDefaultProfile", "Absolute", "", T, None, "tx-1", (SCHEDULE,)),)),
    ev.EvChargingNeeds(1, "AC_three_phase_core", ac=ev.AcChargingParameters(1, 2, 3, 4), status="Rejected"),
    ev.EvChargingNeeds(1, "DC", 3, T, dc=ev.DcChargingParameters(100, 400, bulk_soc=80), status="Rejected"),
    ev.EvChargingSchedule(1, T, None, "Accepted"),
    ev.EvChargingSchedule(1, T, SCHEDULE, "Accepted"),
    ev.DisplayMessagesReport(2, False, (ev.DisplayMessage(1, "InFront", "UTF8", "Hi", "Idle", T, None, "", "en",
                                                          ev.Component("Display", evse_id=1)),
                                        ev.DisplayMessage(2, "NormalCycle", "ASCII", "x"))),
    ev.CustomerInformationPart(8, 0, "name: A", True, T),
    ev.PublishFirmwareStatus("Published", ("a", "b"), None),
    ev.CertificateSigningRequest("-----BEGIN CERTIFICATE REQUEST-----", "V2GCertificate", "Rejected"),
    ev.CertificateStatusRequest("SHA256", "aa", "bb", "01", "http://ocsp", "Failed"),
    ev.EvCertificateRequest("urn:iso:15118:2:2013:MsgDef", "Install", "AAAA", "Failed"),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_operation_bodies_round_trip(body: ev.Body) -> None:
    env = ev.Envelope("id-1", "CP-1", T, body, gateway_id="gateway-0", ocpp_version="2.0.1", action="X")
    assert decode_event(encode_event(env)) == env


def test_every_operation_body_is_covered_here() -> None:
    assert {type(b) for b in BODIES} == set(ev.OPERATION_BODIES)


def test_absent_optionals_stay_absent_and_present_zeros_stay_zero() -> None:
    env = ev.Envelope("id", "CP", T, ev.FirmwareStatus("Idle"))
    pb = events_pb2.Event.FromString(encode_event(env))
    assert not pb.firmware_status.has_request_id
    env0 = ev.Envelope("id", "CP", T, ev.FirmwareStatus("Idle", 0))
    pb0 = events_pb2.Event.FromString(encode_event(env0))
    assert pb0.firmware_status.has_request_id and pb0.firmware_status.request_id == 0


def test_events_proto_has_no_body_without_a_dataclass() -> None:
    oneof = {f.name for f in events_pb2.Event.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert oneof == set(_BODY_FIELD.values())
