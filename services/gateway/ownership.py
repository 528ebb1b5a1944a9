"""Station ownership and fencing (RELIABILITY row 11, "Ownership fencing"; ADR 001).

station -> (gateway id, epoch) lives in the store. The newest authenticated connection
wins: it claims a strictly greater epoch; an older socket of the same station on this
gateway is closed 1008 at once, one on another gateway gets a `_Fence` command on that
gateway's command partition (it closes its socket if the socket's epoch is older).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING

import orjson

from services.common import codec, topics
from services.common.config import gateway_ordinal
from services.common.errors import ConfigError
from services.common.events import Envelope, StationConnected, StationDisconnected
from services.common.store.port import Owner
from services.gateway import metrics
from services.gateway.hub import Hub

if TYPE_CHECKING:
    from services.gateway.connection import Connection

__all__ = ["claim", "adopt", "fence_command", "announce_connected", "release", "FENCE"]

log = logging.getLogger("csms.gateway.ownership")

FENCE = "_Fence"
_FENCE_TTL = dt.timedelta(seconds=60)
_DISCONNECT_PUBLISH_S = 10.0


async def claim(hub: Hub, station_id: str) -> tuple[int, Owner | None]:
    """(new epoch, previous owner). Raises StoreError if the store is unusable."""
    store = hub.rt.store
    prev = await store.get_owner(station_id)
    epoch = await store.claim_station(station_id, hub.gateway_id)
    return epoch, prev


async def adopt(hub: Hub, conn: "Connection", prev: Owner | None) -> bool:
    """Make `conn` the station's local connection and fence older ones.
    False if an even newer connection of the station is already registered here."""
    old = hub.connections.get(conn.station_id)
    if old is not None and old.epoch > conn.epoch:
        metrics.FENCED.inc()
        log.warning("station=%s connection epoch %d lost to a newer one (%d)", conn.station_id, conn.epoch, old.epoch)
        return False
    hub.connections[conn.station_id] = conn
    if old is not None and old is not conn:
        metrics.FENCED.inc()
        log.warning("station=%s second socket (epoch %d); closing the older one (epoch %d) 1008", conn.station_id, conn.epoch, old.epoch)
        hub.spawn(old.close(1008, "replaced by a newer connection"))
    if prev is not None and prev.gateway_id != hub.gateway_id and prev.connected:
        try:
            await hub.rt.bus.publish(
                topics.COMMANDS, conn.station_id, *fence_command(hub, conn.station_id, conn.epoch, prev.gateway_id)
            )
        except (ConfigError, ValueError) as exc:
            log.warning("station=%s cannot fence %s: %s", conn.station_id, prev.gateway_id, exc)
        except Exception as exc:  # bus down: the old socket dies with its pod or on its next command
            log.warning("station=%s fence for %s not sent: %s", conn.station_id, prev.gateway_id, exc)
    return True


def fence_command(hub: Hub, station_id: str, epoch: int, target: str) -> tuple[bytes, list[tuple[str, bytes]], int]:
    """(value, headers, partition) of a `_Fence` command for gateway `target`."""
    now = hub.rt.clock()
    cmd = codec.Command(
        command_id=str(uuid.uuid4()), station_id=station_id, command_type=FENCE,
        params_json=orjson.dumps({"epoch": epoch}).decode(), issued_at=now, expires_at=now + _FENCE_TTL,
        target_gateway_id=target, target_epoch=epoch, issuer=hub.gateway_id,
    )
    return codec.encode_command(cmd), codec.command_headers(cmd), gateway_ordinal(target)


async def announce_connected(hub: Hub, conn: "Connection") -> bool:
    """Publish StationConnected (withheld while the bus is down); False if the station left."""
    env = Envelope(
        event_id=str(uuid.uuid4()), station_id=conn.station_id, received_at=hub.rt.clock(),
        body=StationConnected(epoch=conn.epoch, remote_addr=conn.remote, subprotocol=conn.subprotocol),
        gateway_id=hub.gateway_id, ocpp_version=conn.version,
    )
    return await hub.publisher.publish(env, alive=conn.alive)


async def release(hub: Hub, conn: "Connection") -> None:
    """After the socket closed: unregister, publish StationDisconnected, release ownership."""
    if hub.connections.get(conn.station_id) is conn:
        del hub.connections[conn.station_id]
    code = conn.ws.close_code or 0
    env = Envelope(
        event_id=str(uuid.uuid4()), station_id=conn.station_id, received_at=hub.rt.clock(),
        body=StationDisconnected(epoch=conn.epoch, close_code=int(code), reason=""),
        gateway_id=hub.gateway_id, ocpp_version=conn.version,
    )
    if not await hub.publisher.publish(env, deadline=hub.monotonic() + _DISCONNECT_PUBLISH_S):
        log.warning("station=%s StationDisconnected not published (bus down)", conn.station_id)
    try:
        await hub.rt.store.release_station(conn.station_id, hub.gateway_id, conn.epoch)
    except Exception as exc:
        log.warning("station=%s release_station failed: %s", conn.station_id, exc)
