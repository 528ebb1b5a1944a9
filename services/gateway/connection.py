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

Keepalive and slow peers (ADR 017; settings in `SocketPolicy`):
- No task and no timer handle per connection: the gateway's one timing wheel (wheel.py,
  `ConnectionShared.wheel`) runs each connection's tick. When nothing at all arrived from
  the station for `ping_interval_s` (any bytes count: a frame, a pong), it sends a ping;
  if nothing arrives within `pong_timeout_s` after it, the socket is closed 1011 "ping
  timeout" (bounded, then aborted). A busy station is never pinged. Liveness is one flag
  set per TCP read (wsio.on_data), so the per-message cost is a store.
- The transport pauses writers only beyond `send_buffer_bytes` unsent; a send that would
  go beyond it, or a timer tick that finds it exceeded, aborts the TCP connection (a peer
  that stopped reading cannot pin the buffer); sends to such a socket fail at once
  (`send` -> False, `call` -> ConnectionGone) instead of waiting on a drain.
- Every close is bounded by `close_timeout_s`, then the connection is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
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
from prometheus_client import Counter

from services.gateway import errors, frames, metrics, validation, wsio
from services.gateway.actions import Actions, Handler, is_csms_to_station
from services.gateway.context import CallContext, ConnectionState
from services.gateway.limits import Limits, TokenBucket
from services.gateway.publisher import ConnectionGone, Publisher, new_event_id
from services.gateway.wheel import Wheel

__all__ = ["Connection", "ConnectionShared", "SocketPolicy", "count_dead"]

log = logging.getLogger("csms.gateway.connection")

_GATED = frozenset({"Pending", "Rejected"})
_END = (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED)  # what ends `async for` over a socket
CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL = 1011

DEAD_SOCKETS = Counter(
    "csms_gateway_dead_sockets_total",
    "Station sockets the gateway dropped for a dead or stuck peer (send_buffer: it stopped reading, aborted; "
    "ping_timeout: no pong in time, closed 1011; close_timeout: it did not finish a close, aborted)",
    ["reason"],
)
_ABORT_REASONS = ("send_buffer", "ping_timeout", "close_timeout")
_ABORTED = {r: DEAD_SOCKETS.labels(reason=r) for r in _ABORT_REASONS}
_background: set[asyncio.Task[None]] = set()  # closes started from the keepalive wheel


def count_dead(ws: Any, reason: str) -> None:
    """Count one dropped socket, once per socket: a ping timeout whose close then times out
    as well is one dead socket (OcppWebSocket counts `close_timeout` itself)."""
    if getattr(ws, "dead_counted", False):
        return
    with contextlib.suppress(AttributeError):
        ws.dead_counted = True
    _ABORTED[reason].inc()


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
class SocketPolicy:
    """Keepalive and slow-peer bounds of every socket (CSMS_WS_*; docs/security.md)."""

    ping_interval_s: float = 60.0     # 0 = no pings (a station's ws_ping_interval_s overrides it)
    pong_timeout_s: float = 30.0
    close_timeout_s: float = 5.0
    send_buffer_bytes: int = 256 << 10

    @property
    def tick_s(self) -> float:
        """The keepalive wheel's resolution: an eighth of the shortest period, at most 1 s."""
        ping = self.ping_interval_s if self.ping_interval_s > 0 else 1.0
        return max(0.01, min(1.0, ping / 8, self.pong_timeout_s / 8))

    @classmethod
    def from_settings(cls, settings: Any) -> "SocketPolicy":
        return cls(
            ping_interval_s=float(settings.ws_ping_interval_s), pong_timeout_s=float(settings.ws_pong_timeout_s),
            close_timeout_s=float(settings.ws_close_timeout_s), send_buffer_bytes=int(settings.ws_send_buffer_bytes),
        )


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
    sockets: SocketPolicy = SocketPolicy()
    wheel: Wheel = field(init=False)  # every connection's keepalive tick (one loop timer)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wheel", Wheel(self.sockets.tick_s))


