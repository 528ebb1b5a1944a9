"""Station operations (issue 9, ADR 016) on Kafka + Cassandra: a gateway, the sessions and
stations processors and the API as separate `csms <role>` processes.

The same scenarios as tests/e2e/test_station_operations_e2e.py, where the embedded mode
shares one process: here every fold crosses Kafka, the history and the inventory live in
Cassandra, and an uploaded file goes from the gateway's upload endpoint into the store (no
CSMS_FILES_DIR: chunks in Cassandra) and out again through the API process.
- typed events of both versions reach the station's history and state;
- a NotifyReport in three parts (sent out of order) builds one inventory;
- a log upload round-trips byte for byte (more than one 256 KiB chunk);
- a firmware campaign of two simulated stations with max_in_flight 1 runs them one at a time;
- a disconnect is an offline outage;
- one upload wins when two gateways take the same slot at once, and three campaign
  controllers (three `stations` processes) send each station one UpdateFirmware: both rest
  on the store's versioned write being a compare-and-set.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from services.common import codec
from services.common.bus.kafka import KafkaBus
from services.common.timeutil import parse_ocpp
from services.simulator.cli import station_password
from services.simulator.stats import Stats
from services.simulator.station import StationSpec, run_station
from tests.integration.conftest import Cluster, new_cluster
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import (
    REPORT_PARTS, TOKEN, V16, V201, VENDOR, Json, boot, cases_16, cases_201, check_answer, check_history, check_report_inventory,
    download, events, firmware_span, get_json, log_file_when_ready, max_overlap, more_201, no_generic_notifications, now_z, report_part, send_all,
    station_where, until,
)

pytestmark = pytest.mark.infra

WAIT = 60.0   # Kafka consumer groups join and Cassandra writes: more slack than the embedded mode


@pytest.fixture(scope="module")
def ops_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two gateways, sessions, stations and the api; the API hands out upload URLs on gateway-0."""
    c = new_cluster(tmp_path_factory.mktemp("ops-cluster"), roles=(), extra_env={
        "CSMS_DATATRANSFER_VENDORS": VENDOR,
        "CSMS_CAMPAIGN_TICK_S": "0.3",
        "CSMS_CAMPAIGN_STATION_TIMEOUT_S": "120",
    })
    try:
        gateway = c.spawn("gateway-0", "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": "gateway-0"})
        c.spawn("gateway-1", "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": "gateway-1"})
        upload_base = {"CSMS_UPLOAD_BASE_URL": f"http://127.0.0.1:{gateway.port}"}
        c.spawn("sessions", "sessions")
        c.spawn("stations", "stations", extra=upload_base)
        c.spawn("api", "api", "CSMS_API_PORT", upload_base)
        for proc in list(c.procs.values()):
            c.wait_ready(proc)
        yield c
    finally:
        c.stop_all()  # also drops the keyspace
    for proc in c.procs.values():
        assert "Traceback" not in proc.log(), f"{proc.role}:\n{proc.log()[-6000:]}"


async def registered(c: Cluster, sid: str) -> str:
    password = station_password("it-ops", sid)
    await c.api("POST", "/api/v1/stations", {"id": sid, "password": password}, expect=201)
    await c.api("POST", "/api/v1/tokens", {"id_token": TOKEN, "status": "Accepted"}, expect=(200, 201, 409))
    return password


async def raw_station(c: Cluster, sid: str, protocol: str) -> RawStation:
    st = RawStation(c.ocpp_url("gateway-0"), sid, await registered(c, sid), protocol)
    await st.connect()
    return st


def uid() -> str:
    return "ITOPS" + format(random.getrandbits(32), "08X")


