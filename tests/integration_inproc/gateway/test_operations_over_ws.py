"""Station operations over a real socket (ADR 016 §1, §6): raw OCPP-J frames in, the typed
event on the bus (decoded from the record) and the answer out; bad payloads get the CALLERROR
the spec names; DataTransfer answers by CSMS_DATATRANSFER_VENDORS; the connected/faulted
gauges; StationConnected.security_profile. (Field-by-field mapping in every version:
tests/unit/gateway_actions/test_operations.py, whose payloads are reused here.)"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from services.common.config import Settings
from services.common.events import (
    CertificateSigningRequest,
    CertificateStatusRequest,
    ChargingLimitCleared,
    ChargingLimitSet,
    ChargingProfilesReport,
    CustomerInformationPart,
    DataTransfer,
    DisplayMessagesReport,
    EvCertificateRequest,
    EvChargingNeeds,
    EvChargingSchedule,
    EventReport,
    FirmwareStatus,
    LogStatus,
    MonitoringReportPart,
    PublishFirmwareStatus,
    ReportPart,
    ReservationStatus,
    SecurityEvent,
    StationConnected,
)
from services.common.timeutil import parse_ocpp
from services.gateway import auth
from services.gateway.app import direct_tls
from tests.integration_inproc.gateway.harness import PW, Gateway, basic, call
from tests.support.waiting import eventually
from tests.unit.gateway_actions.test_operations import REPORT, SCHEDULE

T = "2026-05-04T03:02:01.500Z"
AT = parse_ocpp(T)
P16, P201 = ("ocpp1.6",), ("ocpp2.0.1",)

# (protocols, action, payload, answer, body type, station time from the message)
CASES: list[tuple[tuple[str, ...], str, dict[str, Any], dict[str, Any], type, bool]] = [
    (P16, "DataTransfer", {"vendorId": "com.acme", "messageId": "m", "data": "x"}, {"status": "UnknownVendorId"}, DataTransfer, False),
    (P16, "DiagnosticsStatusNotification", {"status": "Uploaded"}, {}, LogStatus, False),
    (P16, "FirmwareStatusNotification", {"status": "Installing"}, {}, FirmwareStatus, False),
    (P16, "SecurityEventNotification", {"type": "ResetOrReboot", "timestamp": T}, {}, SecurityEvent, True),
    (P16, "LogStatusNotification", {"status": "Uploaded", "requestId": 9}, {}, LogStatus, False),
    (P16, "SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 4}, {}, FirmwareStatus, False),
    (P16, "SignCertificate", {"csr": "MIIB"}, {"status": "Rejected"}, CertificateSigningRequest, False),
    (P201, "ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": 1}, {}, ChargingLimitCleared, False),
    (P201, "DataTransfer", {"vendorId": "com.acme", "data": {"k": 1}}, {"status": "UnknownVendorId"}, DataTransfer, False),
    (P201, "FirmwareStatusNotification", {"status": "Installed", "requestId": 3}, {}, FirmwareStatus, False),
    (P201, "Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                                     "exiRequest": "gAB="},
     {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "NoProvider"}}, EvCertificateRequest, False),
    (P201, "GetCertificateStatus", {"ocspRequestData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b",
                                                        "serialNumber": "c", "responderURL": ""}},
     {"status": "Failed", "statusInfo": {"reasonCode": "NoResponder"}}, CertificateStatusRequest, False),
    (P201, "LogStatusNotification", {"status": "UploadFailure", "requestId": 2}, {}, LogStatus, False),
    (P201, "NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
                                   "chargingSchedule": [SCHEDULE]}, {}, ChargingLimitSet, False),
    (P201, "NotifyCustomerInformation", {"data": "d", "seqNo": 0, "generatedAt": T, "requestId": 1}, {}, CustomerInformationPart, True),
    (P201, "NotifyDisplayMessages", {"requestId": 1, "messageInfo": [{"id": 1, "priority": "AlwaysFront",
                                                                      "message": {"format": "UTF8", "content": "x"}}]},
     {}, DisplayMessagesReport, False),
    (P201, "NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_single_phase"}},
     {"status": "Rejected"}, EvChargingNeeds, False),
    (P201, "NotifyEVChargingSchedule", {"timeBase": T, "evseId": 1, "chargingSchedule": SCHEDULE},
     {"status": "Accepted"}, EvChargingSchedule, False),
    (P201, "NotifyEvent", {"generatedAt": T, "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": T, "trigger": "Alerting", "actualValue": "x", "eventNotificationType": "HardWiredMonitor",
        "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Problem"}}]}, {}, EventReport, True),
    (P201, "NotifyMonitoringReport", {"requestId": 1, "seqNo": 0, "generatedAt": T, "monitor": [
        {"component": {"name": "EVSE"}, "variable": {"name": "Power"},
         "variableMonitoring": [{"id": 1, "transaction": False, "value": 1, "type": "Delta", "severity": 5}]}]},
     {}, MonitoringReportPart, True),
    (P201, "NotifyReport", {**REPORT, "generatedAt": T}, {}, ReportPart, True),
    (P201, "PublishFirmwareStatusNotification", {"status": "Published", "location": ["http://x"], "requestId": 1}, {},
     PublishFirmwareStatus, False),
    (P201, "ReportChargingProfiles", {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [{
        "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": [SCHEDULE]}]}, {}, ChargingProfilesReport, False),
    (P201, "ReservationStatusUpdate", {"reservationId": 1, "reservationUpdateStatus": "Expired"}, {}, ReservationStatus, False),
    (P201, "SecurityEventNotification", {"type": "TamperDetectionActivated", "timestamp": T, "techInfo": "lid"}, {},
     SecurityEvent, True),
    (P201, "SignCertificate", {"csr": "MIIB", "certificateType": "ChargingStationCertificate"},
     {"status": "Rejected", "statusInfo": {"reasonCode": "NoCA", "additionalInfo": "no certificate authority is configured"}},
     CertificateSigningRequest, False),
]


@pytest.mark.parametrize("protocols, action, payload, answer, body_type, timed", CASES,
                         ids=[f"{c[0][0]}-{c[1]}" for c in CASES])
async def test_a_raw_frame_is_answered_and_published_as_its_typed_body(
        gw: Gateway, protocols: tuple[str, ...], action: str, payload: dict[str, Any], answer: dict[str, Any],
        body_type: type, timed: bool) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    mid = uuid.uuid4().hex[:12]
    assert await call(ws, action, payload, mid=mid) == [3, mid, answer]
    env = await gw.wait_event(lambda e: e.message_id == mid)
    assert type(env.body) is body_type and env.action == action and env.ocpp_version == protocols[0][4:]
    assert env.station_time == (AT if timed else None)
    if "status" in answer:
        assert env.body.status == answer["status"]  # type: ignore[union-attr]
    assert not gw.events(lambda e: e.type_name == "Notification")


async def test_a_report_arrives_on_the_bus_field_by_field(gw: Gateway) -> None:
    from tests.unit.gateway_actions.builders import a_harness

    h = a_harness("2.0.1")  # the same payload through the handler alone: the bus record must say the same
    await h.call("NotifyReport", REPORT)
    ws = await gw.connect("CP1", protocols=P201)
    await call(ws, "NotifyReport", REPORT, mid="r1")
    env = await gw.wait_event(lambda e: e.message_id == "r1")
    assert env.body == h.events.body


@pytest.mark.parametrize("protocols, action, payload, code", [
    (P16, "FirmwareStatusNotification", {"status": "Bricked"}, "PropertyConstraintViolation"),
    (P16, "LogStatusNotification", {"requestId": 1}, "OccurenceConstraintViolation"),        # 1.6's spelling
    (P16, "SecurityEventNotification", {"type": 5, "timestamp": T}, "TypeConstraintViolation"),
    (P16, "DiagnosticsStatusNotification", {"status": "Uploaded", "extra": 1}, "FormationViolation"),
    (P16, "SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 2**31}, "PropertyConstraintViolation"),
    (P201, "NotifyReport", {"requestId": 2**31, "generatedAt": T, "seqNo": 0}, "PropertyConstraintViolation"),
    (P201, "NotifyReport", {"requestId": 1, "generatedAt": T}, "OccurrenceConstraintViolation"),
    (P201, "NotifyEvent", {"generatedAt": T, "seqNo": 0, "eventData": [{"eventId": 1}]}, "OccurrenceConstraintViolation"),
    (P201, "ReservationStatusUpdate", {"reservationId": 1, "reservationUpdateStatus": "Gone"}, "PropertyConstraintViolation"),
    (P201, "NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC",
                                     "dcChargingParameters": {"evMaxCurrent": 1, "evMaxVoltage": 1, "stateOfCharge": 101}}},
     "PropertyConstraintViolation"),
    (P201, "DataTransfer", {"vendorId": "v", "unknownField": 1}, "FormatViolation"),
])
async def test_a_bad_payload_gets_the_callerror_the_spec_names_and_publishes_nothing(
        gw: Gateway, protocols: tuple[str, ...], action: str, payload: dict[str, Any], code: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    frame = await call(ws, action, payload, mid="bad")
    assert frame[:3] == [4, "bad", code], frame
    assert (await call(ws, "Heartbeat", {}, mid="after"))[:2] == [3, "after"]  # the connection serves on
    assert not gw.events(lambda e: e.message_id == "bad")


async def test_data_transfer_of_a_configured_vendor_is_accepted(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(datatransfer_vendors=("com.ACME",))
    ws = await gw.connect("CP1")
    assert await call(ws, "DataTransfer", {"vendorId": "com.acme", "messageId": "Price", "data": '{"p":1}'}, mid="d1") == [
        3, "d1", {"status": "Accepted"}]
    assert await call(ws, "DataTransfer", {"vendorId": "org.other"}, mid="d2") == [3, "d2", {"status": "UnknownVendorId"}]
    accepted = await gw.wait_event(lambda e: e.message_id == "d1")
    assert accepted.body == DataTransfer(vendor_id="com.acme", message_id="Price", data_json=orjson.dumps('{"p":1}').decode(),
                                         status="Accepted")


def test_the_vendors_setting_is_a_comma_separated_list() -> None:
    from services.common.config import load_settings

    assert load_settings({"CSMS_DATATRANSFER_VENDORS": " com.acme, org.x ,,"}).datatransfer_vendors == ("com.acme", "org.x")
    assert load_settings({}).datatransfer_vendors == () == Settings().datatransfer_vendors


# -- gauges (ADR 016 §6) ------------------------------------------------------------------

def gauge(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def status16(connector: int, status: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "GroundFailure" if status == "Faulted" else "NoError", "status": status}


async def test_a_station_counts_as_faulted_while_some_connector_latest_status_is_faulted(gw: Gateway) -> None:
    connected, faulted = gauge("csms_gateway_stations_connected"), gauge("csms_gateway_stations_faulted")
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    assert gauge("csms_gateway_stations_connected") == connected + 1
    await call(ws, "StatusNotification", status16(1, "Faulted"))
    assert gauge("csms_gateway_stations_faulted") == faulted + 1
    await call(ws, "StatusNotification", status16(2, "Faulted"))
    assert gauge("csms_gateway_stations_faulted") == faulted + 1      # one station, however many connectors
    await call(ws, "StatusNotification", status16(1, "Available"))
    assert gauge("csms_gateway_stations_faulted") == faulted + 1      # connector 2 still is
    await call(ws, "StatusNotification", status16(2, "Charging"))
    assert gauge("csms_gateway_stations_faulted") == faulted
    await call(ws, "StatusNotification", status16(0, "Faulted"))     # the station as a whole
    assert gauge("csms_gateway_stations_faulted") == faulted + 1
    await ws.close()
    await eventually(lambda: gauge("csms_gateway_stations_connected") == connected, 5.0, what="the disconnect to count")
    assert gauge("csms_gateway_stations_faulted") == faulted         # a disconnected station is not faulted here


async def test_201_faults_go_by_evse_and_connector(gw: Gateway) -> None:
    faulted = gauge("csms_gateway_stations_faulted")
    ws = await gw.connect("CP2", protocols=P201)
    await call(ws, "StatusNotification", {"timestamp": T, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1})
    await call(ws, "StatusNotification", {"timestamp": T, "connectorStatus": "Available", "evseId": 2, "connectorId": 1})
    assert gauge("csms_gateway_stations_faulted") == faulted + 1
    await call(ws, "StatusNotification", {"timestamp": T, "connectorStatus": "Unavailable", "evseId": 1, "connectorId": 1})
    assert gauge("csms_gateway_stations_faulted") == faulted


# -- security profile ---------------------------------------------------------------------

async def test_a_plain_ws_connection_with_basic_auth_is_security_profile_1(gw: Gateway) -> None:
    await gw.connect("CP1")
    env = await gw.wait_event(lambda e: isinstance(e.body, StationConnected))
    assert env.body.security_profile == 1  # type: ignore[union-attr]


async def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(gw: Gateway) -> None:
    await gw.add_station("CP1")
    headers = {"Authorization": basic("CP1", PW), "X-Forwarded-Proto": "https"}
    gw.sockets.append(await gw.session.ws_connect(gw.url("CP1"), protocols=P16, headers=headers))
    env = await gw.wait_event(lambda e: isinstance(e.body, StationConnected))
    assert env.body.security_profile == 1  # type: ignore[union-attr]


class _Transport:
    def __init__(self, **extra: Any) -> None:
        self.extra = extra

    def get_extra_info(self, name: str) -> Any:
        return self.extra.get(name)


class _SslObject:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der


class _Request:
    def __init__(self, transport: _Transport | None, headers: dict[str, str] | None = None) -> None:
        self.transport = transport
        self.headers = headers or {}


@pytest.mark.parametrize("transport, seen", [
    (_Transport(), (False, None)),
    (_Transport(ssl_object=_SslObject(None)), (True, None)),          # TLS, no client certificate
    (_Transport(ssl_object=_SslObject(b"DER")), (True, b"DER")),      # TLS, OpenSSL verified one
    (None, (False, None)),
])
def test_what_the_socket_proves(transport: _Transport | None, seen: tuple[bool, bytes | None]) -> None:
    assert direct_tls(_Request(transport)) == seen  # type: ignore[arg-type]


def test_the_profile_rules() -> None:
    assert auth.security_profile(tls=False, client_certificate=False) == 1
    assert auth.security_profile(tls=True, client_certificate=False, forwarded_proto="https") == 2
    assert auth.security_profile(tls=True, client_certificate=True) == 3
    assert auth.security_profile(tls=False, client_certificate=False, forwarded_proto="http") == 0
