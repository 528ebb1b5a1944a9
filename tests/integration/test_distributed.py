"""Two gateways, the processors and the API as separate processes on real Kafka + Cassandra."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.simulator.cli import station_password
from tests.integration.conftest import Cluster
from tests.integration.station_client import RawStation
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

TOKEN = "ITTOKEN0001"


def now_z() -> str:
    from services.common.timeutil import to_ocpp, utcnow

    return to_ocpp(utcnow())


async def registered(cluster: Cluster, station_id: str) -> str:
    password = station_password("it", station_id)
    await cluster.api("POST", "/api/v1/stations", {"id": station_id, "password": password}, expect=201)
    await cluster.api("POST", "/api/v1/tokens", {"id_token": TOKEN, "status": "Accepted"}, expect=(201, 409))
    return password


async def boot(st: RawStation) -> None:
    if st.protocol == "ocpp1.6":
        r = await st.call("BootNotification", {"chargePointVendor": "IT", "chargePointModel": "M"})
    else:
        r = await st.call("BootNotification", {"chargingStation": {"vendorName": "IT", "model": "M"}, "reason": "PowerUp"})
    assert r["status"] == "Accepted"


async def connected_to(cluster: Cluster, station_id: str, gateway: str) -> bool:
    _, body = await cluster.api("GET", f"/api/v1/stations/{station_id}")
    return bool(body.get("connected")) and body.get("gateway_id") == gateway


async def sessions_of(cluster: Cluster, station_id: str) -> list[dict[str, Any]]:
    _, body = await cluster.api("GET", f"/api/v1/sessions?station_id={station_id}")
    return list(body["items"])


def tx_event(event_type: str, tx: str, seq: int, meter: int, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": event_type, "timestamp": now_z(), "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq, "transactionInfo": {"transactionId": tx, **extra.pop("info", {})},
        "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": meter, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}],
    }
    payload.update(extra)
    return payload


async def test_stations_survive_a_killed_gateway_and_every_session_is_complete_once(cluster: Cluster, request: Any) -> None:
    uid = request.node.name[-6:].upper()
    a16, b201 = f"IT16{uid}", f"IT201{uid}"
    pa, pb = await registered(cluster, a16), await registered(cluster, b201)
    s16 = RawStation(cluster.ocpp_url("gateway-0"), a16, pa, "ocpp1.6")
    s201 = RawStation(cluster.ocpp_url("gateway-0"), b201, pb, "ocpp2.0.1")
    await s16.connect()
    await s201.connect()
    await boot(s16)
    await boot(s201)

    start = await s16.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 1000, "timestamp": now_z()})
    tx16 = start["transactionId"]
    assert start["idTagInfo"]["status"] == "Accepted"
    tx201 = f"TX-{uid}"
    await s201.call("TransactionEvent", tx_event("Started", tx201, 0, 5000, trigger="Authorized", idToken={"idToken": TOKEN, "type": "ISO14443"}, evse={"id": 1, "connectorId": 1}))
    await s16.call("MeterValues", {"connectorId": 1, "transactionId": tx16, "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": "1500"}]}]})
    await s201.call("TransactionEvent", tx_event("Updated", tx201, 1, 5500))

    # a command from the API reaches each station on gateway-0
    await eventually(lambda: connected_to(cluster, a16, "gateway-0"), 30, interval=0.25, what=f"{a16} on gateway-0")
    await eventually(lambda: connected_to(cluster, b201, "gateway-0"), 30, interval=0.25, what=f"{b201} on gateway-0")
    status, body = await cluster.api("POST", f"/api/v1/stations/{a16}/commands", {"type": "TriggerMessage", "requested_message": "Heartbeat"})
    assert status == 200 and body["status"] == "Accepted", body
    status, body = await cluster.api("POST", f"/api/v1/stations/{b201}/commands", {"type": "Reset", "reset_type": "Soft"})
    assert status == 200 and body["status"] == "Accepted", body

    # gateway-0 dies mid-session
    cluster.procs["gateway-0"].kill()
    await asyncio.wait_for(s16.closed.wait(), 10)
    await asyncio.wait_for(s201.closed.wait(), 10)
    await s16.close()
    await s201.close()

    # the stations reconnect to gateway-1 (as a load balancer would send them) and finish
    await s16.connect(cluster.ocpp_url("gateway-1"))
    await s201.connect(cluster.ocpp_url("gateway-1"))
    await boot(s16)
    await boot(s201)
    await s16.call("MeterValues", {"connectorId": 1, "transactionId": tx16, "meterValue": [{"timestamp": now_z(), "sampledValue": [{"value": "2500"}]}]})
    await s16.call("StopTransaction", {"transactionId": tx16, "meterStop": 3000, "timestamp": now_z(), "reason": "Local"})
    # real stations repeat the stop after a reconnect: idempotent
    await s16.call("StopTransaction", {"transactionId": tx16, "meterStop": 3000, "timestamp": now_z(), "reason": "Local"})
    await s201.call("TransactionEvent", tx_event("Ended", tx201, 2, 7000, trigger="EVCommunicationLost", info={"stoppedReason": "EVDisconnected"}))
    await s201.call("TransactionEvent", tx_event("Ended", tx201, 2, 7000, trigger="EVCommunicationLost", info={"stoppedReason": "EVDisconnected"}))

    # commands now reach them on gateway-1
    await eventually(lambda: connected_to(cluster, a16, "gateway-1"), 30, interval=0.25, what=f"{a16} on gateway-1")
    await eventually(lambda: connected_to(cluster, b201, "gateway-1"), 30, interval=0.25, what=f"{b201} on gateway-1")
    status, body = await cluster.api("POST", f"/api/v1/stations/{a16}/commands", {"type": "GetConfiguration", "keys": ["HeartbeatInterval"]})
    assert status == 200 and body["status"] == "Accepted", body
    status, body = await cluster.api("POST", f"/api/v1/stations/{b201}/commands", {"type": "TriggerMessage", "requested_message": "Heartbeat"})
    assert status == 200 and body["status"] == "Accepted", body
    assert [a for a, _ in s16.received][-1] == "GetConfiguration"
    assert [a for a, _ in s201.received][-1] == "TriggerMessage"

    async def complete(station: str, energy: int) -> bool:
        items = await sessions_of(cluster, station)
        return len(items) == 1 and items[0]["status"] == "completed" and items[0]["energy_wh"] == energy

    await eventually(
        lambda: complete(a16, 2000), 60, interval=0.25, what=f"{a16}'s session complete", detail=lambda: sessions_of(cluster, a16)
    )
    await eventually(
        lambda: complete(b201, 2000), 60, interval=0.25, what=f"{b201}'s session complete", detail=lambda: sessions_of(cluster, b201)
    )
    await s16.close()
    await s201.close()


async def test_a_replayed_start_on_another_gateway_gets_the_same_transaction_id(cluster: Cluster, request: Any) -> None:
    sid = "ITRP" + request.node.name[-6:].upper()
    password = await registered(cluster, sid)
    start = {"connectorId": 1, "idTag": TOKEN, "meterStart": 42, "timestamp": "2026-11-27T10:00:00.000Z"}
    first = RawStation(cluster.ocpp_url("gateway-1"), sid, password)
    await first.connect()
    r1 = await first.call("StartTransaction", start)
    await first.close()
    gw = "gateway-0" if cluster.procs["gateway-0"].alive() else "gateway-1"
    again = RawStation(cluster.ocpp_url(gw), sid, password)
    await again.connect()
    r2 = await again.call("StartTransaction", start)
    await again.close()
    assert r1["transactionId"] == r2["transactionId"]


async def test_concurrent_starts_on_two_gateways_never_share_a_transaction_id(cluster: Cluster, request: Any) -> None:
    alive = [g for g in ("gateway-0", "gateway-1") if cluster.procs[g].alive()]
    stations = []
    for i in range(8):
        sid = f"ITCC{i}{request.node.name[-5:].upper()}"
        password = await registered(cluster, sid)
        st = RawStation(cluster.ocpp_url(alive[i % len(alive)]), sid, password)
        await st.connect()
        stations.append(st)
    ts = now_z()
    answers = await asyncio.gather(*(
        st.call("StartTransaction", {"connectorId": c, "idTag": TOKEN, "meterStart": 0, "timestamp": ts})
        for st in stations for c in (1, 2)
    ))
    ids = [a["transactionId"] for a in answers]
    assert len(set(ids)) == len(ids) == 16
    for st in stations:
        await st.close()
