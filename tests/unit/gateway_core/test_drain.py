"""Gateway drain on SIGTERM (ADR 019 §4): not ready and no new upgrades at once, then the
station sockets closed 1001 spread over `CSMS_DRAIN_WINDOW_S` with jitter, so a rolling
update does not make every station of a pod reconnect in the same second. A socket that
closed by itself meanwhile is skipped. Window 0 closes everything at once (the harness's
default, and `csms run`'s unless the variable is set)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
from prometheus_client import REGISTRY

from services.gateway.service import drain_schedule
from tests.integration_inproc.gateway.harness import Gateway, start_gateway, stop_gateway
from tests.support import eventually

N = 8
WINDOW_S = 1.0


async def connected(gw: Gateway, station_id: str) -> aiohttp.ClientWebSocketResponse:
    """Connect, again if admission control answered 503 (a loaded test machine)."""

    async def attempt() -> aiohttp.ClientWebSocketResponse | None:
        try:
            return await gw.connect(station_id)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 503:
                raise
            return None

    return await eventually(attempt, 10, interval=0.2, what=f"{station_id} connected")


def draining() -> float | None:
    return REGISTRY.get_sample_value("csms_gateway_draining")


async def closed_at(ws: aiohttp.ClientWebSocketResponse) -> tuple[float, int | None]:
    """When the gateway's close reached this station, and its code."""
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return asyncio.get_running_loop().time(), ws.close_code


async def test_the_drain_spreads_the_closes_over_the_window_and_reports_not_ready(tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path, drain_window_s=WINDOW_S)
    try:
        sockets = [await connected(gw, f"CS-D{i}") for i in range(N)]
        await eventually(lambda: len(list(gw.svc.registry)) == N, 5, what=f"{N} stations registered")
        leaver = sockets.pop()  # closes by itself during the drain, in its first wait (before any close)
        leaver_conn = next(c for c in gw.svc.registry if c.station_id == "CS-D7")
        watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
        assert gw.svc.ready() and draining() == 0.0

        waits: list[tuple[float, int]] = []  # each wait of the drain, and how many closes it had started

        async def recording_sleep(delay: float) -> None:
            waits.append((delay, sum(1 for c in conns if c.sent_code is not None)))
            if len(waits) == 1:
                await leaver.close()
                await eventually(lambda: not leaver_conn.alive(), 5, what="the leaver's socket closed")
            await asyncio.sleep(delay)

        conns = list(gw.svc.registry)
        gw.svc._sleep = recording_sleep
        stopping = asyncio.create_task(gw.svc.stop())
        await eventually(lambda: draining() == 1.0, 5, what="csms_gateway_draining 1")
        assert not gw.svc.ready()

        closes = await asyncio.wait_for(asyncio.gather(*watchers), WINDOW_S + 10)
        await asyncio.wait_for(stopping, 20)
        assert {code for _, code in closes} == {1001}
        # Spread, not all at once: the drain waited most of the window between closes (waits
        # count from the previous close, so a loaded machine cannot squeeze them together),
        # and the closes were started one by one between those waits.
        assert sum(d for d, _ in waits) >= WINDOW_S / 2, waits
        started_counts = [n for _, n in waits]
        assert started_counts == sorted(started_counts) and len(set(started_counts)) >= 4, waits
        assert leaver_conn.sent_code is None  # skipped: the gateway never closed it
        assert draining() == 0.0
    finally:
        await stop_gateway(gw)


async def test_a_window_of_0_closes_every_socket_at_once(tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path, drain_window_s=0.0)
    try:
        sockets = [await connected(gw, f"CS-Z{i}") for i in range(3)]
        await eventually(lambda: len(list(gw.svc.registry)) == 3, 5, what="3 stations registered")
        watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
        await asyncio.wait_for(gw.svc.stop(), 20)
        closes = await asyncio.wait_for(asyncio.gather(*watchers), 5)
        assert {code for _, code in closes} == {1001}
    finally:
        await stop_gateway(gw)


def test_the_schedule_gives_each_socket_its_own_slot_of_the_window() -> None:
    rng = random.Random(7)
    at = drain_schedule(100, 30.0, rng)
    assert len(at) == 100 and all(i * 0.3 <= t < (i + 1) * 0.3 for i, t in enumerate(at))
    assert at[-1] - at[0] >= 15.0
    assert drain_schedule(3, 0.0, rng) == [0.0, 0.0, 0.0] and drain_schedule(0, 30.0, rng) == []
