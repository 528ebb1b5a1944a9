"""services/gateway/wsio.py relies on aiohttp internals (the request protocol's data
callback, the writer's frame writer, the request's transport): these tests fail if an
aiohttp upgrade moves them, and pin `OcppWebSocket.close`'s bound."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from services.gateway import wsio
from services.gateway.app import OcppWebSocket
from tests.support.waiting import eventually

Serve = Callable[[Callable[[OcppWebSocket], Awaitable[None]]], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`url = await serve(body)`: a server whose one route runs `body(ws)` on a prepared OcppWebSocket."""
    runners: list[web.AppRunner] = []

    async def start(body: Callable[[OcppWebSocket], Awaitable[None]]) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            ws = OcppWebSocket()
            await ws.prepare(request)
            await body(ws)
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, handler_cancellation=False)  # as the gateway runs it
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/"

    yield start
    for r in runners:
        await r.cleanup()


async def test_data_callback_ping_buffer_and_abort(serve: Serve) -> None:
    heard: list[int] = []
    ready: asyncio.Future[OcppWebSocket] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def body(ws: OcppWebSocket) -> None:
        assert wsio.transport_of(ws) is not None
        assert wsio.on_data(ws, lambda: heard.append(1))
        assert not wsio.on_data(ws, lambda: None)  # one hook per socket
        ready.set_result(ws)
        async for _ in ws:
            pass
        done.set()

    url = await serve(body)
    async with aiohttp.ClientSession() as http:
        client = await http.ws_connect(url, autoping=False)
        ws = await asyncio.wait_for(ready, 5)
        await client.send_str("hello")
        await eventually(lambda: heard, 5.0, what="the data callback")
        assert wsio.buffered(ws) == 0
        assert wsio.ping_nowait(ws)
        msg = await client.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.PING
        wsio.abort(ws)
        msg = await client.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
        await asyncio.wait_for(done.wait(), 5)  # the server's reader woke up
        assert not wsio.ping_nowait(ws)
        assert wsio.buffered(ws) == 0


async def test_a_close_the_peer_never_answers_is_aborted_after_the_timeout(serve: Serve) -> None:
    took: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def body(ws: OcppWebSocket) -> None:
        ws.close_timeout_s = 0.3
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ws.close(code=1008, message=b"revoked: test")
        took.set_result(loop.time() - t0)
        assert ws.close_code == 1008  # what we closed with, though the peer never answered

    url = await serve(body)
    host, port = url.split("/")[2].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        elapsed = await asyncio.wait_for(took, 5)
        assert 0.25 <= elapsed < 1.0
    finally:
        sock.close()


def test_the_internals_a_close_beside_the_reader_relies_on_exist() -> None:
    """OcppWebSocket._close_beside_reader (a close from another task that waits for the
    peer's reply, tests/integration_inproc/gateway/test_slow_peers.py) reads these."""
    ws = OcppWebSocket()
    for name in ("_waiting", "_closing", "_closed", "_writer", "_payload_writer", "_reader"):
        assert hasattr(ws, name), name
    for name in ("_set_closed", "_close_transport"):
        assert callable(getattr(ws, name, None)), name
    assert ws._waiting is False and ws._closing is False and ws._closed is False
