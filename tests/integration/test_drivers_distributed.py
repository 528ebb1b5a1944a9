"""Drivers and energy (issue 10, ADR 018 §2 and §5) on Kafka + Cassandra: a gateway, the
sessions, stations and smart-charging processors and the API as separate `csms <role>`
processes. The same scenarios as tests/e2e/test_local_lists_e2e.py and
tests/e2e/test_smart_charging_energy_e2e.py, where the embedded mode shares one process:
here the API writes the desired list to Cassandra, the `stations` process's sync loop
(CSMS_LOCAL_LIST_TICK_S=0.5) sends it through Kafka and the gateway, and the station's
outside limits and EV needs cross Kafka to the `smart-charging` process.

Raw OCPP-J stations (tests/support/ocpp_raw.py: hand-built frames, no simulator):
- local list: a 1.6 station saying `SendLocalListMaxLength` = 1000 gets an explicit list
  of 2,500 entries as exactly three SendLocalList (Full 1000, Differential 1000,
  Differential 500, one version), GetLocalListVersion confirms it, and the API shows it
  confirmed (`in_sync`);
- smart charging: a 2.0.1 station in a 32 A site gets a 32 A TxProfile for its session;
  NotifyChargingLimit 10 A on its EVSE brings a profile of at most 10 A; ClearedChargingLimit
  gives 32 A back; NotifyEVChargingNeeds with a departure time and an energy amount is
  answered Accepted and a TxProfile for that transaction, ending at the departure, follows
  (a station in no site is answered Rejected).
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import pytest

from services.simulator.cli import station_password
from tests.e2e.test_local_lists_e2e import ListStation
from tests.e2e.test_smart_charging_energy_e2e import (
    TOKEN, V16, V201, boot, latest_limit, now_ocpp, schedule_of, start_201, tx_profiles,
)
from tests.integration.conftest import Cluster, new_cluster
from tests.support.ocpp_raw import RawStation
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

WAIT = 90.0   # Kafka consumer groups join and Cassandra writes, on a busy machine
Json = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = new_cluster(tmp_path_factory.mktemp("drivers-cluster"), roles=(), extra_env={"CSMS_COMMAND_TIMEOUT": "20"})
    try:
        c.spawn("gateway-0", "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": "gateway-0"})
        c.spawn("sessions", "sessions")
        c.spawn("stations", "stations", extra={"CSMS_LOCAL_LIST_TICK_S": "0.5", "CSMS_LOCAL_LIST_RETRY_S": "1"})
        c.spawn("smart-charging", "smart-charging")
        c.spawn("api", "api", "CSMS_API_PORT")
        for proc in list(c.procs.values()):
            c.wait_ready(proc)
        yield c
    finally:
        c.stop_all()  # also drops the keyspace
    for proc in c.procs.values():
        assert "Traceback" not in proc.log(), f"{proc.role}:\n{proc.log()[-6000:]}"


def uid(prefix: str) -> str:
    return prefix + format(random.getrandbits(32), "08X")


async def registered(c: Cluster, sid: str, **extra: Any) -> str:
    password = station_password("it-drivers", sid)
    await c.api("POST", "/api/v1/stations", {"id": sid, "password": password, **extra}, expect=201)
    return password


class ClusterListStation(ListStation):
    """tests/e2e's ListStation (a raw station keeping its local list the way the
    specification says), connected to the cluster's gateway instead of `csms run`."""

    def __init__(self, c: Cluster, sid: str, password: str, protocol: str, max_len: int) -> None:  # noqa: super's takes a Server
        self.raw = RawStation(c.ocpp_url("gateway-0"), sid, password, protocol)
        self.version = 0
        self.entries: dict[str, Any] = {}
        self.answers: list[str | None] = []
        self.max_len = max_len
        self.raw.handlers.update({"SendLocalList": self.send_local_list, "GetLocalListVersion": self.get_version,
                                  "GetConfiguration": self.get_configuration, "GetVariables": self.get_variables})


def shape(p: Json) -> tuple[str, int, int]:
    return p["updateType"], len(p.get("localAuthorizationList", [])), p["listVersion"]


