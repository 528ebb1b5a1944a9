"""Smart charging's new rules end to end (issue 10, ADR 018 §5) against `csms run`.

Raw OCPP-J stations (tests/support/ocpp_raw.py: JSON frames written here, no simulator, no
ocpp library) so the test does not share the CSMS's assumptions:
(a) an outside limit lowers a site's total: a 2.0.1 station sends NotifyChargingLimit 10 A
    on its EVSE and gets a 10 A TxProfile (the site's allocation says 10 A in all), then
    ClearedChargingLimit and 32 A again;
(b) a station that rejects profiles does not push the site over its limit: a 1.6 station
    answers SetChargingProfile with a CALLERROR NotImplemented (the fail-safe at its boot
    first, which marks it) and draws 16 A: it is reserved 17 A and the 2.0.1 station
    beside it gets 23 A; none of its sessions is sent a profile; after its next
    BootNotification it is asked again;
(c) NotifyEVChargingNeeds with a departure time and an energy amount on a station in a
    site is answered Accepted and a TxProfile for that transaction, ending at the
    departure, follows; a station in no site is answered Rejected.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import pytest

from tests.e2e.conftest import Server
from tests.support.ocpp_raw import RawStation
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

V16, V201 = "ocpp1.6", "ocpp2.0.1"
TOKEN = "ENERGY-E2E-TOKEN"
Json = dict[str, Any]


def now_ocpp(offset_s: float = 0) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RefusingStation(RawStation):
    """A raw station that answers SetChargingProfile with a CALLERROR NotImplemented."""

    async def _answer(self, uid: str, action: str, payload: Json) -> None:
        if action != "SetChargingProfile":
            await super()._answer(uid, action, payload)
            return
        assert self._ws is not None
        await self._ws.send_str(json.dumps([4, uid, "NotImplemented", "no smart charging here", {}]))


def tx_profiles(station: RawStation) -> list[Json]:
    """The TxProfiles the station was sent (1.6 csChargingProfiles / 2.0.1 chargingProfile)."""
    out = []
    for action, payload in station.received:
        if action != "SetChargingProfile":
            continue
        profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
        if profile.get("chargingProfilePurpose") == "TxProfile":
            out.append(profile)
    return out


def schedule_of(profile: Json) -> Json:
    schedule = profile["chargingSchedule"]
    return schedule[0] if isinstance(schedule, list) else schedule  # type: ignore[no-any-return]


def latest_limit(station: RawStation) -> float | None:
    profiles = tx_profiles(station)
    return float(schedule_of(profiles[-1])["chargingSchedulePeriod"][0]["limit"]) if profiles else None


async def a_site(csms: Server, site_id: str, grid_limit_a: float) -> None:
    await csms.api("POST", "/api/v1/sites", {"id": site_id, "grid_limit_a": grid_limit_a, "phases": 3}, expect=201)
    await csms.register_token(TOKEN)


@asynccontextmanager
async def station(
    csms: Server, station_id: str, protocol: str, *, site_id: str | None, cls: type[RawStation] = RawStation,
) -> AsyncIterator[RawStation]:
    extra: Json = {"site_id": site_id} if site_id else {}
    password = await csms.register_station(station_id, **extra)
    st = cls(csms.ocpp_url, station_id, password, protocol)
    await st.connect()
    try:
        await boot(st)
        yield st
    finally:
        await st.close()


async def boot(st: RawStation) -> None:
    if st.protocol == V16:
        answer = await st.call("BootNotification", {"chargePointVendor": "E2E", "chargePointModel": "Raw"})
        assert answer["status"] == "Accepted", answer
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    else:
        answer = await st.call("BootNotification", {"chargingStation": {"vendorName": "E2E", "model": "Raw"}, "reason": "PowerUp"})
        assert answer["status"] == "Accepted", answer
        await st.call("StatusNotification", {"timestamp": now_ocpp(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1})


async def start_16(st: RawStation, connector: int = 1) -> int:
    answer = await st.call("StartTransaction", {"connectorId": connector, "idTag": TOKEN, "meterStart": 0, "timestamp": now_ocpp()})
    assert answer["idTagInfo"]["status"] == "Accepted", answer
    return int(answer["transactionId"])


async def start_201(st: RawStation, tx_id: str, evse: int = 1) -> None:
    answer = await st.call("TransactionEvent", {
        "eventType": "Started", "timestamp": now_ocpp(), "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": tx_id, "chargingState": "Charging"},
        "idToken": {"idToken": TOKEN, "type": "ISO14443"}, "evse": {"id": evse, "connectorId": 1},
    })
    assert answer.get("idTokenInfo", {}).get("status") == "Accepted", answer


async def current_16(st: RawStation, tx_id: int, amps: float, connector: int = 1) -> None:
    await st.call("MeterValues", {
        "connectorId": connector, "transactionId": tx_id,
        "meterValue": [{"timestamp": now_ocpp(), "sampledValue": [
            {"value": f"{amps:.1f}", "measurand": "Current.Import", "unit": "A", "phase": phase}
            for phase in ("L1", "L2", "L3")
        ]}],
    })


def site_log(csms: Server, site_id: str, marker: str) -> list[str]:
    return [line for line in csms.log().splitlines() if f"site={site_id} allocation after" in line and marker in line]


# ------------------------------------------------------------------------------ (a)


async def test_an_outside_limit_lowers_the_sites_total_and_its_clear_restores_it(csms: Server, unique_id: str) -> None:
    site_id = f"{unique_id}-EXT"
    await a_site(csms, site_id, 32)
    async with station(csms, f"{unique_id}-L", V201, site_id=site_id) as st:
        await start_201(st, "tx-ext-1")
        await eventually(lambda: latest_limit(st) == 32.0, 20, interval=0.05, what="32 A for the only session",
                         detail=lambda: tx_profiles(st))

        await st.call("NotifyChargingLimit", {
            "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": False}, "evseId": 1,
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}],
        })
        await eventually(lambda: latest_limit(st) == 10.0, 20, interval=0.05, what="a 10 A profile under the outside limit",
                         detail=lambda: tx_profiles(st))
        assert tx_profiles(st)[-1]["transactionId"] == "tx-ext-1"
        # The site's allocation (logged with its trace) is 10 A in all.
        lines = await eventually(lambda: site_log(csms, site_id, "ChargingLimitSet"), 10, what="the allocation after the limit")
        assert "total 10 A of 32 A" in lines[-1], lines[-1]
        # ... and so does the API's view of it.
        _, view = await csms.api("GET", f"/api/v1/sites/{site_id}/allocation", expect=200)
        assert (view["total_a"], view["limit_a"]) == (10, 32), view
        assert [(s["station_id"], s["allocated_a"], s["last_sent_a"]) for s in view["sessions"]] == [(st.station_id, 10, 10)]
        assert [(o["station_id"], o["evse_id"], o["source"], o["limit_a"]) for o in view["outside_limits"]] == [
            (st.station_id, 1, "EMS", 10)]

        await st.call("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1})
        await eventually(lambda: latest_limit(st) == 32.0, 20, interval=0.05, what="32 A again after the clear",
                         detail=lambda: tx_profiles(st))
        lines = await eventually(lambda: site_log(csms, site_id, "ChargingLimitCleared"), 10, what="the allocation after the clear")
        assert "total 32 A of 32 A" in lines[-1], lines[-1]


# ------------------------------------------------------------------------------ (b)


async def test_a_station_that_rejects_profiles_does_not_push_the_site_over_its_limit(csms: Server, unique_id: str) -> None:
    site_id = f"{unique_id}-REJ"
    await a_site(csms, site_id, 40)
    async with station(csms, f"{unique_id}-R", V16, site_id=site_id, cls=RefusingStation) as r, \
            station(csms, f"{unique_id}-C", V201, site_id=site_id) as c:
        # R refused the fail-safe TxDefaultProfile sent at its boot (NotImplemented): it is
        # marked before its first session, which is then never sent a TxProfile.
        await eventually(lambda: [ln for ln in csms.log().splitlines()
                                  if f"station={r.station_id} rejected the fail-safe TxDefaultProfile" in ln],
                         20, what="R marked as not taking profiles")
        tx_r = await start_16(r)
        await current_16(r, tx_r, 16.0)
        await start_201(c, "tx-c-1")

        await eventually(lambda: latest_limit(c) == 23.0, 20, interval=0.05, what="C gets the 40 A less R's 17 A",
                         detail=lambda: (tx_profiles(c), csms.log()[-3000:]))
        assert all(0 < float(schedule_of(p)["chargingSchedulePeriod"][0]["limit"]) <= 23.0 for p in tx_profiles(c)[-1:])
        _, view = await csms.api("GET", f"/api/v1/sites/{site_id}/allocation", expect=200)
        allocated = {s["station_id"]: (s["allocated_a"], s["controllable"]) for s in view["sessions"]}
        assert allocated == {r.station_id: (17, False), c.station_id: (23, True)}, view
        assert [m["station_id"] for m in view["stations_without_profiles"]] == [r.station_id]
        assert (view["total_a"], view["reserved_a"], view["over_limit"]) == (40, 17, False), view

        # A second session on R is not sent a profile (and, before a reading, reserves R's max).
        asked_r = len(tx_profiles(r))
        assert asked_r == 0  # marked at its boot: never asked
        seen_c = len(tx_profiles(c))
        tx_r2 = await start_16(r, connector=2)
        await eventually(lambda: len(tx_profiles(c)) > seen_c, 20, interval=0.05,
                         what="C's limit re-decided after R's second session", detail=lambda: tx_profiles(c))
        assert len(tx_profiles(r)) == asked_r
        await current_16(r, tx_r2, 5.0, connector=2)
        await eventually(lambda: latest_limit(c) == 17.0, 20, interval=0.05, what="C gets 40 - 17 - 6 A",
                         detail=lambda: tx_profiles(c))
        assert len(tx_profiles(r)) == asked_r

        # After its next boot R is asked again, for both of its sessions.
        await boot(r)
        await eventually(lambda: len(tx_profiles(r)) >= asked_r + 2, 20, interval=0.05, what="R asked again after its boot",
                         detail=lambda: tx_profiles(r))
        assert {p["transactionId"] for p in tx_profiles(r)[asked_r:]} == {tx_r, tx_r2}


# ------------------------------------------------------------------------------ (c)


async def test_ev_charging_needs_get_a_schedule_in_a_site_and_are_rejected_outside_one(csms: Server, unique_id: str) -> None:
    site_id = f"{unique_id}-NEEDS"
    await a_site(csms, site_id, 32)
    needs = {
        "evseId": 1,
        "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase", "departureTime": now_ocpp(2 * 3600),
            "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 16, "evMaxVoltage": 400},
        },
    }
    async with station(csms, f"{unique_id}-N", V201, site_id=site_id) as st, \
            station(csms, f"{unique_id}-LONE", V201, site_id=None) as lone:
        await start_201(st, "tx-needs-1")
        await eventually(lambda: latest_limit(st) == 32.0, 20, interval=0.05, what="the session's first profile")

        answer = await st.call("NotifyEVChargingNeeds", needs)
        assert answer == {"status": "Accepted"}

        def shaped() -> Json | None:
            return next((p for p in tx_profiles(st) if "duration" in schedule_of(p)), None)

        profile = await eventually(shaped, 20, interval=0.05, what="a TxProfile shaped by the EV's needs",
                                   detail=lambda: tx_profiles(st))
        assert profile["transactionId"] == "tx-needs-1"
        schedule = schedule_of(profile)
        # 20 kWh in 2 h on 3 phases at 230 V: 14.49 A (under the EV's 16 A), until departure.
        assert schedule["chargingSchedulePeriod"][0]["limit"] == 14.4
        assert 7000 <= schedule["duration"] <= 7200
        assert schedule["chargingRateUnit"] == "A"

        await start_201(lone, "tx-lone-1")
        assert await lone.call("NotifyEVChargingNeeds", needs) == {"status": "Rejected"}
