"""Keepalive, bounded closes and peers that stop reading, over real sockets (ADR 017;
docs/security.md "Station connections"). Small CSMS_WS_* settings keep every test short; a
`Deaf` station did the upgrade by hand and never reads again, so whatever the gateway
sends stays on the gateway's side unless the gateway bounds it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import aiohttp
import pytest

from services.common.events import StationDisconnected
from services.common.routing import broadcast_revoke
from services.gateway import wsio
from services.gateway.connection import DEAD_SOCKETS, Connection
from tests.integration_inproc.gateway.deaf import Deaf, close_frames, ping_frames
from tests.integration_inproc.gateway.harness import PW, Gateway, basic, call, closed_with, nothing_within
from tests.support.waiting import eventually

MakeGateway = Callable[..., Awaitable[Gateway]]
QUICK = dict(ws_ping_interval_s=0.2, ws_pong_timeout_s=0.3, ws_close_timeout_s=0.5, ws_send_buffer_bytes=64 << 10)
NO_PINGS = dict(QUICK, ws_ping_interval_s=0.0)


def dead(reason: str) -> float:
    return DEAD_SOCKETS.labels(reason=reason)._value.get()


async def deaf_station(gw: Gateway, station_id: str) -> tuple[Deaf, Connection]:
    await gw.add_station(station_id)
    deaf = await Deaf.connect(gw.port, station_id, PW)
    await gw.wait_connected(station_id)
    conn = gw.svc.registry.get(station_id)
    assert isinstance(conn, Connection)
    return deaf, conn


async def without_autoping(gw: Gateway, station_id: str) -> aiohttp.ClientWebSocketResponse:
    """A client that sees the gateway's pings (and must answer them itself)."""
    await gw.add_station(station_id)
    ws = await gw.session.ws_connect(gw.url(station_id), protocols=("ocpp1.6",), headers={"Authorization": basic(station_id, PW)},
                                     autoping=False)
    gw.sockets.append(ws)
    await gw.wait_connected(station_id)
    return ws


