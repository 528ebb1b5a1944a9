"""Cost updates end to end (issue 10 block I, ADR 018 §6) against `csms run` (memory bus +
SQLite) with CSMS_COST_UPDATE_INTERVAL_S=1, driven by raw OCPP clients (hand-built JSON
frames, tests/support/ocpp_raw.py).

Tariff: 0.30/kWh, no fee, no time or idle price, 19 % tax; the register goes 1000 -> 3000 Wh:
2 kWh x 0.30 = 0.60 excl. tax, 0.60 x 1.19 = 0.714 -> 0.71 incl. tax.

- 2.0.1: CostUpdated during the transaction, with its transactionId and a non-decreasing
  totalCost that reaches exactly 0.71; the session shows `cost_update`.
- 1.6 with `cost_messages`: DataTransfer org.openchargealliance.costmsg SetUserPrice once
  (the driver's idTag, "0.357 EUR/kWh (incl. tax)") before the first RunningCost, RunningCost
  during the transaction, then exactly one FinalCost (0.71, the CDR's total) after
  StopTransaction.
- 1.6 without the flag: no costmsg at all, and the session's `cost_update` is null.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator

import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import V16, V201, Json, boot, get_json, now_z, until

TOKEN = "E2ECOSTTOKEN1"
VENDOR = "org.openchargealliance.costmsg"
REGISTER = "Energy.Active.Import.Register"


@pytest.fixture(scope="module")
def costs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("costs"), {"CSMS_COST_UPDATE_INTERVAL_S": "1"})
    yield server
    stop_server(server)
    log = server.log()
    assert "Traceback" not in log, log[-6000:]


def a_tariff(tariff_id: str) -> Json:
    return {
        "id": tariff_id, "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "0",
        "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19", "bands": [], "default": False,
    }


async def a_station(server: Server, sid: str, protocol: str, **station: Any) -> RawStation:
    await server.api("POST", "/api/v1/tariffs", a_tariff(f"T-{sid}"), expect=201)
    password = await server.register_station(sid)
    _, body = await server.api("PATCH", f"/api/v1/stations/{sid}", {"tariff_id": f"T-{sid}", **station}, expect=200)
    assert body["cost_messages"] is bool(station.get("cost_messages", False)), body
    await server.register_token(TOKEN)
    st = RawStation(server.ocpp_url, sid, password, protocol)

    async def cost_updated(_: Json) -> Json:
        return {}  # CostUpdatedResponse has no fields

    async def data_transfer(_: Json) -> Json:
        return {"status": "Accepted"}

    st.handlers["CostUpdated"] = cost_updated
    st.handlers["DataTransfer"] = data_transfer
    await st.connect()
    await boot(st)
    return st


async def session_of(server: Server, sid: str, status: str | None = None) -> Json:
    query = f"/api/v1/sessions?station_id={sid}" + (f"&status={status}" if status else "")

    async def probe() -> Json | None:
        body = await get_json(server, query)  # checked against the OpenAPI document
        return body["items"][0] if body["items"] else None

    return await until(probe, f"a {status or ''} session of {sid}", detail=lambda: server.log()[-3000:])


def costmsgs(st: RawStation, message_id: str) -> list[Json]:
    return [
        {**p, "data": json.loads(p["data"])} for a, p in st.received
        if a == "DataTransfer" and p.get("vendorId") == VENDOR and p.get("messageId") == message_id
    ]


def costmsg_ids(st: RawStation) -> list[str]:
    """The costmsg messageIds the station received, in order."""
    return [str(p.get("messageId")) for a, p in st.received if a == "DataTransfer" and p.get("vendorId") == VENDOR]


# -- 2.0.1 -----------------------------------------------------------------------------------

def _tx_event(event: str, seq: int, tx: str, wh: int, trigger: str) -> Json:
    payload: Json = {
        "eventType": event, "timestamp": now_z(), "triggerReason": trigger, "seqNo": seq,
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": now_z(), "sampledValue": [
            {"value": wh, "measurand": REGISTER, "unitOfMeasure": {"unit": "Wh"}},
        ]}],
    }
    if event == "Started":
        payload["idToken"] = {"idToken": TOKEN, "type": "ISO14443"}
    return payload


async def test_a_201_transaction_gets_cost_updated_at_the_interval_with_the_tariff_arithmetic(
    costs: Server, unique_id: str,
) -> None:
    sid, tx = unique_id, f"TX-{unique_id}"
    st = await a_station(costs, sid, V201)
    try:
        await st.call("TransactionEvent", _tx_event("Started", 0, tx, 1000, "Authorized"))
        seq = 1
        for wh in (1400, 1800, 2200, 2600, 3000):
            await asyncio.sleep(0.6)
            await st.call("TransactionEvent", _tx_event("Updated", seq, tx, wh, "MeterValuePeriodic"))
            seq += 1

        async def reached_071() -> list[Json] | None:
            got = [p for a, p in st.received if a == "CostUpdated"]
            if got and got[-1]["totalCost"] == 0.71:
                return got
            # the register stays at 3000 Wh: the next record after the interval brings 0.71
            nonlocal seq
            await asyncio.sleep(1.1)
            await st.call("TransactionEvent", _tx_event("Updated", seq, tx, 3000, "MeterValuePeriodic"))
            seq += 1
            return None

        updates = await until(reached_071, "CostUpdated with 0.71", detail=lambda: costs.log()[-3000:])
        assert len(updates) >= 2, updates  # ~3.6 s of transaction at a 1 s interval
        assert all(p["transactionId"] == tx for p in updates), updates
        totals = [p["totalCost"] for p in updates]
        assert totals == sorted(totals), totals  # the running cost only grows here

        session = await session_of(costs, sid)
        update = session["cost_update"]
        assert update is not None and update["kind"] == "CostUpdated" and update["state"] == "sent", update
        assert update["total_cost"] == {"amount": "0.71", "currency": "EUR"}, update
        assert update["count"] == len(updates), (update, totals)
        assert update["sent_at"].endswith("Z")
        single = await get_json(costs, f"/api/v1/sessions/{session['id']}")
        assert single["cost_update"] == update

        await st.call("TransactionEvent", {**_tx_event("Ended", seq, tx, 3000, "StopAuthorized"),
                                           "transactionInfo": {"transactionId": tx, "stoppedReason": "Local"}})
        await session_of(costs, sid, "completed")
    finally:
        await st.close()


# -- 1.6 -------------------------------------------------------------------------------------

async def a_16_transaction(st: RawStation) -> int:
    """StartTransaction at 1000 Wh, MeterValues up to 3000 Wh over ~2.4 s; the transaction id."""
    started = await st.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 1000,
                                                 "timestamp": now_z()})
    tx = int(started["transactionId"])
    for wh in (1500, 2000, 2500, 3000):
        await asyncio.sleep(0.6)
        await st.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{
            "timestamp": now_z(), "sampledValue": [{"value": str(wh), "measurand": REGISTER, "unit": "Wh"}],
        }]})
    return tx


async def test_a_16_station_with_cost_messages_gets_running_cost_then_one_final_cost(
    costs: Server, unique_id: str,
) -> None:
    sid = unique_id
    st = await a_station(costs, sid, V16, cost_messages=True)
    try:
        tx = await a_16_transaction(st)
        running = await until(lambda: costmsgs(st, "RunningCost") or None, "a RunningCost",
                              detail=lambda: costs.log()[-3000:])
        first = running[0]["data"]
        assert first["transactionId"] == tx and first["state"] == "Charging", first
        assert first["chargingPrice"] == {"kWhPrice": 0.357, "hourPrice": 0, "flatFee": 0}, first
        assert isinstance(first["meterValue"], int) and first["timestamp"].endswith("Z"), first
        costs_seen = [m["data"]["cost"] for m in running]
        assert costs_seen == sorted(costs_seen), costs_seen

        await st.call("StopTransaction", {"transactionId": tx, "meterStop": 3000, "timestamp": now_z(), "idTag": TOKEN})
        final = await until(lambda: costmsgs(st, "FinalCost") or None, "a FinalCost", detail=lambda: costs.log()[-3000:])
        assert final[0]["data"] == {"transactionId": tx, "cost": 0.71, "priceText": "Total 0.71 EUR incl. tax"}, final

        # the driver's price: once, for the idTag that started, before any RunningCost
        [price] = costmsgs(st, "SetUserPrice")
        assert price["data"] == {"idToken": TOKEN, "priceText": "0.357 EUR/kWh (incl. tax)"}, price
        order = costmsg_ids(st)
        assert order[0] == "SetUserPrice" and order.count("SetUserPrice") == 1, order
        assert order[-1] == "FinalCost", order

        session = await session_of(costs, sid, "completed")
        assert session["cost"]["incl_tax"] == {"amount": "0.71", "currency": "EUR"}, session["cost"]
        update = session["cost_update"]
        assert update is not None and (update["kind"], update["state"]) == ("FinalCost", "sent"), update
        assert update["total_cost"] == {"amount": "0.71", "currency": "EUR"}, update
        # exactly once: later records of the session (none here) or a redelivery send no other
        await asyncio.sleep(1.5)
        assert len(costmsgs(st, "FinalCost")) == 1
        assert len(costmsgs(st, "SetUserPrice")) == 1
        assert not any(a == "CostUpdated" for a, _ in st.received)
    finally:
        await st.close()


async def test_a_16_station_without_the_flag_gets_no_cost_messages(costs: Server, unique_id: str) -> None:
    sid = unique_id
    st = await a_station(costs, sid, V16)
    try:
        tx = await a_16_transaction(st)
        await st.call("StopTransaction", {"transactionId": tx, "meterStop": 3000, "timestamp": now_z(), "idTag": TOKEN})
        session = await session_of(costs, sid, "completed")

        async def billed() -> Json | None:
            _, body = await costs.api("GET", f"/api/v1/cdrs?session_id={session['id']}", expect=200)
            return body["items"][0] if body["items"] else None

        await until(billed, "the session's CDR (billing has read its records)")
        again = await get_json(costs, f"/api/v1/sessions/{session['id']}")
        assert again["cost_update"] is None, again["cost_update"]
        assert not [a for a, p in st.received if a == "DataTransfer"], st.received
    finally:
        await st.close()