async def test_typed_events_of_both_versions_reach_history_and_state(ops_cluster: Cluster) -> None:
    tag = uid()
    s16 = await raw_station(ops_cluster, tag + "A", V16)
    s201 = await raw_station(ops_cluster, tag + "B", V201)
    try:
        await boot(s16)
        await boot(s201)
        c16, c201 = cases_16(now_z(-1)), cases_201(now_z(-1))
        await send_all(s16, c16)
        await send_all(s201, c201)
        await check_history(ops_cluster, s16.station_id, c16, WAIT)
        await check_history(ops_cluster, s201.station_id, c201, WAIT)
        await no_generic_notifications(ops_cluster, s16.station_id)
        await no_generic_notifications(ops_cluster, s201.station_id)
        body = await station_where(ops_cluster, s16.station_id, lambda s: (s.get("firmware") or {}).get("status") == "SignatureVerified"
                                   and (s.get("log") or {}).get("request_id") == 77, "1.6 firmware and log folded", WAIT)
        assert body["connection"]["connected"] is True and body["boot"]["firmware_version"] == "1.2.3", body
        body = await station_where(ops_cluster, s201.station_id, lambda s: (s.get("firmware") or {}).get("status") == "Installing"
                                   and any(c["source"] == "EMS" for c in s.get("charging_limits") or []),
                                   "2.0.1 firmware and charging limit folded", WAIT)
        assert body["firmware"]["request_id"] == 3, body["firmware"]
        assert any(m["measurand"] == "Power.Active.Import" and m["value"] == 4200 for m in body["meters"]), body["meters"]
        # the rest of 2.0.1 (the answers of the certificate and ISO 15118 requests included)
        more = more_201(now_z(-1))
        for case in more:
            result = await s201.call(case.action, case.payload)
            check_answer(case, result)
            if case.body == "EvChargingSchedule":
                case.data["status"] = result["status"]
        await check_history(ops_cluster, s201.station_id, more, WAIT)
        await station_where(ops_cluster, s201.station_id, lambda s: not s["charging_limits"], "the EMS limit cleared", WAIT)

        # the configured vendor's DataTransfer (only it) is republished on csms.datatransfer.v1
        bus = KafkaBus(ops_cluster.env["CSMS_BUS_URL"])
        await bus.start()
        try:
            topic = ops_cluster.env["CSMS_TOPIC_PREFIX"] + "csms.datatransfer.v1"
            ours = {s16.station_id.encode(), s201.station_id.encode()}

            async def forwarded() -> list[Any] | None:
                records = [r for r in await bus.read(topic) if r.key in ours]
                return records if len(records) >= 2 else None

            records = await until(forwarded, "two DataTransfer records on csms.datatransfer.v1", WAIT)
            seen = []
            for r in records:
                pb = codec.datatransfer_pb2.StationDataTransfer()
                pb.ParseFromString(r.value)
                seen.append((pb.station_id, pb.vendor_id, pb.message_id, pb.ocpp_version))
            assert sorted(seen) == sorted([(s16.station_id, VENDOR, "Ping", "1.6"), (s201.station_id, VENDOR, "Hello", "2.0.1")]), seen
        finally:
            await bus.close()
    finally:
        await s16.close()
        await s201.close()


async def test_a_report_in_three_parts_out_of_order_builds_one_inventory(ops_cluster: Cluster) -> None:
    st = await raw_station(ops_cluster, uid(), V201)
    try:
        await boot(st)
        status, posted = await ops_cluster.api("POST", f"/api/v1/stations/{st.station_id}/reports", {"report_base": "FullInventory"})
        assert status == 202 and posted["status"] == "Accepted", posted
        rid = posted["request_id"]
        for seq in (1, 2, 0):
            assert await st.call("NotifyReport", report_part(rid, seq, seq < 2, REPORT_PARTS[seq])) == {}
        await check_report_inventory(ops_cluster, st.station_id, rid, REPORT_PARTS, WAIT)
    finally:
        await st.close()


