from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.common import codec
from services.common.events import (
    Authorization,
    CertificateSigningRequest,
    CertificateStatusRequest,
    ChargingLimitCleared,
    ChargingLimitSet,
    ChargingProfilesReport,
    ConnectorStatus,
    CustomerInformationPart,
    DataTransfer,
    DisplayMessagesReport,
    Envelope,
    EvCertificateRequest,
    EvChargingNeeds,
    EvChargingSchedule,
    EventReport,
    FirmwareStatus,
    Heartbeat,
    LogStatus,
    MeterValues,
    MonitoringReportPart,
    Notification,
    PublishFirmwareStatus,
    ReportPart,
    ReservationStatus,
    SecurityEvent,
    StationBooted,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from services.common.store.port import Station
from services.gateway.actions.common import PENDING_INTERVAL_S

from .builders import OCPP_TIME, a_harness, at, response_validator, ts

VERSIONS = ["2.0.1", "2.1"]
BOOT = {"reason": "PowerUp", "chargingStation": {
    "model": "Wallbox 9", "vendorName": "ACME", "serialNumber": "SN-2", "firmwareVersion": "2.0",
    "modem": {"iccid": "8931", "imsi": "2620"}}}


def register(wh: float, minutes: int = 0, context: str = "Sample.Periodic", **uom: Any) -> dict:
    sv: dict[str, Any] = {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}
    if uom:
        sv["unitOfMeasure"] = uom
    return {"timestamp": ts(minutes), "sampledValue": [sv]}


def a_tx_event(event_type: str, seq_no: int, **overrides: Any) -> dict:
    payload = {
        "eventType": event_type, "timestamp": ts(seq_no), "triggerReason": "Authorized", "seqNo": seq_no,
        "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
    }
    payload.update(overrides)
    return payload


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_accepted_boot_records_the_station_and_the_reason(version: str) -> None:
    h = a_harness(version, heartbeat_interval=90)
    answer = await h.call("BootNotification", BOOT)
    assert (answer["status"], answer["interval"]) == ("Accepted", 90)
    assert re.match(OCPP_TIME, answer["currentTime"])
    assert h.events.body == StationBooted(
        vendor="ACME", model="Wallbox 9", serial_number="SN-2", firmware_version="2.0", reason="PowerUp",
        registration_status="Accepted", interval=90, iccid="8931", imsi="2620",
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_boot_under_admission_control_is_pending(version: str) -> None:
    h = a_harness(version, admit=False)
    answer = await h.call("BootNotification", BOOT)
    assert answer["status"] == "Pending" and PENDING_INTERVAL_S[0] <= answer["interval"] <= PENDING_INTERVAL_S[1]
    assert re.match(OCPP_TIME, answer["currentTime"]) and h.ctx.state.boot_status == "Pending"


async def test_a_disabled_station_is_rejected_before_admission_control_is_asked() -> None:
    h = a_harness("2.0.1", stations={"CS-1": Station(id="CS-1", password_hash="", enabled=False)})
    assert (await h.call("BootNotification", BOOT))["status"] == "Rejected"
    assert h.gate.asked == 0


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_heartbeat_answers_the_current_time(version: str) -> None:
    h = a_harness(version)
    assert re.match(OCPP_TIME, (await h.call("Heartbeat", {}))["currentTime"])
    assert h.events.body == Heartbeat()


async def test_a_status_notification_keeps_evse_connector_and_station_time() -> None:
    h = a_harness("2.0.1")
    payload = {"timestamp": ts(-1), "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    assert await h.call("StatusNotification", payload) == {}
    assert h.events.body == ConnectorStatus(evse_id=2, connector_id=1, status="Occupied")
    assert h.events.station_time == at(-1)


@pytest.mark.parametrize("version", VERSIONS)
async def test_authorize_answers_the_token_status_and_records_the_token_type(version: str) -> None:
    h = a_harness(version)
    answer = await h.call("Authorize", {"idToken": {"idToken": "TAG-BLOCKED", "type": "ISO14443"}})
    assert answer == {"idTokenInfo": {"status": "Blocked"}}
    assert h.events.body == Authorization(id_token="TAG-BLOCKED", status="Blocked", token_type="ISO14443")


async def test_a_no_authorization_token_is_accepted_without_a_lookup() -> None:
    h = a_harness("2.0.1", tokens={})
    answer = await h.call("Authorize", {"idToken": {"idToken": "", "type": "NoAuthorization"}})
    assert answer == {"idTokenInfo": {"status": "Accepted"}}


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_started_event_becomes_transaction_started_with_the_first_register_as_meter_start(version: str) -> None:
    h = a_harness(version)
    payload = a_tx_event(
        "Started", 0, idToken={"idToken": "TAG-OK", "type": "ISO14443"}, reservationId=3,
        transactionInfo={"transactionId": "tx-1", "chargingState": "EVConnected", "remoteStartId": 42},
        meterValue=[register(1.5, 0, "Transaction.Begin", unit="kWh"), register(1600, 1)],
    )
    assert await h.call("TransactionEvent", payload) == {"idTokenInfo": {"status": "Accepted"}}
    body = h.events.body
    assert isinstance(body, TransactionStarted)
    assert (body.transaction_id, body.evse_id, body.connector_id, body.id_token, body.seq_no) == ("tx-1", 1, 1, "TAG-OK", 0)
    assert (body.trigger_reason, body.charging_state, body.reservation_id, body.remote_start_id) == ("Authorized", "EVConnected", 3, 42)
    assert (body.meter_start_wh, body.id_token_status) == (1500, "Accepted")
    assert [s.value for s in body.samples] == [1500.0, 1600.0]
    assert h.events.station_time == at(0)


async def test_a_started_event_without_meter_values_has_no_meter_start() -> None:
    h = a_harness("2.0.1")
    assert await h.call("TransactionEvent", a_tx_event("Started", 0)) == {}
    assert h.events.body.meter_start_wh is None and h.events.body.id_token == ""


async def test_an_updated_event_keeps_seq_no_and_the_offline_flag() -> None:
    h = a_harness("2.0.1")
    payload = a_tx_event("Updated", 4, offline=True, triggerReason="MeterValuePeriodic",
                         meterValue=[register(2.5, 4, unit="Wh", multiplier=3)])
    assert await h.call("TransactionEvent", payload) == {}
    body = h.events.body
    assert isinstance(body, TransactionUpdated)
    assert (body.seq_no, body.offline, body.trigger_reason, body.charging_state) == (4, True, "MeterValuePeriodic", "Charging")
    assert body.samples[0].value == 2500.0 and body.samples[0].unit == "Wh"


async def test_an_ended_event_takes_the_last_register_as_meter_stop_and_the_stopped_reason() -> None:
    h = a_harness("2.0.1")
    payload = a_tx_event(
        "Ended", 9, triggerReason="EVCommunicationLost",
        transactionInfo={"transactionId": "tx-1", "stoppedReason": "EVDisconnected"},
        meterValue=[register(9000, 8), register(9400.6, 9, "Transaction.End")],
    )
    assert await h.call("TransactionEvent", payload) == {}
    body = h.events.body
    assert isinstance(body, TransactionEnded)
    assert (body.seq_no, body.meter_stop_wh, body.stop_reason, body.trigger_reason) == (9, 9401, "EVDisconnected", "EVCommunicationLost")


async def test_an_ended_event_without_a_stopped_reason_is_local() -> None:
    h = a_harness("2.0.1")
    await h.call("TransactionEvent", a_tx_event("Ended", 2, transactionInfo={"transactionId": "tx-1"}))
    assert h.events.body.stop_reason == "Local" and h.events.body.meter_stop_wh is None


async def test_a_transaction_event_with_an_unknown_token_answers_invalid_but_is_recorded() -> None:
    h = a_harness("2.0.1")
    answer = await h.call("TransactionEvent", a_tx_event("Updated", 1, idToken={"idToken": "NOPE", "type": "ISO14443"}))
    assert answer == {"idTokenInfo": {"status": "Invalid"}}
    assert h.events.body.id_token == "NOPE"


async def test_a_transaction_event_without_evse_maps_to_evse_zero() -> None:
    h = a_harness("2.0.1")
    payload = a_tx_event("Updated", 1)
    del payload["evse"]
    await h.call("TransactionEvent", payload)
    assert (h.events.body.evse_id, h.events.body.connector_id) == (0, 0)


@pytest.mark.parametrize("version", VERSIONS)
async def test_meter_values_apply_the_multiplier(version: str) -> None:
    h = a_harness(version)
    payload = {"evseId": 1, "meterValue": [
        {"timestamp": ts(2), "sampledValue": [
            {"value": 11, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": 3}},
            {"value": 0.5, "unitOfMeasure": {"unit": "kWh"}},
        ]}]}
    assert await h.call("MeterValues", payload) == {}
    body = h.events.body
    assert isinstance(body, MeterValues) and body.evse_id == 1 and body.transaction_id == ""
    assert [(s.value, s.unit) for s in body.samples] == [(11000.0, "W"), (500.0, "Wh")]
    assert h.events.station_time == at(2)


# Without certificate ports (no CA, no OCSP, no contract provider) the answers say why.
# (With them: tests/unit/gateway_actions/test_security_actions.py.)
NO_PROVIDER = {"reasonCode": "NoProvider"}
NO_RESPONDER = {"reasonCode": "NoResponder"}
NO_CA = {"reasonCode": "NoCA", "additionalInfo": "no certificate authority is configured"}

NOTIFICATIONS_201: list[tuple[str, dict, dict]] = [
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1}, {}),
    ("DataTransfer", {"vendorId": "ACME", "data": {"any": ["json"]}}, {"status": "UnknownVendorId"}),
    ("FirmwareStatusNotification", {"status": "Installed", "requestId": 1}, {}),
    ("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                               "exiRequest": "AAAA"}, {"status": "Failed", "exiResponse": "", "statusInfo": NO_PROVIDER}),
    ("GetCertificateStatus", {"ocspRequestData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b",
                                                  "serialNumber": "c", "responderURL": "http://ocsp"}},
     {"status": "Failed", "statusInfo": NO_RESPONDER}),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 2}, {}),
    ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "SO"}}, {}),
    ("NotifyCustomerInformation", {"data": "x", "seqNo": 0, "generatedAt": ts(), "requestId": 1}, {}),
    ("NotifyDisplayMessages", {"requestId": 1}, {}),
    ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
     {"status": "Rejected"}),
    ("NotifyEVChargingSchedule", {"timeBase": ts(), "evseId": 1, "chargingSchedule": {
        "id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}},
     {"status": "Accepted"}),
    ("NotifyEvent", {"generatedAt": ts(), "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": ts(), "trigger": "Alerting", "actualValue": "x", "eventNotificationType": "HardWiredMonitor",
        "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]}, {}),
    ("NotifyMonitoringReport", {"requestId": 1, "seqNo": 0, "generatedAt": ts()}, {}),
    ("NotifyReport", {"requestId": 1, "seqNo": 0, "generatedAt": ts()}, {}),
    ("PublishFirmwareStatusNotification", {"status": "Published", "location": ["http://x"], "requestId": 1}, {}),
    ("ReportChargingProfiles", {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [{
        "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}]}]},
     {}),
    ("ReservationStatusUpdate", {"reservationId": 1, "reservationUpdateStatus": "Expired"}, {}),
    ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": ts()}, {}),
    ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Rejected", "statusInfo": NO_CA}),
]


BODIES_201 = {
    "ClearedChargingLimit": ChargingLimitCleared, "DataTransfer": DataTransfer, "FirmwareStatusNotification": FirmwareStatus,
    "Get15118EVCertificate": EvCertificateRequest, "GetCertificateStatus": CertificateStatusRequest,
    "LogStatusNotification": LogStatus, "NotifyChargingLimit": ChargingLimitSet,
    "NotifyCustomerInformation": CustomerInformationPart, "NotifyDisplayMessages": DisplayMessagesReport,
    "NotifyEVChargingNeeds": EvChargingNeeds, "NotifyEVChargingSchedule": EvChargingSchedule, "NotifyEvent": EventReport,
    "NotifyMonitoringReport": MonitoringReportPart, "NotifyReport": ReportPart,
    "PublishFirmwareStatusNotification": PublishFirmwareStatus, "ReportChargingProfiles": ChargingProfilesReport,
    "ReservationStatusUpdate": ReservationStatus, "SecurityEventNotification": SecurityEvent,
    "SignCertificate": CertificateSigningRequest,
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("action, payload, answer", NOTIFICATIONS_201, ids=[n[0] for n in NOTIFICATIONS_201])
async def test_other_201_messages_are_published_as_their_typed_body_with_a_valid_answer(
        action: str, payload: dict, answer: dict, version: str) -> None:
    # (field by field: tests/unit/gateway_actions/test_operations.py)
    h = a_harness(version)
    assert await h.call(action, payload) == answer
    body = h.events.body
    assert type(body) is BODIES_201[action]
    if "status" in answer:  # the body records what the CSMS answered
        assert body.status == answer["status"]
    env = Envelope(event_id="e", station_id="CS-1", received_at=at(), body=body)
    assert codec.decode_event(codec.encode_event(env)).body == body


NOTIFICATIONS_21: list[tuple[str, dict, dict]] = [
    ("BatterySwap", {"batteryData": [{"evseId": 1, "serialNumber": "B1", "soC": 50, "soH": 90}], "eventType": "BatteryIn",
                     "idToken": {"idToken": "T", "type": "ISO14443"}, "requestId": 1}, {}),
    ("ClosePeriodicEventStream", {"id": 1}, {}),
    ("NotifyDERStartStop", {"controlId": "c", "started": True, "timestamp": ts()}, {}),
    ("NotifyPriorityCharging", {"transactionId": "tx-1", "activated": True}, {}),
    ("OpenPeriodicEventStream", {"constantStreamData": {"id": 1, "variableMonitoringId": 1, "params": {}}},
     {"status": "Rejected"}),
    ("VatNumberValidation", {"vatNumber": "DE123"}, {"vatNumber": "DE123", "status": "Rejected"}),
    ("NotifyDERAlarm", {"controlType": "FreqDroop", "timestamp": ts()}, {}),
    ("NotifySettlement", {"pspRef": "p-1", "status": "Settled", "settlementAmount": Decimal("12.34"),
                          "settlementTime": ts()}, {}),
    ("PullDynamicScheduleUpdate", {"chargingProfileId": 3}, {"status": "Rejected"}),
    ("ReportDERControl", {"requestId": 1}, {}),
]


@pytest.mark.parametrize("action, payload, answer", NOTIFICATIONS_21, ids=[n[0] for n in NOTIFICATIONS_21])
async def test_new_21_station_messages_get_a_valid_answer(action: str, payload: dict, answer: dict) -> None:
    h = a_harness("2.1")
    assert await h.call(action, payload) == answer
    assert isinstance(h.events.body, Notification) and orjson.loads(h.events.body.payload_json)


@pytest.mark.parametrize("action, payload, answer", NOTIFICATIONS_201, ids=[n[0] for n in NOTIFICATIONS_201])
async def test_the_201_answers_are_also_valid_21_answers(action: str, payload: dict, answer: dict) -> None:
    response_validator("2.1", action).validate(answer)