class Connection:
    __slots__ = (
        "shared", "ws", "station_id", "version", "epoch", "remote", "subprotocol", "security_profile", "state",
        "queue", "current", "worker", "bucket", "strikes", "pending_id", "pending", "call_lock", "closing",
        "ping_s", "due", "heard", "pinged", "sent_code",
    )

    def __init__(self, shared: ConnectionShared, ws: web.WebSocketResponse, station_id: str, version: OcppVersion, epoch: int,
                 remote: str = "", subprotocol: str = "", security_profile: int = 0, *,
                 ping_interval_s: float | None = None) -> None:
        self.shared, self.ws, self.station_id, self.version, self.epoch = shared, ws, station_id, version, epoch
        self.remote, self.subprotocol, self.security_profile = remote, subprotocol, security_profile
        # A Connection exists only after the handshake authenticated an enabled station.
        self.state = ConnectionState(enabled_checked_at=time.monotonic())
        self.queue: list[tuple[frames.Call, datetime]] | None = None  # CALLs waiting; a list only while the worker runs
        self.current: frames.Call | None = None
        self.worker: asyncio.Task[None] | None = None
        lim = shared.limits
        self.bucket = TokenBucket(lim.msg_rate, lim.msg_burst)
        self.strikes = 0
        self.pending_id: str | None = None
        self.pending: asyncio.Future[frames.Result | frames.Error] | None = None
        self.call_lock: asyncio.Lock | None = None
        self.closing = False
        policy = shared.sockets
        # None: the gateway's CSMS_WS_PING_INTERVAL_S; 0 (either): no pings
        self.ping_s = policy.ping_interval_s if ping_interval_s is None else max(0.0, float(ping_interval_s))
        self.due = 0  # the keepalive wheel's bucket (0: not scheduled)
        self.heard = False
        self.pinged = False
        self.sent_code: int | None = None  # the code of a close the gateway started
        if getattr(ws, "close_timeout_s", policy.close_timeout_s) != policy.close_timeout_s:
            setattr(ws, "close_timeout_s", policy.close_timeout_s)  # OcppWebSocket: only when not its default
        wsio.limit_send_buffer(ws, policy.send_buffer_bytes)

    # -- reader ----------------------------------------------------------------
    async def run(self) -> None:
        """Read until the socket closes. Never raises for anything a station sends."""
        ws, max_depth = self.ws, self.shared.max_json_depth
        self._start_keepalive()
        try:
            # `receive()` rather than `async for` (its `__anext__` would be one more coroutine
            # kept for the life of every idle socket, ~220 B), and the message is never bound
            # to a name here: this frame would keep the last one (the boot frame) while idle.
            while await self._on_message(await ws.receive(), max_depth):
                pass
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a bug of ours must not leave the socket half-alive
            log.exception("station=%s reader failed; closing 1011", self.station_id)
            await self.close(1011, "internal error")
        finally:
            self._shutdown()

    async def _on_message(self, msg: Any, max_depth: int) -> bool:
        """Handle one message from `receive()`; False once the socket is done with."""
        kind = msg.type
        if kind == web.WSMsgType.TEXT:
            await self._on_text(msg.data, max_depth)
            return True
        if kind in _END:
            return False
        if kind == web.WSMsgType.BINARY:
            log.info("station=%s sent a binary frame; closing 1003", self.station_id)
            await self.close(CLOSE_UNSUPPORTED_DATA, "binary frames are not OCPP-J")
            return False
        if kind == web.WSMsgType.ERROR:
            # aiohttp already closed with the right code (1009 too big, 1007 bad UTF-8)
            log.info("station=%s protocol error %s; closed %s", self.station_id, msg.data, self.ws.close_code)
            return False
        return True  # PING/PONG (aiohttp answers pings itself)

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
            for queued, _ in self.queue or ():
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
        queue = self.queue if self.queue is not None else []
        if len(queue) >= self.shared.limits.queue_cap:
            log.warning("station=%s message flood (%d queued); closing 1008", self.station_id, len(queue))
            await self.close(CLOSE_POLICY, "message flood")
            return
        queue.append((call, self.shared.clock()))
        self.queue = queue
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
            if not self.queue:
                self.queue = None  # an idle connection keeps no list

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
                    if not await self.send(orjson.dumps([2, mid, action, payload], default=json_default).decode()):
                        raise ConnectionGone(self.station_id)
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
        """The code the gateway closed with (a fence, a revocation, a ping timeout: what
        StationDisconnected reports, also when the peer never answered), else the peer's."""
        return self.sent_code if self.sent_code is not None else self.ws.close_code

    def alive(self) -> bool:
        return not self.closing and not self.ws.closed

    async def send(self, text: str) -> bool:
        """Write one text frame; False (never an exception, never a long wait) if the socket
        is gone or the peer stopped reading: a frame that would take the unsent bytes past
        `send_buffer_bytes` aborts the connection instead of queueing behind them. (A first
        frame larger than the bound still goes out: the peer may be reading.)"""
        ws = self.ws
        if ws.closed:
            return False
        pending = wsio.buffered(ws)
        if pending and pending + len(text) > self.shared.sockets.send_buffer_bytes:
            self._abort("send_buffer", f"{pending} bytes unsent")
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.info("station=%s send failed: %s", self.station_id, exc)
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        """Close with `code`; bounded by `close_timeout_s` (OcppWebSocket bounds it too, this
        is the guard for any socket), then the connection is aborted."""
        if self.closing and self.ws.closed:
            return
        self.closing = True
        if self.sent_code is None:
            self.sent_code = code
        timeout = self.shared.sockets.close_timeout_s
        try:
            async with asyncio.timeout(timeout + 0.5):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:
            self._abort("close_timeout", f"close {code} not finished within {timeout:.1f} s")
        except Exception as exc:  # already gone
            log.debug("station=%s close: %s", self.station_id, exc)

    def close_soon(self, code: int, reason: str) -> None:
        """`close` from synchronous code (the keepalive tick); the task is kept until it ends."""
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def _abort(self, reason: str, detail: str) -> None:
        """Drop the TCP connection now (counted and logged once per connection)."""
        transport = wsio.transport_of(self.ws)
        if transport is not None and (not transport.is_closing() or wsio.buffered(self.ws) > 0):
            count_dead(self.ws, reason)
            log.warning("station=%s %s (%s); connection aborted", self.station_id, reason.replace("_", " "), detail)
        self.closing = True
        wsio.abort(self.ws)

    # -- keepalive -----------------------------------------------------------------
    def _start_keepalive(self) -> None:
        if self.ping_s > 0 and not self.due and wsio.on_data(self.ws, self._heard):
            self.shared.wheel.schedule(self, self.ping_s)

    def _heard(self) -> None:
        self.heard = True

    def on_due(self) -> None:
        """Every `ping_s` of silence: ping; `pong_timeout_s` more of silence: close 1011.
        Anything heard since the last tick resets it. Also the slow-reader check for a
        socket that is sending nothing more itself (its writer stuck on a drain)."""
        ws = self.ws
        if self.closing or ws.closed:
            return
        policy = self.shared.sockets
        if wsio.buffered(ws) > policy.send_buffer_bytes:
            self._abort("send_buffer", f"{wsio.buffered(ws)} bytes unsent")
            return
        wheel = self.shared.wheel
        if self.heard:
            self.heard = False
            # after a ping, the next one is due `ping_s` after it, not after this tick
            delay = max(0.0, self.ping_s - policy.pong_timeout_s) if self.pinged else self.ping_s
            self.pinged = False
            wheel.schedule(self, delay)
            return
        if self.pinged:
            count_dead(ws, "ping_timeout")
            log.warning("station=%s no pong within %.0f s; closing 1011", self.station_id, policy.pong_timeout_s)
            self.close_soon(CLOSE_INTERNAL, "ping timeout")
            return
        if not wsio.ping_nowait(ws):
            return
        self.pinged = True
        wheel.schedule(self, policy.pong_timeout_s)

    def _shutdown(self) -> None:
        self.closing = True
        if self.due:
            self.shared.wheel.cancel(self)
        if self.ping_s > 0:
            wsio.off_data(self.ws)
        if self.state.clear_faults():  # a disconnected station no longer counts as faulted here
            metrics.station_faulted(False)
        self.queue = None
        if self.worker is not None:
            self.worker.cancel()
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionGone(self.station_id))
