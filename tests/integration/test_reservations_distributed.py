"""Reservations (issue 10, ADR 018 §3) on Kafka + Cassandra: a gateway, the sessions and
stations processors and the API as separate `csms <role>` processes. The same scenarios as
tests/e2e/test_reservations_e2e.py, where the embedded mode shares one process: here the
API and the stations-drivers stage are two processes writing the same reservation
documents with Cassandra's compare-and-set, and every fold crosses Kafka."""

from __future__ import annotations

import random
from typing import Any, Iterator

import pytest

from services.simulator.cli import station_password
from tests.e2e.test_reservations_e2e import Station, ahead, start_with
from tests.integration.conftest import Cluster, new_cluster
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import V16, V201, boot, openapi_checked, until

pytestmark = pytest.mark.infra

WAIT = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = new_cluster(tmp_path_factory.mktemp("reservations-cluster"), roles=(), extra_env={
        "CSMS_RESERVATION_TICK_S": "0.5",
        "CSMS_COMMAND_TIMEOUT": "20",
    })
    try:
        c.spawn("gateway-0", "gateway", "CSMS_OCPP_PORT", {"CSMS_GATEWAY_ID": "gateway-0"})
        c.spawn("sessions", "sessions")
        c.spawn("stations", "stations")
        c.spawn("api", "api", "CSMS_API_PORT")
        for proc in list(c.procs.values()):
            c.wait_ready(proc)
        yield c
    finally:
        c.stop_all()
    for proc in c.procs.values():
        assert "Traceback" not in proc.log(), f"{proc.role}:\n{proc.log()[-6000:]}"


async def connected(c: Cluster, sid: str, protocol: str, token: str) -> Station:
    password = station_password("it-resv", sid)
    await c.api("POST", "/api/v1/stations", {"id": sid, "password": password}, expect=201)
    st = RawStation(c.ocpp_url("gateway-0"), sid, password, protocol)
    await st.connect()
    await boot(st)
    return Station(st)


async def reserve(c: Cluster, sid: str, protocol: str, token: str, seconds: float) -> Any:
    where = {"connector_id": 1} if protocol == V16 else {"evse_id": 1}
    status, body = await c.api("POST", "/api/v1/reservations",
                               {"station_id": sid, "id_token": token, "expires_at": ahead(seconds), **where}, expect=201)
    await openapi_checked(c, "POST", "/api/v1/reservations", status, body)  # type: ignore[arg-type]
    return body


async def reservation_where(c: Cluster, rid: int, status: str) -> Any:
    async def probe() -> Any:
        _, body = await c.api("GET", f"/api/v1/reservations/{rid}", expect=200)
        return body if body["status"] == status else None
    return await until(probe, f"reservation {rid} {status}", timeout=WAIT)


@pytest.mark.parametrize("protocol", [V16, V201])
async def test_used_expired_cancelled_and_removed_across_processes(cluster: Cluster, protocol: str) -> None:
    sid = "ITRES" + format(random.getrandbits(32), "08X")
    token = "T" + sid[-10:]
    station = await connected(cluster, sid, protocol, token)
    try:
        used = await reserve(cluster, sid, protocol, token, 600)
        assert used["status"] == "Accepted", used
        tx = await start_with(station, protocol, token, used["id"], sid)
        body = await reservation_where(cluster, used["id"], "Used")
        assert body["transaction_id"] == tx and body["session_id"], body

        lapsing = await reserve(cluster, sid, protocol, token, 3)
        assert lapsing["status"] == "Accepted", lapsing
        expired = await reservation_where(cluster, lapsing["id"], "Expired")
        assert expired["history"][-1]["cause"] == "expiry", expired

        doomed = await reserve(cluster, sid, protocol, token, 600)
        _, cancelled = await cluster.api("DELETE", f"/api/v1/reservations/{doomed['id']}", expect=200)
        assert cancelled["status"] == "Cancelled" and station.sent("CancelReservation") == [{"reservationId": doomed["id"]}]

        if protocol == V201:
            removed = await reserve(cluster, sid, protocol, token, 600)
            await station.st.call("ReservationStatusUpdate", {"reservationId": removed["id"], "reservationUpdateStatus": "Removed"})
            await reservation_where(cluster, removed["id"], "Removed")

        _, mine = await cluster.api("GET", f"/api/v1/tokens/{token}/reservations", expect=200)
        statuses = {r["id"]: r["status"] for r in mine["items"]}
        assert statuses[used["id"]] == "Used" and statuses[lapsing["id"]] == "Expired" and statuses[doomed["id"]] == "Cancelled"
    finally:
        await station.st.close()
