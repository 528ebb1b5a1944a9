"""A tiny CSMS for driving the simulated station: an aiohttp WebSocket endpoint that answers
every station CALL with a fixed, schema-valid reply and records it, lets the test send raw
OCPP frames and read the raw replies, and an HTTP endpoint that takes log uploads.

It knows nothing of the real CSMS (whose station-operations endpoints are built elsewhere):
what the simulator sends is checked frame by frame, as a CSMS would receive it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from services.common.timeutil import to_ocpp, utcnow

__all__ = ["FakeCsms", "Connection", "Received"]

_REPLIES: dict[str, dict[str, Any]] = {
    "Heartbeat": {},              # currentTime is filled in
    "StatusNotification": {},
    "NotifyReport": {},
    "FirmwareStatusNotification": {},
    "SignedFirmwareStatusNotification": {},
    "LogStatusNotification": {},
    "DiagnosticsStatusNotification": {},
    "MeterValues": {},
    "TransactionEvent": {},
    "DataTransfer": {"status": "Accepted"},
    "SignCertificate": {"status": "Accepted"},
}


@dataclass
class Received:
    station: str
    connection: int               # 0 for the first connection of that station, 1 after a reboot...
    action: str
    payload: dict[str, Any]


@dataclass
class Connection:
    station: str
    index: int
    subprotocol: str
    ws: web.WebSocketResponse
    frames: list[tuple[str, str, str]]            # the FakeCsms's log, shared
    pending: dict[str, tuple[str, asyncio.Future[list[Any]]]] = field(default_factory=dict)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    authorization: str | None = None              # the Authorization header of the upgrade
    peer_cn: str | None = None                    # wss://: the CN of the client certificate presented

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 10.0) -> list[Any]:
        """Send a raw CALL; the raw CALLRESULT / CALLERROR frame."""
        unique_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = (action, future)
        await self.ws.send_str(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(future, timeout)

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The CALLRESULT payload (fails on a CALLERROR)."""
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        result: dict[str, Any] = frame[2]
        return result


def _peer_cn(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


class FakeCsms:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections: dict[str, list[Connection]] = {}
        self.uploads: dict[str, bytes] = {}
        # every frame from a station in arrival order: (station, "call" | "result", action)
        self.frames: list[tuple[str, str, str]] = []
        self.boot_status = "Accepted"
        self.datatransfer_status = "Accepted"
        self.app = web.Application()
        self.app.router.add_get("/ocpp/{station}", self._ws)
        self.app.router.add_put("/upload/{name:.*}", self._upload)
        self.app.router.add_put("/toolarge/{name:.*}", self._too_large)
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.tls = False

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve on a free loopback port; with `ssl_context`, over TLS (wss://)."""
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        self.tls = ssl_context is not None
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        for conns in self.connections.values():
            for c in conns:
                await c.ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def ocpp_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.base}/ocpp"

    @property
    def http_url(self) -> str:
        return f"http://{self.base}"

    # --- what the test reads -----------------------------------------------------------
    def calls(self, station: str, action: str | None = None) -> list[Received]:
        return [r for r in self.received if r.station == station and (action is None or r.action == action)]

    def actions(self, station: str) -> list[str]:
        return [r.action for r in self.received if r.station == station]

    def order(self, station: str) -> list[tuple[str, str]]:
        """(kind, action) of every frame the station sent, in order."""
        return [(kind, action) for s, kind, action in self.frames if s == station]

    def connection(self, station: str, index: int = -1) -> Connection | None:
        conns = self.connections.get(station, [])
        try:
            return conns[index]
        except IndexError:
            return None

    # --- handlers ----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        station = request.match_info["station"]
        ws = web.WebSocketResponse(protocols=("ocpp2.0.1", "ocpp1.6"))
        await ws.prepare(request)
        conns = self.connections.setdefault(station, [])
        conn = Connection(station, len(conns), ws.ws_protocol or "", ws, self.frames,
                          authorization=request.headers.get("Authorization"), peer_cn=_peer_cn(request))
        conns.append(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame[0] == 2:
                    _, unique_id, action, payload = frame
                    self.received.append(Received(station, conn.index, action, payload))
                    self.frames.append((station, "call", action))
                    await ws.send_str(json.dumps([3, unique_id, self._reply(conn, action)]))
                elif frame[0] in (3, 4):
                    pending = conn.pending.pop(frame[1], None)
                    if pending is not None:
                        self.frames.append((station, "result", pending[0]))
                        if not pending[1].done():
                            pending[1].set_result(frame)
        finally:
            conn.closed.set()
        return ws

    def _reply(self, conn: Connection, action: str) -> dict[str, Any]:
        now = to_ocpp(utcnow())
        if action == "BootNotification":
            return {"status": self.boot_status, "currentTime": now, "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "DataTransfer":
            return {"status": self.datatransfer_status}
        if action == "Authorize":
            info = {"status": "Accepted"}
            return {"idTagInfo": info} if conn.subprotocol == "ocpp1.6" else {"idTokenInfo": info}
        if action == "StartTransaction":
            return {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
        if action == "StopTransaction":
            return {}
        return dict(_REPLIES.get(action, {}))

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["name"]] = await request.read()
        return web.Response(status=201)

    async def _too_large(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=413, text="too large")
