"""The aiohttp application: `GET /ocpp/{station_id}` handshake, then the connection (rows 1-14).

The same application serves the `ws://` and the `wss://` listener (service.py); what a
connection proves (TLS, a verified client certificate: tls.py) decides the security
profile it may use. The source address is the TCP peer, or what a trusted proxy forwarded
(proxies.py); it is the address every limit, log line and StationConnected.remote uses.

Order of checks before the upgrade (cheapest first; nothing slow happens for a request
that a cheap check already refuses):
  upgrade flood per source address (delayed up to a bound, then 429) -> measured overload
  (503 + Retry-After from the backlog; admission.py) -> identity syntax on the raw path (400) ->
  WebSocket upgrade headers (400) -> a client certificate from a trusted proxy's header that
  does not verify (403 certificate_invalid) -> auth.py: certificate CN (403
  certificate_identity) -> lockout (401/429) -> known station (404) -> connection profile
  below the station's (403 security_profile) -> certificate revoked (403) -> Basic
  credentials (401) -> enabled (403) -> subprotocol.
No acceptable subprotocol: the handshake completes without the header, then close 1002.
A refusal is logged with the station, the source address, the status and the reason;
never with the Authorization header or a certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.common.errors import StoreError
from services.common.ocpp_version import OcppVersion
from services.common.telemetry import add_health_routes
from services.gateway import auth, metrics, tls, wsio
from services.gateway.admission import Admission, UpgradeLimits
from services.gateway.connection import Connection, ConnectionShared, count_dead
from services.gateway.limits import KeyedBuckets
from services.gateway.ownership import Ownership
from services.gateway.proxies import Forwarded, TrustedProxies, forwarded
from services.gateway.registry import Registry

__all__ = ["SUBPROTOCOLS", "choose_subprotocol", "is_upgrade", "OcppWebSocket", "GatewayApp"]

log = logging.getLogger("csms.gateway")

SUBPROTOCOLS: dict[str, OcppVersion] = {v.subprotocol: v for v in OcppVersion}
CLOSE_PROTOCOL_ERROR = 1002
LINGER_S = 1.0


def choose_subprotocol(header: str | None, ocpp21: bool) -> str | None:
    """The first subprotocol the client offers that we support (client's preference order)."""
    if not header:
        return None
    for item in header.split(","):
        proto = item.strip()
        if proto in SUBPROTOCOLS and (proto != "ocpp2.1" or ocpp21):
            return proto
    return None


class OcppWebSocket(web.WebSocketResponse):
    """permessage-deflate offered and inflated (2.x stations must be offered it; the
    inflated size is bounded by max_msg_size), but our own frames go out uncompressed
    (RFC 7692 lets each message choose, RSV1 unset): aiohttp's compressor keeps a
    ~256 KiB zlib context per socket for the life of the connection, which would make
    idle connections cost ~320 KiB instead of ~20 KiB. Our answers are small anyway.
    (aiohttp has no public switch for this; `_pre_start` is where the writer is built.)

    Every close is bounded (ADR 017), whoever starts it (a fence, a revocation, shutdown,
    a ping timeout, aiohttp itself after a protocol error): writing the close frame and
    waiting for the peer's answer take at most `close_timeout_s` (CSMS_WS_CLOSE_TIMEOUT_S,
    set by the connection when it differs from this default), then the TCP connection is
    aborted. Bytes still unsent once the close is over get the same time, then the
    connection is aborted too: a peer that stops reading cannot keep a closed socket and
    its buffer alive (`transport.close()` alone waits for the peer to read them)."""

    close_timeout_s: float = 5.0
    _peer_closed: asyncio.Future[None] | None = None  # a close started beside a reading task
    dead_counted: bool = False  # counted in csms_gateway_dead_sockets_total (connection.count_dead)

    def _pre_start(self, request: web.BaseRequest) -> Any:
        protocol, writer = super()._pre_start(request)
        writer.compress = 0
        return protocol, writer

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        loop = asyncio.get_running_loop()
        if self._peer_closed is not None:
            return await self._close_again()
        if self._waiting and not self._closed and not self._closing and self._writer is not None:
            return await self._close_beside_reader(code, message)
        try:
            async with asyncio.timeout(self.close_timeout_s):
                return await self._close(code, message, drain)
        except TimeoutError:
            log.info("close %s not finished within %.1f s; connection aborted", code, self.close_timeout_s)
            count_dead(self, "close_timeout")
            wsio.abort(self)
            self._close_code = code  # what we closed with (aiohttp says 1006: the peer never answered)
            return True
        finally:
            transport = wsio.transport_of(self)
            if transport is not None and wsio.buffered(self) > 0:
                loop.call_later(self.close_timeout_s, _abort_if_open, transport)

    async def _close_beside_reader(self, code: int, message: bytes) -> bool:
        """A close from another task (a fence, a revocation, shutdown) while the handler reads.

        aiohttp's own `close` breaks the reader's wait and, the reader having seen that,
        closes the transport at once, without waiting for the peer's close frame: over
        TLS the peer's reply then meets a closed socket, its TCP stack resets, and the
        peer may lose our close frame and report 1006 instead of our code. Here the close
        frame goes out and the reader keeps reading until the peer's close frame (or the
        end of the connection) reaches it; aiohttp's reader then calls `close` again,
        which (`_close_again`) closes the transport and ends this wait. A peer that does
        not answer within `close_timeout_s` is aborted."""
        assert self._writer is not None
        done = self._peer_closed = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.close_timeout_s):
                await self._writer.close(code, message)
                if self._payload_writer is not None:
                    await self._payload_writer.drain()
                await asyncio.shield(done)
        except TimeoutError:
            log.info("close %s not answered within %.1f s; connection aborted", code, self.close_timeout_s)
            count_dead(self, "close_timeout")
            wsio.abort(self)
        except Exception as exc:  # the peer is gone already
            log.debug("close %s: %s", code, exc)
            wsio.abort(self)
        return True

    async def _close_again(self) -> bool:
        """`close` after `_close_beside_reader` started: from the reader (the peer's close
        frame, the end of the stream, an error) it finishes the close; from any other task
        it waits for that (bounded by the first close's timeout)."""
        done = self._peer_closed
        assert done is not None
        if self._waiting and not done.done():  # another task; the reader is still reading
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout_s):
                    await asyncio.shield(done)
            return False
        if not self._closed:
            self._set_closed()
            self._close_transport()
        if not done.done():
            done.set_result(None)
        return True

    async def pong(self, message: bytes = b"") -> None:
        """aiohttp answers pings inside `receive`; a ping that arrives after our close frame
        must not raise out of the reader (nothing may follow a close frame: no pong)."""
        if self._peer_closed is not None:
            return
        await super().pong(message)

    async def _close(self, code: int, message: bytes, drain: bool) -> bool:
        """After a protocol error (1007 bad UTF-8, 1009 too big, ...) aiohttp sends its close
        frame and drops the TCP connection at once; the peer's close reply then meets a
        closed socket and many clients (aiohttp's among them) report 1006 instead of our
        code. Here we linger up to LINGER_S for the peer to finish the close handshake
        (incoming bytes are read and discarded meanwhile), then close."""
        reader = self._reader
        if self._closed or self._writer is None or reader is None or reader.exception() is None:
            return await super().close(code=code, message=message, drain=drain)
        self._set_closed()
        try:
            await self._writer.close(code, message)
            if self._payload_writer is not None:
                await self._payload_writer.drain()
            transport = self._req.transport if self._req is not None else None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LINGER_S
            while transport is not None and not transport.is_closing() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        except Exception as exc:  # the peer is gone already
            log.debug("close after protocol error: %s", exc)
        finally:
            self._set_code_close_transport(code)  # type: ignore[arg-type]
            self._parser = None
        return True


