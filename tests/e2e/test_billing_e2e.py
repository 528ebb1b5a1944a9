"""Billing through `csms run`: a station with a tariff charges, and a priced CDR appears.

Tariff 0.30/kWh + 1.00 session fee, 19 % tax, no time or idle fee (so the real-time
length of the simulated session does not matter). The simulator meters 3 x 1000 Wh:
3 kWh x 0.30 + 1.00 = 1.90 excl. tax; 1.90 x 1.19 = 2.261 -> 2.26 incl. tax (rounded once).
"""

from __future__ import annotations

import asyncio
from typing import Any


from services.simulator.stats import Stats
from services.simulator.station import StationSpec, run_station
from tests.e2e.conftest import Server
from tests.support.waiting import eventually

TOKEN = "E2EBILLTOKEN1"
PATIENCE_S = 15.0


def a_tariff(tariff_id: str) -> dict[str, Any]:
    return {
        "id": tariff_id,
        "currency": "EUR",
        "price_per_kwh": "0.30",
        "price_per_minute": "0.00",
        "session_fee": "1.00",
        "idle_fee_per_minute": "0",
        "idle_grace_minutes": 0,
        "tax_rate": "0.19",
        "bands": [],
        "default": False,
    }


async def a_station_with_a_tariff_charges_3_kwh(csms: Server, station_id: str, protocol: str) -> dict[str, Any]:
    """Returns the completed session."""
    await csms.api("POST", "/api/v1/tariffs", a_tariff(f"T-{station_id}"), expect=201)
    password = await csms.register_station(station_id)
    await csms.api("PATCH", f"/api/v1/stations/{station_id}", {"tariff_id": f"T-{station_id}"}, expect=200)
    await csms.register_token(TOKEN)
    spec = StationSpec(
        station_id=station_id, password=password, protocol=protocol, url=csms.ocpp_url,
        id_token=TOKEN, meter_values=3, interval_s=0.05, sample_minutes=6, power_w=10_000,
    )
    stats = Stats()
    assert await run_station(spec, stats), stats.summary()

    async def completed() -> list[dict[str, Any]]:
        _, body = await csms.api("GET", f"/api/v1/sessions?station_id={station_id}&status=completed", expect=200)
        return list(body["items"])

    sessions = await eventually(
        completed, PATIENCE_S, interval=0.1,
        what=f"a completed session of {station_id}", detail=lambda: csms.log()[-3000:],
    )
    assert len(sessions) == 1, sessions
    assert sessions[0]["energy_wh"] == 3000
    return sessions[0]


async def cdrs_of(csms: Server, session_id: str) -> list[dict[str, Any]]:
    _, body = await csms.api("GET", f"/api/v1/cdrs?session_id={session_id}", expect=200)
    return list(body["items"])


async def the_session_is_billed_at_1_90_eur(csms: Server, station_id: str, session: dict[str, Any]) -> dict[str, Any]:
    cdrs = await eventually(
        lambda: cdrs_of(csms, session["id"]), PATIENCE_S, interval=0.1,
        what=f"a CDR of {session['id']}", detail=lambda: csms.log()[-3000:],
    )
    assert len(cdrs) == 1, f"expected one CDR for {session['id']}, got {cdrs}\n{csms.log()[-3000:]}"
    cdr = cdrs[0]
    assert cdr["id"] == f"{session['id']}-v1"
    assert cdr["session_id"] == session["id"] and cdr["station_id"] == station_id
    assert cdr["version"] == 1 and cdr["reason"] == "initial"
    assert cdr["energy_wh"] == 3000
    assert cdr["tariff_id"] == f"T-{station_id}"
    assert cdr["total_cost"] == {"amount": "1.90", "currency": "EUR"}
    assert cdr["total_cost_incl_tax"] == {"amount": "2.26", "currency": "EUR"}
    assert cdr["breakdown"]["energy_cost"] == "0.90" and cdr["breakdown"]["session_fee"] == "1.00"
    assert cdr["breakdown"]["tax"] == "0.36"  # 2.26 - 1.90: excl + tax = incl
    _, same = await csms.api("GET", f"/api/v1/cdrs/{cdr['id']}", expect=200)
    assert same["total_cost"] == cdr["total_cost"] and same["version"] == 1
    return cdr


async def the_ocpi_export_has_the_ocpi_shape(csms: Server, station_id: str, cdr: dict[str, Any]) -> None:
    _, ocpi = await csms.api("GET", f"/api/v1/cdrs/{cdr['id']}?format=ocpi", expect=200)
    for key in (
        "country_code", "party_id", "id", "start_date_time", "end_date_time", "session_id", "cdr_token",
        "auth_method", "cdr_location", "currency", "charging_periods", "total_cost", "total_energy",
        "total_time", "last_updated",
    ):
        assert key in ocpi, f"OCPI CDR without {key}: {ocpi}"
    assert ocpi["id"] == cdr["id"] and ocpi["session_id"] == cdr["session_id"]
    assert ocpi["currency"] == "EUR"
    assert ocpi["total_cost"] == {"excl_vat": 1.9, "incl_vat": 2.26}
    assert ocpi["total_energy"] == 3.0
    assert ocpi["total_fixed_cost"]["excl_vat"] == 1.0
    assert ocpi["start_date_time"].endswith("Z") and ocpi["end_date_time"].endswith("Z")
    assert ocpi["cdr_token"]["uid"] == TOKEN
    assert ocpi["cdr_location"]["id"] == station_id
    periods = ocpi["charging_periods"]
    assert periods and all(p["dimensions"] for p in periods)
    assert sum(d["volume"] for p in periods for d in p["dimensions"] if d["type"] == "ENERGY") == 3.0