async def test_a_log_upload_round_trips_through_the_store(ops_cluster: Cluster) -> None:
    st = await raw_station(ops_cluster, uid(), V201)
    content = random.Random(st.station_id).randbytes(600_000)   # three 256 KiB chunks
    locations: list[str] = []

    async def on_get_log(payload: Json) -> Json:
        locations.append(payload["log"]["remoteLocation"])

        async def upload_then_report() -> None:
            await st.call("LogStatusNotification", {"status": "Uploading", "requestId": payload["requestId"]})
            async with aiohttp.ClientSession() as http:
                async with http.put(locations[0].rstrip("/") + "/it.log", data=content) as r:
                    assert r.status == 201, (r.status, await r.text())
            await st.call("LogStatusNotification", {"status": "Uploaded", "requestId": payload["requestId"]})

        st.after_reply(upload_then_report)
        return {"status": "Accepted", "filename": "it.log"}

    st.handlers["GetLog"] = on_get_log
    try:
        await boot(st)
        status, posted = await ops_cluster.api("POST", f"/api/v1/stations/{st.station_id}/logs", {"log_type": "DiagnosticsLog"})
        assert status == 202 and posted["status"] == "Accepted", posted
        got, headers = await log_file_when_ready(ops_cluster, st.station_id, posted["request_id"], WAIT)
        assert not st.job_errors, st.job_errors
        assert got == content
        assert "it.log" in headers.get("Content-Disposition", ""), headers
        status, _, _ = await download(ops_cluster, f"/api/v1/stations/{st.station_id}/logs/{posted['request_id'] + 1000}")
        assert status == 404
    finally:
        await st.close()


async def test_a_two_station_campaign_with_max_in_flight_1_runs_one_at_a_time(ops_cluster: Cluster) -> None:
    tag = uid()
    ids = [tag + "F0", tag + "F1"]
    tasks = []
    try:
        for i, sid in enumerate(ids):
            spec = StationSpec(station_id=sid, password=await registered(ops_cluster, sid), protocol=("1.6", "2.0.1")[i],
                               url=ops_cluster.ocpp_url("gateway-0"), id_token=TOKEN, sessions=0, hold_s=600, firmware_step_s=0.3)
            tasks.append(asyncio.create_task(run_station(spec, Stats())))
        for sid in ids:
            await station_where(ops_cluster, sid, lambda b: b["connection"]["connected"] and b.get("boot") is not None,
                                f"{sid} connected and booted", WAIT)
        status, campaign = await ops_cluster.api("POST", "/api/v1/firmware-campaigns", {
            "stations": ids, "location": "http://fw.example/it/7.0.0.bin", "version": "7.0.0", "max_in_flight": 1,
        })
        assert status == 201, campaign
        cid = campaign["id"]
        final: Json | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 240
        while loop.time() < deadline:   # bounded
            body = await get_json(ops_cluster, f"/api/v1/firmware-campaigns/{cid}")
            assert sum(s["status"] == "in_flight" for s in body["stations"]) <= 1, body
            if body["status"] != "running":
                final = body
                break
            await asyncio.sleep(0.1)
        assert final is not None, "campaign did not finish in 240 s"
        assert final["status"] == "completed" and final["progress"]["succeeded"] == 2 and final["progress"]["failed"] == 0, final
        spans = [(parse_ocpp(s["started_at"]), parse_ocpp(s["finished_at"])) for s in final["stations"]]
        assert max_overlap(spans) == 1, final["stations"]
        history = [await firmware_span(ops_cluster, sid, "7.0.0", WAIT) for sid in ids]
        assert max_overlap(history) == 1, history
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_disconnect_is_an_offline_outage(ops_cluster: Cluster) -> None:
    st = await raw_station(ops_cluster, uid(), V16)
    sid = st.station_id
    try:
        await boot(st)
        await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        await station_where(ops_cluster, sid, lambda s: s["connection"]["connected"] and s["outage"] is None, "up", WAIT)
        await st.close()
        await station_where(ops_cluster, sid, lambda s: (s.get("outage") or {}).get("cause") == "offline", "offline", WAIT)
        await st.connect()
        await boot(st)
        await station_where(ops_cluster, sid, lambda s: s["connection"]["connected"] and s["outage"] is None, "up again", WAIT)

        async def closed() -> Json | None:
            body = await get_json(ops_cluster, f"/api/v1/stations/{sid}/availability")
            return body if any(o["cause"] == "offline" and o["end"] is not None for o in body["outages"]) else None

        body = await until(closed, "the closed offline outage in /availability", WAIT)
        assert body["failures"] == 1 and body["uptime_percent"] < 100 and body["mttr_s"] is not None, body
    finally:
        await st.close()


