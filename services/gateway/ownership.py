"""Station ownership and fencing (RELIABILITY row 11, "Ownership fencing"; ADR 001).

station -> (gateway id, epoch) lives in the store. The newest authenticated connection
wins: it claims a strictly greater epoch; an older socket of the same station on this
gateway is closed 1008 at once, one on another gateway gets a fence on that gateway's
command partition (`CommandRouter.fence`; that gateway closes its socket if the socket's
epoch is older, services/gateway/commands.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from services.common.errors import StoreError
from services.common.events import Envelope, StationConnected, StationDisconnected
from services.common.routing import CommandRouter, Sent
from services.common.store.port import Owner, OwnershipStore
from services.common.timeutil import Clock
from services.gateway import metrics
from services.gateway.coalesce import Coalescer
from services.gateway.publisher import Publisher, new_event_id
from services.gateway.registry import Registry, StationSocket

__all__ = ["Ownership"]

log = logging.getLogger("csms.gateway.ownership")
# A close frame without a status code (RFC 6455 §7.1.5: "1005"); aiohttp reports it as 0 or None.
_NO_STATUS = 1005

_DISCONNECT_PUBLISH_S = 10.0


class Ownership:
    """Claims, adopts and releases the stations connecting to this gateway."""

    __slots__ = ("_store", "_registry", "_router", "_publisher", "_gateway_id", "_clock", "_claims")

    def __init__(self, *, store: OwnershipStore, registry: Registry, router: CommandRouter, publisher: Publisher,
                 gateway_id: str, clock: Clock, batched: bool = True) -> None:
        self._store = store
        self._registry = registry
        self._router = router
        self._publisher = publisher
        self._gateway_id = gateway_id
        self._clock = clock
        # concurrent claims (a reconnect storm) go to the store as batches (coalesce.py; `batched`)
        self._claims: Coalescer[str, tuple[int, Owner | None]] = Coalescer(self._claim_batch, missing=(0, None), share=False,
                                                                           batched=batched)

    async def _claim_batch(self, station_ids: Sequence[str]) -> dict[str, tuple[int, Owner | None]]:
        return await self._store.claim_stations(station_ids, self._gateway_id)

    async def claim(self, station_id: str) -> tuple[int, Owner | None]:
        """(new epoch, the owner record it replaced). Raises StoreError if the store is unusable."""
        epoch, prev = await self._claims.get(station_id)
        if epoch <= 0:
            raise StoreError(f"claim of {station_id} not answered by the store")
        return epoch, prev

    async def adopt(self, conn: StationSocket, prev: Owner | None) -> bool:
        """Make `conn` the station's local connection and fence older ones.
        False if an even newer connection of the station is already registered here."""
        registry = self._registry
        old = registry.get(conn.station_id)
        if old is not None and old.epoch > conn.epoch:
            metrics.FENCED.inc()
            log.warning("station=%s connection epoch %d lost to a newer one (%d)", conn.station_id, conn.epoch, old.epoch)
            return False
        registry.put(conn)
        if old is not None and old is not conn:
            metrics.FENCED.inc()
            log.warning("station=%s second socket (epoch %d); closing the older one (epoch %d) 1008",
                        conn.station_id, conn.epoch, old.epoch)
            registry.close_later(old, 1008, "replaced by a newer connection")
        if prev is not None and prev.gateway_id != self._gateway_id and prev.connected:
            try:
                routed = await self._router.fence(conn.station_id, conn.epoch, prev.gateway_id)
            except Exception as exc:  # bus down: the old socket dies with its pod or on its next command
                log.warning("station=%s fence for %s not sent: %s", conn.station_id, prev.gateway_id, exc)
            else:
                if not isinstance(routed, Sent):
                    log.warning("station=%s cannot fence %s: %s", conn.station_id, prev.gateway_id, routed.reason)
        return True

    async def announce_connected(self, conn: StationSocket) -> bool:
        """Publish StationConnected (withheld while the bus is down); False if the station left."""
        env = Envelope(
            event_id=new_event_id(), station_id=conn.station_id, received_at=self._clock(),
            body=StationConnected(epoch=conn.epoch, remote_addr=conn.remote, subprotocol=conn.subprotocol,
                                  security_profile=conn.security_profile),
            gateway_id=self._gateway_id, ocpp_version=conn.version,
        )
        return await self._publisher.publish(env, alive=conn.alive)

    async def release(self, conn: StationSocket) -> None:
        """After the socket closed: unregister, publish StationDisconnected, release ownership."""
        self._registry.remove(conn)
        env = Envelope(
            event_id=new_event_id(), station_id=conn.station_id, received_at=self._clock(),
            body=StationDisconnected(epoch=conn.epoch, close_code=int(conn.close_code or _NO_STATUS), reason=""),
            gateway_id=self._gateway_id, ocpp_version=conn.version,
        )
        if not await self._publisher.publish(env, deadline=time.monotonic() + _DISCONNECT_PUBLISH_S):
            log.warning("station=%s StationDisconnected not published (bus down)", conn.station_id)
        try:
            await self._store.release_station(conn.station_id, self._gateway_id, conn.epoch)
        except Exception as exc:
            log.warning("station=%s release_station failed: %s", conn.station_id, exc)