async def test_a_16_session_on_a_station_tariff_gets_a_cdr_of_1_90_eur(csms: Server, unique_id: str) -> None:
    session = await a_station_with_a_tariff_charges_3_kwh(csms, unique_id, "1.6")
    cdr = await the_session_is_billed_at_1_90_eur(csms, unique_id, session)
    await the_ocpi_export_has_the_ocpi_shape(csms, unique_id, cdr)


async def test_a_201_session_on_a_station_tariff_gets_a_cdr_of_1_90_eur(csms: Server, unique_id: str) -> None:
    session = await a_station_with_a_tariff_charges_3_kwh(csms, unique_id, "2.0.1")
    cdr = await the_session_is_billed_at_1_90_eur(csms, unique_id, session)
    await the_ocpi_export_has_the_ocpi_shape(csms, unique_id, cdr)


async def test_the_billed_session_shows_its_final_cost_from_the_cdr(csms: Server, unique_id: str) -> None:
    session = await a_station_with_a_tariff_charges_3_kwh(csms, unique_id, "1.6")
    cdr = await the_session_is_billed_at_1_90_eur(csms, unique_id, session)

    _, view = await csms.api("GET", f"/api/v1/sessions/{session['id']}", expect=200)

    assert view["cost"]["amount"] == "1.90" and view["cost"]["currency"] == "EUR"
    assert view["cost"]["cdr_id"] == cdr["id"] and view["cost"]["final"] is True


async def test_a_station_without_any_tariff_gets_no_cdr(csms: Server, unique_id: str) -> None:
    _, tariffs = await csms.api("GET", "/api/v1/tariffs", expect=200)
    # precondition: the e2e suite never creates a default tariff (it would price every station)
    assert not any(t.get("default") for t in tariffs["items"])
    password = await csms.register_station(unique_id)
    await csms.register_token(TOKEN)
    spec = StationSpec(
        station_id=unique_id, password=password, protocol="1.6", url=csms.ocpp_url,
        id_token=TOKEN, meter_values=1, interval_s=0.05,
    )
    stats = Stats()
    assert await run_station(spec, stats), stats.summary()
    sessions = await eventually(
        lambda: _completed(csms, unique_id), PATIENCE_S, interval=0.1,
        what=f"a completed session of {unique_id}",
    )
    assert len(sessions) == 1
    await asyncio.sleep(0.5)  # billing had time to see the completed snapshot

    assert await cdrs_of(csms, sessions[0]["id"]) == []


async def _completed(csms: Server, station_id: str) -> list[dict[str, Any]]:
    _, body = await csms.api("GET", f"/api/v1/sessions?station_id={station_id}&status=completed", expect=200)
    return list(body["items"])


async def test_a_201_station_sees_the_running_cost_in_transaction_event_responses(csms: Any, unique_id: str) -> None:
    import json as _json

    import aiohttp

    from tests.e2e.conftest import basic

    password = await csms.register_station(unique_id)
    tariff = {"id": f"RC-{unique_id}", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "1.00",
              "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19", "bands": [], "default": False}
    await csms.api("POST", "/api/v1/tariffs", tariff, expect=201)
    await csms.api("PATCH", f"/api/v1/stations/{unique_id}", {"tariff_id": tariff["id"]}, expect=200)

    def event(kind: str, seq: int, wh: int) -> list[Any]:
        return [2, f"te{seq}", "TransactionEvent", {
            "eventType": kind, "timestamp": "2026-11-28T05:00:0%d.000Z" % seq, "triggerReason": "MeterValuePeriodic",
            "seqNo": seq, "transactionInfo": {"transactionId": f"RC{unique_id}"}, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": "2026-11-28T05:00:0%d.000Z" % seq, "sampledValue": [{"value": wh, "unitOfMeasure": {"unit": "Wh"}}]}],
        }]

    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{csms.ocpp_url}/{unique_id}", protocols=("ocpp2.0.1",), headers={"Authorization": basic(unique_id, password)})
        answers = []
        for frame in (event("Started", 0, 1000), event("Updated", 1, 2000), event("Ended", 2, 4000)):
            await ws.send_str(_json.dumps(frame))
            answers.append(_json.loads((await ws.receive()).data))
        await ws.close()
    assert "totalCost" not in answers[0][2]
    # 1 kWh x 0.30 + 1.00 fee = 1.30, x 1.19 = 1.547 -> 1.55 ; 3 kWh: 1.90 x 1.19 = 2.261 -> 2.26
    assert answers[1][2]["totalCost"] == 1.55
    assert answers[2][2]["totalCost"] == 2.26