async def test_one_upload_wins_when_two_gateways_take_the_same_slot(ops_cluster: Cluster) -> None:
    """The same upload URL PUT at once through both gateways (a retrying station behind a
    load balancer): one is taken, the other refused, and the file is the winner's, whole."""
    st = await raw_station(ops_cluster, uid(), V201)
    locations: list[str] = []

    async def on_get_log(payload: Json) -> Json:
        locations.append(payload["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": "race.log"}

    st.handlers["GetLog"] = on_get_log
    try:
        await boot(st)
        status, posted = await ops_cluster.api("POST", f"/api/v1/stations/{st.station_id}/logs", {})
        assert status == 202, posted
        url0 = locations[0].rstrip("/") + "/race.log"
        port0, port1 = ops_cluster.procs["gateway-0"].port, ops_cluster.procs["gateway-1"].port
        url1 = url0.replace(f":{port0}/", f":{port1}/")
        assert url1 != url0
        bodies = [random.Random(f"{st.station_id}/{i}").randbytes(400_000) for i in range(2)]

        async def put(url: str, body: bytes) -> int:
            async with aiohttp.ClientSession() as http:
                async with http.put(url, data=body) as r:
                    await r.read()
                    return r.status

        statuses = await asyncio.gather(put(url0, bodies[0]), put(url1, bodies[1]))
        assert sorted(statuses) == [201, 410], statuses
        winner = bodies[statuses.index(201)]
        await st.call("LogStatusNotification", {"status": "Uploaded", "requestId": posted["request_id"]})
        got, _ = await log_file_when_ready(ops_cluster, st.station_id, posted["request_id"], WAIT)
        assert got == winner
        listed = await get_json(ops_cluster, f"/api/v1/stations/{st.station_id}/logs")
        assert listed["items"][0]["sha256"] == hashlib.sha256(winner).hexdigest(), listed
    finally:
        await st.close()


async def test_three_campaign_controllers_send_each_station_one_update_firmware(tmp_path: Path) -> None:
    """Every `stations` process runs a campaign controller (ADR 016 §5): of the controllers
    that read the same campaign revision only one may write it and send, so each station
    gets its UpdateFirmware once."""
    c = new_cluster(tmp_path, roles=(), extra_env={"CSMS_CAMPAIGN_TICK_S": "0.1"})
    tasks: list[asyncio.Task[bool]] = []
    try:
        c.spawn("gateway-0", "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": "gateway-0"})
        for name in ("stations-a", "stations-b", "stations-c"):
            c.spawn(name, "stations")
        c.spawn("sessions", "sessions")
        c.spawn("api", "api", "CSMS_API_PORT")
        for proc in list(c.procs.values()):
            c.wait_ready(proc)
        specs = []
        for i in range(12):
            sid = f"{uid()}C{i}"
            spec = StationSpec(station_id=sid, password=await registered(c, sid), protocol="2.0.1", url=c.ocpp_url("gateway-0"),
                               id_token=TOKEN, sessions=0, hold_s=600, firmware_step_s=0.05)
            specs.append(spec)
            tasks.append(asyncio.create_task(run_station(spec, Stats())))
        for spec in specs:
            await station_where(c, spec.station_id, lambda b: b["connection"]["connected"] and b.get("boot") is not None,
                                f"{spec.station_id} connected and booted", WAIT)
        ids = []
        for k in range(4):
            status, campaign = await c.api("POST", "/api/v1/firmware-campaigns", {
                "stations": [s.station_id for s in specs[k * 3:(k + 1) * 3]], "location": f"http://fw.example/c/{k}.1.0.bin",
                "version": f"{k}.1.0", "max_in_flight": 1})
            assert status == 201, campaign
            ids.append(campaign["id"])

        async def all_done() -> list[Json] | None:
            bodies = [await get_json(c, f"/api/v1/firmware-campaigns/{cid}") for cid in ids]
            return bodies if all(b["status"] != "running" for b in bodies) else None

        finals = await until(all_done, "the four campaigns finished", 180)
        assert all(b["status"] == "completed" for b in finals), finals
        sent = {s.station_id: [a for a, _ in s.received].count("UpdateFirmware") for s in specs}
        assert set(sent.values()) == {1}, f"UpdateFirmware sent more than once: {sent}"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        c.stop_all()  # also drops the keyspace

