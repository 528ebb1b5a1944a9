"""Station operations end to end (issue 9, ADR 016) against `csms run` (memory bus + SQLite).

Every station -> CSMS message of OCPP 1.6 (core, firmware, diagnostics, security
whitepaper) and 2.0.1 (blocks B-P) is sent by a raw client (hand-built JSON frames, see
tests/support/ocpp_raw.py), and its effect is read back through the REST API of issue 9:
the CALLRESULT, the typed event in `GET /stations/{id}/events?type=<Body>` with its data,
and, where the API folds it into state, `GET /stations/{id}`. Every GET answer (and the
answers of the operations' POSTs) is also checked against the OpenAPI document the API
serves, so the document and the real answers cannot drift apart.

Then the issue's named scenarios, driven by the project's simulator (services/simulator)
where a station must behave like one over time (a report in parts, a firmware update with
a reboot, a log upload), and by the raw client where the test must control each step:
- a GetBaseReport answered in >= 3 NotifyReport parts builds one inventory;
- a firmware campaign of 6 stations with max_in_flight 2 never has more than 2 in flight
  and records exactly one failure (a station that reboots into its old version);
- GetLog / GetDiagnostics uploads round-trip byte for byte;
and around them: commands and their results, outages and uptime of a station and a site,
the inventory following SetVariables / ChangeConfiguration, signed 1.6 firmware, campaigns
that halt, wait for offline stations or are cancelled, upload limits, and `csms simulate`
as a process (the README's tour).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import aiohttp
import pytest

from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from services.simulator.cli import station_password
from services.simulator.device_model import default_model
from services.simulator.operations import log_bytes
from services.simulator.stats import Stats
from services.simulator.station import StationSpec, run_station
from tests.e2e.conftest import CSMS, Server, start_server, stop_server
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import (
    REPORT_PARTS, TOKEN, V16, V201, VENDOR, WAIT, Json, all_pages, assert_ts, boot, cases_16, cases_201, check_answer,
    check_history, check_report_inventory, download, event_where, events, firmware_span, get_json, log_file_when_ready,
    max_overlap, more_201, no_generic_notifications, now_z, openapi_checked, report_part, send_all, station, station_where,
    until,
)
from tests.support.waiting import eventually

UPLOAD_MAX = 1_000_000


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own `csms run`: a DataTransfer vendor configured, a fast campaign tick."""
    server = start_server(tmp_path_factory.mktemp("ops"), {
        "CSMS_DATATRANSFER_VENDORS": VENDOR,
        "CSMS_CAMPAIGN_TICK_S": "0.2",
        "CSMS_CAMPAIGN_STATION_TIMEOUT_S": "120",
        "CSMS_COMMAND_TIMEOUT": "10",
        "CSMS_UPLOAD_MAX_BYTES": str(UPLOAD_MAX),
    })
    yield server
    stop_server(server)
    log = server.log()
    assert "Traceback" not in log, log[-6000:]


async def registered(server: Server, sid: str, **extra: Any) -> str:
    password = await server.register_station(sid, **extra)
    await server.register_token(TOKEN)
    return password


async def raw_station(server: Server, sid: str, protocol: str, **extra: Any) -> RawStation:
    password = await registered(server, sid, **extra)
    st = RawStation(server.ocpp_url, sid, password, protocol)
    await st.connect()
    return st


# -- every 1.6 message ---------------------------------------------------------------------

async def test_every_16_message_is_typed_kept_and_folded(ops: Server, unique_id: str) -> None:
    sid = unique_id
    st = await raw_station(ops, sid, V16)
    try:
        # BootNotification
        answer = await boot(st)
        assert answer["interval"] > 0 and parse_ocpp(answer["currentTime"])
        await event_where(ops, sid, "StationBooted", "BootNotification", vendor="E2EVendor", model="E2E-16", firmware_version="1.2.3")
        body = await station_where(ops, sid, lambda s: (s.get("boot") or {}).get("firmware_version") == "1.2.3", "boot in the station view")
        assert body["boot"]["vendor"] == "E2EVendor" and body["boot"]["serial_number"] == "SN16", body["boot"]
        conn = body["connection"]
        assert conn["connected"] is True and conn["gateway_id"], conn
        await station_where(ops, sid, lambda s: s["connection"]["since"] is not None and s["connection"]["remote"], "connection since/remote")
        await station_where(ops, sid, lambda s: s.get("security_profile") == 1, "security profile 1 (basic auth over ws)")
        connected = await event_where(ops, sid, "StationConnected")
        assert connected["data"].get("subprotocol") == V16, connected

        # Heartbeat: not kept in history, folded into last_heartbeat
        hb = await st.call("Heartbeat", {})
        assert parse_ocpp(hb["currentTime"])
        body = await station_where(ops, sid, lambda s: s.get("last_heartbeat") is not None, "last_heartbeat")
        assert_ts(body["last_heartbeat"])

        status_at = now_z(-1)
        cases = cases_16(status_at)
        await send_all(st, cases)
        await check_history(ops, sid, cases)
        await no_generic_notifications(ops, sid)

        # folded into GET /stations/{id}
        body = await station_where(ops, sid, lambda s: (s.get("firmware") or {}).get("status") == "SignatureVerified"
                                   and (s.get("log") or {}).get("status") == "Uploading"
                                   and (s.get("log") or {}).get("request_id") == 77
                                   and any(m["measurand"] == "Voltage" for m in s.get("meters") or []),
                                   "firmware, log and meters folded")
        assert body["firmware"]["request_id"] == 55, body["firmware"]
        assert_ts(body["firmware"]["updated_at"])
        assert_ts(body["log"]["updated_at"])
        voltage = next(m for m in body["meters"] if m["measurand"] == "Voltage")
        assert voltage["value"] == 231.5 and voltage["unit"] == "V" and voltage["phase"] == "L1" and voltage["evse_id"] == 1, voltage
        assert_ts(voltage["at"])
        evse1 = next(e for e in body["evses"] if e["id"] == 1)
        conn1 = next(c for c in evse1["connectors"] if c["id"] in (0, 1))
        assert conn1["status"] == "Available" and conn1["info"] == "ok" and conn1["vendor_error_code"] == "V0", evse1
        assert body["outage"] is None, body["outage"]
    finally:
        await st.close()


# -- every 2.0.1 message -------------------------------------------------------------------

