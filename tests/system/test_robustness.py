"""Issue 7's reproductions, each one against the running system on both stacks.

Every scenario talks to the system only from outside: raw OCPP-J frames over a
WebSocket (tests/integration/station_client.RawStation) and the REST API.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from services.simulator.cli import station_password
from tests.integration.station_client import CallError, RawStation
from tests.support.waiting import eventually
from tests.system.conftest import System

TOKEN = "SYSTOKEN0001"
REFUSED = "SYSNOTAKNOWNTOKEN"   # never registered: the CSMS answers Invalid
PATIENCE_S = 45.0


def now_z() -> str:
    return to_ocpp(utcnow())


@pytest.fixture
async def tariff(system: System) -> None:
    """One default tariff: 0.30/kWh + 1.00 per session, 19 % tax, nothing per minute."""
    await system.api("POST", "/api/v1/tokens", {"id_token": TOKEN, "status": "Accepted"}, expect=(200, 201, 409))
    await system.api("POST", "/api/v1/tariffs", {
        "id": "sys-default", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0",
        "session_fee": "1.00", "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19",
        "bands": [], "default": True,
    }, expect=(200, 201, 409))


async def station(system: System, station_id: str, protocol: str = "ocpp1.6", **extra: Any) -> RawStation:
    password = station_password("sys", station_id)
    await system.api("POST", "/api/v1/stations", {"id": station_id, "password": password, **extra}, expect=201)
    st = RawStation(system.ocpp_url, station_id, password, protocol)
    await st.connect()
    await boot(st)
    return st


async def boot(st: RawStation) -> None:
    if st.protocol == "ocpp1.6":
        r = await st.call("BootNotification", {"chargePointVendor": "SYS", "chargePointModel": "M"})
    else:
        r = await st.call("BootNotification", {"chargingStation": {"vendorName": "SYS", "model": "M"}, "reason": "PowerUp"})
    assert r["status"] == "Accepted", r


async def sessions_of(system: System, station_id: str) -> list[dict[str, Any]]:
    _, body = await system.api("GET", f"/api/v1/sessions?station_id={station_id}")
    return list(body["items"])


async def session_of(system: System, station_id: str, transaction_id: Any, **want: Any) -> dict[str, Any]:
    """The session once it has every field in `want` (fails, showing the station's sessions
    and the log, after the patience runs out)."""

    async def probe() -> dict[str, Any] | None:
        for s in await sessions_of(system, station_id):
            if s["transaction_id"] == str(transaction_id) and all(s.get(k) == v for k, v in want.items()):
                return s
        return None

    async def seen() -> str:
        return f"sessions of {station_id}: {await sessions_of(system, station_id)}\n{system.log()[-6000:]}"

    return await eventually(
        probe, PATIENCE_S, interval=0.25, what=f"session {transaction_id} of {station_id} with {want}", detail=seen
    )


async def meter_values_of(system: System, session_id: str) -> list[dict[str, Any]]:
    """The session's stored samples (GET /sessions/{id}/meter-values, every page)."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        _, body = await system.api("GET", f"/api/v1/sessions/{session_id}/meter-values?limit=1000{cursor}", expect=200)
        items.extend(body["items"])
        if not body["next"]:
            return items
        cursor = f"&cursor={body['next']}"


async def cdrs_of(system: System, session_id: str) -> list[dict[str, Any]]:
    _, body = await system.api("GET", f"/api/v1/cdrs?session_id={session_id}")
    return sorted(body["items"], key=lambda c: c["version"])


async def start16(st: RawStation, *, token: str = TOKEN, meter: int = 0, at: str | None = None, connector: int = 1) -> tuple[int, str]:
    r = await st.call("StartTransaction", {"connectorId": connector, "idTag": token, "meterStart": meter, "timestamp": at or now_z()})
    return int(r["transactionId"]), str(r["idTagInfo"]["status"])


async def stop16(st: RawStation, tx: int, meter: int, **extra: Any) -> dict[str, Any]:
    return await st.call("StopTransaction", {"transactionId": tx, "meterStop": meter, "timestamp": now_z(), **extra})


async def ready(system: System) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{system.gateway_http}/readyz") as r:
            return r.status


# ---------------------------------------------------------------------------------------------
# 1. One bad reading no longer stops a partition.


