"""The driver's view end to end (issue 10, ADR 018) against `csms run` (memory bus +
SQLite), driven by raw OCPP-J clients (tests/support/ocpp_raw.py: hand-written JSON
frames, no simulator): one id token charges on a 1.6 and a 2.0.1 station, and
GET /api/v1/tokens/{id}/sessions lists both sessions, newest first, with their stations
and energy; the reservation a transaction started with (1.6 StartTransaction
reservationId, 2.0.1 TransactionEvent reservationId) is on the session; what the EV said
during the 2.0.1 transaction (NotifyEVChargingNeeds, NotifyEVChargingSchedule) is shown
on it; a notification for an EVSE without a transaction changes no session."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.support.ocpp_raw import RawStation
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

V16, V201 = "ocpp1.6", "ocpp2.0.1"
UTC = timezone.utc


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


async def _station(server: Server, sid: str, protocol: str) -> RawStation:
    password = await server.register_station(sid)
    st = RawStation(server.ocpp_url, sid, password, protocol)
    await st.connect()
    if protocol == V16:
        answer = await st.call("BootNotification", {"chargePointVendor": "E2E", "chargePointModel": "Driver-16"})
    else:
        answer = await st.call("BootNotification", {"reason": "PowerUp",
                                                    "chargingStation": {"model": "Driver-201", "vendorName": "E2E"}})
    assert answer["status"] == "Accepted", answer
    return st


async def _token_sessions(server: Server, token: str, query: str = "") -> list[dict[str, Any]]:
    status, body = await server.api("GET", f"/api/v1/tokens/{token}/sessions{query}")
    assert status == 200, body
    return list(body["items"])


async def _charge_16(server: Server, token: str, started: datetime) -> str:
    """A whole 1.6 transaction that began with reservation 7: Start (meterStart 1000),
    one reading, Stop (meterStop 5000). Its station id."""
    sid = _id("DV16")
    st = await _station(server, sid, V16)
    try:
        answer = await st.call("StartTransaction", {"connectorId": 1, "idTag": token, "meterStart": 1_000,
                                                    "timestamp": _ts(started), "reservationId": 7})
        assert answer["idTagInfo"]["status"] == "Accepted", answer
        tx = answer["transactionId"]
        await st.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{
            "timestamp": _ts(started + timedelta(minutes=10)),
            "sampledValue": [{"value": "3000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
        }]})
        await st.call("StopTransaction", {"transactionId": tx, "idTag": token, "meterStop": 5_000,
                                          "timestamp": _ts(started + timedelta(minutes=20)), "reason": "Local"})
    finally:
        await st.close()
    return sid


def _register(at: datetime, wh: float, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    return [{"timestamp": _ts(at), "sampledValue": [
        {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": context}]}]


async def test_a_tokens_sessions_on_a_16_and_a_201_station_with_reservations_and_what_the_ev_said(
    csms: Server,
) -> None:
    token = _id("DRV")
    await csms.register_token(token)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    sid16 = await _charge_16(csms, token, t0)

    sid201 = _id("DV201")
    st = await _station(csms, sid201, V201)
    tx = "tx-" + uuid.uuid4().hex[:8]
    started = t0 + timedelta(minutes=30)
    try:
        answer = await st.call("TransactionEvent", {
            "eventType": "Started", "timestamp": _ts(started), "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
            "idToken": {"idToken": token, "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1},
            "reservationId": 8, "meterValue": _register(started, 10_000, "Transaction.Begin"),
        })
        assert answer["idTokenInfo"]["status"] == "Accepted", answer
        departure = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)
        needs = await st.call("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase", "departureTime": _ts(departure),
            "acChargingParameters": {"energyAmount": 22_000, "evMinCurrent": 6, "evMaxCurrent": 32,
                                     "evMaxVoltage": 400},
        }})
        assert needs["status"] in ("Accepted", "Rejected", "Processing"), needs
        schedule = await st.call("NotifyEVChargingSchedule", {
            "timeBase": _ts(started), "evseId": 1, "chargingSchedule": {
                "id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                    {"startPeriod": 1800, "limit": 10.5},
                ]},
        })
        assert schedule["status"] in ("Accepted", "Rejected"), schedule
        # an EVSE without a transaction: nothing to keep it on
        await st.call("NotifyEVChargingNeeds", {"evseId": 2, "chargingNeeds": {
            "requestedEnergyTransfer": "DC", "dcChargingParameters": {"evMaxCurrent": 200, "evMaxVoltage": 800}}})
        await st.call("TransactionEvent", {
            "eventType": "Updated", "timestamp": _ts(started + timedelta(minutes=10)),
            "triggerReason": "MeterValuePeriodic", "seqNo": 1, "transactionInfo": {"transactionId": tx},
            "meterValue": _register(started + timedelta(minutes=10), 12_500),
        })

        async def both() -> list[dict[str, Any]] | None:
            items = await _token_sessions(csms, token)
            got = [(s["station_id"], s["energy_wh"]) for s in items]
            if got != [(sid201, 2_500), (sid16, 4_000)]:
                return None
            if items[0]["ev_charging_needs"] is None or items[0]["ev_charging_schedule"] is None:
                return None
            return items

        items = await eventually(both, 20, what="both sessions of the token, newest first, with what the EV said",
                                 detail=lambda: csms.log()[-3000:])
        s201, s16 = items
        assert (s16["status"], s16["reservation_id"], s16["id_token"], s16["ocpp_version"]) == (
            "completed", 7, token, "1.6")
        assert (s201["status"], s201["reservation_id"], s201["id_token"]) == ("active", 8, token)
        assert s16["ev_charging_needs"] is None and s16["ev_charging_schedule"] is None

        shown = s201["ev_charging_needs"]
        assert shown["departure_time"] == _ts(departure)
        assert (shown["requested_energy_transfer"], shown["energy_amount_wh"], shown["ev_min_current_a"],
                shown["ev_max_current_a"], shown["ev_max_voltage_v"], shown["dc"]) == (
            "AC_three_phase", 22_000, 6, 32, 400, None)
        assert shown["status"] == needs["status"]  # what the CSMS answered
        plan = s201["ev_charging_schedule"]
        assert plan["time_base"] == _ts(started) and plan["charging_rate_unit"] == "A"
        assert plan["periods"] == [{"start_period": 0, "limit": 16.0, "number_phases": 3},
                                   {"start_period": 1800, "limit": 10.5, "number_phases": None}]
        assert plan["truncated"] is False

        # the session route shows the same session; the filters work
        status, one = await csms.api("GET", f"/api/v1/sessions/{s201['id']}")
        assert status == 200 and one["reservation_id"] == 8 and one["ev_charging_needs"] == shown
        assert [s["station_id"] for s in await _token_sessions(csms, token, "?status=completed")] == [sid16]
        assert [s["station_id"] for s in await _token_sessions(csms, token, "?limit=1")] == [sid201]

        # the Ended transaction moves the token's view on
        await st.call("TransactionEvent", {
            "eventType": "Ended", "timestamp": _ts(started + timedelta(minutes=20)), "triggerReason": "EVDeparted",
            "seqNo": 2, "transactionInfo": {"transactionId": tx, "stoppedReason": "EVDisconnected"},
            "meterValue": _register(started + timedelta(minutes=20), 14_000, "Transaction.End"),
        })

        async def ended() -> bool:
            done = await _token_sessions(csms, token, "?status=completed")
            return [(s["station_id"], s["energy_wh"]) for s in done] == [(sid201, 4_000), (sid16, 4_000)]

        await eventually(ended, 20, what="the 2.0.1 session completed in the token's view")
    finally:
        await st.close()


async def test_an_unknown_token_is_404_and_bad_queries_are_400(csms: Server) -> None:
    status, body = await csms.api("GET", f"/api/v1/tokens/{_id('NOBODY')}/sessions")
    assert status == 404 and body["error"]
    status, body = await csms.api("GET", "/api/v1/tokens/X/sessions?limit=0&status=running")
    assert status == 400 and set(body["details"]) == {"limit", "status"}
    token = _id("NEW")
    await csms.register_token(token)
    assert await _token_sessions(csms, token) == []
