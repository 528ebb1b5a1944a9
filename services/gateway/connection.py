"""One station's WebSocket after the upgrade: read, queue, answer in order (rows 15-34).

- The reader (the aiohttp handler's task) reads frames continuously. Frame-level errors
  are answered at once; CALLRESULT/CALLERROR frames resolve our outstanding CALL; CALLs
  go into a bounded queue (`queue_cap`; overflow -> close 1008 "message flood").
- One worker task per connection, started when the queue becomes non-empty and ended
  when it drains (idle connections carry no task), answers the CALLs one by one, in
  order, paced by a token bucket (sustained abuse fills the queue -> close 1008).
- Other frames that need an answer or a log line (garbage, unsolicited results) draw
  from the same bucket in the reader; sustained abuse closes 1008 as well.
- A CALL whose id equals a queued or in-flight CALL is dropped when byte-identical (the
  station retrying while the answer is withheld) and answered with a CALLERROR otherwise.
- While the boot status is Pending/Rejected, only BootNotification is served (SecurityError).
- A CALL over its action's frame limit (derived from the bus record limit, `sizes`) and an
  event the bus refuses for its size (`RecordTooLarge`) are that CALL's CALLERROR; neither
  is an outage. Transaction messages are validated leniently; every field accepted that
  way is counted (`csms_gateway_lenient_fields_total`) and logged once per connection.
- At most one CSMS -> station CALL is outstanding (`call()` holds a lock until answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from ocpp.exceptions import OCPPError
from opentelemetry import trace

from services.common.errors import CsmsError, RecordTooLarge
from services.common.events import Body, Envelope
from services.common.ocpp.wire import json_default
from services.common.ocpp_version import OcppVersion
from services.common.telemetry import tracer
from services.common.timeutil import Clock
from services.gateway import errors, frames, metrics, validation
from services.gateway.actions import Actions, Handler, is_csms_to_station
from services.gateway.context import CallContext, ConnectionState
from services.gateway.limits import Limits, TokenBucket
from services.gateway.publisher import ConnectionGone, Publisher, new_event_id

__all__ = ["Connection", "ConnectionShared"]

log = logging.getLogger("csms.gateway.connection")

_GATED = frozenset({"Pending", "Rejected"})
CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED_DATA = 1003


_UNKNOWN: Any = object()
if os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"):
    trace.get_tracer_provider()  # a provider named by the environment is installed on first use


def tracing() -> bool:
    """True once a tracer provider is installed (it can be set once and never unset).
    `get_tracer_provider()` reads os.environ on every call while none is; the module
    global it returns costs nothing to read."""
    installed = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if installed is _UNKNOWN:  # another OpenTelemetry API layout: ask the public API
        return type(trace.get_tracer_provider()) is not trace.ProxyTracerProvider
    return installed is not None


def _span(action: str, station_id: str) -> Any:
    """A span per CALL when a tracer provider is installed; free (a null context) otherwise."""
    if not tracing():
        return _NO_SPAN
    return tracer.start_as_current_span("ocpp." + action, attributes={"station.id": station_id, "ocpp.action": action})


_NO_SPAN = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class ConnectionShared:
    """What all connections of one gateway share. Each connection holds this one reference
    (memory per idle connection stays small)."""

    gateway_id: str
    limits: Limits
    frame_limit: int          # per-action CALL limit (sizes.frame_limit of the bus record limit)
    max_json_depth: int
    clock: Clock
    publisher: Publisher
    actions: Actions


class Connection:
    __slots__ = (
        "shared", "ws", "station_id", "version", "epoch", "remote", "subprotocol", "security_profile", "state",
        "queue", "current", "worker", "bucket", "strikes", "pending_id", "pending", "call_lock", "closing",
    )

    def __init__(self, shared: ConnectionShared, ws: web.WebSocketResponse, station_id: str, version: OcppVersion, epoch: int,
                 remote: str = "", subprotocol: str = "", security_profile: int = 0) -> None:
        self.shared, self.ws, self.station_id, self.version, self.epoch = shared, ws, station_id, version, epoch
        self.remote, self.subprotocol, self.security_profile = remote, subprotocol, security_profile
        # A Connection exists only after the handshake authenticated an enabled station.
        self.state = ConnectionState(enabled_checked_at=time.monotonic())
        self.queue: list[tuple[frames.Call, datetime]] = []
        self.current: frames.Call | None = None
        self.worker: asyncio.Task[None] | None = None
        lim = shared.limits
        self.bucket = TokenBucket(lim.msg_rate, lim.msg_burst)
        self.strikes = 0
        self.pending_id: str | None = None
        self.pending: asyncio.Future[frames.Result | frames.Error] | None = None
        self.call_lock: asyncio.Lock | None = None
        self.closing = False

    # -- reader ----------------------------------------------------------------
    async def run(self) -> None:
        """Read until the socket closes. Never raises for anything a station sends."""
        ws, max_depth = self.ws, self.shared.max_json_depth
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    await self._on_text(msg.data, max_depth)
                elif msg.type == web.WSMsgType.BINARY:
                    log.info("station=%s sent a binary frame; closing 1003", self.station_id)
                    await self.close(CLOSE_UNSUPPORTED_DATA, "binary frames are not OCPP-J")
                    break
                elif msg.type == web.WSMsgType.ERROR:
                    # aiohttp already closed with the right code (1009 too big, 1007 bad UTF-8)
                    log.info("station=%s protocol error %s; closed %s", self.station_id, msg.data, ws.close_code)
                    break
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a bug of ours must not leave the socket half-alive
            log.exception("station=%s reader failed; closing 1011", self.station_id)
            await self.close(1011, "internal error")
        finally:
            self._shutdown()

    async def _on_text(self, text: str, max_depth: int) -> None:
        frame = frames.parse(self.version, text, max_depth)
        kind = type(frame)
        if kind is frames.Call:
            await self._enqueue(frame)  # type: ignore[arg-type]
            return
        if (kind is frames.Result or kind is frames.Error) and self._resolve(frame):  # type: ignore[arg-type]
            return
        # Garbage, ignored frames and unsolicited answers are paced by the same bucket as
        # CALLs, so a flood of them cannot buy unlimited CALLERRORs and log lines.
        if not await self._pace():
            return
        if kind is frames.Reply:
            await self.send(frame.text)  # type: ignore[union-attr]
        elif kind is frames.Ignore:
            log.info("station=%s frame ignored: %s", self.station_id, frame[0])

    async def _pace(self) -> bool:
        """Delay the reader once the bucket is empty; `queue_cap` delayed frames in a row
        (sustained abuse, as with a full CALL queue) close the socket 1008."""
        wait = self.bucket.delay()
        if wait <= 0:
            self.strikes = 0
            return True
        self.strikes += 1
        if self.strikes >= self.shared.limits.queue_cap:
            log.warning("station=%s message flood (non-CALL frames); closing 1008", self.station_id)
            await self.close(CLOSE_POLICY, "message flood")
            return False
        await asyncio.sleep(wait)
        return True

    async def _enqueue(self, call: frames.Call) -> None:
        mid = call.message_id
        dup = self.current if self.current is not None and self.current.message_id == mid else None
        if dup is None:
            for queued, _ in self.queue:
                if queued.message_id == mid:
                    dup = queued
                    break
        if dup is not None:
            if dup.raw == call.raw:
                log.info("station=%s retried CALL %s while it is being handled; dropped", self.station_id, mid)
                return
            reply = errors.call_error(
                self.version, mid, "ProtocolError" if self.version == errors.V16 else "RpcFrameworkError",
                "Duplicate message id: a CALL with this id is still being handled",
            )
            await self.send(reply)
            return
        if len(self.queue) >= self.shared.limits.queue_cap:
            log.warning("station=%s message flood (%d queued); closing 1008", self.station_id, len(self.queue))
            await self.close(CLOSE_POLICY, "message flood")
            return
        self.queue.append((call, self.shared.clock()))
        if self.worker is None:
            self.worker = asyncio.create_task(self._drain())

    # -- worker ----------------------------------------------------------------
    async def _drain(self) -> None:
        try:
            while self.queue and not self.closing:
                call, received_at = self.queue.pop(0)
                self.current = call
                wait = self.bucket.delay()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._process(call, received_at)
                self.current = None
        finally:
            self.current = None
            self.worker = None

    async def _process(self, call: frames.Call, received_at: datetime) -> None:
        t0 = time.perf_counter()
        version, action, mid = self.version, call.action, call.message_id
        known = action in validation.request_actions(version)
        label = action if known else "unknown"
        metrics.message(label, "in")
        reply: str | None
        if self.state.boot_status in _GATED and action != "BootNotification":
            reply = errors.call_error(version, mid, "SecurityError", f"{action} not allowed while boot status is {self.state.boot_status}")
        else:
            handler = self.shared.actions.handler_for(version, action)
            notes: list[validation.Lenient] | None = [] if action in validation.LENIENT_ACTIONS.get(version, ()) else None
            reply = frames.check_call(
                version, call, handler is not None, handler is None and is_csms_to_station(version, action),
                max_bytes=self.shared.frame_limit, lenient=notes,
            )
            if reply is None and handler is not None:
                if notes:
                    self._lenient_notes(action, notes)
                reply = await self._dispatch(handler, call, received_at)
        if reply is not None:
            await self.send(reply)
        metrics.handling(label).observe(time.perf_counter() - t0)

    async def _dispatch(self, handler: Handler, call: frames.Call, received_at: datetime) -> str | None:
        mid = call.message_id

        async def publish(body: Body, station_time: datetime | None = None) -> None:
            await self._publish(body, station_time, mid, call.action, received_at)

        def lenient(field: str, detail: str) -> None:
            self._lenient(call.action, field, detail)

        ctx = CallContext(self.station_id, self.version, mid, call.action, received_at, self.state, publish, lenient)
        with _span(call.action, self.station_id):
            try:
                result = await handler(ctx, call.payload)
                return orjson.dumps([3, mid, result], default=json_default).decode()
            except ConnectionGone:
                return None
            except OCPPError as exc:
                log.info("station=%s %s %s answered %s", self.station_id, call.action, mid, exc.code)
                return errors.from_exception(self.version, mid, exc)
            except RecordTooLarge as exc:
                # This one event can never be published; the bus is fine. Answer this CALL
                # (the station must not retry it unchanged) and keep serving the rest.
                log.warning("station=%s %s %s refused: %s", self.station_id, call.action, mid, exc)
                return errors.call_error(self.version, mid, "FormatViolation", str(exc))
            except (CsmsError, TimeoutError, OSError) as exc:
                if getattr(exc, "retriable", True):
                    # A backend we depend on is down: withhold the answer so the station
                    # retries later, instead of a CALLERROR that may make it drop the message.
                    log.warning("station=%s %s %s withheld: %s: %s", self.station_id, call.action, mid, type(exc).__name__, exc)
                    return None
                log.exception("station=%s %s %s failed", self.station_id, call.action, mid)
                return errors.call_error(self.version, mid, "InternalError", "The CSMS could not process the request")
            except Exception:
                log.exception("station=%s %s %s failed", self.station_id, call.action, mid)
                return errors.call_error(self.version, mid, "InternalError", "The CSMS could not process the request")

    def _lenient_notes(self, action: str, notes: list[validation.Lenient]) -> None:
        counts: dict[str, int] = {}
        first: dict[str, validation.Lenient] = {}
        for note in notes:
            counts[note.field] = counts.get(note.field, 0) + 1
            first.setdefault(note.field, note)
        for field, n in counts.items():
            note = first[field]
            self._lenient(action, field, f"{note.kind}: {note.detail}", n)

    def _lenient(self, action: str, field: str, detail: str, n: int = 1) -> None:
        """Count a leniently accepted field; log it once per connection per (action, field)."""
        metrics.lenient(action, field, n)
        logged = self.state.lenient_logged
        if logged is None:
            logged = self.state.lenient_logged = set()
        if (action, field) not in logged:
            logged.add((action, field))
            log.warning(
                "station=%s %s: %s accepted leniently (%s); further occurrences on this connection are only counted",
                self.station_id, action, field, detail,
            )

    async def _publish(self, body: Body, station_time: datetime | None, mid: str, action: str, received_at: datetime) -> None:
        shared = self.shared
        if station_time is not None:
            metrics.CLOCK_SKEW.observe(abs((received_at - station_time).total_seconds()))
        env = Envelope(
            event_id=new_event_id(), station_id=self.station_id, received_at=received_at, body=body,
            gateway_id=shared.gateway_id, ocpp_version=self.version, station_time=station_time,
            message_id=mid, action=action,
        )
        if not await shared.publisher.publish(env, alive=self.alive):
            raise ConnectionGone(self.station_id)

    # -- CSMS -> station ---------------------------------------------------------
    async def call(self, action: str, payload: dict[str, Any], timeout: float) -> tuple[str, frames.Result | frames.Error]:
        """Send one CALL and wait for its answer: (message id, Result or Error).
        Raises TimeoutError, or ConnectionGone if the socket closes first."""
        if self.call_lock is None:
            self.call_lock = asyncio.Lock()
        async with asyncio.timeout(timeout):
            async with self.call_lock:
                if self.closing or self.ws.closed:
                    raise ConnectionGone(self.station_id)
                mid = str(uuid.uuid4())
                fut: asyncio.Future[frames.Result | frames.Error] = asyncio.get_running_loop().create_future()
                self.pending_id, self.pending = mid, fut
                try:
                    metrics.message(action, "out")
                    await self.send(orjson.dumps([2, mid, action, payload], default=json_default).decode())
                    return mid, await fut
                finally:
                    self.pending_id = self.pending = None

    def _resolve(self, frame: frames.Result | frames.Error) -> bool:
        """Hand an answer to the CALL waiting for it; False (logged, dropped) if none is."""
        fut = self.pending
        if fut is None or frame.message_id != self.pending_id or fut.done():
            log.info("station=%s answer for unknown message id %.40r dropped", self.station_id, frame.message_id)
            return False
        fut.set_result(frame)
        return True

    # -- sending and closing -----------------------------------------------------
    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def alive(self) -> bool:
        return not self.closing and not self.ws.closed

    async def send(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.info("station=%s send failed: %s", self.station_id, exc)

    async def close(self, code: int, reason: str) -> None:
        if self.closing and self.ws.closed:
            return
        self.closing = True
        try:
            await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception as exc:  # already gone
            log.debug("station=%s close: %s", self.station_id, exc)

    def _shutdown(self) -> None:
        self.closing = True
        if self.state.clear_faults():  # a disconnected station no longer counts as faulted here
            metrics.station_faulted(False)
        self.queue.clear()
        if self.worker is not None:
            self.worker.cancel()
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionGone(self.station_id))
