"""Charging profiles both ways end to end (issue 10, ADR 018 §4) against `csms run` (memory
bus + SQLite), with raw OCPP-J stations (tests/support/ocpp_raw.py: hand-built JSON frames,
neither the simulator nor the ocpp library), 1.6 and 2.0.1:

- an operator's SetChargingProfile through `POST /stations/{id}/commands`, accepted by the
  station, appears in `GET /stations/{id}/charging-profiles` with source `operator`;
- smart charging's profiles (the fail-safe when a station of a site boots, the TxProfile of
  a transaction) appear with source `smart_charging`; the TxProfile goes when its
  transaction ends;
- ClearChargingProfile removes what it matched;
- `?source=station`: a 2.0.1 station answers GetChargingProfiles Accepted and reports in two
  ReportChargingProfiles parts (tbc true, then false): both parts' profiles are answered; a
  1.6 station's view is the CSMS's record, with a note;
- the composite schedule of both versions comes back in one shape.

Every answer is checked against the OpenAPI document the server serves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import get_json, now_z, openapi_checked, until
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

V16, V201 = "ocpp1.6", "ocpp2.0.1"
TOKEN = "E2ECPTOKEN1"
Json = dict[str, Any]


async def connected(csms: Server, sid: str, protocol: str, **extra: Any) -> RawStation:
    password = await csms.register_station(sid, **extra)
    st = RawStation(csms.ocpp_url, sid, password, protocol)
    await st.connect()
    if protocol == V16:
        answer = await st.call("BootNotification", {"chargePointVendor": "E2E", "chargePointModel": "CP16"})
        assert answer["status"] == "Accepted", answer
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    else:
        answer = await st.call("BootNotification", {"reason": "PowerUp",
                                                    "chargingStation": {"model": "CP201", "vendorName": "E2E"}})
        assert answer["status"] == "Accepted", answer
        await st.call("StatusNotification", {"timestamp": now_z(), "connectorStatus": "Available", "evseId": 1,
                                             "connectorId": 1})
    return st


async def profiles(csms: Server, sid: str, query: str = "") -> Json:
    body = await get_json(csms, f"/api/v1/stations/{sid}/charging-profiles{query}")
    assert isinstance(body, dict)
    return body


async def recorded_where(csms: Server, sid: str, check: Any, what: str) -> Json:
    async def probe() -> Json | None:
        body = await profiles(csms, sid)
        return body if check(body["items"]) else None

    return await until(probe, what, detail=lambda: profiles(csms, sid))


async def command(csms: Server, sid: str, body: Json) -> Json:
    _, answer = await csms.api("POST", f"/api/v1/stations/{sid}/commands", body, expect=200)
    assert isinstance(answer, dict)
    return answer


def by_id(items: list[Json]) -> dict[int, Json]:
    return {p["id"]: p for p in items}


async def test_16_operator_and_smart_charging_profiles_are_recorded_cleared_and_ended(csms: Server, unique_id: str) -> None:
    site = f"{unique_id}-SITE"
    sid = f"{unique_id}-16"
    await csms.api("POST", "/api/v1/sites", {"id": site, "grid_limit_a": 32, "phases": 3}, expect=201)
    await csms.register_token(TOKEN)
    st = await connected(csms, sid, V16, site_id=site)
    try:
        # smart charging's fail-safe, sent when a station of a site boots
        body = await recorded_where(csms, sid, lambda items: any(p["purpose"] == "TxDefaultProfile" for p in items),
                                    "the fail-safe recorded")
        fail_safe = next(p for p in body["items"] if p["purpose"] == "TxDefaultProfile")
        assert fail_safe["source"] == "smart_charging" and fail_safe["evse_id"] == 0 and fail_safe["command_id"]
        assert fail_safe["schedules"][0]["charging_rate_unit"] == "A"

        # an operator's profile, accepted by the station
        max_profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
                       "chargingProfileKind": "Absolute", "validTo": "2099-01-01T00:00:00.000Z",
                       "chargingSchedule": {"startSchedule": now_z(), "chargingRateUnit": "A",
                                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 24.0},
                                                                       {"startPeriod": 3600, "limit": 12.5}]}}
        answer = await command(csms, sid, {"type": "SetChargingProfile", "connector_id": 0, "charging_profile": max_profile})
        assert answer["status"] == "Accepted", answer
        sent = [p for a, p in st.received if a == "SetChargingProfile" and p["csChargingProfiles"]["chargingProfileId"] == 1]
        assert sent and sent[0]["connectorId"] == 0
        body = await recorded_where(csms, sid, lambda items: 1 in by_id(items), "the operator's profile recorded")
        mine = by_id(body["items"])[1]
        assert mine["source"] == "operator" and mine["command_id"] == answer["command_id"]
        assert mine["purpose"] == "ChargePointMaxProfile" and mine["valid_to"] == "2099-01-01T00:00:00.000Z"
        assert [(x["start_period"], x["limit"]) for x in mine["schedules"][0]["periods"]] == [(0, 24.0), (3600, 12.5)]

        # a profile the station refuses is not recorded
        st.handlers["SetChargingProfile"] = refuse_id(2)
        refused = {**max_profile, "chargingProfileId": 2, "stackLevel": 1}
        answer = await command(csms, sid, {"type": "SetChargingProfile", "connector_id": 0, "charging_profile": refused})
        assert answer["status"] == "Rejected", answer

        # a transaction: smart charging limits it with a TxProfile
        started = await st.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 0,
                                                     "timestamp": now_z()})
        tx = started["transactionId"]
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        body = await recorded_where(csms, sid, lambda items: any(p["purpose"] == "TxProfile" for p in items),
                                    "the smart charging TxProfile recorded")
        tx_profile = next(p for p in body["items"] if p["purpose"] == "TxProfile")
        assert tx_profile["source"] == "smart_charging" and tx_profile["transaction_id"] == str(tx)
        assert tx_profile["evse_id"] == 1 and 0 < tx_profile["schedules"][0]["periods"][0]["limit"] <= 32
        assert 2 not in by_id(body["items"])

        # 1.6 cannot report: the CSMS's record, said so
        station_view = await profiles(csms, sid, "?source=station")
        assert station_view["source"] == "csms" and "1.6" in station_view["note"]
        assert {p["id"] for p in station_view["items"]} == {p["id"] for p in body["items"]}
        assert "GetChargingProfiles" not in st.actions_received()
        filtered = await profiles(csms, sid, "?evse_id=0&purpose=ChargingStationMaxProfile")
        assert [p["id"] for p in filtered["items"]] == [1]

        # the composite schedule, 1.6 shape
        async def composite(payload: Json) -> Json:
            assert payload == {"connectorId": 1, "duration": 600, "chargingRateUnit": "A"}, payload
            return {"status": "Accepted", "connectorId": 1, "scheduleStart": "2026-12-01T10:00:00.000Z",
                    "chargingSchedule": {"duration": 600, "chargingRateUnit": "A", "minChargingRate": 6.0,
                                         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                                                                    {"startPeriod": 300, "limit": 10.0}]}}

        st.handlers["GetCompositeSchedule"] = composite
        schedule = await get_json(csms, f"/api/v1/stations/{sid}/composite-schedule?duration=600&evse_id=1&charging_rate_unit=A")
        assert schedule["status"] == "Accepted" and schedule["evse_id"] == 1, schedule
        assert schedule["schedule"] == {
            "evse_id": 1, "schedule_start": "2026-12-01T10:00:00.000Z", "duration": 600, "charging_rate_unit": "A",
            "min_charging_rate": 6.0, "periods": [
                {"start_period": 0, "limit": 16.0, "number_phases": 3, "phase_to_use": None},
                {"start_period": 300, "limit": 10.0, "number_phases": None, "phase_to_use": None}]}
        status, bad = await csms.api("GET", f"/api/v1/stations/{sid}/composite-schedule?duration=-5")
        assert status == 400 and "duration" in bad["details"]
        await openapi_checked(csms, "GET", f"/api/v1/stations/{sid}/composite-schedule", 400, bad)

        # the operator clears its profile by id: only that one goes
        answer = await command(csms, sid, {"type": "ClearChargingProfile", "id": 1})
        assert answer["status"] == "Accepted", answer
        await recorded_where(csms, sid, lambda items: 1 not in by_id(items) and len(items) == 2,
                             "the operator's profile cleared, smart charging's kept")

        # the transaction ends: its TxProfile goes
        await st.call("StopTransaction", {"transactionId": tx, "meterStop": 1500, "timestamp": now_z(), "idTag": TOKEN})
        body = await recorded_where(csms, sid, lambda items: not any(p["purpose"] == "TxProfile" for p in items),
                                    "the TxProfile gone with its transaction")
        assert [p["purpose"] for p in body["items"]] == ["TxDefaultProfile"]
    finally:
        await st.close()


def refuse_id(profile_id: int) -> Any:
    async def handler(payload: Json) -> Json:
        return {"status": "Rejected" if payload["csChargingProfiles"]["chargingProfileId"] == profile_id else "Accepted"}

    return handler


def _reported(pid: int, purpose: str, limit: float) -> Json:
    return {"id": pid, "stackLevel": pid % 3, "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": pid, "chargingRateUnit": "A", "startSchedule": "2026-12-01T00:00:00.000Z",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}]}


async def test_201_operator_profiles_the_station_s_own_report_in_parts_and_the_composite_schedule(
        csms: Server, unique_id: str) -> None:
    sid = f"{unique_id}-201"
    st = await connected(csms, sid, V201)
    try:
        profile = {"id": 21, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
                   "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
                   "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule": "2026-12-01T00:00:00.000Z",
                                         "duration": 86400,
                                         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0},
                                                                    {"startPeriod": 28800, "limit": 11000.0}]}]}
        answer = await command(csms, sid, {"type": "SetChargingProfile", "evse_id": 1, "charging_profile": profile})
        assert answer["status"] == "Accepted", answer
        body = await recorded_where(csms, sid, lambda items: 21 in by_id(items), "the operator's 2.0.1 profile recorded")
        mine = by_id(body["items"])[21]
        assert (mine["evse_id"], mine["source"], mine["kind"], mine["recurrency_kind"]) == (1, "operator", "Recurring", "Daily")
        assert mine["schedules"][0]["duration"] == 86400 and mine["schedules"][0]["charging_rate_unit"] == "W"

        # the same purpose and stack level on the same EVSE replaces it
        replacement = {**profile, "id": 22}
        answer = await command(csms, sid, {"type": "SetChargingProfile", "evse_id": 1, "charging_profile": replacement})
        assert answer["status"] == "Accepted", answer
        await recorded_where(csms, sid, lambda items: sorted(by_id(items)) == [22], "profile 22 replaced 21")

        # the station's own list, reported in two parts
        asked: list[Json] = []

        async def get_profiles(payload: Json) -> Json:
            asked.append(payload)
            rid = payload["requestId"]

            async def report() -> None:
                await st.call("ReportChargingProfiles", {"requestId": rid, "chargingLimitSource": "CSO", "tbc": True,
                                                         "evseId": 1, "chargingProfile": [
                                                             _reported(22, "TxDefaultProfile", 32.0),
                                                             _reported(30, "TxDefaultProfile", 20.0)]})
                await asyncio.sleep(0.3)
                await st.call("ReportChargingProfiles", {"requestId": rid, "chargingLimitSource": "EMS", "tbc": False,
                                                         "evseId": 0, "chargingProfile": [
                                                             _reported(40, "ChargingStationMaxProfile", 63.0)]})

            st.after_reply(report)
            return {"status": "Accepted"}

        st.handlers["GetChargingProfiles"] = get_profiles
        reported = await profiles(csms, sid, "?source=station")
        assert reported["source"] == "station" and reported["note"] is None, reported
        assert asked and asked[0]["requestId"] == reported["request_id"] and asked[0]["chargingProfile"] == {}
        assert [(p["evse_id"], p["id"], p["source"]) for p in reported["items"]] == [
            (0, 40, "EMS"), (1, 30, "CSO"), (1, 22, "CSO")], reported  # by EVSE, purpose, stack level
        assert by_id(reported["items"])[40]["schedules"][0]["periods"][0]["limit"] == 63.0
        assert all(p["installed_at"] is None and p["command_id"] is None for p in reported["items"])
        assert not st.job_errors, st.job_errors

        # filters go to the station as its criteria
        async def no_profiles(payload: Json) -> Json:
            asked.append(payload)
            return {"status": "NoProfiles"}

        st.handlers["GetChargingProfiles"] = no_profiles
        empty = await profiles(csms, sid, "?source=station&evse_id=2&purpose=TxProfile")
        assert empty["items"] == [] and empty["source"] == "station"
        assert asked[-1]["evseId"] == 2 and asked[-1]["chargingProfile"] == {"chargingProfilePurpose": "TxProfile"}

        # the composite schedule, 2.0.1 shape
        async def composite(payload: Json) -> Json:
            assert payload == {"evseId": 0, "duration": 3600}, payload
            return {"status": "Accepted", "schedule": {
                "evseId": 0, "duration": 3600, "scheduleStart": "2026-12-01T10:00:00.000Z", "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0, "numberPhases": 1, "phaseToUse": 1}]}}

        st.handlers["GetCompositeSchedule"] = composite
        schedule = await get_json(csms, f"/api/v1/stations/{sid}/composite-schedule?duration=3600")
        assert schedule["status"] == "Accepted" and schedule["schedule"] == {
            "evse_id": 0, "schedule_start": "2026-12-01T10:00:00.000Z", "duration": 3600, "charging_rate_unit": "W",
            "min_charging_rate": None,
            "periods": [{"start_period": 0, "limit": 7400.0, "number_phases": 1, "phase_to_use": 1}]}, schedule

        # ClearChargingProfile by criteria removes what matched
        answer = await command(csms, sid, {"type": "ClearChargingProfile", "evse_id": 1, "purpose": "TxDefaultProfile"})
        assert answer["status"] == "Accepted", answer
        cleared = [p for a, p in st.received if a == "ClearChargingProfile"]
        assert cleared[-1] == {"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile"}}
        await recorded_where(csms, sid, lambda items: items == [], "the record empty after the clear")
    finally:
        await st.close()

    # offline: the station's view cannot be had
    async def offline() -> bool:
        status, _ = await csms.api("GET", f"/api/v1/stations/{sid}/charging-profiles?source=station")
        return status == 409

    await eventually(offline, 20, interval=0.1, what="409 once the station is gone")
    status, body = await csms.api("GET", f"/api/v1/stations/{sid}/composite-schedule?duration=60")
    assert status == 409 and body["status"] == "StationOffline", body
    await openapi_checked(csms, "GET", f"/api/v1/stations/{sid}/composite-schedule", 409, body)
