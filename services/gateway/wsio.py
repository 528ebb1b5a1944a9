"""What the gateway needs of a server WebSocket beyond aiohttp's public API (ADR 017).

aiohttp (3.14) has no public way to: see that the peer sent anything (its heartbeat hook
is only installed with `heartbeat=`, and that heartbeat closes with 1006 without a close
frame, ties the pong timeout to half the period and `transport.close()`s, which a peer
that stops reading holds open forever); write a ping without awaiting the writer's drain
(a timer callback cannot await); tell how many bytes the socket has not sent; or abort the
TCP connection. These few functions do it, in one place, on the internals of
`web.WebSocketResponse` (`_req`, `_writer`, the request protocol's data callback); they
are pinned by tests/unit/gateway_core/test_wsio.py, which fails if an aiohttp upgrade
moves them. Every function is a no-op (or says "unknown") on a socket that is not
prepared or already gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["abort", "buffered", "limit_send_buffer", "off_data", "on_data", "ping_nowait", "transport_of"]

log = logging.getLogger("csms.gateway.wsio")


def transport_of(ws: web.WebSocketResponse) -> asyncio.Transport | None:
    req = getattr(ws, "_req", None)
    transport = getattr(req, "transport", None) if req is not None else None
    return transport


def buffered(ws: web.WebSocketResponse) -> int:
    """Bytes written to the socket and not yet taken by the kernel (0 when gone)."""
    transport = transport_of(ws)
    if transport is None:
        return 0
    try:
        return transport.get_write_buffer_size()
    except Exception:  # a closed uvloop transport may refuse
        return 0


def limit_send_buffer(ws: web.WebSocketResponse, high: int) -> None:
    """Pause writers (aiohttp's drain) only beyond `high` unsent bytes: below it a send
    never waits, at it the gateway aborts the socket instead (connection.py)."""
    transport = transport_of(ws)
    if transport is not None:
        try:
            transport.set_write_buffer_limits(high=high)
        except Exception as exc:  # not a flow-controlled transport
            log.debug("set_write_buffer_limits: %s", exc)


def on_data(ws: web.WebSocketResponse, callback: Callable[[], None]) -> bool:
    """Call `callback()` for every chunk of bytes the peer sends (a frame, a pong, a close):
    liveness at the cost of one call per TCP read. False if the socket already has such a
    hook (aiohttp's own heartbeat) or is not prepared."""
    req = getattr(ws, "_req", None)
    protocol: Any = getattr(req, "protocol", None) if req is not None else None
    if protocol is None or not hasattr(protocol, "_data_received_cb") or protocol._data_received_cb is not None:
        return False
    protocol._data_received_cb = callback
    return True


def off_data(ws: web.WebSocketResponse) -> None:
    """Remove the `on_data` hook (it references its owner: no cycle left behind)."""
    req = getattr(ws, "_req", None)
    protocol: Any = getattr(req, "protocol", None) if req is not None else None
    if protocol is not None and hasattr(protocol, "_data_received_cb"):
        protocol._data_received_cb = None


def ping_nowait(ws: web.WebSocketResponse) -> bool:
    """Write a ping frame now (it goes into the transport's buffer, never waits). False if
    the socket is closing or gone."""
    writer: Any = getattr(ws, "_writer", None)
    if writer is None or ws.closed:
        return False
    try:
        writer._write_websocket_frame(b"", WSMsgType.PING, 0)
    except (ConnectionError, RuntimeError, AttributeError):
        return False
    return True


def abort(ws: web.WebSocketResponse) -> None:
    """Drop the TCP connection at once, discarding unsent bytes. The reader wakes with the
    connection lost (aiohttp then reports close code 1006 unless one was exchanged); a
    pending drain or close wait fails at once."""
    transport = transport_of(ws)
    if transport is not None:
        transport.abort()
