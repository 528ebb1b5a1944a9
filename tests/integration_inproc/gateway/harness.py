"""An in-process gateway on 127.0.0.1:0 with a MemoryBus and a SQLite store, and a small
OCPP-J test client on aiohttp's WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import errno
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import aiohttp
import orjson

from services.common import codec, passwords, topics
from services.common.bus.memory import MemoryBus
from services.common.config import Settings
from services.common.events import Envelope
from services.common.runtime import Runtime, bootstrap
from services.common.store.port import Station
from services.common.store.sqlite import SqliteStore
from services.gateway.publisher import Publisher
from services.gateway.service import GatewayService
from services.gateway.wiring import build_gateway
from tests.support.waiting import eventually

PEPPER = b"test-pepper"
PW = "station-password-0123456789"


FREE: Any = object()   # start_gateway(ocpp_tls_port=FREE): any free port


def free_port() -> int:
    """A port nothing listens on now (for listeners where 0 means "none")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Gateway:
    rt: Runtime
    svc: GatewayService
    bus: MemoryBus
    store: SqliteStore
    session: aiohttp.ClientSession
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.svc.port

    @property
    def publisher(self) -> Publisher:
        return self.svc.web.shared.publisher

    def url(self, station_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/ocpp/{station_id}"

    def tls_url(self, station_id: str) -> str:
        """The `wss://` listener (started with tls_cert, tls_key and an ocpp_tls_port)."""
        return f"https://127.0.0.1:{self.svc.tls_port}/ocpp/{station_id}"

    async def add_station(self, station_id: str, password: str = PW, **kw: Any) -> Station:
        st = Station(
            id=station_id,
            password_hash=passwords.hash_password(password),
            password_fingerprint=passwords.fingerprint(PEPPER, station_id, password),
            **kw,
        )
        await self.store.put_station(st)
        return st

    async def connect(
        self, station_id: str, *, protocols: tuple[str, ...] = ("ocpp1.6",), password: str | None = PW,
        user: str | None = None, add: bool = True, **kw: Any,
    ) -> aiohttp.ClientWebSocketResponse:
        if add and await self.store.get_station(station_id) is None:
            await self.add_station(station_id)
        headers = {} if password is None else {"Authorization": basic(user or station_id, password)}
        ws = await self.session.ws_connect(self.url(station_id), protocols=protocols, headers=headers, autoping=True, **kw)
        self.sockets.append(ws)
        return ws

    def events(self, pred: Callable[[Envelope], bool] = lambda e: True) -> list[Envelope]:
        out = []
        for part in self.bus._topic(topics.EVENTS):
            for rec in part.records:
                env = codec.decode_event(rec.value, codec.headers_dict(rec.headers))
                if pred(env):
                    out.append(env)
        return out

    async def wait_event(self, pred: Callable[[Envelope], bool], timeout: float = 5.0) -> Envelope:
        found = await eventually(lambda: self.events(pred), timeout, what="the event to be published")
        return found[-1]

    def commands(self, partition: int) -> list[codec.Command]:
        return [codec.decode_command(r.value) for r in self.bus._topic(topics.COMMANDS)[partition].records]

    async def send_command(self, station_id: str, command_type: str, params: dict[str, Any], *, partition: int = 0, ttl_s: float = 10.0, hops: int = 0,
                           fence_epoch: int | None = None) -> str:
        now = self.rt.clock()
        cmd = codec.Command(
            command_id=str(uuid.uuid4()), station_id=station_id, command_type=command_type,
            params_json=orjson.dumps(params).decode(), issued_at=now, expires_at=now + timedelta(seconds=ttl_s), hops=hops,
            fence_epoch=fence_epoch,
        )
        await self.bus.publish(topics.COMMANDS, station_id, codec.encode_command(cmd), codec.command_headers(cmd), partition=partition)
        return cmd.command_id

    async def wait_connected(self, station_id: str, timeout: float = 5.0) -> None:
        await eventually(lambda: station_id in self.svc.registry, timeout, what=f"{station_id} to be registered")


async def start_gateway(tmp: Path, *, bus_options: dict[str, Any] | None = None, **settings: Any) -> Gateway:
    """`bus_options`: MemoryBus keyword arguments (e.g. a smaller `max_record_bytes` than the
    settings', to exercise the bus's own size check behind the gateway's). A port setting
    given as `FREE` (ocpp_port, ocpp_tls_port, metrics_port: where 0 means "none") gets a
    free port, picked again if another process takes it before the gateway binds it."""
    for attempt in range(5):
        chosen = {k: (free_port() if v is FREE else v) for k, v in settings.items()}
        try:
            return await _start_gateway(tmp / str(attempt), bus_options, chosen)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not any(v is FREE for v in settings.values()) or attempt == 4:
                raise
    raise AssertionError("unreachable")


async def _start_gateway(tmp: Path, bus_options: dict[str, Any] | None, settings: dict[str, Any]) -> Gateway:
    tmp.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = dict(
        host="127.0.0.1", ocpp_port=0, gateway_id="gateway-0", max_frame_bytes=64 * 1024,
        events_partitions=4, commands_partitions=4, handshake_timeout_s=2.0,
        drain_window_s=0.0,  # stop() closes every socket at once (the drain has its own tests)
    )
    base.update(settings)
    store = SqliteStore(f"sqlite:///{tmp}/t.db")
    bus = MemoryBus(**(bus_options or {}))
    rt = bootstrap(Settings(**base), bus=bus, store=store, pepper=PEPPER)
    await store.start()
    await store.migrate()
    await rt.start()
    svc = build_gateway(rt)
    try:
        await svc.start()
    except BaseException:
        await rt.close()
        raise
    return Gateway(rt, svc, bus, store, aiohttp.ClientSession())


async def stop_gateway(gw: Gateway) -> None:
    for ws in gw.sockets:
        if not ws.closed:
            await ws.close()
    await gw.session.close()
    await gw.svc.stop()
    await gw.rt.close()


async def call(ws: aiohttp.ClientWebSocketResponse, action: str, payload: Any, mid: str | None = None, timeout: float = 5.0) -> list[Any]:
    mid = mid or uuid.uuid4().hex[:12]
    await ws.send_str(orjson.dumps([2, mid, action, payload]).decode())
    return await recv(ws, timeout)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, ws.close_code)
    return orjson.loads(msg.data)


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            return ws.close_code if ws.close_code is not None else (msg.data if isinstance(msg.data, int) else None)
    raise AssertionError("socket not closed in time")


async def nothing_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> bool:
    try:
        msg = await ws.receive(timeout=seconds)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected message {msg}")


async def raw_http(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as-is (no URL normalisation) and read the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), timeout)
    finally:
        writer.close()


def upgrade_request(path: str, station_id: str = "CP1", password: str = PW, extra: str = "", protocols: str = "ocpp1.6") -> bytes:
    auth = basic(station_id, password)
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {protocols}\r\nAuthorization: {auth}\r\n{extra}\r\n"
    ).encode("latin-1")


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])
