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

Security tests (issue 11) give it `ssl=` (an `ssl.SSLContext` trusting the CSMS's server
certificate, with a client certificate loaded for profile 3), `headers=` (extra handshake
headers: X-Forwarded-For and the like) and `password=None` (no Authorization header, as a
profile-3 station without a password connects). `handshake_status()` sends one upgrade request
and returns what the CSMS answered (status, headers, body; 101 when it would upgrade), for
the refusal tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import itertools
import json
import os
import ssl as ssl_module
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

__all__ = ["RawStation", "CallErrorReceived", "Handler", "Job", "DEFAULT_ANSWERS", "Answer", "basic_auth", "handshake_status"]

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


def basic_auth(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


@dataclass(frozen=True)
class Answer:
    """What the CSMS answered to one upgrade request."""
    status: int
    headers: dict[str, str]      # lower-case names
    body: str


async def handshake_status(
    url: str,
    *,
    protocol: str = "ocpp1.6",
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeout: float = 10.0,
) -> Answer:
    """Send one WebSocket upgrade request for `url` (ws:// or wss://) over a bare stream and
    read the answer: status, headers and (for a refusal) the body; 101 = it would upgrade
    (the connection is dropped at once). A TLS handshake the server refuses raises
    (`ssl.SSLError`, `ConnectionError`; with TLS 1.3 the refusal of a client certificate
    arrives on the first read, so it raises here too, never as an HTTP status)."""
    parts = urlsplit(url)
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or "127.0.0.1"
    hdrs = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": protocol,
        **(headers or {}),
    }
    if authorization is not None:
        hdrs["Authorization"] = authorization
    if tls and ssl is None:
        ssl = ssl_module.create_default_context()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl if tls else None, server_hostname=host if tls else None), timeout,
    )
    try:
        request = f"GET {parts.path or '/'} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        writer.write(request.encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        answer_headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = b""
        if status != 101 and "content-length" in answer_headers:
            body = await asyncio.wait_for(reader.readexactly(int(answer_headers["content-length"])), timeout)
        return Answer(status, answer_headers, body.decode("utf-8", "replace"))
    except asyncio.IncompleteReadError as exc:
        raise ConnectionError(f"closed before answering ({exc.partial!r})") from exc
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl_module.SSLError):
            pass


class CallErrorReceived(Exception):
    def __init__(self, frame: list[Any]) -> None:
        super().__init__(frame)
        self.frame = frame


class RawStation:
    def __init__(
        self,
        base_url: str,
        station_id: str,
        password: str | None,
        protocol: str = "ocpp1.6",
        *,
        ssl: ssl_module.SSLContext | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url, self.station_id, self.password, self.protocol = base_url.rstrip("/"), station_id, password, protocol
        self.ssl, self.headers = ssl, dict(headers or {})
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
        headers = dict(self.headers)
        if self.password is not None:
            headers["Authorization"] = basic_auth(self.station_id, self.password)
        try:
            self._ws = await self._http.ws_connect(
                f"{self.base_url}/{self.station_id}", protocols=(self.protocol,), headers=headers,
                ssl=self.ssl if self.ssl is not None else True,
            )
        except BaseException:
            await self._http.close()
            self._http = None
            raise
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

    @property
    def close_code(self) -> int | None:
        """The close code the CSMS sent (None while open, or before connect)."""
        return None if self._ws is None else self._ws.close_code

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