async def test_absurd_readings_and_year_one_are_processed_and_the_partition_moves_on(system: System, uid: str, tariff: None) -> None:
    bad = await station(system, f"{uid}BAD")
    good = await station(system, system.same_partition_id(f"{uid}BAD", f"{uid}G"))
    try:
        tx_bad, _ = await start16(bad, at="0001-01-01T00:00:00Z")
        assert await bad.call("MeterValues", {"connectorId": 1, "transactionId": tx_bad, "meterValue": [
            {"timestamp": now_z(), "sampledValue": [{"value": "1e308"}]},
        ]}) == {}
        await stop16(bad, tx_bad, 1000)

        tx_good, _ = await start16(good, meter=100)
        await good.call("MeterValues", {"connectorId": 1, "transactionId": tx_good, "meterValue": [
            {"timestamp": now_z(), "sampledValue": [{"value": "2000"}]},
        ]})
        await stop16(good, tx_good, 5100)

        # The unrelated station on the same partition gets its session and CDR ...
        s_good = await session_of(system, good.station_id, tx_good, status="completed")
        assert s_good is not None, system.log()[-6000:]
        assert s_good["energy_wh"] == 5000
        # ... and so does the station that sent the absurd values: flagged, energy from the meter.
        s_bad = await session_of(system, bad.station_id, tx_bad, status="completed")
        assert s_bad is not None, system.log()[-6000:]
        assert s_bad["energy_wh"] == 1000
        assert s_bad["clock_suspect"] is True
        assert parse_ocpp(s_bad["started_at"]).year >= 2026  # ordered and billed by receive time
        assert s_bad["station_started_at"].startswith("0001-01-01")
        assert s_bad["suspect"] is True
        excluded = [m for m in await meter_values_of(system, s_bad["id"]) if m.get("excluded")]
        assert excluded and excluded[0]["raw_value"] == "1e308"
    finally:
        await bad.close()
        await good.close()


# ---------------------------------------------------------------------------------------------
# 2. A station clock in 1970 does not bill decades.


async def test_a_clock_in_1970_is_billed_on_receive_times_and_flagged(system: System, uid: str, tariff: None) -> None:
    st = await station(system, f"{uid}1970")
    try:
        tx, _ = await start16(st, at="1970-01-01T00:00:00Z")
        await stop16(st, tx, 10_000)
        s = await session_of(system, st.station_id, tx, status="completed")
        assert s is not None, system.log()[-6000:]
        assert s["clock_suspect"] is True and s["energy_wh"] == 10_000
        assert (parse_ocpp(s["stopped_at"]) - parse_ocpp(s["started_at"])).total_seconds() < 600

        async def priced() -> list[dict[str, Any]]:
            return await cdrs_of(system, s["id"])

        cdrs = await eventually(priced, PATIENCE_S, interval=0.25, what="a CDR", detail=lambda: system.log()[-6000:])
        cdr = cdrs[-1]
        # 10 kWh x 0.30 + 1.00 session fee, not 299,368.82 EUR
        assert Decimal(cdr["total_cost"]["amount"]) == Decimal("4.00")
        assert cdr["clock_suspect"] is True
    finally:
        await st.close()


# ---------------------------------------------------------------------------------------------
# 3. Ghost sessions: refused token, never stopped.


async def test_a_refused_ghost_session_is_abandoned_by_the_next_transaction_and_never_billed(system: System, uid: str, tariff: None) -> None:
    st = await station(system, f"{uid}GHOST")
    try:
        ghost, status = await start16(st, token=REFUSED, meter=0)
        assert status == "Invalid"
        real, status = await start16(st, meter=0)
        assert status == "Accepted"

        g = await session_of(system, st.station_id, ghost, status="abandoned")
        assert g is not None, (await sessions_of(system, st.station_id), system.log()[-6000:])
        assert g["authorization"] == "Invalid"
        assert g["abandon_reason"] == "new_transaction"

        # A reboot abandons the open real session; it is billed with its last known energy.
        await st.call("MeterValues", {"connectorId": 1, "transactionId": real, "meterValue": [
            {"timestamp": now_z(), "sampledValue": [{"value": "3000"}]},
        ]})
        await boot(st)
        r = await session_of(system, st.station_id, real, status="abandoned")
        assert r is not None, (await sessions_of(system, st.station_id), system.log()[-6000:])
        assert r["abandon_reason"] == "boot" and r["energy_wh"] == 3000

        async def billed() -> list[dict[str, Any]]:
            return await cdrs_of(system, r["id"])

        await eventually(billed, PATIENCE_S, interval=0.25, what="a CDR of the real session", detail=lambda: system.log()[-6000:])
        # The refused session got no CDR (give billing the time it took for the real one).
        assert await cdrs_of(system, g["id"]) == []

        # A late StopTransaction still completes the abandoned session.
        await stop16(st, real, 3500)
        done = await session_of(system, st.station_id, real, status="completed")
        assert done is not None and done["energy_wh"] == 3500
    finally:
        await st.close()


async def test_connector_available_and_the_idle_sweeper_close_ghosts(system: System, uid: str, tariff: None) -> None:
    st = await station(system, f"{uid}AVAIL")
    try:
        first, _ = await start16(st, token=REFUSED)
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": now_z()})
        g = await session_of(system, st.station_id, first, status="abandoned")
        assert g is not None and g["abandon_reason"] == "connector_available"

        # A session on connector 2 that then goes silent: the sweeper (idle timeout ~11 s
        # in these tests) closes it.
        silent, _ = await start16(st, connector=2)
        swept = await session_of(system, st.station_id, silent, status="abandoned")
        assert swept is not None and swept["abandon_reason"] == "idle_timeout", system.log()[-6000:]
    finally:
        await st.close()


# ---------------------------------------------------------------------------------------------
# 4. A 2.0.1 remote start keeps its token; an EVSE without a connector gets its connector.