async def test_every_201_message_is_typed_kept_and_folded(ops: Server, unique_id: str) -> None:
    sid = unique_id
    st = await raw_station(ops, sid, V201)
    try:
        answer = await boot(st)
        assert answer["interval"] > 0 and parse_ocpp(answer["currentTime"])
        await event_where(ops, sid, "StationBooted", "BootNotification", vendor="E2EVendor", reason="PowerUp", firmware_version="4.5.6")
        body = await station_where(ops, sid, lambda s: (s.get("boot") or {}).get("model") == "E2E-201", "boot in the station view")
        assert body["boot"]["reason"] == "PowerUp" and body["connection"]["connected"] is True, body
        hb = await st.call("Heartbeat", {})
        assert parse_ocpp(hb["currentTime"])
        await station_where(ops, sid, lambda s: s.get("last_heartbeat") is not None, "last_heartbeat")

        t0 = now_z(-5)
        cases = cases_201(t0)
        await send_all(st, cases)
        # an external limit is folded; then cleared
        body = await station_where(ops, sid, lambda s: any(c["source"] == "EMS" for c in s.get("charging_limits") or []),
                                   "the EMS charging limit folded")
        limit = next(c for c in body["charging_limits"] if c["source"] == "EMS")
        assert limit["evse_id"] == 1 and limit["is_grid_critical"] is True and limit["limit"] == 7400 and limit["unit"] == "W", limit
        assert_ts(limit["at"])

        more = more_201(t0)
        results = {}
        for case in more:
            results[case.action] = await st.call(case.action, case.payload)
            check_answer(case, results[case.action])
        # NotifyEVChargingSchedule: whatever the CSMS answers, the history says the same
        schedule_status = results["NotifyEVChargingSchedule"]["status"]
        assert schedule_status in ("Accepted", "Rejected"), results["NotifyEVChargingSchedule"]
        next(c for c in more if c.body == "EvChargingSchedule").data["status"] = schedule_status
        # Get15118EVCertificate must carry an exiResponse (required by the schema)
        assert isinstance(results["Get15118EVCertificate"].get("exiResponse"), str), results["Get15118EVCertificate"]

        await check_history(ops, sid, cases + more)
        await no_generic_notifications(ops, sid)

        body = await station_where(ops, sid, lambda s: not any(c["source"] == "EMS" for c in s.get("charging_limits") or [])
                                   and (s.get("firmware") or {}).get("status") == "Installing"
                                   and (s.get("log") or {}).get("request_id") == 4
                                   and any(m["measurand"] == "Power.Active.Import" for m in s.get("meters") or []),
                                   "limit cleared; firmware, log and meters folded")
        assert body["firmware"]["request_id"] == 3 and body["log"]["status"] == "Uploading", body
        power = next(m for m in body["meters"] if m["measurand"] == "Power.Active.Import")
        assert power["value"] == 4200 and power["unit"] == "W" and power["evse_id"] == 1, power
        evse1 = next(e for e in body["evses"] if e["id"] == 1)
        assert any(c["id"] == 1 and c["status"] == "Available" for c in evse1["connectors"]), evse1

        # -- NotifyReport in three parts, out of order -> one inventory ------------------
        status, posted = await ops.api("POST", f"/api/v1/stations/{sid}/reports", {"report_base": "FullInventory"})
        assert status == 202 and posted["status"] == "Accepted", posted
        await openapi_checked(ops, "POST", f"/api/v1/stations/{sid}/reports", status, posted)
        request_id = posted["request_id"]
        assert posted["report"] == f"/api/v1/stations/{sid}/reports/{request_id}", posted
        sent = [p for a, p in st.received if a == "GetBaseReport"]
        assert sent and sent[-1]["requestId"] == request_id and sent[-1]["reportBase"] == "FullInventory", st.received
        for seq in (2, 0, 1):   # the last part first
            assert await st.call("NotifyReport", report_part(request_id, seq, seq < 2, REPORT_PARTS[seq])) == {}
        inventory = await check_report_inventory(ops, sid, request_id, REPORT_PARTS)
        # NotifyEvent's value is in the inventory too (ADR 016 §2: stations-device-model)
        from_event = [i for i in inventory if i["source"] == "event"]
        assert [(i["component"], i["evse_id"], i["connector_id"], i["variable"], i["value"]) for i in from_event] == [
            ("Connector", 1, 1, "AvailabilityState", "Faulted")], inventory
        parts = await events(ops, sid, "ReportPart", limit=10)
        assert sorted(p["data"]["seq_no"] for p in parts if p["data"]["request_id"] == request_id) == [0, 1, 2], parts

        # -- history paging: newest first, the cursor walks every item once --------------
        everything = await events(ops, sid, limit=500)
        assert len(everything) >= len(cases) + len(more), everything
        stamps = [parse_ocpp(i["received_at"]) for i in everything]
        assert stamps == sorted(stamps, reverse=True), "history is not newest first"
        paged = await all_pages(ops, f"/api/v1/stations/{sid}/events", 4)
        assert [i["event_id"] for i in paged] == [i["event_id"] for i in everything]
        # a comma-separated type filter
        two = await events(ops, sid, "FirmwareStatus,LogStatus", limit=50)
        assert {i["type"] for i in two} == {"FirmwareStatus", "LogStatus"}, two
        # heartbeats are not history
        assert await events(ops, sid, "Heartbeat", limit=10) == []
        # since / until: the window [since, until) of receive times (ends as the contract's from/to)
        middle = everything[len(everything) // 2]["received_at"]
        newer = await events(ops, sid, since=middle, limit=500)
        assert newer and all(parse_ocpp(i["received_at"]) >= parse_ocpp(middle) for i in newer), newer
        older = await events(ops, sid, until=middle, limit=500)
        assert all(parse_ocpp(i["received_at"]) <= parse_ocpp(middle) for i in older), older
        assert {i["event_id"] for i in newer} | {i["event_id"] for i in older} == {i["event_id"] for i in everything}
        status, bad = await ops.api("GET", f"/api/v1/stations/{sid}/events?type=NoSuchBody")
        assert 400 <= status < 500, bad
    finally:
        await st.close()


# -- commands, availability ----------------------------------------------------------------

async def test_commands_are_listed_with_their_result(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V201)
    try:
        await boot(st)
        ids = []
        for body in ({"type": "Reset", "reset_type": "Soft"}, {"type": "TriggerMessage", "requested_message": "Heartbeat"}):
            status, answer = await ops.api("POST", f"/api/v1/stations/{unique_id}/commands", body)
            assert status == 200 and answer["status"] == "Accepted", answer
            ids.append(answer["command_id"])

        async def listed() -> list[Json] | None:
            items = await all_pages(ops, f"/api/v1/stations/{unique_id}/commands", 1)
            done = [i for i in items if i["command_id"] in ids and i["status"] == "Accepted"]
            return items if len(done) == 2 else None

        items = await until(listed, "both commands listed with their result")
        by_id = {i["command_id"]: i for i in items}
        reset, trigger = by_id[ids[0]], by_id[ids[1]]
        assert reset["ocpp_action"] == "Reset" and reset["command_type"] == "Reset", reset
        assert trigger["ocpp_action"] == "TriggerMessage", trigger
        assert_ts(reset["issued_at"])
        assert_ts(reset["completed_at"])
        # newest first
        order = [i["command_id"] for i in items if i["command_id"] in ids]
        assert order == [ids[1], ids[0]], items
        # the history has the CommandIssued / CommandResult rows too
        await event_where(ops, unique_id, "CommandIssued", command_id=ids[0])
        result = await event_where(ops, unique_id, "CommandResult", command_id=ids[0], status="Accepted")
        # a result carries its action and request, so a consumer need not join it to its CommandIssued
        assert result["data"]["ocpp_action"] == "Reset", result
        assert json.loads(result["data"]["request_json"]) == {"type": "OnIdle"}, result   # Soft, in 2.0.1 words
    finally:
        await st.close()


async def test_a_disconnect_is_an_offline_outage_in_the_station_and_site_availability(ops: Server, unique_id: str) -> None:
    site = "SITE" + unique_id
    await ops.api("POST", "/api/v1/sites", {"id": site, "grid_limit_a": 100}, expect=201)
    sid = unique_id
    st = await raw_station(ops, sid, V16, site_id=site)
    try:
        await boot(st)
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        await station_where(ops, sid, lambda s: s["connection"]["connected"] and s["outage"] is None, "up")
        await st.close()
        body = await station_where(ops, sid, lambda s: (s.get("outage") or {}).get("cause") == "offline", "an open offline outage")
        assert_ts(body["outage"]["since"])
        open_now = await get_json(ops, f"/api/v1/stations/{sid}/availability")
        assert any(o["cause"] == "offline" and o["end"] is None for o in open_now["outages"]), open_now

        await st.connect()
        await boot(st)
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        body = await station_where(ops, sid, lambda s: s["connection"]["connected"] and s["outage"] is None, "up again")
        assert body["last_disconnect"] is not None and isinstance(body["last_disconnect"]["close_code"], int), body
        assert_ts(body["last_disconnect"]["at"])
        assert parse_ocpp(body["connection"]["since"]) >= parse_ocpp(body["last_disconnect"]["at"]), body

        # a faulted station (connector 0 = the whole station) is down too
        await st.call("StatusNotification", {"connectorId": 0, "errorCode": "GroundFailure", "status": "Faulted"})
        await station_where(ops, sid, lambda s: (s.get("outage") or {}).get("cause") == "faulted", "a faulted outage")
        await st.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
        await station_where(ops, sid, lambda s: s["outage"] is None, "the fault cleared")

        async def both_closed() -> Json | None:
            body = await get_json(ops, f"/api/v1/stations/{sid}/availability")
            causes = [o["cause"] for o in body["outages"] if o["end"] is not None]
            return body if "offline" in causes and "faulted" in causes else None

        avail = await until(both_closed, "the offline and faulted outages closed in /availability")
        assert avail["station_id"] == sid and avail["failures"] >= 2, avail
        assert 0 <= avail["uptime_percent"] < 100 and avail["down_s"] > 0 and avail["mttr_s"] is not None, avail
        for o in avail["outages"]:
            assert_ts(o["start"])
            assert o["duration_s"] >= 0, o
        # the outage rows are history too
        await event_where(ops, sid, "Outage", cause="offline")

        kpis = await get_json(ops, f"/api/v1/kpis/availability?site_id={site}")
        assert kpis["site_id"] == site and kpis["stations"] == 1, kpis
        assert [i["station_id"] for i in kpis["items"]] == [sid], kpis
        assert kpis["failures"] >= 2 and kpis["uptime_percent"] < 100 and kpis["mttr_s"] is not None, kpis
    finally:
        await st.close()


# -- scenario (a): a base report in >= 3 parts, simulated station --------------------------

@dataclass
class Sim:
    spec: StationSpec
    task: asyncio.Task[bool]


async def simulated(server: Server, sid: str, protocol: str, *, register: bool = True, **spec: Any) -> Sim:
    """A simulated station (services/simulator) in this process, connected and booted."""
    password = await registered(server, sid) if register else station_password("e2e", sid)
    s = StationSpec(station_id=sid, password=password, protocol=protocol.removeprefix("ocpp"), url=server.ocpp_url,
                    id_token=TOKEN, sessions=0, hold_s=600, **spec)
    task = asyncio.create_task(run_station(s, Stats()))
    await station_where(server, sid, lambda b: b["connection"]["connected"] and b.get("boot") is not None, f"{sid} connected and booted")
    return Sim(s, task)


async def stop_sims(sims: list[Sim]) -> None:
    for s in sims:
        s.task.cancel()
    await asyncio.gather(*(s.task for s in sims), return_exceptions=True)


async def test_a_base_report_in_parts_builds_one_inventory(ops: Server, unique_id: str) -> None:
    sim = await simulated(ops, unique_id, V201, report_items_per_part=5)
    try:
        model = default_model(unique_id, items_per_report_part=5, firmware_version="2.0.1-sim")
        variables = model.base_report("FullInventory")
        assert variables is not None
        expected = {(v.component, v.component_instance, v.evse, v.connector, v.name, v.instance, a.type): a.value
                    for v in variables for a in v.attributes}
        parts = -(-len(variables) // 5)
        assert parts >= 3, "the simulated model must need at least three parts"

        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/reports", {"report_base": "FullInventory"})
        assert status == 202 and posted["status"] == "Accepted", posted
        rid = posted["request_id"]

        async def complete() -> Json | None:
            report = await get_json(ops, f"/api/v1/stations/{unique_id}/reports/{rid}")
            return report if report["status"] == "complete" else None

        report = await until(complete, "the report complete")
        assert report["parts"] == parts and report["items"] == len(expected), report

        async def inventory() -> list[Json]:
            items = await all_pages(ops, f"/api/v1/stations/{unique_id}/variables", 7)
            got = {(i["component"], i["component_instance"], i["evse_id"], i["connector_id"], i["variable"],
                    i["variable_instance"], i["attribute_type"]): i["value"] for i in items}
            assert got == expected, items
            return items

        await eventually(inventory, WAIT, interval=0.1, what="the inventory of the report")
        # a second report of the same station replaces values, never duplicates entries
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/reports", {"report_base": "ConfigurationInventory"})
        assert status == 202, posted
        rid2 = posted["request_id"]
        assert rid2 != rid
        await until(lambda: _report_complete(ops, unique_id, rid2), "second report complete")
        again = await all_pages(ops, f"/api/v1/stations/{unique_id}/variables", 50)
        assert len(again) == len(expected), again
    finally:
        await stop_sims([sim])


async def _report_complete(server: Server, sid: str, rid: int) -> Json | None:
    report = await get_json(server, f"/api/v1/stations/{sid}/reports/{rid}")
    return report if report["status"] == "complete" else None


# -- scenario (b): a firmware campaign of 6 stations, max_in_flight 2 ----------------------

async def test_a_firmware_campaign_never_exceeds_max_in_flight_and_records_the_failure(ops: Server, unique_id: str) -> None:
    ids = [f"{unique_id}FW{i}" for i in range(6)]
    bad = ids[-1]
    sims = []
    try:
        for i, sid in enumerate(ids):
            sims.append(await simulated(ops, sid, V16 if i % 2 else V201, firmware_step_s=0.3,
                                        firmware_outcome="old_version" if sid == bad else "ok"))
        status, campaign = await ops.api("POST", "/api/v1/firmware-campaigns", {
            "id": f"C{unique_id}", "stations": ids, "location": "http://fw.example/e2e/3.1.0.bin", "version": "3.1.0",
            "max_in_flight": 2, "stop_on_failure_ratio": 0.5,
        })
        assert status == 201, campaign
        await openapi_checked(ops, "POST", "/api/v1/firmware-campaigns", status, campaign)
        cid = campaign["id"]
        assert campaign["progress"]["total"] == 6 and campaign["max_in_flight"] == 2, campaign
        status, dup = await ops.api("POST", "/api/v1/firmware-campaigns", {"id": cid, "stations": ids, "location": "http://x/y.bin"})
        assert status == 409, dup

        most_seen = 0
        final: Json | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        while loop.time() < deadline:   # bounded: polls until the campaign ends
            body = await get_json(ops, f"/api/v1/firmware-campaigns/{cid}")
            in_flight = [s for s in body["stations"] if s["status"] == "in_flight"]
            assert body["progress"]["in_flight"] == len(in_flight), body
            assert len(in_flight) <= 2, body
            most_seen = max(most_seen, len(in_flight))
            if body["status"] != "running":
                final = body
                break
            await asyncio.sleep(0.05)
        assert final is not None, "campaign did not finish in 180 s"
        assert most_seen >= 1
        assert final["status"] == "completed", final
        assert final["progress"] == {"total": 6, "pending": 0, "in_flight": 0, "succeeded": 5, "failed": 1}, final["progress"]
        by_station = {s["station_id"]: s for s in final["stations"]}
        assert by_station[bad]["status"] == "failed" and by_station[bad]["reason"], by_station[bad]
        for sid in ids[:-1]:
            assert by_station[sid]["status"] == "succeeded" and by_station[sid]["attempts"] == 1, by_station[sid]
            assert by_station[sid]["firmware_status"] == "Installed" and by_station[sid]["reason"] is None, by_station[sid]
        # the campaign's own record: never more than 2 stations between start and finish
        spans = [(parse_ocpp(s["started_at"]), parse_ocpp(s["finished_at"])) for s in final["stations"]]
        assert max_overlap(spans) <= 2, final["stations"]

        # each station's history: from the UpdateFirmware command to its last firmware status
        # each station's history: from its UpdateFirmware to the end of its update
        history_spans = [await firmware_span(ops, sid, "3.1.0") for sid in ids]
        assert max_overlap(history_spans) <= 2, history_spans

        # the stations that succeeded run the new version; the bad one the old
        for sid in ids:
            body = await station_where(ops, sid, lambda s: (s.get("firmware") or {}).get("status") == "Installed",
                                       f"{sid} reported Installed")
            version = body["boot"]["firmware_version"]
            assert (version != "3.1.0") if sid == bad else (version == "3.1.0"), (sid, body["boot"])
        listed = await get_json(ops, "/api/v1/firmware-campaigns")
        assert cid in [c["id"] for c in listed["items"]], listed
    finally:
        await stop_sims(sims)


async def test_a_single_firmware_update_is_followed_through_its_statuses(ops: Server, unique_id: str) -> None:
    sim = await simulated(ops, unique_id, V201, firmware_step_s=0.1)
    try:
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/firmware",
                                       {"location": "http://fw.example/one/5.0.0.bin"})
        assert status == 202 and posted["status"] == "Accepted" and isinstance(posted["request_id"], int), posted
        await openapi_checked(ops, "POST", f"/api/v1/stations/{unique_id}/firmware", status, posted)
        rid = posted["request_id"]
        body = await station_where(ops, unique_id, lambda s: (s.get("firmware") or {}).get("status") == "Installed"
                                   and (s.get("boot") or {}).get("firmware_version") == "5.0.0", "firmware installed", timeout=40)
        assert body["firmware"]["request_id"] == rid and body["firmware"]["location"] == "http://fw.example/one/5.0.0.bin", body
        seen = [e["data"]["status"] for e in reversed(await events(ops, unique_id, "FirmwareStatus", limit=50))]
        assert seen == ["Downloading", "Downloaded", "Installing", "InstallRebooting", "Installed"], seen
    finally:
        await stop_sims([sim])


# -- scenario (c): logs round-trip byte for byte -------------------------------------------

@pytest.mark.parametrize("protocol,log_type", [(V201, "DiagnosticsLog"), (V16, "DiagnosticsLog"), (V16, "SecurityLog")])
async def test_a_simulated_station_log_upload_round_trips(ops: Server, unique_id: str, protocol: str, log_type: str) -> None:
    sim = await simulated(ops, unique_id, protocol)
    try:
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/logs", {"log_type": log_type})
        assert status == 202 and posted["status"] == "Accepted", posted
        await openapi_checked(ops, "POST", f"/api/v1/stations/{unique_id}/logs", status, posted)
        rid = posted["request_id"]
        assert_ts(posted["upload_expires_at"])
        diagnostics16 = protocol == V16 and log_type == "DiagnosticsLog"
        action = sim.spec.received[-1][0]
        assert action == ("GetDiagnostics" if diagnostics16 else "GetLog"), sim.spec.received
        content, headers = await log_file_when_ready(ops, unique_id, rid)
        # 1.6 GetDiagnostics carries no request id: the simulator's log for "request 0"
        expected = log_bytes(unique_id, 0 if diagnostics16 else rid)
        assert content == expected
        assert "Content-Disposition" in headers, headers
        listed = await get_json(ops, f"/api/v1/stations/{unique_id}/logs")
        entry = next(i for i in listed["items"] if i["request_id"] == rid)
        assert entry["received"] is True and entry["size"] == len(expected) and entry["sha256"] == hashlib.sha256(expected).hexdigest(), entry
        assert entry["status"] == "Uploaded" and entry["log_type"] == log_type, entry
        body = await station(ops, unique_id)
        assert body["log"]["status"] == "Uploaded" and body["log"]["file"] == f"/api/v1/stations/{unique_id}/logs/{rid}", body["log"]
    finally:
        await stop_sims([sim])


async def test_a_raw_station_upload_round_trips_and_the_slot_takes_one_upload(ops: Server, unique_id: str) -> None:
    """The raw station PUTs binary bytes (more than one 256 KiB chunk) when the test says so,
    so each step is visible: 409 before the upload, 409 before Uploaded, then the file."""
    st = await raw_station(ops, unique_id, V201)
    content = random.Random(unique_id).randbytes(300_000) + os.urandom(1000)
    locations: list[str] = []

    async def on_get_log(payload: Json) -> Json:
        locations.append(payload["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": "raw.bin"}

    st.handlers["GetLog"] = on_get_log
    try:
        await boot(st)
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/logs", {"log_type": "SecurityLog"})
        assert status == 202 and posted["status"] == "Accepted", posted
        rid = posted["request_id"]
        assert len(locations) == 1 and "/uploads/" in locations[0], locations
        get_log = next(p for a, p in st.received if a == "GetLog")
        assert get_log["requestId"] == rid and get_log["logType"] == "SecurityLog", get_log
        status, _, _ = await download(ops, f"/api/v1/stations/{unique_id}/logs/{rid}")
        assert status == 409

        url = locations[0].rstrip("/") + "/raw.bin"
        async with aiohttp.ClientSession() as http:
            await st.call("LogStatusNotification", {"status": "Uploading", "requestId": rid})
            async with http.put(url, data=content, headers={"Content-Type": "application/octet-stream"}) as r:
                assert r.status == 201, (r.status, await r.text())
            # not before the station says Uploaded
            status, _, _ = await download(ops, f"/api/v1/stations/{unique_id}/logs/{rid}")
            assert status == 409
            await st.call("LogStatusNotification", {"status": "Uploaded", "requestId": rid})
            got, headers = await log_file_when_ready(ops, unique_id, rid)
            assert got == content
            assert "raw.bin" in headers.get("Content-Disposition", ""), headers
            # one upload per slot; unknown tokens are 404
            async with http.put(url, data=b"again") as r:
                assert r.status == 410, r.status
            bogus = re.sub(r"/uploads/[^/]+", "/uploads/not-a-token", url)
            async with http.put(bogus, data=b"x") as r:
                assert r.status == 404, r.status
        got_again, _ = await log_file_when_ready(ops, unique_id, rid)
        assert got_again == content
        status, _, _ = await download(ops, f"/api/v1/stations/{unique_id}/logs/999999")
        assert status == 404
        # the file is the API's: no key, no file
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ops.api_url}/api/v1/stations/{unique_id}/logs/{rid}") as r:
                assert r.status == 401, r.status
    finally:
        await st.close()


async def test_unknown_station_history_is_404(ops: Server, unique_id: str) -> None:
    status, body = await ops.api("GET", f"/api/v1/stations/{unique_id}/events")
    assert status == 404, body


# -- the inventory follows commands; 1.6 reports; signed firmware; campaign rules ---------

async def test_the_inventory_follows_set_variables_and_16_configuration(ops: Server, unique_id: str) -> None:
    s201 = await simulated(ops, unique_id + "B", V201)
    s16 = await simulated(ops, unique_id + "A", V16)
    try:
        sid = unique_id + "B"
        status, posted = await ops.api("POST", f"/api/v1/stations/{sid}/reports", {"report_base": "ConfigurationInventory"})
        assert status == 202, posted
        await until(lambda: _report_complete(ops, sid, posted["request_id"]), "2.0.1 report complete")
        status, answer = await ops.api("POST", f"/api/v1/stations/{sid}/commands", {
            "type": "SetVariables", "variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "120"}]})
        assert status == 200 and answer["status"] == "Accepted", answer

        async def heartbeat_interval(station_id: str, value: str, source: str) -> Json | None:
            # 2.0.1: OCPPCommCtrlr.HeartbeatInterval; 1.6: the configuration key, no component
            component = "component=OCPPCommCtrlr&" if station_id == sid else ""
            body = await get_json(ops, f"/api/v1/stations/{station_id}/variables?{component}variable=HeartbeatInterval")
            hits = [i for i in body["items"] if i["attribute_type"] == "Actual"]
            return hits[0] if len(hits) == 1 and hits[0]["value"] == value and hits[0]["source"] == source else None

        await until(lambda: heartbeat_interval(sid, "120", "set_variables"), "SetVariables folded into the inventory")

        # 1.6: POST /reports sends GetConfiguration; its answer is the inventory
        sid16 = unique_id + "A"
        status, posted = await ops.api("POST", f"/api/v1/stations/{sid16}/reports", {})
        assert status == 202 and isinstance(posted["request_id"], int), posted
        assert s16.spec.received[-1][0] == "GetConfiguration", s16.spec.received
        await until(lambda: heartbeat_interval(sid16, "300", "get_configuration"), "GetConfiguration folded into the inventory")
        status, answer = await ops.api("POST", f"/api/v1/stations/{sid16}/commands",
                                       {"type": "ChangeConfiguration", "key": "HeartbeatInterval", "value": "90"})
        assert status == 200 and answer["status"] == "Accepted", answer
        await until(lambda: heartbeat_interval(sid16, "90", "change_configuration"), "ChangeConfiguration folded into the inventory")
    finally:
        await stop_sims([s201, s16])


async def test_a_16_signed_firmware_update_is_sent_as_signed_update_firmware(ops: Server, unique_id: str) -> None:
    sim = await simulated(ops, unique_id, V16, firmware_step_s=0.1)
    try:
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/firmware", {
            "location": "http://fw.example/signed/6.0.0.bin", "retrieve_at": now_z(),
            "signing_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "signature": "c2lnbmF0dXJl"})
        assert status == 202 and posted["status"] == "Accepted" and isinstance(posted["request_id"], int), posted
        assert sim.spec.received[-1][0] == "SignedUpdateFirmware", sim.spec.received
        body = await station_where(ops, unique_id, lambda s: (s.get("firmware") or {}).get("status") == "Installed"
                                   and (s.get("boot") or {}).get("firmware_version") == "6.0.0", "signed firmware installed", timeout=40)
        assert body["firmware"]["signed"] is True and body["firmware"]["request_id"] == posted["request_id"], body["firmware"]
        history = [e for e in await events(ops, unique_id, "FirmwareStatus", limit=50)]
        assert {e["action"] for e in history} == {"SignedFirmwareStatusNotification"}, history
        assert [e["data"]["status"] for e in reversed(history)] == [
            "Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting", "Installed"], history
    finally:
        await stop_sims([sim])


async def test_campaign_requests_are_checked_and_a_campaign_can_be_cancelled(ops: Server, unique_id: str) -> None:
    status, body = await ops.api("POST", "/api/v1/firmware-campaigns", {"stations": [], "location": "http://x/1.0.bin"})
    assert status == 422, body
    site = "EMPTY" + unique_id
    await ops.api("POST", "/api/v1/sites", {"id": site, "grid_limit_a": 32}, expect=201)
    status, body = await ops.api("POST", "/api/v1/firmware-campaigns", {"site_id": site, "location": "http://x/1.0.bin"})
    assert status == 422, body
    status, body = await ops.api("POST", "/api/v1/firmware-campaigns",
                                 {"stations": [unique_id], "location": "http://x/1.0.bin", "max_in_flight": 0})
    assert 400 <= status < 500, body
    # a campaign over a site whose one station is offline waits, and can be cancelled
    full = "SITE" + unique_id
    await ops.api("POST", "/api/v1/sites", {"id": full, "grid_limit_a": 32}, expect=201)
    await registered(ops, unique_id, site_id=full)
    status, campaign = await ops.api("POST", "/api/v1/firmware-campaigns", {"site_id": full, "location": "http://x/1.0.bin"})
    assert status == 201 and [s["station_id"] for s in campaign["stations"]] == [unique_id], campaign
    await openapi_checked(ops, "POST", "/api/v1/firmware-campaigns", status, campaign)
    assert campaign["status"] == "running" and campaign["max_in_flight"] == 10 and campaign["stop_on_failure_ratio"] == 0.2, campaign
    status, cancelled = await ops.api("POST", f"/api/v1/firmware-campaigns/{campaign['id']}/cancel")
    assert status in (200, 202) and cancelled["status"] == "cancelled", cancelled
    await openapi_checked(ops, "POST", f"/api/v1/firmware-campaigns/{campaign['id']}/cancel", status, cancelled)
    body = await get_json(ops, f"/api/v1/firmware-campaigns/{campaign['id']}")
    assert body["status"] == "cancelled" and body["stations"][0]["status"] == "pending", body
    status, missing = await ops.api("GET", f"/api/v1/firmware-campaigns/NOPE{unique_id}")
    assert status == 404, missing


async def test_an_upload_over_the_size_limit_is_413_and_the_slot_stays_open(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V201)
    locations: list[str] = []

    async def on_get_log(payload: Json) -> Json:
        locations.append(payload["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": "big.log"}

    st.handlers["GetLog"] = on_get_log
    try:
        await boot(st)
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/logs", {})
        assert status == 202, posted
        url = locations[0].rstrip("/") + "/big.log"
        async with aiohttp.ClientSession() as http:
            async with http.put(url, data=b"x" * (UPLOAD_MAX + 1)) as r:
                assert r.status == 413, r.status
            # multipart/form-data works too (the first file part), within the limit
            form = aiohttp.FormData()
            form.add_field("file", b"line 1\nline 2\n", filename="small.log", content_type="text/plain")
            async with http.post(url, data=form) as r:
                assert r.status == 201, (r.status, await r.text())
        await st.call("LogStatusNotification", {"status": "Uploaded", "requestId": posted["request_id"]})
        got, _ = await log_file_when_ready(ops, unique_id, posted["request_id"])
        assert got == b"line 1\nline 2\n"
    finally:
        await st.close()


async def test_gateway_gauges_count_connected_stations_without_station_labels(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V16)
    try:
        await boot(st)
        metrics_url = ops.api_url + "/metrics"  # csms run: the API port serves the process's metrics
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url) as r:
                text = await r.text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("csms_gateway_stations_connected", "csms_gateway_stations_faulted"))]
        connected = [ln for ln in lines if ln.startswith("csms_gateway_stations_connected")]
        assert connected and float(connected[0].rsplit(" ", 1)[1]) >= 1, lines
        assert any(ln.startswith("csms_gateway_stations_faulted") for ln in lines), lines
        assert unique_id not in text
    finally:
        await st.close()


# -- more of the contract: availability requests, report refusals, GetReport, halting -----

async def test_requested_availability_and_an_unavailable_outage(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V201)
    try:
        await boot(st)
        await st.call("StatusNotification", {"timestamp": now_z(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1})
        status, answer = await ops.api("POST", f"/api/v1/stations/{unique_id}/commands",
                                       {"type": "ChangeAvailability", "availability": "Inoperative", "evse_id": 1})
        assert status == 200 and answer["status"] == "Accepted", answer
        await station_where(ops, unique_id, lambda s: s["availability"]["evses"].get("1") == "Inoperative", "EVSE 1 requested Inoperative")
        status, answer = await ops.api("POST", f"/api/v1/stations/{unique_id}/commands",
                                       {"type": "ChangeAvailability", "availability": "Inoperative"})
        assert status == 200 and answer["status"] == "Accepted", answer
        await station_where(ops, unique_id, lambda s: s["availability"]["station"] == "Inoperative", "the station requested Inoperative")
        # every connector Unavailable: down, cause unavailable
        await st.call("StatusNotification", {"timestamp": now_z(), "connectorStatus": "Unavailable", "evseId": 1, "connectorId": 1})
        body = await station_where(ops, unique_id, lambda s: (s.get("outage") or {}).get("cause") == "unavailable", "an unavailable outage")
        assert_ts(body["outage"]["since"])
        await st.call("StatusNotification", {"timestamp": now_z(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1})
        await station_where(ops, unique_id, lambda s: s["outage"] is None, "up again")
        outage = await event_where(ops, unique_id, "Outage", cause="unavailable")
        data = outage["data"]
        assert_ts(data["start"])
        assert_ts(data["end"])
        assert parse_ocpp(data["end"]) >= parse_ocpp(data["start"]) and data["duration_s"] >= 0, data
        assert outage["received_at"] == data["end"], outage

        # a window after the outage: no failures, fully up, no MTBF / MTTR
        after = to_ocpp(parse_ocpp(data["end"]) + timedelta(milliseconds=1))
        quiet = await get_json(ops, f"/api/v1/stations/{unique_id}/availability?from={quote(after)}")
        assert quiet["outages"] == [] and quiet["failures"] == 0 and quiet["uptime_percent"] == 100, quiet
        assert quiet["mtbf_s"] is None and quiet["mttr_s"] is None, quiet
        assert parse_ocpp(quiet["from"]) == parse_ocpp(after), quiet
        # the window that holds it
        body = await get_json(ops, f"/api/v1/stations/{unique_id}/availability?to={quote(now_z(1))}")
        assert [o["cause"] for o in body["outages"]] == ["unavailable"] and body["failures"] == 1, body
        status, bad = await ops.api("GET", f"/api/v1/stations/{unique_id}/availability?from=not-a-time")
        assert 400 <= status < 500, bad
    finally:
        await st.close()


async def test_a_refused_report_is_answered_202_and_marked_rejected(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V201)

    async def not_supported(payload: Json) -> Json:
        return {"status": "NotSupported"}

    st.handlers["GetBaseReport"] = not_supported
    try:
        await boot(st)
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/reports", {"report_base": "SummaryInventory"})
        assert status == 202 and posted["status"] == "NotSupported", posted
        report = await until(lambda: _report_status(ops, unique_id, posted["request_id"], "rejected"), "the report rejected")
        assert report["station_status"] == "NotSupported" and report["parts"] == 0, report
        status, bad = await ops.api("POST", f"/api/v1/stations/{unique_id}/reports", {"report_base": "Everything"})
        assert 400 <= status < 500, bad
    finally:
        await st.close()


async def test_get_report_with_component_variables_builds_the_inventory_of_those(ops: Server, unique_id: str) -> None:
    sim = await simulated(ops, unique_id + "S", V201, report_items_per_part=1)
    try:
        sid = unique_id + "S"
        status, posted = await ops.api("POST", f"/api/v1/stations/{sid}/reports", {
            "component_variables": [{"component": {"name": "OCPPCommCtrlr"}}]})
        assert status == 202 and posted["status"] == "Accepted", posted
        get_report = sim.spec.received[-1]
        assert get_report[0] == "GetReport", sim.spec.received
        report = await until(lambda: _report_status(ops, sid, posted["request_id"], "complete"), "the GetReport complete")
        model = default_model(sid, items_per_report_part=1, firmware_version="2.0.1-sim")
        wanted = model.report(None, [{"component": {"name": "OCPPCommCtrlr"}}])
        assert report["parts"] == len(wanted) == report["items"], report

        async def inventory() -> list[Json] | None:
            items = await all_pages(ops, f"/api/v1/stations/{sid}/variables?component=OCPPCommCtrlr", 50)
            return items if len(items) == len(wanted) else None

        items = await until(inventory, "the GetReport's variables")
        assert {i["variable"] for i in items} == {v.name for v in wanted}, items
    finally:
        await stop_sims([sim])


async def _report_status(server: Server, sid: str, rid: int, status: str) -> Json | None:
    report = await get_json(server, f"/api/v1/stations/{sid}/reports/{rid}")
    return report if report["status"] == status else None


async def test_a_campaign_halts_when_failures_reach_the_ratio(ops: Server, unique_id: str) -> None:
    ids = [f"{unique_id}H{i}" for i in range(3)]
    sims = []
    try:
        for sid in ids:
            sims.append(await simulated(ops, sid, V201, firmware_step_s=0.1, firmware_outcome="download_failed"))
        status, campaign = await ops.api("POST", "/api/v1/firmware-campaigns", {
            "stations": ids, "location": "http://fw.example/halt/9.9.9.bin", "version": "9.9.9",
            "max_in_flight": 1, "stop_on_failure_ratio": 0.5,
        })
        assert status == 201, campaign

        async def halted() -> Json | None:
            body = await get_json(ops, f"/api/v1/firmware-campaigns/{campaign['id']}")
            assert body["status"] in ("running", "halted"), body
            return body if body["status"] == "halted" else None

        body = await until(halted, "the campaign halted", 60)
        progress = body["progress"]
        assert progress["failed"] >= 1 and progress["succeeded"] == 0 and progress["in_flight"] == 0, body
        assert progress["pending"] >= 1, body   # the rest never started
        failed = [s for s in body["stations"] if s["status"] == "failed"]
        assert all(s["firmware_status"] == "DownloadFailed" and s["reason"] for s in failed), failed
        never = [s["station_id"] for s in body["stations"] if s["status"] == "pending"]
        for sid in never:
            sim = next(x for x in sims if x.spec.station_id == sid)
            assert "UpdateFirmware" not in [a for a, _ in sim.spec.received], sim.spec.received
    finally:
        await stop_sims(sims)


@pytest.mark.parametrize("protocol", [V16, V201])
async def test_firmware_and_log_requests_are_translated_per_version(ops: Server, unique_id: str, protocol: str) -> None:
    st = await raw_station(ops, unique_id, protocol)
    try:
        await boot(st)
        retrieve, install = now_z(60), now_z(120)
        status, fw = await ops.api("POST", f"/api/v1/stations/{unique_id}/firmware", {
            "location": "https://fw.example/x/2.0.0.bin", "retrieve_at": retrieve, "install_at": install,
            "retries": 3, "retry_interval": 30})
        assert status == 202 and fw["status"] == "Accepted", fw
        await openapi_checked(ops, "POST", f"/api/v1/stations/{unique_id}/firmware", status, fw)
        action, payload = st.received[-1]
        assert action == "UpdateFirmware", st.received
        if protocol == V16:
            assert fw["request_id"] is None, fw
            assert payload["location"] == "https://fw.example/x/2.0.0.bin" and parse_ocpp(payload["retrieveDate"]) == parse_ocpp(retrieve), payload
            assert payload["retries"] == 3 and payload["retryInterval"] == 30, payload
        else:
            assert payload["requestId"] == fw["request_id"] and payload["retries"] == 3 and payload["retryInterval"] == 30, payload
            firmware = payload["firmware"]
            assert firmware["location"] == "https://fw.example/x/2.0.0.bin", payload
            assert parse_ocpp(firmware["retrieveDateTime"]) == parse_ocpp(retrieve), payload
            assert parse_ocpp(firmware["installDateTime"]) == parse_ocpp(install), payload
        body = await station_where(ops, unique_id, lambda s: s.get("firmware") is not None, "the firmware request in the station view")
        firmware_state = body["firmware"]
        assert firmware_state["location"] == "https://fw.example/x/2.0.0.bin" and firmware_state["signed"] is False, firmware_state
        assert firmware_state["request_id"] == fw["request_id"], firmware_state
        assert_ts(firmware_state["requested_at"])

        since, until_ = now_z(-3600), now_z()
        status, lg = await ops.api("POST", f"/api/v1/stations/{unique_id}/logs", {"log_type": "DiagnosticsLog", "from": since, "to": until_})
        assert status == 202 and lg["status"] == "Accepted", lg
        await openapi_checked(ops, "POST", f"/api/v1/stations/{unique_id}/logs", status, lg)
        action, payload = st.received[-1]
        if protocol == V16:
            assert action == "GetDiagnostics", st.received
            location = payload["location"]
            assert parse_ocpp(payload["startTime"]) == parse_ocpp(since) and parse_ocpp(payload["stopTime"]) == parse_ocpp(until_), payload
        else:
            assert action == "GetLog" and payload["logType"] == "DiagnosticsLog" and payload["requestId"] == lg["request_id"], payload
            location = payload["log"]["remoteLocation"]
            assert parse_ocpp(payload["log"]["oldestTimestamp"]) == parse_ocpp(since), payload
            assert parse_ocpp(payload["log"]["latestTimestamp"]) == parse_ocpp(until_), payload
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/uploads/[^/]+/", location), location
        listed = await get_json(ops, f"/api/v1/stations/{unique_id}/logs")
        entry = next(i for i in listed["items"] if i["request_id"] == lg["request_id"])
        assert entry["received"] is False and entry["size"] is None and entry["log_type"] == "DiagnosticsLog", entry
        body = await station_where(ops, unique_id, lambda s: s.get("log") is not None, "the log request in the station view")
        assert body["log"]["file"] is None and body["log"]["log_type"] == "DiagnosticsLog", body["log"]
    finally:
        await st.close()


# -- the README's tour: `csms simulate` as a process ---------------------------------------

def simulate(server: Server, prefix: str, stations: int, *extra: str) -> subprocess.Popen[bytes]:
    log = open(server.state_dir.parent / f"simulate-{prefix}.log", "wb")
    return subprocess.Popen([
        str(CSMS), "simulate", "--url", server.ocpp_url, "--api-url", server.api_url, "--api-key", server.api_key,
        "--stations", str(stations), "--prefix", prefix, "--sessions", "0", "--hold", "300", "--firmware-step-s", "0.2",
        "--report-items-per-part", "4", *extra,
    ], stdout=log, stderr=subprocess.STDOUT)


async def test_csms_simulate_answers_reports_firmware_campaigns_and_logs(ops: Server, unique_id: str) -> None:
    good, bad = unique_id[3:] + "G", unique_id[3:] + "B"
    procs = [simulate(ops, good, 3, "--protocol", "mixed"), simulate(ops, bad, 1, "--protocol", "2.0.1", "--firmware-outcome", "old_version")]
    ids = [f"{good}{i:05d}" for i in range(3)] + [f"{bad}00000"]
    try:
        for sid in ids:
            await until(lambda: _booted(ops, sid), f"simulated {sid} connected and booted", 60)
        s201 = ids[1]   # mixed: even stations speak 1.6, odd ones 2.0.1
        status, posted = await ops.api("POST", f"/api/v1/stations/{s201}/reports", {"report_base": "FullInventory"})
        assert status == 202 and posted["status"] == "Accepted", posted
        report = await until(lambda: _report_status(ops, s201, posted["request_id"], "complete"), "the simulated report complete")
        assert report["parts"] >= 3, report
        status, lg = await ops.api("POST", f"/api/v1/stations/{s201}/logs", {"log_type": "DiagnosticsLog"})
        assert status == 202, lg
        content, _ = await log_file_when_ready(ops, s201, lg["request_id"])
        assert content == log_bytes(s201, lg["request_id"])

        status, campaign = await ops.api("POST", "/api/v1/firmware-campaigns", {
            "stations": ids, "location": "http://fw.example/tour/3.3.0.bin", "version": "3.3.0", "max_in_flight": 2,
            "stop_on_failure_ratio": 0.9})
        assert status == 201, campaign

        async def finished() -> Json | None:
            body = await get_json(ops, f"/api/v1/firmware-campaigns/{campaign['id']}")
            assert body["progress"]["in_flight"] <= 2, body
            return body if body["status"] != "running" else None

        final = await until(finished, "the campaign over the simulated stations finished", 120)
        assert final["status"] == "completed" and final["progress"]["succeeded"] == 3 and final["progress"]["failed"] == 1, final
        assert [s["station_id"] for s in final["stations"] if s["status"] == "failed"] == [ids[-1]], final["stations"]
        spans = [(parse_ocpp(s["started_at"]), parse_ocpp(s["finished_at"])) for s in final["stations"]]
        assert max_overlap(spans) <= 2, final["stations"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _booted(server: Server, sid: str) -> Json | None:
    status, body = await server.api("GET", f"/api/v1/stations/{sid}")
    return body if status == 200 and body["connection"]["connected"] and body.get("boot") is not None else None


async def test_an_expired_upload_slot_is_410(tmp_path: Path, unique_id: str) -> None:
    server = start_server(tmp_path, {"CSMS_UPLOAD_TTL_S": "1"})
    try:
        st = await raw_station(server, unique_id, V201)
        locations: list[str] = []

        async def on_get_log(payload: Json) -> Json:
            locations.append(payload["log"]["remoteLocation"])
            return {"status": "Accepted", "filename": "late.log"}

        st.handlers["GetLog"] = on_get_log
        try:
            await boot(st)
            status, posted = await server.api("POST", f"/api/v1/stations/{unique_id}/logs", {})
            assert status == 202, posted
            # wait out the slot (a wait, not an assertion on time)
            delay = (parse_ocpp(posted["upload_expires_at"]) - utcnow()).total_seconds()
            await asyncio.sleep(max(0.0, delay) + 0.3)
            async with aiohttp.ClientSession() as http:
                async with http.put(locations[0] + "late.log", data=b"too late") as r:
                    assert r.status == 410, r.status
        finally:
            await st.close()
    finally:
        stop_server(server)
    assert "Traceback" not in server.log(), server.log()[-4000:]


async def test_an_offline_station_waits_in_a_campaign_until_it_connects(ops: Server, unique_id: str) -> None:
    online, offline = unique_id + "ON", unique_id + "OFF"
    sims = [await simulated(ops, online, V201, firmware_step_s=0.1)]
    await registered(ops, offline)
    try:
        status, campaign = await ops.api("POST", "/api/v1/firmware-campaigns", {
            "stations": [offline, online], "location": "http://fw.example/wait/4.4.4.bin", "version": "4.4.4", "max_in_flight": 1})
        assert status == 201, campaign
        cid = campaign["id"]

        async def online_done() -> Json | None:
            body = await get_json(ops, f"/api/v1/firmware-campaigns/{cid}")
            by = {s["station_id"]: s for s in body["stations"]}
            return body if by[online]["status"] == "succeeded" else None

        body = await until(online_done, "the connected station updated first", 40)
        waiting = next(s for s in body["stations"] if s["station_id"] == offline)
        assert body["status"] == "running" and waiting["status"] == "pending" and waiting["attempts"] == 0, body
        # it comes online: its turn
        sims.append(await simulated(ops, offline, V16, register=False, firmware_step_s=0.1))

        async def completed() -> Json | None:
            body = await get_json(ops, f"/api/v1/firmware-campaigns/{cid}")
            return body if body["status"] != "running" else None

        final = await until(completed, "the campaign completed once the station connected", 60)
        assert final["status"] == "completed" and final["progress"]["succeeded"] == 2 and final["progress"]["failed"] == 0, final
    finally:
        await stop_sims(sims)


async def test_operations_on_an_offline_station_are_409_and_unknown_stations_404(ops: Server, unique_id: str) -> None:
    await registered(ops, unique_id)
    for path, body in ((f"/api/v1/stations/{unique_id}/reports", {"report_base": "FullInventory"}),
                       (f"/api/v1/stations/{unique_id}/firmware", {"location": "http://fw.example/x.bin"}),
                       (f"/api/v1/stations/{unique_id}/logs", {})):
        status, answer = await ops.api("POST", path, body)
        assert status == 409, (path, status, answer)
        status, answer = await ops.api("POST", path.replace(unique_id, "NO" + unique_id), body)
        assert status == 404, (path, status, answer)
    for path in ("events", "commands", "variables", "logs", "availability", "reports/1", "logs/1"):
        status, answer = await ops.api("GET", f"/api/v1/stations/NO{unique_id}/{path}")
        assert status == 404, (path, status, answer)


async def test_two_concurrent_uploads_to_one_slot_one_wins_whole(ops: Server, unique_id: str) -> None:
    st = await raw_station(ops, unique_id, V201)
    locations: list[str] = []

    async def on_get_log(payload: Json) -> Json:
        locations.append(payload["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": "race.log"}

    st.handlers["GetLog"] = on_get_log
    try:
        await boot(st)
        status, posted = await ops.api("POST", f"/api/v1/stations/{unique_id}/logs", {})
        assert status == 202, posted
        url = locations[0].rstrip("/") + "/race.log"
        bodies = [random.Random(f"{unique_id}/{i}").randbytes(400_000) for i in range(2)]

        async def put(body: bytes) -> int:
            async with aiohttp.ClientSession() as http:
                async with http.put(url, data=body) as r:
                    await r.read()
                    return r.status

        statuses = await asyncio.gather(put(bodies[0]), put(bodies[1]))
        assert sorted(statuses) == [201, 410], statuses
        winner = bodies[statuses.index(201)]
        await st.call("LogStatusNotification", {"status": "Uploaded", "requestId": posted["request_id"]})
        got, _ = await log_file_when_ready(ops, unique_id, posted["request_id"])
        assert got == winner
        listed = await get_json(ops, f"/api/v1/stations/{unique_id}/logs")
        assert listed["items"][0]["sha256"] == hashlib.sha256(winner).hexdigest(), listed
    finally:
        await st.close()

