"""A raw OCPP-J station for end-to-end tests: hand-built JSON frames over aiohttp.

Neither the project's simulator nor the ocpp library is involved, so a test sees exactly
what went over the wire and cannot be fooled by a shared mistake in the library's
camelCase conversion or schemas. `call()` sends one CALL and returns the CALLRESULT
payload (or raises `CallErrorReceived` with the CALLERROR frame).

CSMS -> station CALLs are recorded in `received` and answered by `handlers[action]` (an
async function of the payload returning the answer payload), else by a plausible default
("Accepted"). A handler may queue follow-up work with `after_reply(job)`: the job runs
once the answer has gone out, so it may itself `call()` the CSMS (a NotifyReport after a
GetBaseReport, an upload and a LogStatusNotification after a GetLog) the way a station
does.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import itertools
import json
from typing import Any, Awaitable, Callable

import aiohttp

__all__ = ["RawStation", "CallErrorReceived", "Handler", "Job", "DEFAULT_ANSWERS"]

Json = dict[str, Any]
Handler = Callable[[Json], Awaitable[Json]]
Job = Callable[[], Awaitable[None]]

# the follow-up jobs of the CALL being answered (each answer runs in its own task, so in
# its own copy of the context)
_FOLLOW_UPS: contextvars.ContextVar[list[Job]] = contextvars.ContextVar("follow_ups")

# Answers a station plausibly gives when a test does not say otherwise (schema-valid in both
# versions where the action exists in both; 1.6 UpdateFirmware's answer is empty).
DEFAULT_ANSWERS: dict[str, Json] = {
    "GetConfiguration": {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]},
    "UnlockConnector": {"status": "Unlocked"},
    "GetVariables": {"getVariableResult": []},
    "UpdateFirmware@ocpp1.6": {},
    "GetDiagnostics": {"fileName": "diagnostics.log"},
    "GetLog": {"status": "Accepted", "filename": "station.log"},
}


class CallErrorReceived(Exception):
    def __init__(self, frame: list[Any]) -> None:
        super().__init__(frame)
        self.frame = frame


class RawStation:
    def __init__(self, base_url: str, station_id: str, password: str, protocol: str = "ocpp1.6") -> None:
        self.base_url, self.station_id, self.password, self.protocol = base_url.rstrip("/"), station_id, password, protocol
        self.received: list[tuple[str, Json]] = []
        self.handlers: dict[str, Handler] = {}
        self.closed = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.job_errors: list[BaseException] = []

    async def connect(self, base_url: str | None = None) -> None:
        if base_url:
            self.base_url = base_url.rstrip("/")
        self._http = aiohttp.ClientSession()
        auth = "Basic " + base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        self._ws = await self._http.ws_connect(
            f"{self.base_url}/{self.station_id}", protocols=(self.protocol,), headers={"Authorization": auth},
        )
        assert self._ws.protocol == self.protocol, f"negotiated {self._ws.protocol!r}, asked {self.protocol!r}"
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    def after_reply(self, job: Job) -> None:
        """From inside a handler: run `job` once the answer has been sent."""
        _FOLLOW_UPS.get().append(job)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # kept for the test to look at; never lost silently
                self.job_errors.append(exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, uid: str, action: str, payload: Json) -> None:
        assert self._ws is not None
        handler = self.handlers.get(action)
        queued: list[Job] = []
        _FOLLOW_UPS.set(queued)
        if handler is not None:
            answer = await handler(payload)
        else:
            answer = DEFAULT_ANSWERS.get(f"{action}@{self.protocol}", DEFAULT_ANSWERS.get(action, {"status": "Accepted"}))
        await self._ws.send_str(json.dumps([3, uid, answer]))
        for job in queued:
            await job()

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
                    # handlers run in their own task: a follow-up may call() the CSMS, whose
                    # answer this reader must be free to deliver
                    self._spawn(self._answer(uid, action, payload))
                elif frame[0] in (3, 4):
                    fut = self._pending.pop(frame[1], None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
        finally:
            self.closed.set()

    async def frame(self, action: str, payload: Json, *, timeout: float = 10.0) -> list[Any]:
        """Send a CALL; the whole answer frame (CALLRESULT or CALLERROR)."""
        assert self._ws is not None
        uid = f"{self.station_id[-6:]}-{next(self._ids)}"
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[uid] = fut
        await self._ws.send_str(json.dumps([2, uid, action, payload]))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(uid, None)

    async def call(self, action: str, payload: Json, *, timeout: float = 10.0) -> Json:
        frame = await self.frame(action, payload, timeout=timeout)
        if frame[0] == 4:
            raise CallErrorReceived(frame)
        result = frame[2]
        assert isinstance(result, dict), frame
        return result

    def actions_received(self) -> list[str]:
        return [a for a, _ in self.received]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        self._ws = self._http = self._reader = None
