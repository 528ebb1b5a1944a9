"""Billing and smart charging as their own processes on Kafka + Cassandra."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.conftest import Cluster
from tests.integration.station_client import RawStation
from tests.integration.test_distributed import TOKEN, boot, now_z, registered
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra


async def test_a_completed_session_is_priced_into_one_cdr_by_the_billing_process(cluster: Cluster, request: Any) -> None:
    sid = "ITBILL" + request.node.name[-5:].upper()
    await registered(cluster, sid)
    tariff = {"id": f"T-{sid}", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "1.00",
              "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19", "bands": [], "default": False}
    await cluster.api("POST", "/api/v1/tariffs", tariff, expect=201)
    await cluster.api("PATCH", f"/api/v1/stations/{sid}", {"tariff_id": tariff["id"]}, expect=200)
    gw = "gateway-1" if cluster.procs["gateway-1"].alive() else "gateway-0"
    st = RawStation(cluster.ocpp_url(gw), sid, (await registered_password(cluster, sid)))
    await st.connect()
    await boot(st)
    start = await st.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 10_000, "timestamp": now_z()})
    await st.call("StopTransaction", {"transactionId": start["transactionId"], "meterStop": 13_000, "timestamp": now_z()})
    # the station repeats its stop after a reconnect: still one CDR
    await st.call("StopTransaction", {"transactionId": start["transactionId"], "meterStop": 13_000, "timestamp": now_z()})
    await st.close()

    async def cdrs() -> list[dict[str, Any]]:
        _, sessions = await cluster.api("GET", f"/api/v1/sessions?station_id={sid}")
        if not sessions["items"] or sessions["items"][0]["status"] != "completed":
            return []
        _, body = await cluster.api("GET", f"/api/v1/cdrs?session_id={sessions['items'][0]['id']}")
        return list(body["items"])

    found = await eventually(cdrs, 60, interval=0.25, what=f"a CDR of {sid}")
    assert len(found) == 1, found
    assert found[0]["total_cost"] == {"amount": "1.90", "currency": "EUR"}
    assert found[0]["total_cost_incl_tax"] == {"amount": "2.26", "currency": "EUR"}
    await asyncio.sleep(2)
    assert len(await cdrs()) == 1


async def test_a_flagged_16_station_gets_set_user_price_once_then_final_cost_from_the_billing_process(
    cluster: Cluster, request: Any,
) -> None:
    """The OCA 1.6 pricing extension (ADR 018 §6) with billing on Kafka + Cassandra: the
    first session record brings SetUserPrice (compare-and-set on Cassandra's cost_update
    document), the stop brings FinalCost; each exactly once."""
    sid = "ITCOST" + request.node.name[-5:].upper()
    await registered(cluster, sid)
    tariff = {"id": f"T-{sid}", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "1.00",
              "idle_fee_per_minute": "0.10", "idle_grace_minutes": 15, "tax_rate": "0.19", "bands": [],
              "default": False}
    await cluster.api("POST", "/api/v1/tariffs", tariff, expect=201)
    await cluster.api("PATCH", f"/api/v1/stations/{sid}", {"tariff_id": tariff["id"], "cost_messages": True}, expect=200)
    gw = "gateway-1" if cluster.procs["gateway-1"].alive() else "gateway-0"
    st = RawStation(cluster.ocpp_url(gw), sid, (await registered_password(cluster, sid)))
    await st.connect()
    try:
        await boot(st)

        def costmsgs(message_id: str) -> list[dict[str, Any]]:
            return [json.loads(p["data"]) for a, p in st.received if a == "DataTransfer"
                    and p.get("vendorId") == "org.openchargealliance.costmsg" and p.get("messageId") == message_id]

        start = await st.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 10_000,
                                                   "timestamp": now_z()})
        prices = await eventually(lambda: costmsgs("SetUserPrice"), 60, interval=0.25,
                                  what=f"SetUserPrice to {sid}")
        assert prices == [{"idToken": TOKEN, "priceText":
                           "0.357 EUR/kWh, 1.19 EUR per session, 7.14 EUR/h after 15 min idle (incl. tax)"}], prices
        await st.call("StopTransaction", {"transactionId": start["transactionId"], "meterStop": 13_000, "timestamp": now_z()})
        final = await eventually(lambda: costmsgs("FinalCost"), 60, interval=0.25, what=f"FinalCost to {sid}")
        # 3 kWh x 0.30 + 1.00 = 1.90, + 19 % = 2.26 (no idle: the stop came at once)
        assert final == [{"transactionId": start["transactionId"], "cost": 2.26,
                          "priceText": "Total 2.26 EUR incl. tax"}], final
        await asyncio.sleep(2)
        assert len(costmsgs("SetUserPrice")) == 1 and len(costmsgs("FinalCost")) == 1, st.received
    finally:
        await st.close()


async def registered_password(cluster: Cluster, sid: str) -> str:
    from services.simulator.cli import station_password

    return station_password("it", sid)


async def test_three_stations_on_a_32a_site_get_profiles_from_the_smart_charging_process(cluster: Cluster, request: Any) -> None:
    site = "ITSITE" + request.node.name[-5:].upper()
    await cluster.api("POST", "/api/v1/sites", {"id": site, "grid_limit_a": 32, "phases": 3}, expect=201)
    gw = "gateway-1" if cluster.procs["gateway-1"].alive() else "gateway-0"
    stations = []
    for i in range(3):
        sid = f"{site}-{i}"
        password = await registered(cluster, sid)
        await cluster.api("PATCH", f"/api/v1/stations/{sid}", {"site_id": site}, expect=200)
        st = RawStation(cluster.ocpp_url(gw), sid, password)
        await st.connect()
        await boot(st)
        stations.append(st)
    txs = []
    for st in stations:
        r = await st.call("StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": 0, "timestamp": now_z()})
        txs.append(r["transactionId"])

    def tx_limits(st: RawStation) -> list[float]:
        out = []
        for action, payload in st.received:
            prof = payload.get("csChargingProfiles", {}) if action == "SetChargingProfile" else {}
            if prof.get("chargingProfilePurpose") == "TxProfile":
                out.append(prof["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])
        return out

    async def all_profiled() -> bool:
        return all(tx_limits(st) for st in stations)

    await eventually(all_profiled, 60, interval=0.25, what="a profile at every station", detail=lambda: [st.received for st in stations])
    assert sum(tx_limits(st)[-1] for st in stations) <= 32.0

    await stations[2].call("StopTransaction", {"transactionId": txs[2], "meterStop": 100, "timestamp": now_z()})

    async def rebalanced() -> bool:
        return all(tx_limits(st) and tx_limits(st)[-1] == 16.0 for st in stations[:2])

    await eventually(rebalanced, 60, interval=0.25, what="the rebalanced limits", detail=lambda: [tx_limits(st) for st in stations])
    for st in stations:
        await st.close()
