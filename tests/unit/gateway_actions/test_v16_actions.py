from __future__ import annotations

import re

import pytest

from services.common.errors import StoreUnavailable
from services.common.events import (
    Authorization,
    CertificateSigningRequest,
    ConnectorStatus,
    DataTransfer,
    FirmwareStatus,
    Heartbeat,
    LogStatus,
    MeterValues,
    SecurityEvent,
    StationBooted,
    TransactionEnded,
    TransactionStarted,
)
from services.common.store.port import Station
from services.gateway.actions.common import PENDING_INTERVAL_S

from .builders import OCPP_TIME, a_harness, at, ts

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 7", "chargePointSerialNumber": "SN-1",
        "firmwareVersion": "1.2.3", "iccid": "8931", "imsi": "2620", "meterType": "EM24", "meterSerialNumber": "M-9"}


def a_start(**overrides: object) -> dict:
    return {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1000, "timestamp": ts(), **overrides}


async def test_an_accepted_boot_answers_the_heartbeat_interval_and_the_time_in_utc_milliseconds() -> None:
    h = a_harness(heartbeat_interval=120)
    answer = await h.call("BootNotification", BOOT)
    assert answer["status"] == "Accepted" and answer["interval"] == 120
    assert re.match(OCPP_TIME, answer["currentTime"]) and answer["currentTime"] == "2026-11-28T04:21:16.004Z"
    assert h.ctx.state.boot_status == "Accepted"
    assert h.events.body == StationBooted(
        vendor="ACME", model="Wallbox 7", serial_number="SN-1", firmware_version="1.2.3",
        registration_status="Accepted", interval=120, iccid="8931", imsi="2620",
        meter_type="EM24", meter_serial_number="M-9",
    )


async def test_a_boot_under_admission_control_is_pending_with_a_jittered_retry_interval() -> None:
    intervals = set()
    for _ in range(30):
        h = a_harness(admit=False)
        answer = await h.call("BootNotification", BOOT)
        assert answer["status"] == "Pending" and re.match(OCPP_TIME, answer["currentTime"])
        assert PENDING_INTERVAL_S[0] <= answer["interval"] <= PENDING_INTERVAL_S[1]
        assert h.ctx.state.boot_status == "Pending"
        assert h.events.body.registration_status == "Pending"
        intervals.add(answer["interval"])
    assert len(intervals) > 1


async def test_a_disabled_station_is_rejected_at_boot() -> None:
    h = a_harness(stations={"CS-1": Station(id="CS-1", password_hash="", enabled=False)})
    answer = await h.call("BootNotification", BOOT)
    assert answer["status"] == "Rejected" and h.ctx.state.boot_status == "Rejected"
    assert h.events.body.registration_status == "Rejected"


async def test_a_boot_is_accepted_when_the_station_lookup_fails_after_authentication() -> None:
    h = a_harness()
    h.store.fail = StoreUnavailable("down")
    assert (await h.call("BootNotification", BOOT))["status"] == "Accepted"


async def test_a_heartbeat_answers_the_current_time() -> None:
    h = a_harness()
    answer = await h.call("Heartbeat", {})
    assert re.match(OCPP_TIME, answer["currentTime"])
    assert h.events.body == Heartbeat()


async def test_a_status_notification_maps_the_connector_to_evse_and_connector() -> None:
    h = a_harness()
    payload = {"connectorId": 2, "errorCode": "NoError", "status": "Charging", "timestamp": ts(-5), "info": "ok"}
    assert await h.call("StatusNotification", payload) == {}
    assert h.events.body == ConnectorStatus(evse_id=2, connector_id=2, status="Charging", error_code="NoError", info="ok")
    assert h.events.station_time == at(-5)


async def test_a_status_notification_without_timestamp_has_no_station_time() -> None:
    h = a_harness()
    await h.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
    assert h.events.station_time is None