def _abort_if_open(transport: asyncio.Transport) -> None:
    """The end of a closed socket's grace for unsent bytes."""
    try:
        if transport.get_write_buffer_size() > 0:
            transport.abort()
    except Exception as exc:  # already gone
        log.debug("abort after close: %s", exc)


def is_upgrade(request: web.BaseRequest) -> bool:
    """A well-formed WebSocket upgrade request (RFC 6455 §4.2.1), checked before any work."""
    h = request.headers
    return (
        h.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in h.get("Connection", "").lower()
        and h.get("Sec-WebSocket-Version", "") == "13"
        and bool(h.get("Sec-WebSocket-Key"))
    )


def direct_tls(request: web.BaseRequest) -> tuple[bool, bytes | None]:
    """Whether the request came over a TLS socket of ours, and the client certificate OpenSSL
    verified during that handshake (DER), if the client presented one."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return False, None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return True, der


class GatewayApp:
    """`shared`: what every connection is given; `ready`: the gateway's readiness;
    `metrics_on_port`: serve /metrics here too (CSMS_METRICS_ON_OCPP_PORT);
    `trusted_proxies`, `client_cert_header`: whose forwarded headers count
    (services/gateway/proxies.py); `client_trust`: the CA bundle a forwarded client
    certificate must chain to (tls.py)."""

    def __init__(
        self,
        *,
        registry: Registry,
        ownership: Ownership,
        authenticator: auth.Authenticator,
        admission: Admission,
        shared: ConnectionShared,
        upgrade_limits: UpgradeLimits,
        max_frame_bytes: int,
        ocpp21: bool,
        ready: Callable[[], bool],
        metrics_on_port: bool = False,
        trusted_proxies: TrustedProxies = TrustedProxies(),
        client_cert_header: str = "",
        client_trust: tls.ClientTrust = tls.ClientTrust(),
    ) -> None:
        self.registry = registry
        self.ownership = ownership
        self.auth = authenticator
        self.admission = admission
        self.shared = shared
        self.max_frame_bytes = max_frame_bytes
        self.ocpp21 = ocpp21
        self.proxies = trusted_proxies
        self.client_cert_header = client_cert_header
        self.client_trust = client_trust
        up = upgrade_limits  # per address: slow a site's chargers, refuse a flood
        self.upgrades: KeyedBuckets[str] = KeyedBuckets(up.rate, up.burst)
        self.upgrade_max_wait_s = up.max_wait_s
        self.handlers: set[asyncio.Task[object]] = set()
        self.app = web.Application()
        self.app.router.add_get("/ocpp/{tail:.*}", self.handle)
        add_health_routes(self.app, ready, metrics=metrics_on_port)

    @staticmethod
    def _refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
        metrics.rejected(reason)
        return web.Response(status=status, text=reason.replace("_", " ") + "\n", headers=headers)

    def forwarded(self, request: web.BaseRequest) -> Forwarded:
        """Who the client is: the TCP peer, or what a trusted proxy says (proxies.py)."""
        return forwarded(request.remote or "", request.headers, self.proxies, self.client_cert_header)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The handshake, then the connection until it closes. This coroutine and the ones it
        awaits live as long as the socket, so they hold only what the connection needs (memory
        per idle connection): the checks, the set-up and the tear-down run in coroutines that
        finish (`_handshake`, `_open`, `_closed`), and nothing is logged from this frame
        (`logging` materialises the calling frame's frame object, ~330 B, which the frame then
        keeps for the life of the socket)."""
        accepted = await self._handshake(request)
        if not isinstance(accepted, Accepted):
            return accepted
        ws = accepted.ws
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            conn = await self._open(accepted)
            del accepted  # the connection holds what it needs of it
            if conn is not None:
                try:
                    if await self.ownership.announce_connected(conn):
                        await conn.run()
                finally:
                    await self._closed(conn)
        finally:
            if task is not None:
                self.handlers.discard(task)
        return ws

    async def _handshake(self, request: web.Request) -> "web.StreamResponse | Accepted":
        """Every check before the upgrade, then the upgrade: the refusal to answer, the
        socket closed 1002 (no acceptable subprotocol), or the accepted socket."""
        fwd = self.forwarded(request)
        remote = fwd.remote
        if self.registry.stopping:
            return self._refuse(503, "shutting_down")
        admitted, wait = self.upgrades.reserve(remote, self.upgrade_max_wait_s)
        if not admitted:
            return self._refuse(429, "upgrade_flood", {"Retry-After": str(math.ceil(wait))})
        if wait > 0:
            await asyncio.sleep(wait)  # past the burst: queued behind the address's earlier upgrades
        retry_after = self.admission.upgrade_retry_after()
        if retry_after:  # measured overload (services/gateway/admission.py)
            return self._refuse(503, "overloaded", {"Retry-After": str(retry_after)})
        station_id = auth.station_id_from_path(request.raw_path)
        if station_id is None:
            log.info("refused identity %.80r from %s", request.raw_path, remote)
            return self._refuse(400, "bad_station_id")
        if not is_upgrade(request):
            return self._refuse(400, "not_websocket")
        is_tls, peer_der = direct_tls(request)
        transport = tls.transport_of(peer_der, is_tls, fwd, self.client_trust, self.shared.clock())
        if isinstance(transport, tls.Refusal):
            log.info("station=%s from %s refused: 403 %s (%s)", station_id, remote, transport.reason, transport.detail)
            return self._refuse(403, transport.reason)
        try:
            async with asyncio.timeout(self.shared.limits.open_timeout_s):
                with self.admission.track():
                    outcome = await self.auth.authenticate(station_id, request.headers.get("Authorization"), remote, transport)
        except (StoreError, TimeoutError) as exc:
            log.warning("station=%s handshake: store unavailable (%s)", station_id, exc)
            return self._refuse(503, "store_unavailable", {"Retry-After": "5"})
        if not outcome.ok:
            log.info("station=%s from %s refused: %d %s", station_id, remote, outcome.status, outcome.reason)
            return self._refuse(outcome.status, outcome.reason, outcome.headers)
        ping_s = outcome.station.ws_ping_interval_s if outcome.station is not None else None
        proto = choose_subprotocol(request.headers.get("Sec-WebSocket-Protocol"), self.ocpp21)
        ws = OcppWebSocket(
            protocols=(proto,) if proto else (),
            max_msg_size=self.max_frame_bytes,
            compress=True,
            heartbeat=None,
            autoping=True,
        )
        await ws.prepare(request)
        if proto is None:
            metrics.rejected("no_subprotocol")
            log.info("station=%s offered no supported subprotocol (%r); closing 1002", station_id, request.headers.get("Sec-WebSocket-Protocol"))
            await ws.close(code=CLOSE_PROTOCOL_ERROR, message=b"no supported OCPP subprotocol")
            return ws
        return Accepted(ws, station_id, SUBPROTOCOLS[proto], proto, remote, outcome.profile, ping_s)

    async def _open(self, a: "Accepted") -> Connection | None:
        """Claim the station, register its connection (fencing older ones): the connection,
        or None when the socket was closed instead."""
        ownership, ws, station_id = self.ownership, a.ws, a.station_id
        try:
            with self.admission.track(store=True, completes=True):
                epoch, prev = await ownership.claim(station_id)
        except Exception as exc:
            log.warning("station=%s ownership claim failed (%s); closing 1011", station_id, exc)
            await ws.close(code=1011, message=b"try again later")
            return None
        conn = Connection(self.shared, ws, station_id, a.version, epoch, a.remote, a.subprotocol, a.profile,
                          ping_interval_s=a.ping_interval_s)
        if not await ownership.adopt(conn, prev):
            await ws.close(code=1008, message=b"replaced by a newer connection")
            return None
        metrics.connection_opened(a.version)
        log.info("station=%s connected from %s (%s, epoch %d, security profile %d)",
                 station_id, a.remote, a.subprotocol, epoch, a.profile)
        return conn

    async def _closed(self, conn: Connection) -> None:
        """After the connection ended (or its StationConnected could not be published)."""
        conn._shutdown()
        metrics.connection_closed(conn.version)
        log.info("station=%s disconnected (close code %s)", conn.station_id, conn.close_code)
        await self.ownership.release(conn)


@dataclass(frozen=True, slots=True)
class Accepted:
    """An upgraded socket whose station passed every check of the handshake."""

    ws: OcppWebSocket
    station_id: str
    version: OcppVersion
    subprotocol: str
    remote: str
    profile: int
    ping_interval_s: float | None