async def test_a_peer_that_stops_reading_is_aborted_and_sends_to_it_fail_fast(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    deaf, conn = await deaf_station(gw, "CP-FLOOD")
    transport = wsio.transport_of(conn.ws)
    assert transport is not None
    before = dead("send_buffer")
    frame = '"' + "x" * 16_000 + '"'
    results = []
    started = time.monotonic()
    for _ in range(2000):  # ~32 MB if nothing stopped it
        async with asyncio.timeout(1.0):  # never a wait on a drain
            ok = await conn.send(frame)
        results.append(ok)
        if not ok:
            break
    assert results[-1] is False, f"{len(results)} frames of 16 kB sent to a peer that reads nothing"
    assert time.monotonic() - started < 5.0
    await eventually(lambda: "CP-FLOOD" not in gw.svc.registry, 3.0, what="the flooded socket to be unregistered")
    gone, _ = await deaf.gone(3.0)
    assert gone, "the gateway kept the TCP connection of a peer that stopped reading"
    assert transport.is_closing() and transport.get_write_buffer_size() == 0  # nothing pinned
    assert dead("send_buffer") == before + 1
    async with asyncio.timeout(0.5):
        assert await conn.send(frame) is False  # a send to it fails at once
    deaf.close()


async def test_a_command_to_a_peer_that_stops_reading_fails_fast(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    deaf, conn = await deaf_station(gw, "CP-STUCK")
    frame = '"' + "x" * 16_000 + '"'
    while await conn.send(frame):  # until the buffer bound aborts it
        pass
    from services.gateway.publisher import ConnectionGone

    async with asyncio.timeout(1.0):
        try:
            await conn.call("Reset", {"type": "Soft"}, timeout=30.0)
        except ConnectionGone:
            pass
        else:
            raise AssertionError("a CALL to an aborted socket was answered")
    deaf.close()


async def test_a_fenced_socket_whose_peer_stopped_reading_is_gone_within_the_close_timeout(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    deaf, old = await deaf_station(gw, "CP-FENCE")
    transport = wsio.transport_of(old.ws)
    assert transport is not None
    frame = '"' + "x" * 4_000 + '"'
    while wsio.buffered(old.ws) == 0:  # unsent bytes below the bound: a close frame queues behind them
        assert await old.send(frame)
    newer = await gw.connect("CP-FENCE")
    await eventually(lambda: gw.svc.registry.get("CP-FENCE") is not old, 2.0, what="the newer socket to win")
    started = time.monotonic()
    gone, _ = await deaf.gone(3.0)
    assert gone, "a fenced socket outlived the close timeout"
    assert time.monotonic() - started < 2.0
    assert transport.is_closing() and transport.get_write_buffer_size() == 0
    assert not newer.closed
    assert await call(newer, "Heartbeat", {}) and gw.svc.registry.get("CP-FENCE") is not old
    deaf.close()


async def test_a_revocation_closes_the_socket_of_a_peer_that_never_reads_within_a_second(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    deaf, conn = await deaf_station(gw, "CP-REV")
    revoked_at = time.monotonic()
    await broadcast_revoke(gw.bus, "CP-REV", reason="disabled", close=True, issuer="api", clock=gw.rt.clock)
    await eventually(lambda: "CP-REV" not in gw.svc.registry, 1.0, what="the revoked socket to be closed")
    assert time.monotonic() - revoked_at < 1.0
    gone, _ = await deaf.gone(2.0)
    assert gone
    ended = await gw.wait_event(lambda e: e.station_id == "CP-REV" and isinstance(e.body, StationDisconnected))
    assert ended.body.close_code == 1008
    deaf.close()


async def test_a_revocation_tells_a_reading_station_why(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    ws = await gw.connect("CP-REV2")
    await gw.wait_connected("CP-REV2")
    await broadcast_revoke(gw.bus, "CP-REV2", reason="password reset", close=True, issuer="api", clock=gw.rt.clock)
    assert await closed_with(ws, 2.0) == 1008
    assert ws.close_code == 1008
    await eventually(lambda: "CP-REV2" not in gw.svc.registry, 2.0, what="the registry to forget it")


async def test_an_invalidation_leaves_the_socket_open(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**NO_PINGS)
    ws = await gw.connect("CP-ROT")
    await gw.wait_connected("CP-ROT")
    await broadcast_revoke(gw.bus, "CP-ROT", reason="rotated", close=False, issuer="api", clock=gw.rt.clock)
    assert await nothing_within(ws, 0.5)
    assert (await call(ws, "Heartbeat", {}))[0] == 3


async def test_a_station_that_does_not_answer_pings_is_closed_1011(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**QUICK)
    before = dead("ping_timeout")
    deaf, conn = await deaf_station(gw, "CP-MUTE")
    started = time.monotonic()
    await eventually(lambda: "CP-MUTE" not in gw.svc.registry, 3.0, what="the silent socket to be closed")
    # one ping after 0.2 s of silence, closed 0.3 s later
    assert 0.4 <= time.monotonic() - started < 1.5
    gone, data = await deaf.gone(2.0)
    assert gone
    ended = await gw.wait_event(lambda e: e.station_id == "CP-MUTE" and isinstance(e.body, StationDisconnected))
    assert ended.body.close_code == 1011
    assert dead("ping_timeout") == before + 1
    # (what reached the client is lost if the abort's reset came first; if not, it is one ping and the close)
    if data:
        assert ping_frames(data) == 1 and close_frames(data) in ([], [(1011, "ping timeout")])
    deaf.close()


async def test_a_station_that_answers_pings_stays_connected(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**QUICK)
    ws = await without_autoping(gw, "CP-PONG")  # see the pings, answer them by hand
    pings = 0
    deadline = time.monotonic() + 1.5  # five ping periods
    while time.monotonic() < deadline:
        try:
            msg = await ws.receive(timeout=deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        assert msg.type == aiohttp.WSMsgType.PING, msg
        pings += 1
        await ws.pong(msg.data)
    assert pings >= 4
    assert "CP-PONG" in gw.svc.registry
    assert (await call(ws, "Heartbeat", {}))[0] == 3


async def test_an_autoping_client_stays_connected_and_a_busy_one_is_not_pinged(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**QUICK)
    ws = await gw.connect("CP-AUTO")
    await gw.wait_connected("CP-AUTO")
    try:  # aiohttp answers the pings while receiving (its own timeout restarts at each ping)
        async with asyncio.timeout(1.2):
            msg = await ws.receive()
        raise AssertionError(f"unexpected {msg}")
    except TimeoutError:
        pass
    assert "CP-AUTO" in gw.svc.registry
    # a station that talks more often than the period is never pinged
    busy = await without_autoping(gw, "CP-BUSY")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        reply = await call(busy, "Heartbeat", {})  # raises on anything but a TEXT frame (a PING)
        assert reply[0] == 3
        await asyncio.sleep(0.05)
    assert "CP-BUSY" in gw.svc.registry


async def test_a_stations_own_ping_interval_overrides_the_gateways(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(**QUICK)
    shared = gw.svc.web.shared
    ws_probe = await gw.connect("CP-OVR")
    await gw.wait_connected("CP-OVR")
    conn = gw.svc.registry.get("CP-OVR")
    assert isinstance(conn, Connection)
    assert conn.ping_s == 0.2  # the gateway's
    assert Connection(shared, conn.ws, "X", conn.version, 1, ping_interval_s=0).ping_s == 0.0
    assert Connection(shared, conn.ws, "X", conn.version, 1, ping_interval_s=7.5).ping_s == 7.5
    await ws_probe.close()


async def test_a_revocation_waits_for_the_stations_close_reply(make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    """The close frame goes out at once, and the TCP connection stays open until the
    station's close reply (a station that answers late still completes the handshake and
    sees our code, not 1006); then the gateway ends the connection promptly."""
    gw = await make_gateway(**dict(NO_PINGS, ws_close_timeout_s=3.0))
    deaf, conn = await deaf_station(gw, "CP-LATE")
    caplog.set_level(logging.INFO, logger="csms.gateway")
    await broadcast_revoke(gw.bus, "CP-LATE", reason="disabled", close=True, issuer="api", clock=gw.rt.clock)
    data = await deaf.read_until_close(1.0)
    assert close_frames(data) == [(1008, "revoked: disabled")]
    gone, _ = await deaf.gone(0.4)  # the station takes its time to answer
    assert not gone, "the gateway dropped the TCP connection before the station's close reply"
    await deaf.send_close(1008)
    replied = time.monotonic()
    gone, _ = await deaf.gone(1.0)
    assert gone and time.monotonic() - replied < 0.5
    ended = await gw.wait_event(lambda e: e.station_id == "CP-LATE" and isinstance(e.body, StationDisconnected))
    assert ended.body.close_code == 1008
    await eventually(lambda: "station=CP-LATE disconnected (close code 1008)" in caplog.text, 2.0, what="the disconnect line")
    deaf.close()


async def test_a_close_the_peer_never_answers_is_aborted_counted_and_logged_with_our_code(
        make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    gw = await make_gateway(**NO_PINGS)  # close timeout 0.5 s
    deaf, conn = await deaf_station(gw, "CP-NOREPLY")
    before = dead("close_timeout")
    caplog.set_level(logging.INFO, logger="csms.gateway")
    await broadcast_revoke(gw.bus, "CP-NOREPLY", reason="disabled", close=True, issuer="api", clock=gw.rt.clock)
    gone, _ = await deaf.gone(2.0)
    assert gone
    await eventually(lambda: "CP-NOREPLY" not in gw.svc.registry, 2.0, what="the socket to be unregistered")
    assert dead("close_timeout") == before + 1
    await eventually(lambda: "station=CP-NOREPLY disconnected (close code 1008)" in caplog.text, 2.0, what="the disconnect line")
    deaf.close()