@pytest.mark.parametrize("tag, status", [("TAG-OK", "Accepted"), ("TAG-BLOCKED", "Blocked"), ("NOPE", "Invalid")])
async def test_authorize_answers_the_token_status(tag: str, status: str) -> None:
    h = a_harness()
    assert await h.call("Authorize", {"idTag": tag}) == {"idTagInfo": {"status": status}}
    assert h.events.body == Authorization(id_token=tag, status=status)


async def test_a_token_status_outside_the_schema_is_answered_as_invalid() -> None:
    h = a_harness(tokens={"T": "Suspended"})
    assert await h.call("Authorize", {"idTag": "T"}) == {"idTagInfo": {"status": "Invalid"}}


async def test_a_start_transaction_gets_a_server_assigned_id_and_publishes_the_start() -> None:
    h = a_harness()
    answer = await h.call("StartTransaction", a_start(reservationId=7))
    assert answer == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    assert h.events.body == TransactionStarted(
        transaction_id="1", evse_id=1, connector_id=1, id_token="TAG-OK", meter_start_wh=1000,
        reservation_id=7, id_token_status="Accepted",
    )
    assert h.events.station_time == at()


async def test_a_replayed_start_transaction_gets_the_same_transaction_id() -> None:
    h = a_harness()
    first = await h.call("StartTransaction", a_start())
    again = await h.call("StartTransaction", a_start())
    other_connector = await h.call("StartTransaction", a_start(connectorId=2))
    assert first["transactionId"] == again["transactionId"] != other_connector["transactionId"]
    assert list(h.store.tx_ids) == ["CS-1|1|TAG-OK|1000|" + ts(), "CS-1|2|TAG-OK|1000|" + ts()]


async def test_a_start_with_a_three_day_old_timestamp_is_accepted_with_its_station_time() -> None:
    h = a_harness()
    answer = await h.call("StartTransaction", a_start(timestamp=ts(-3 * 24 * 60)))
    assert answer["idTagInfo"]["status"] == "Accepted"
    assert h.events.station_time == at(-3 * 24 * 60)


async def test_a_start_with_an_unknown_tag_still_gets_an_id_and_is_recorded() -> None:
    h = a_harness()
    answer = await h.call("StartTransaction", a_start(idTag="NOPE"))
    assert answer["transactionId"] == 1 and answer["idTagInfo"]["status"] == "Invalid"
    assert h.events.body.id_token_status == "Invalid"


async def test_a_start_is_accepted_when_the_token_store_is_unreachable() -> None:
    h = a_harness()

    h.tokens.error = StoreUnavailable("down")
    answer = await h.call("StartTransaction", a_start())
    assert answer["idTagInfo"]["status"] == "Accepted"


async def test_authorize_surfaces_an_unreachable_token_store_instead_of_guessing() -> None:
    h = a_harness()

    h.tokens.error = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        await h.call("Authorize", {"idTag": "TAG-OK"})
    assert h.events.published == []


def kwh_sample(value: str, minutes: int = 0, **extra: str) -> dict:
    return {"timestamp": ts(minutes), "sampledValue": [{"value": value, "unit": "kWh", **extra}]}


async def test_a_stop_transaction_publishes_the_end_with_samples_in_wh() -> None:
    h = a_harness()
    payload = {"transactionId": 5, "idTag": "TAG-OK", "meterStop": 12500, "timestamp": ts(60), "reason": "EVDisconnected",
               "transactionData": [kwh_sample("12.5", 60, context="Transaction.End")]}
    assert await h.call("StopTransaction", payload) == {"idTagInfo": {"status": "Accepted"}}
    body = h.events.body
    assert isinstance(body, TransactionEnded)
    assert (body.transaction_id, body.meter_stop_wh, body.stop_reason, body.id_token) == ("5", 12500, "EVDisconnected", "TAG-OK")
    assert [(s.value, s.unit, s.context) for s in body.samples] == [(12500.0, "Wh", "Transaction.End")]
    assert h.events.station_time == at(60)