async def test_a_16_station_gets_2500_entries_in_three_messages_across_processes(cluster: Cluster) -> None:
    sid = uid("ITLL")
    station = ClusterListStation(cluster, sid, await registered(cluster, sid), V16, 1000)
    entries = [{"id_token": f"T{i:05d}", "status": "Accepted"} for i in range(2500)]
    status, view = await cluster.api("PUT", f"/api/v1/stations/{sid}/local-list", {"entries": entries})
    assert status == 201 and view["desired_version"] == 1, view
    await station.start()
    try:
        async def confirmed() -> Json | None:
            _, body = await cluster.api("GET", f"/api/v1/stations/{sid}/local-list", expect=200)
            return body if body["status"] == "in_sync" and body["confirmed_version"] == 1 else None

        view = await eventually(confirmed, WAIT, interval=0.25, what=f"{sid} confirms version 1",
                                detail=lambda: (station.raw.actions_received(), cluster.procs["stations"].log()[-3000:]))
        assert view["max_per_message"] == 1000 and view["entry_count"] == 2500, view
        assert view["desired_version"] == 1, view
        assert len(station.sent("GetConfiguration")) == 1, station.raw.actions_received()
        assert [shape(p) for p in station.sent()] == [("Full", 1000, 1), ("Differential", 1000, 1), ("Differential", 500, 1)]
        assert len(station.entries) == 2500 and station.version == 1
        assert station.entries["T02499"] == {"status": "Accepted"}
        assert station.sent("GetLocalListVersion"), station.raw.actions_received()
        assert station.raw.actions_received()[-1] == "GetLocalListVersion", station.raw.actions_received()
        assert not station.raw.job_errors, station.raw.job_errors
    finally:
        await station.raw.close()


def allocation_lines(c: Cluster, site_id: str, marker: str) -> list[str]:
    return [ln for ln in c.procs["smart-charging"].log().splitlines() if f"site={site_id} allocation after" in ln and marker in ln]


async def test_outside_limit_and_ev_needs_reach_the_smart_charging_process(cluster: Cluster) -> None:
    site_id = uid("ITSITE")
    await cluster.api("POST", "/api/v1/sites", {"id": site_id, "grid_limit_a": 32, "phases": 3}, expect=201)
    await cluster.api("POST", "/api/v1/tokens", {"id_token": TOKEN, "status": "Accepted"}, expect=(200, 201, 409))
    sid, lone_id = uid("ITSC"), uid("ITLONE")
    st = RawStation(cluster.ocpp_url("gateway-0"), sid, await registered(cluster, sid, site_id=site_id), V201)
    lone = RawStation(cluster.ocpp_url("gateway-0"), lone_id, await registered(cluster, lone_id), V201)

    def seen() -> object:
        return tx_profiles(st), cluster.procs["smart-charging"].log()[-3000:]

    await st.connect()
    await lone.connect()
    try:
        await boot(st)
        await boot(lone)
        tx_id = "tx-" + sid.lower()
        await start_201(st, tx_id)
        await eventually(lambda: latest_limit(st) == 32.0, WAIT, interval=0.1, what="32 A for the site's only session", detail=seen)
        assert tx_profiles(st)[-1]["transactionId"] == tx_id

        # an outside limit of 10 A on the EVSE: a new profile of at most 10 A
        before = len(tx_profiles(st))
        await st.call("NotifyChargingLimit", {
            "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": False}, "evseId": 1,
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}],
        })
        await eventually(lambda: len(tx_profiles(st)) > before and (latest_limit(st) or 99.0) <= 10.0, WAIT, interval=0.1,
                         what="a profile of at most 10 A under the outside limit", detail=seen)
        assert tx_profiles(st)[-1]["transactionId"] == tx_id
        assert latest_limit(st) == 10.0
        lines = await eventually(lambda: allocation_lines(cluster, site_id, "ChargingLimitSet"), WAIT, interval=0.1,
                                 what="the allocation after the limit")
        assert "total 10 A of 32 A" in lines[-1], lines[-1]

        await st.call("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1})
        await eventually(lambda: latest_limit(st) == 32.0, WAIT, interval=0.1, what="32 A again after the clear", detail=seen)

        # EV charging needs: Accepted, then a TxProfile for that transaction ending at departure
        needs = {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "AC_three_phase", "departureTime": now_ocpp(2 * 3600),
                "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 16, "evMaxVoltage": 400},
            },
        }
        assert await st.call("NotifyEVChargingNeeds", needs) == {"status": "Accepted"}

        def shaped() -> Json | None:
            return next((p for p in tx_profiles(st) if "duration" in schedule_of(p)), None)

        profile = await eventually(shaped, WAIT, interval=0.1, what="a TxProfile shaped by the EV's needs", detail=seen)
        assert profile is not None
        assert profile["transactionId"] == tx_id and profile["chargingProfilePurpose"] == "TxProfile"
        schedule = schedule_of(profile)
        # 20 kWh in 2 h on 3 phases at 230 V: 14.4 A (under the EV's 16 A), until departure
        assert schedule["chargingRateUnit"] == "A"
        assert schedule["chargingSchedulePeriod"][0]["limit"] == 14.4, schedule
        assert 6500 <= schedule["duration"] <= 7200, schedule

        # a station in no site is told no schedule will come
        await start_201(lone, "tx-" + lone_id.lower())
        assert await lone.call("NotifyEVChargingNeeds", needs) == {"status": "Rejected"}
        assert not st.job_errors and not lone.job_errors, (st.job_errors, lone.job_errors)
    finally:
        await st.close()
        await lone.close()
