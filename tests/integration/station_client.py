"""A minimal raw OCPP-J station for integration tests: explicit frames, explicit reconnects.

Unlike the simulator it never hides what went over the wire: `call()` returns the raw
answer or raises `CallTimeout`, and every CSMS->station CALL is recorded and answered
with a plausible "Accepted" payload.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from typing import Any

import aiohttp

_ANSWERS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]},
    "UnlockConnector": {"status": "Unlocked"},
    "GetVariables": {"getVariableResult": []},
}


class CallTimeout(Exception):
    pass


class CallError(Exception):
    def __init__(self, frame: list[Any]) -> None:
        super().__init__(frame)
        self.frame = frame


class RawStation:
    def __init__(self, base_url: str, station_id: str, password: str, protocol: str = "ocpp1.6") -> None:
        self.base_url, self.station_id, self.password, self.protocol = base_url, station_id, password, protocol
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, base_url: str | None = None) -> None:
        if base_url:
            self.base_url = base_url
        self._http = aiohttp.ClientSession()
        auth = "Basic " + base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        self._ws = await self._http.ws_connect(f"{self.base_url}/{self.station_id}", protocols=(self.protocol,), headers={"Authorization": auth})
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame[0] == 2:
                    _, uid, action, payload = frame
                    self.received.append((action, payload))
                    await self._ws.send_str(json.dumps([3, uid, _ANSWERS.get(action, {"status": "Accepted"})]))
                elif frame[0] in (3, 4):
                    fut = self._pending.get(frame[1])
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
        finally:
            self.closed.set()

    async def call(self, action: str, payload: dict[str, Any], *, timeout: float = 10.0, unique_id: str | None = None) -> dict[str, Any]:
        assert self._ws is not None
        uid = unique_id or f"{self.station_id}-{next(self._ids)}"
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[uid] = fut
        await self._ws.send_str(json.dumps([2, uid, action, payload]))
        try:
            frame = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(f"{action} {uid}: no answer in {timeout}s") from None
        if frame[0] == 4:
            raise CallError(frame)
        return frame[2]  # type: ignore[no-any-return]

    async def wait_answer(self, unique_id: str, timeout: float) -> list[Any]:
        """Wait for the answer to an earlier CALL whose `call()` timed out."""
        fut = self._pending.get(unique_id)
        if fut is None:
            raise KeyError(unique_id)
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()