@pytest.mark.parametrize("transaction_id", [-1, 987654])
async def test_a_stop_for_an_unknown_transaction_is_acknowledged_with_local_reason(transaction_id: int) -> None:
    h = a_harness()
    answer = await h.call("StopTransaction", {"transactionId": transaction_id, "meterStop": 10, "timestamp": ts()})
    assert answer == {}
    assert h.events.body == TransactionEnded(transaction_id=str(transaction_id), meter_stop_wh=10, stop_reason="Local")


async def test_meter_values_of_a_transaction_are_published_in_base_units() -> None:
    h = a_harness()
    payload = {"connectorId": 1, "transactionId": 5, "meterValue": [
        {"timestamp": ts(1), "sampledValue": [
            {"value": "1.234", "unit": "kWh"},
            {"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import"},
            {"value": "16", "unit": "A", "measurand": "Current.Import", "phase": "L1"},
        ]}]}
    assert await h.call("MeterValues", payload) == {}
    body = h.events.body
    assert isinstance(body, MeterValues) and (body.transaction_id, body.evse_id, body.connector_id) == ("5", 1, 1)
    assert [(s.measurand, s.value, s.unit, s.phase) for s in body.samples] == [
        ("Energy.Active.Import.Register", 1234.0, "Wh", ""),
        ("Power.Active.Import", 7400.0, "W", ""),
        ("Current.Import", 16.0, "A", "L1"),
    ]
    assert h.events.station_time == at(1)


async def test_meter_values_outside_a_transaction_have_an_empty_transaction_id() -> None:
    h = a_harness()
    await h.call("MeterValues", {"connectorId": 0, "meterValue": [kwh_sample("3")]})
    assert h.events.body.transaction_id == "" and h.events.body.samples[0].value == 3000.0


async def test_signed_samples_are_skipped_and_unparsable_ones_kept_raw_without_losing_the_message() -> None:
    h = a_harness()
    payload = {"connectorId": 1, "transactionId": 5, "meterValue": [{"timestamp": ts(), "sampledValue": [
        {"value": "AB12==", "format": "SignedData"}, {"value": "n/a"}, {"value": "42"}]}]}
    assert await h.call("MeterValues", payload) == {}
    assert [(s.value, s.raw_value) for s in h.events.body.samples] == [(0.0, "n/a"), (42.0, "")]


@pytest.mark.parametrize("action, payload, answer, body", [
    ("DataTransfer", {"vendorId": "ACME", "messageId": "x", "data": "{}"}, {"status": "UnknownVendorId"},
     DataTransfer(vendor_id="ACME", message_id="x", data_json='"{}"', status="UnknownVendorId")),
    ("DiagnosticsStatusNotification", {"status": "Uploaded"}, {}, LogStatus(status="Uploaded", diagnostics=True)),
    ("FirmwareStatusNotification", {"status": "Installed"}, {}, FirmwareStatus(status="Installed")),
    ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": ts(), "techInfo": "cold"}, {},
     SecurityEvent(type="StartupOfTheDevice", timestamp=at(), tech_info="cold")),
    ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Rejected"},
     CertificateSigningRequest(csr="-----BEGIN CERTIFICATE REQUEST-----", status="Rejected")),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 3}, {}, LogStatus(status="Uploaded", request_id=3)),
    ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 4}, {},
     FirmwareStatus(status="Installed", request_id=4)),
])
async def test_station_operations_are_published_as_typed_bodies_with_a_valid_answer(
        action: str, payload: dict, answer: dict, body: object) -> None:
    h = a_harness()
    assert await h.call(action, payload) == answer
    assert h.events.body == body


async def test_a_security_event_keeps_its_station_time() -> None:
    h = a_harness()
    await h.call("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": ts(-2)})
    assert h.events.station_time == at(-2)