async def test_a_remote_start_session_takes_the_token_of_its_command(system: System, uid: str, tariff: None) -> None:
    st = await station(system, f"{uid}RS", "ocpp2.0.1")
    try:
        await st.call("StatusNotification", {"timestamp": now_z(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1})
        status, body = await system.api("POST", f"/api/v1/stations/{st.station_id}/commands",
                                        {"type": "RemoteStart", "id_token": TOKEN, "evse_id": 1})
        assert status == 200 and body["status"] == "Accepted", body
        sent = [p for a, p in st.received if a == "RequestStartTransaction"]
        assert sent, st.received
        remote_id = sent[-1]["remoteStartId"]
        tx = f"{uid}-tx"
        common = {"evse": {"id": 1}, "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": 0}]}]}
        await st.call("TransactionEvent", {"eventType": "Started", "timestamp": now_z(), "triggerReason": "RemoteStart",
                                           "seqNo": 0, "transactionInfo": {"transactionId": tx, "remoteStartId": remote_id}, **common})
        await st.call("TransactionEvent", {"eventType": "Ended", "timestamp": now_z(), "triggerReason": "StopAuthorized",
                                           "seqNo": 1, "transactionInfo": {"transactionId": tx, "stoppedReason": "Remote"},
                                           "evse": {"id": 1}, "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": 7000}]}]})
        s = await session_of(system, st.station_id, tx, status="completed")
        assert s is not None, system.log()[-6000:]
        assert s["id_token"] == TOKEN
        assert s["remote_start_id"] == remote_id
        assert (s["evse_id"], s["connector_id"]) == (1, 1)
        assert s["energy_wh"] == 7000
    finally:
        await st.close()


# ---------------------------------------------------------------------------------------------
# 5. One odd field no longer refuses a whole transaction message.


async def test_odd_units_reasons_and_measurands_get_answers_and_the_transaction_ends(system: System, uid: str, tariff: None) -> None:
    st16 = await station(system, f"{uid}LEN16")
    st201 = await station(system, f"{uid}LEN201", "ocpp2.0.1")
    try:
        tx, _ = await start16(st16, meter=0)
        assert await st16.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": now_z(), "sampledValue": [{"value": "1.5", "unit": "kwh"}]},
        ]}) == {}
        await stop16(st16, tx, 2000, reason="local", transactionData=[
            {"timestamp": now_z(), "sampledValue": [{"value": "2", "unit": "kWh", "measurand": "Energy.Something.New"}]},
        ])
        s = await session_of(system, st16.station_id, tx, status="completed")
        assert s is not None, system.log()[-6000:]
        assert s["energy_wh"] == 2000 and s["stop_reason"] == "Local"
        assert any(m["unit"] == "Wh" and m["value"] == 1500 for m in await meter_values_of(system, s["id"]))

        tx2 = f"{uid}-len"
        await st201.call("TransactionEvent", {"eventType": "Started", "timestamp": now_z(), "triggerReason": "Authorized",
                                              "seqNo": 0, "transactionInfo": {"transactionId": tx2}, "evse": {"id": 1, "connectorId": 1},
                                              "idToken": {"idToken": TOKEN, "type": "ISO14443"},
                                              "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": 100}]}]})
        assert await st201.call("TransactionEvent", {
            "eventType": "Ended", "timestamp": now_z(), "triggerReason": "EVCommunicationLost", "seqNo": 1,
            "transactionInfo": {"transactionId": tx2, "stoppedReason": "EVDisconnected"},
            "meterValue": [{"timestamp": now_z(), "sampledValue": [
                {"value": 900, "measurand": "Energy.Active.Import.Register"},
                {"value": 4, "measurand": "Vendor.Unknown.Measurand"},
            ]}],
        }) is not None
        s2 = await session_of(system, st201.station_id, tx2, status="completed")
        assert s2 is not None, system.log()[-6000:]
        assert s2["energy_wh"] == 800
    finally:
        await st16.close()
        await st201.close()


# ---------------------------------------------------------------------------------------------
# 6. One frame cannot take a gateway out of service.


async def test_a_data_transfer_near_the_frame_limit_is_refused_and_the_gateway_stays_ready(system: System, uid: str, tariff: None) -> None:
    st = await station(system, f"{uid}BIG")
    other = await station(system, f"{uid}OTHER")
    try:
        data = "x" * ((1 << 20) - 200)
        with pytest.raises(CallError) as refused:
            await st.call("DataTransfer", {"vendorId": "SYS", "messageId": "big", "data": data})
        frame = refused.value.frame
        assert frame[2] in ("FormationViolation", "FormatViolation"), frame
        assert any(ch.isdigit() for ch in frame[3]) and "bytes" in frame[3], frame  # names the limit
        assert await ready(system) == 200
        assert "currentTime" in await st.call("Heartbeat", {})
        assert "currentTime" in await other.call("Heartbeat", {})
        tx, _ = await start16(other)
        await stop16(other, tx, 10)
        assert await session_of(system, other.station_id, tx, status="completed") is not None
        assert await ready(system) == 200
    finally:
        await st.close()
        await other.close()
