"""Station operations (ADR 016 §1): every 1.6 / 2.0.1 station -> CSMS message besides
charging is published as its typed body, mapped field by field, with an answer that
promises only what the CSMS does; integers the event cannot carry are the station's
PropertyConstraintViolation. (Over a real socket: tests/integration_inproc/gateway/
test_operations_over_ws.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.exceptions import PropertyConstraintViolationError

from services.common import codec
from services.common.events import (
    AcChargingParameters,
    CertificateSigningRequest,
    CertificateStatusRequest,
    ChargingLimitCleared,
    ChargingLimitSet,
    ChargingProfile,
    ChargingProfilesReport,
    ChargingSchedule,
    Component,
    ConsumptionCost,
    Cost,
    CustomerInformationPart,
    DataTransfer,
    DcChargingParameters,
    DisplayMessage,
    DisplayMessagesReport,
    Envelope,
    EvCertificateRequest,
    EvChargingNeeds,
    EvChargingSchedule,
    EventDatum,
    EventReport,
    FirmwareStatus,
    LogStatus,
    MonitoringDatum,
    MonitoringReportPart,
    PublishFirmwareStatus,
    ReportDatum,
    ReportPart,
    ReservationStatus,
    SalesTariff,
    SalesTariffEntry,
    SchedulePeriod,
    SecurityEvent,
    Variable,
    VariableAttribute,
    VariableCharacteristics,
    VariableMonitor,
)
from services.common.timeutil import Clock
from services.gateway.actions import ActionPorts, Actions
from services.gateway.actions import operations as ops
from services.gateway.actions.common import BootDecider

from .builders import NOW, FakeGate, FakeStore, FakeTokens, Harness, a_harness, at, ts

V2 = ["2.0.1", "2.1"]


def encodes(body: Any) -> None:
    env = Envelope(event_id="e", station_id="CS-1", received_at=NOW, body=body)
    assert codec.decode_event(codec.encode_event(env)).body == body


def with_vendors(version: str, *vendors: str) -> Harness:
    h = a_harness(version)
    clock: Clock = lambda: NOW  # noqa: E731
    store = FakeStore()
    h.actions = Actions(ActionPorts(
        clock=clock, boot=BootDecider(store, FakeGate(), 300), tokens=FakeTokens({}), tx_ids=store,
        datatransfer_vendors=frozenset(v.casefold() for v in vendors),
    ))
    return h


# -- DataTransfer --------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
async def test_a_data_transfer_of_an_unconfigured_vendor_is_unknown_vendor_and_recorded_so(version: str) -> None:
    h = with_vendors(version, "com.other")
    data: Any = '{"a": 1}' if version == "1.6" else {"a": [1, "x"]}
    assert await h.call("DataTransfer", {"vendorId": "com.acme", "messageId": "Reading", "data": data}) == {"status": "UnknownVendorId"}
    body = h.events.body
    assert body == DataTransfer(
        vendor_id="com.acme", message_id="Reading",
        data_json='"{\\"a\\": 1}"' if version == "1.6" else '{"a":[1,"x"]}', status="UnknownVendorId",
    )
    assert h.events.station_time is None
    encodes(body)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_data_transfer_of_a_configured_vendor_is_accepted_whatever_the_case(version: str) -> None:
    h = with_vendors(version, "com.ACME", "org.x")
    assert await h.call("DataTransfer", {"vendorId": "Com.Acme"}) == {"status": "Accepted"}
    assert h.events.body == DataTransfer(vendor_id="Com.Acme", status="Accepted")  # no message id, no data: ""


async def test_no_vendor_is_accepted_when_none_is_configured() -> None:
    h = a_harness("2.0.1")
    assert await h.call("DataTransfer", {"vendorId": "com.acme", "data": None}) == {"status": "UnknownVendorId"}
    assert h.events.body.data_json == ""


# -- firmware, logs, security events, certificates (1.6 security whitepaper + 2.0.1) ------

@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
async def test_firmware_and_log_statuses_share_bodies_and_keep_the_request_id(version: str) -> None:
    h = a_harness(version)
    assert await h.call("FirmwareStatusNotification", {"status": "Downloading", "requestId": 17} if version != "1.6"
                        else {"status": "Downloading"}) == {}
    assert h.events.body == FirmwareStatus(status="Downloading", request_id=17 if version != "1.6" else None)
    h.events.published.clear()
    assert await h.call("LogStatusNotification", {"status": "Uploading", "requestId": 8}) == {}
    assert h.events.body == LogStatus(status="Uploading", request_id=8)
    encodes(h.events.body)


async def test_16_diagnostics_and_signed_firmware_statuses() -> None:
    h = a_harness("1.6")
    await h.call("DiagnosticsStatusNotification", {"status": "UploadFailed"})
    assert h.events.body == LogStatus(status="UploadFailed", request_id=None, diagnostics=True)
    h.events.published.clear()
    await h.call("SignedFirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 0})
    assert h.events.body == FirmwareStatus(status="InvalidSignature", request_id=0)  # 0 is a request id, not "absent"
    encodes(h.events.body)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_security_event_keeps_its_type_time_and_tech_info_and_the_station_time(version: str) -> None:
    h = a_harness(version)
    await h.call("SecurityEventNotification", {"type": "InvalidFirmwareSignature", "timestamp": ts(-5), "techInfo": "sha mismatch"})
    assert h.events.body == SecurityEvent(type="InvalidFirmwareSignature", timestamp=at(-5), tech_info="sha mismatch")
    assert h.events.station_time == at(-5)


@pytest.mark.parametrize("version, payload, certificate_type, answer", [
    ("1.6", {"csr": "MIIB..."}, "", {"status": "Rejected"}),
    ("2.0.1", {"csr": "MIIB...", "certificateType": "ChargingStationCertificate"}, "ChargingStationCertificate",
     {"status": "Rejected", "statusInfo": {"reasonCode": "NoCA", "additionalInfo": "no certificate authority is configured"}}),
    ("2.0.1", {"csr": "MIIB...", "certificateType": "V2GCertificate"}, "V2GCertificate",
     {"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedType",
                                           "additionalInfo": "the CSMS CA does not sign V2GCertificate"}}),
])
async def test_sign_certificate_without_a_ca_is_rejected_and_the_record_says_so(
        version: str, payload: dict[str, Any], certificate_type: str, answer: dict[str, Any]) -> None:
    # (with a CA: tests/unit/gateway_actions/test_security_actions.py)
    h = a_harness(version)
    assert await h.call("SignCertificate", payload) == answer
    assert h.events.body == CertificateSigningRequest(csr="MIIB...", certificate_type=certificate_type, status="Rejected")


async def test_certificate_status_and_ev_certificate_requests_without_ports_fail_and_are_recorded() -> None:
    h = a_harness("2.0.1")
    ocsp = {"hashAlgorithm": "SHA384", "issuerNameHash": "aa11", "issuerKeyHash": "bb22", "serialNumber": "0f",
            "responderURL": "http://ocsp.example.com"}
    assert await h.call("GetCertificateStatus", {"ocspRequestData": ocsp}) == {
        "status": "Failed", "statusInfo": {"reasonCode": "NoResponder"}}
    assert h.events.body == CertificateStatusRequest(
        hash_algorithm="SHA384", issuer_name_hash="aa11", issuer_key_hash="bb22", serial_number="0f",
        responder_url="http://ocsp.example.com", status="Failed",
    )
    h.events.published.clear()
    answer = await h.call("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
                                                    "action": "Update", "exiRequest": "gAB="})
    assert answer == {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "NoProvider"}}
    assert h.events.body == EvCertificateRequest(
        iso15118_schema_version="urn:iso:15118:2:2013:MsgDef", action="Update", exi_request="gAB=", status="Failed",
    )


# -- device model ------------------------------------------------------------------------

REPORT = {
    "requestId": 42, "generatedAt": ts(-1), "tbc": True, "seqNo": 3,
    "reportData": [
        {"component": {"name": "EVSE", "evse": {"id": 2}},
         "variable": {"name": "Power", "instance": "Max"},
         "variableAttribute": [{"value": "22000"}, {"type": "MaxSet", "value": "11000", "mutability": "ReadOnly",
                                                    "persistent": True, "constant": True}],
         "variableCharacteristics": {"unit": "W", "dataType": "decimal", "minLimit": 0, "maxLimit": 22000.5,
                                     "supportsMonitoring": True}},
        {"component": {"name": "Connector", "instance": "left", "evse": {"id": 1, "connectorId": 2}},
         "variable": {"name": "ConnectorType"},
         "variableAttribute": [{"mutability": "WriteOnly"}],
         "variableCharacteristics": {"dataType": "OptionList", "valuesList": "cType2,sType2", "supportsMonitoring": False}},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"},
         "variableAttribute": [{"type": "Actual", "value": ""}]},
    ],
}


@pytest.mark.parametrize("version", V2)
async def test_a_notify_report_becomes_a_report_part_field_by_field(version: str) -> None:
    h = a_harness(version)
    assert await h.call("NotifyReport", REPORT) == {}
    assert h.events.body == ReportPart(
        request_id=42, seq_no=3, tbc=True, generated_at=at(-1),
        data=(
            ReportDatum(
                component=Component(name="EVSE", evse_id=2, connector_id=0),
                variable=Variable(name="Power", instance="Max"),
                attributes=(
                    VariableAttribute(type="Actual", value="22000", mutability="ReadWrite"),  # the schema's defaults
                    VariableAttribute(type="MaxSet", value="11000", mutability="ReadOnly", persistent=True, constant=True),
                ),
                characteristics=VariableCharacteristics(data_type="decimal", unit="W", min_limit=0.0, max_limit=22000.5,
                                                        supports_monitoring=True),
            ),
            ReportDatum(
                component=Component(name="Connector", instance="left", evse_id=1, connector_id=2),
                variable=Variable(name="ConnectorType"),
                attributes=(VariableAttribute(value=None, mutability="WriteOnly"),),
                characteristics=VariableCharacteristics(data_type="OptionList", values_list="cType2,sType2"),
            ),
            ReportDatum(
                component=Component(name="SecurityCtrlr", evse_id=None), variable=Variable(name="OrganizationName"),
                attributes=(VariableAttribute(value=""),), characteristics=None,
            ),
        ),
    )
    assert h.events.station_time == at(-1)
    encodes(h.events.body)


async def test_an_empty_report_part_ends_the_report() -> None:
    h = a_harness("2.0.1")
    await h.call("NotifyReport", {"requestId": 1, "generatedAt": ts(), "seqNo": 0})
    assert h.events.body == ReportPart(request_id=1, seq_no=0, tbc=False, generated_at=at(), data=())


@pytest.mark.parametrize("version", V2)
async def test_a_notify_event_keeps_every_event_field(version: str) -> None:
    h = a_harness(version)
    payload = {"generatedAt": ts(), "seqNo": 0, "tbc": False, "eventData": [
        {"eventId": 7, "timestamp": ts(-2), "trigger": "Delta", "cause": 6, "actualValue": "Faulted", "techCode": "E12",
         "techInfo": "overcurrent", "cleared": True, "transactionId": "tx-9", "variableMonitoringId": 4,
         "eventNotificationType": "CustomMonitor", "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "AvailabilityState"}},
        {"eventId": 8, "timestamp": ts(-1), "trigger": "Alerting", "actualValue": "true",
         "eventNotificationType": "HardWiredNotification", "component": {"name": "ChargingStation"},
         "variable": {"name": "Problem"}},
    ]}
    assert await h.call("NotifyEvent", payload) == {}
    assert h.events.body == EventReport(seq_no=0, tbc=False, generated_at=at(), events=(
        EventDatum(event_id=7, trigger="Delta", component=Component(name="Connector", evse_id=1, connector_id=1),
                   variable=Variable(name="AvailabilityState"), timestamp=at(-2), cause=6, actual_value="Faulted",
                   tech_code="E12", tech_info="overcurrent", cleared=True, transaction_id="tx-9",
                   variable_monitoring_id=4, event_notification_type="CustomMonitor"),
        EventDatum(event_id=8, trigger="Alerting", component=Component(name="ChargingStation"),
                   variable=Variable(name="Problem"), timestamp=at(-1), actual_value="true",
                   event_notification_type="HardWiredNotification"),
    ))
    encodes(h.events.body)


async def test_a_notify_monitoring_report_keeps_its_monitors() -> None:
    h = a_harness("2.0.1")
    payload = {"requestId": 5, "seqNo": 1, "tbc": True, "generatedAt": ts(), "monitor": [
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "variableMonitoring": [{"id": 3, "transaction": True, "value": 7400.5, "type": "UpperThreshold", "severity": 4},
                                {"id": 4, "transaction": False, "value": 10, "type": "Periodic", "severity": 8}]}]}
    assert await h.call("NotifyMonitoringReport", payload) == {}
    assert h.events.body == MonitoringReportPart(request_id=5, seq_no=1, tbc=True, generated_at=at(), data=(
        MonitoringDatum(component=Component(name="EVSE", evse_id=1), variable=Variable(name="Power"), monitors=(
            VariableMonitor(id=3, value=7400.5, type="UpperThreshold", severity=4, transaction=True),
            VariableMonitor(id=4, value=10.0, type="Periodic", severity=8, transaction=False),
        )),
    ))
    encodes(h.events.body)


# -- reservations, charging limits and profiles, ISO 15118 -------------------------------

SCHEDULE = {
    "id": 9, "startSchedule": ts(10), "duration": 3600, "chargingRateUnit": "W", "minChargingRate": 1380.0,
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}, {"startPeriod": 1800, "limit": 7400.5, "numberPhases": 1,
                                                                   "phaseToUse": 2}],
    "salesTariff": {"id": 1, "salesTariffDescription": "night", "numEPriceLevels": 2, "salesTariffEntry": [
        {"relativeTimeInterval": {"start": 0, "duration": 1800}, "ePriceLevel": 1,
         "consumptionCost": [{"startValue": 0, "cost": [{"costKind": "RenewableGenerationPercentage", "amount": 80,
                                                         "amountMultiplier": -1}]}]},
        {"relativeTimeInterval": {"start": 1800}}]},
}
SCHEDULE_BODY = ChargingSchedule(
    charging_rate_unit="W", id=9, start_schedule=at(10), duration=3600, min_charging_rate=1380.0,
    periods=(SchedulePeriod(start_period=0, limit=11000.0), SchedulePeriod(start_period=1800, limit=7400.5, number_phases=1,
                                                                           phase_to_use=2)),
    sales_tariff=SalesTariff(id=1, description="night", num_e_price_levels=2, entries=(
        SalesTariffEntry(start=0, duration=1800, e_price_level=1, consumption_costs=(
            ConsumptionCost(start_value=0.0, costs=(Cost(cost_kind="RenewableGenerationPercentage", amount=80,
                                                         amount_multiplier=-1),)),)),
        SalesTariffEntry(start=1800),
    )),
)


@pytest.mark.parametrize("version", V2)
async def test_reservation_status_and_charging_limits(version: str) -> None:
    h = a_harness(version)
    await h.call("ReservationStatusUpdate", {"reservationId": 12, "reservationUpdateStatus": "Removed"})
    assert h.events.body == ReservationStatus(reservation_id=12, status="Removed")
    h.events.published.clear()
    await h.call("NotifyChargingLimit", {"evseId": 2, "chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": False},
                                         "chargingSchedule": [SCHEDULE]})
    assert h.events.body == ChargingLimitSet(source="SO", is_grid_critical=False, evse_id=2, schedules=(SCHEDULE_BODY,))
    encodes(h.events.body)
    h.events.published.clear()
    await h.call("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS"}})
    assert h.events.body == ChargingLimitSet(source="EMS", is_grid_critical=None, evse_id=0, schedules=())
    h.events.published.clear()
    await h.call("ClearedChargingLimit", {"chargingLimitSource": "EMS"})
    assert h.events.body == ChargingLimitCleared(source="EMS", evse_id=0)


async def test_report_charging_profiles_keeps_every_profile_and_schedule() -> None:
    h = a_harness("2.0.1")
    payload = {"requestId": 3, "chargingLimitSource": "CSO", "evseId": 1, "tbc": True, "chargingProfile": [
        {"id": 100, "stackLevel": 2, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Recurring",
         "recurrencyKind": "Daily", "validFrom": ts(-60), "validTo": ts(60), "transactionId": "tx-1",
         "chargingSchedule": [SCHEDULE]}]}
    assert await h.call("ReportChargingProfiles", payload) == {}
    assert h.events.body == ChargingProfilesReport(request_id=3, source="CSO", evse_id=1, tbc=True, profiles=(
        ChargingProfile(id=100, stack_level=2, purpose="TxProfile", kind="Recurring", recurrency_kind="Daily",
                        valid_from=at(-60), valid_to=at(60), transaction_id="tx-1", schedules=(SCHEDULE_BODY,)),
    ))
    encodes(h.events.body)


@pytest.mark.parametrize("version", V2)
async def test_ev_charging_needs_are_rejected_no_schedule_is_computed(version: str) -> None:
    h = a_harness(version)
    payload = {"evseId": 1, "maxScheduleTuples": 3, "chargingNeeds": {
        "requestedEnergyTransfer": "DC", "departureTime": ts(120),
        "dcChargingParameters": {"evMaxCurrent": 200, "evMaxVoltage": 800, "energyAmount": 50000, "evMaxPower": 150000,
                                 "stateOfCharge": 20, "evEnergyCapacity": 77000, "fullSoC": 100, "bulkSoC": 80}}}
    assert await h.call("NotifyEVChargingNeeds", payload) == {"status": "Rejected"}
    assert h.events.body == EvChargingNeeds(
        evse_id=1, requested_energy_transfer="DC", max_schedule_tuples=3, departure_time=at(120), ac=None,
        dc=DcChargingParameters(ev_max_current=200, ev_max_voltage=800, energy_amount=50000, ev_max_power=150000,
                                state_of_charge=20, ev_energy_capacity=77000, full_soc=100, bulk_soc=80),
        status="Rejected",
    )
    encodes(h.events.body)


async def test_ac_charging_needs() -> None:
    h = a_harness("2.0.1")
    await h.call("NotifyEVChargingNeeds", {"evseId": 2, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase",
        "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400}}})
    assert h.events.body == EvChargingNeeds(
        evse_id=2, requested_energy_transfer="AC_three_phase",
        ac=AcChargingParameters(energy_amount=20000, ev_min_current=6, ev_max_current=32, ev_max_voltage=400), status="Rejected",
    )


@pytest.mark.parametrize("version", V2)
async def test_the_ev_charging_schedule_is_accepted_and_recorded(version: str) -> None:
    h = a_harness(version)
    assert await h.call("NotifyEVChargingSchedule", {"timeBase": ts(), "evseId": 1, "chargingSchedule": SCHEDULE}) == {"status": "Accepted"}
    assert h.events.body == EvChargingSchedule(evse_id=1, time_base=at(), schedule=SCHEDULE_BODY, status="Accepted")


# -- display messages, customer information, publish firmware -------------------------------

async def test_display_messages_customer_information_and_publish_firmware() -> None:
    h = a_harness("2.0.1")
    await h.call("NotifyDisplayMessages", {"requestId": 6, "tbc": True, "messageInfo": [
        {"id": 1, "priority": "InFront", "state": "Charging", "startDateTime": ts(), "endDateTime": ts(30),
         "transactionId": "tx-2", "message": {"format": "UTF8", "language": "de", "content": "Willkommen"},
         "display": {"name": "DisplayMessageCtrlr", "evse": {"id": 1}}},
        {"id": 2, "priority": "NormalCycle", "message": {"format": "ASCII", "content": "Hi"}}]})
    assert h.events.body == DisplayMessagesReport(request_id=6, tbc=True, messages=(
        DisplayMessage(id=1, priority="InFront", format="UTF8", content="Willkommen", state="Charging", start=at(),
                       end=at(30), transaction_id="tx-2", language="de",
                       display=Component(name="DisplayMessageCtrlr", evse_id=1)),
        DisplayMessage(id=2, priority="NormalCycle", format="ASCII", content="Hi"),
    ))
    encodes(h.events.body)
    h.events.published.clear()
    await h.call("NotifyCustomerInformation", {"data": "token TAG-1: 3 sessions", "tbc": True, "seqNo": 2,
                                               "generatedAt": ts(-3), "requestId": 11})
    assert h.events.body == CustomerInformationPart(request_id=11, seq_no=2, data="token TAG-1: 3 sessions", tbc=True,
                                                    generated_at=at(-3))
    assert h.events.station_time == at(-3)
    h.events.published.clear()
    await h.call("PublishFirmwareStatusNotification", {"status": "Published", "requestId": 5,
                                                       "location": ["http://local/fw.bin", "ftp://local/fw.bin"]})
    assert h.events.body == PublishFirmwareStatus(status="Published", request_id=5,
                                                  locations=("http://local/fw.bin", "ftp://local/fw.bin"))


# -- what the event cannot carry is the station's error ------------------------------------

@pytest.mark.parametrize("action, payload", [
    ("NotifyReport", {"requestId": 2**31, "generatedAt": ts(), "seqNo": 0}),
    ("NotifyReport", {"requestId": 1, "generatedAt": ts(), "seqNo": 0, "reportData": [
        {"component": {"name": "EVSE", "evse": {"id": 2**40}}, "variable": {"name": "X"}, "variableAttribute": [{}]}]}),
    ("NotifyEvent", {"generatedAt": ts(), "seqNo": 0, "eventData": [{
        "eventId": -(2**31) - 1, "timestamp": ts(), "trigger": "Alerting", "actualValue": "x",
        "eventNotificationType": "HardWiredMonitor", "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]}),
    ("ReservationStatusUpdate", {"reservationId": 2**63, "reservationUpdateStatus": "Expired"}),
    ("FirmwareStatusNotification", {"status": "Installed", "requestId": 2**32}),
])
async def test_an_integer_the_event_cannot_carry_is_a_property_constraint_violation(action: str, payload: dict[str, Any]) -> None:
    h = a_harness("2.0.1")
    with pytest.raises(PropertyConstraintViolationError):
        await h.handler(action)(h.ctx, payload)
    assert h.events.published == []


def test_a_number_that_is_not_finite_is_refused_and_a_bad_instant_only_loses_the_instant() -> None:
    with pytest.raises(PropertyConstraintViolationError):
        ops.schedule({"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float("inf")}]})
    event = ops.security_event({"type": "X", "timestamp": "2026-13-01T00:00:00Z"})
    assert event == SecurityEvent(type="X", timestamp=None)


def test_the_envelope_station_time_is_the_timestamp_or_generated_at() -> None:
    assert ops.station_time_of({"timestamp": ts(1)}) == at(1)
    assert ops.station_time_of({"generatedAt": ts(2)}) == at(2)
    assert ops.station_time_of({"timeBase": ts(3)}) is None
