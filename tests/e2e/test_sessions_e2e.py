"""Full charging sessions through `csms run`, with the built-in simulator (ocpp library client)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.simulator.stats import Stats
from services.simulator.station import StationSpec, run_station
from tests.e2e.conftest import Server
from tests.support.waiting import eventually

PATIENCE_S = 10.0


async def completed_sessions(csms: Server, station_id: str) -> list[dict[str, Any]]:
    _, body = await csms.api("GET", f"/api/v1/sessions?station_id={station_id}&status=completed", expect=200)
    return list(body["items"])


async def a_session_runs(csms: Server, station_id: str, protocol: str) -> tuple[StationSpec, Stats]:
    password = await csms.register_station(station_id)
    await csms.register_token("E2ETOKEN01")
    spec = StationSpec(
        station_id=station_id, password=password, protocol=protocol, url=csms.ocpp_url,
        id_token="E2ETOKEN01", meter_values=3, interval_s=0.05, sample_minutes=6, power_w=10_000,
    )
    stats = Stats()
    assert await run_station(spec, stats), stats.summary()
    return spec, stats


async def test_a_16_station_charges_and_the_session_has_the_metered_energy(csms: Server, unique_id: str) -> None:
    await a_session_runs(csms, unique_id, "1.6")
    sessions = await eventually(
        lambda: completed_sessions(csms, unique_id), PATIENCE_S, interval=0.1, what=f"a completed session of {unique_id}"
    )
    assert len(sessions) == 1
    s = sessions[0]
    # 3 samples of 10 kW x 6 min = 3 x 1000 Wh
    assert s["energy_wh"] == 3000
    assert s["status"] == "completed"
    assert s["id_token"] == "E2ETOKEN01"
    assert s["started_at"].endswith("Z") and s["stopped_at"].endswith("Z")
    assert s["received_at"]
    assert s["sample_count"] >= 3 and "meter_samples" not in s
    _, page = await csms.api("GET", f"/api/v1/sessions/{s['id']}/meter-values", expect=200)
    assert len(page["items"]) == s["sample_count"] and page["next"] is None
    assert all(x["measurand"] and x["timestamp"].endswith("Z") for x in page["items"])


async def test_a_201_station_charges_and_the_session_has_the_metered_energy(csms: Server, unique_id: str) -> None:
    await a_session_runs(csms, unique_id, "2.0.1")
    sessions = await eventually(
        lambda: completed_sessions(csms, unique_id), PATIENCE_S, interval=0.1, what=f"a completed session of {unique_id}"
    )
    assert len(sessions) == 1
    s = sessions[0]
    assert s["energy_wh"] == 3000
    assert s["transaction_id"].startswith(unique_id)
    assert s["stop_reason"] == "EVDisconnected"


async def test_the_station_view_shows_connection_boot_and_connectors(csms: Server, unique_id: str) -> None:
    await a_session_runs(csms, unique_id, "1.6")

    async def disconnected_with_boot() -> dict[str, Any] | None:
        _, body = await csms.api("GET", f"/api/v1/stations/{unique_id}", expect=200)
        return body if body.get("last_boot") and body.get("connected") is False else None

    station = await eventually(
        disconnected_with_boot, PATIENCE_S, interval=0.1, what="the station view with the boot data and the disconnect"
    )
    assert station["last_boot"]["vendor"] == "CSMS-Sim"
    assert station["ocpp_version"] == "1.6"
    assert "password" not in station and "password_hash" not in station


async def test_csms_simulate_registers_stations_and_reports(csms: Server, tmp_path: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(csms.proc.args[0]), "simulate", "--stations", "4", "--prefix", "SIMCLI", "--protocol", "mixed",
        "--url", csms.ocpp_url, "--api-url", csms.api_url, "--api-key", csms.api_key,
        "--meter-values", "2", "--interval", "0.05", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out, err)
    import json

    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["stations_ok"] == 4 and report["stations_failed"] == 0
    assert report["messages"] >= 4 * 10
    for i in range(4):
        sessions = await eventually(
            lambda i=i: completed_sessions(csms, f"SIMCLI{i:05d}"), PATIENCE_S, interval=0.1,
            what=f"a completed session of SIMCLI{i:05d}",
        )
        assert len(sessions) == 1
