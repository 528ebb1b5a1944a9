"""The gateway's local registry: station id -> its open socket on this gateway.

The registry knows a connection only through `StationSocket`, the few things the rest
of the gateway asks of one (its epoch for fencing, `call` for commands, `close`), so it
does not import the connection module (which imports what the registry's users provide:
no import circle). Closing a socket waits for the peer's close handshake (at most
CSMS_WS_CLOSE_TIMEOUT_S, then the connection is aborted: a dead peer never answers), so
`close_later` runs it in the background and keeps the task alive; fences and revocations
close this way, never holding up the command partition's reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, Protocol

from services.common.ocpp_version import OcppVersion
from services.gateway import frames

__all__ = ["Registry", "StationSocket"]


class StationSocket(Protocol):
    """What the registry, ownership and the command runner need from a connection."""

    @property
    def station_id(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    @property
    def version(self) -> OcppVersion: ...

    @property
    def remote(self) -> str: ...

    @property
    def subprotocol(self) -> str: ...

    @property
    def security_profile(self) -> int: ...

    @property
    def close_code(self) -> int | None: ...

    def alive(self) -> bool: ...

    async def close(self, code: int, reason: str) -> None: ...

    async def call(self, action: str, payload: dict[str, Any], timeout: float) -> tuple[str, frames.Result | frames.Error]: ...


class Registry:
    """One per gateway process; `stopping` is set when the gateway begins to shut down."""

    __slots__ = ("_sockets", "_background", "stopping")

    def __init__(self) -> None:
        self._sockets: dict[str, StationSocket] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.stopping = False

    def get(self, station_id: str) -> StationSocket | None:
        return self._sockets.get(station_id)

    def put(self, sock: StationSocket) -> None:
        self._sockets[sock.station_id] = sock

    def remove(self, sock: StationSocket) -> None:
        """Unregister `sock` if it is still the station's registered socket."""
        if self._sockets.get(sock.station_id) is sock:
            del self._sockets[sock.station_id]

    def __contains__(self, station_id: object) -> bool:
        return station_id in self._sockets

    def __len__(self) -> int:
        return len(self._sockets)

    def __iter__(self) -> Iterator[StationSocket]:
        return iter(list(self._sockets.values()))

    def close_later(self, sock: StationSocket, code: int, reason: str) -> None:
        self.spawn(sock.close(code, reason))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` in the background without losing the task to garbage collection."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