async def _metric(csms: Server, name: str) -> float:
    import urllib.request

    # csms run: the API port serves the process's metrics
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{csms.api_url}/metrics", timeout=5).read().decode())
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_the_201_total_cost_the_apis_cost_and_the_cdr_are_one_price(csms: Any, unique_id: str) -> None:
    """ADR 015: one arithmetic. A 2.0.1 session crosses a band change (05:00 UTC); the
    gateway's totalCost of each event, the API's running cost of the active session and the
    CDR are the same Decimal, and billing finished the sessions processor's accumulator."""
    import json as _json
    from decimal import Decimal

    import aiohttp

    from tests.e2e.conftest import basic

    password = await csms.register_station(unique_id)
    tariff = {"id": f"ONE-{unique_id}", "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0",
              "session_fee": "1.00", "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19",
              "bands": [{"start": "05:00", "end": "06:00", "price_per_kwh": "0.50"}], "default": False}
    await csms.api("POST", "/api/v1/tariffs", tariff, expect=201)
    await csms.api("PATCH", f"/api/v1/stations/{unique_id}", {"tariff_id": tariff["id"]}, expect=200)
    tx = f"ONE{unique_id}"
    session_id: str | None = None
    accumulator_before = await _metric(csms, 'csms_billing_priced_total{path="accumulator"}')

    def event(kind: str, seq: int, ts: str, wh: int) -> list[Any]:
        return [2, f"te{seq}", "TransactionEvent", {
            "eventType": kind, "timestamp": ts, "triggerReason": "MeterValuePeriodic", "seqNo": seq,
            "transactionInfo": {"transactionId": tx}, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": ts, "sampledValue": [{"value": wh, "unitOfMeasure": {"unit": "Wh"}}]}],
        }]

    async def active_cost(wh: int) -> Any:
        _, body = await csms.api("GET", f"/api/v1/sessions?station_id={unique_id}", expect=200)
        items = [s for s in body["items"] if s["transaction_id"] == tx and s["energy_wh"] == wh - 1000]
        return items[0] if items and items[0]["cost"] is not None else None

    total_costs: list[Decimal] = []
    api_costs: list[Decimal] = []
    frames = [
        event("Started", 0, "2026-11-28T04:59:00.000Z", 1000),
        event("Updated", 1, "2026-11-28T04:59:40.000Z", 2000),
        event("Updated", 2, "2026-11-28T05:00:20.000Z", 4000),
        event("Ended", 3, "2026-11-28T05:00:50.000Z", 5000),
    ]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{csms.ocpp_url}/{unique_id}", protocols=("ocpp2.0.1",),
                                   headers={"Authorization": basic(unique_id, password)})
        for frame in frames:
            await ws.send_str(_json.dumps(frame))
            answer = _json.loads((await ws.receive()).data)
            if "totalCost" in answer[2]:
                total_costs.append(Decimal(str(answer[2]["totalCost"])))
            if frame[3]["eventType"] == "Updated":  # the API's running price of the active session, now
                wh = frame[3]["meterValue"][0]["sampledValue"][0]["value"]
                view = await eventually(
                    lambda wh=wh: active_cost(wh), PATIENCE_S, interval=0.1,
                    what=f"the running price at {wh} Wh", detail=lambda: csms.log()[-3000:],
                )
                session_id = view["id"]
                api_costs.append(Decimal(view["cost"]["incl_tax"]["amount"]))
        await ws.close()

    assert session_id is not None
    cdrs = await eventually(
        lambda: cdrs_of(csms, session_id), PATIENCE_S, interval=0.1,
        what=f"a CDR of {session_id}", detail=lambda: csms.log()[-3000:],
    )
    assert len(cdrs) == 1, csms.log()[-3000:]
    cdr_total = Decimal(cdrs[0]["total_cost_incl_tax"]["amount"])
    # Updated 1: 1 kWh x 0.30 + 1.00 = 1.30 -> 1.547 -> 1.55; Updated 2: register 3000 at
    # 05:00 (interpolated): 2 kWh x 0.30 + 1 kWh x 0.50 + 1.00 = 2.10 -> 2.499 -> 2.50;
    # Ended: 2 kWh x 0.30 + 2 kWh x 0.50 + 1.00 = 2.60 -> 3.094 -> 3.09
    assert total_costs == [Decimal("1.55"), Decimal("2.50"), Decimal("3.09")]
    assert api_costs == total_costs[:2]
    assert cdr_total == total_costs[-1]
    assert [line["kwh"] for line in cdrs[0]["breakdown"]["lines"]] == ["2.000", "2.000"]
    _, view = await csms.api("GET", f"/api/v1/sessions/{session_id}", expect=200)
    assert Decimal(view["cost"]["incl_tax"]["amount"]) == cdr_total and view["cost"]["final"] is True
    assert await _metric(csms, 'csms_billing_priced_total{path="accumulator"}') >= accumulator_before + 1
    # billing finished the sessions processor's accumulator (no re-pricing from the samples)
    line = next(x for x in csms.log().splitlines() if f"CDR {cdrs[0]['id']} " in x)
    assert "priced_from=accumulator" in line, line
