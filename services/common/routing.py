"""One command router: how a command for a station reaches the gateway holding its socket.

Every producer of `csms.commands.v1` goes through `CommandRouter` (ADR 001): the API
(operator commands), smart charging (limits), a gateway re-routing a command whose
station moved, and a gateway fencing the older socket of a station that reconnected
elsewhere. The router looks the station's owner up in the ownership store, picks the
owner's command partition (`gateway_ordinal`), stamps the owner's epoch on the command
and produces it. The outcome is a value, never an exception for "not connected":

- `Sent(gateway_id, epoch, partition)`: produced, acks=all;
- `Offline(reason)`: no owner, the owner says disconnected, or (re-route) the owner is
  the gateway asking;
- `Unroutable(reason)`: an owner whose id has no ordinal, or an ordinal beyond the
  topic's partitions (CSMS_COMMANDS_PARTITIONS lower than the gateway count): a
  deployment error, logged as one.

A revocation (`broadcast_revoke`) is not routed: every gateway must drop the station from
its auth caches, so it goes to every command partition, whoever owns the station.

Bus failures (BusUnavailable, RecordTooLarge) propagate: the caller decides whether that
is a retry (a processor's record is redelivered) or an error answer (the API's 503).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, Protocol, TypeAlias

import orjson

from services.common import codec, topics
from services.common.config import gateway_ordinal
from services.common.errors import ConfigError
from services.common.store.port import Owner
from services.common.timeutil import Clock

__all__ = [
    "CommandRouter",
    "FENCE",
    "REVOKE",
    "Offline",
    "OwnerLookup",
    "Routed",
    "Sent",
    "Unroutable",
    "broadcast_revoke",
]

log = logging.getLogger("csms.routing")

FENCE = "_Fence"              # command_type of a fence (its epoch is `Command.fence_epoch`)
REVOKE = "_Revoke"            # command_type of a revocation, sent to every partition (ADR 017):
                              # params {"reason": ..., "close": bool}; every gateway drops the
                              # station from its auth caches, the one holding its socket closes it
FENCE_TTL = timedelta(seconds=60)
REVOKE_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Sent:
    command: codec.Command
    partition: int

    @property
    def gateway_id(self) -> str:
        return self.command.target_gateway_id


@dataclass(frozen=True, slots=True)
class Offline:
    reason: str


@dataclass(frozen=True, slots=True)
class Unroutable:
    reason: str


Routed: TypeAlias = Sent | Offline | Unroutable


class _Lookup(Enum):
    """`CommandRouter.send(owner=...)` left out: look the owner up."""

    LOOKUP = "lookup"


class OwnerLookup(Protocol):
    async def get_owner(self, station_id: str) -> Owner | None: ...


class CommandRouter:
    """Routes commands of one issuer ("api", "smart_charging", or a gateway's id).

    `publish` and `partitions` are the bus's (`bus.publish`, `bus.partitions`); `owners`
    is the ownership store. The command partition count is read once and cached: it
    only grows, and a gateway beyond it is a deployment error either way.
    """

    def __init__(
        self,
        *,
        owners: OwnerLookup,
        publish: Callable[..., Awaitable[None]],
        partitions: Callable[[str], Awaitable[int]],
        clock: Clock,
        issuer: str,
    ) -> None:
        self._owners = owners
        self._publish = publish
        self._partitions = partitions
        self._clock = clock
        self.issuer = issuer
        self._count: int | None = None

    async def owner(self, station_id: str) -> Owner | None:
        return await self._owners.get_owner(station_id)

    async def send(
        self,
        station_id: str,
        command_type: str,
        params: Mapping[str, Any],
        *,
        ttl: timedelta,
        command_id: str | None = None,
        owner: Owner | None | _Lookup = _Lookup.LOOKUP,
        before_publish: Callable[[codec.Command], None] | None = None,
    ) -> Routed:
        """Build the command for the station's current owner and produce it.

        `owner`: pass the owner already read (smart charging reads a site's owners at
        once; None = known to have none); leave it out to look it up. `before_publish` runs with the final command just
        before it is produced (the API registers its result waiter there)."""
        found = await self._owners.get_owner(station_id) if isinstance(owner, _Lookup) else owner
        now = self._clock()
        cmd = codec.Command(
            command_id=command_id or str(uuid.uuid4()),
            station_id=station_id,
            command_type=command_type,
            params_json=orjson.dumps(dict(params)).decode(),
            issued_at=now,
            expires_at=now + ttl,
            issuer=self.issuer,
        )
        return await self._route(cmd, found, before_publish)

    async def reroute(self, cmd: codec.Command, *, this_gateway: str) -> Routed:
        """A command arrived at `this_gateway` for a station it no longer holds: forward it
        once (hops 0 -> 1) to the current owner, if that is another connected gateway."""
        if cmd.hops > 0:
            return Offline("already re-routed once")
        found = await self._owners.get_owner(cmd.station_id)
        if found is not None and found.gateway_id == this_gateway:
            return Offline("station is not connected here")
        return await self._route(dataclasses.replace(cmd, hops=1), found, None)

    async def fence(self, station_id: str, epoch: int, previous_gateway: str) -> Routed:
        """Tell `previous_gateway` to close its socket of the station if older than `epoch`."""
        now = self._clock()
        cmd = codec.Command(
            command_id=str(uuid.uuid4()), station_id=station_id, command_type=FENCE,
            params_json=orjson.dumps({"epoch": epoch}).decode(),  # read by gateways before the typed field
            issued_at=now, expires_at=now + FENCE_TTL, target_gateway_id=previous_gateway,
            target_epoch=epoch, issuer=self.issuer, fence_epoch=epoch,
        )
        routed = await self._partition(previous_gateway)
        if not isinstance(routed, int):
            return routed
        await self._publish(topics.COMMANDS, station_id, codec.encode_command(cmd), codec.command_headers(cmd), partition=routed)
        return Sent(cmd, routed)

    async def _route(
        self, cmd: codec.Command, owner: Owner | None, before_publish: Callable[[codec.Command], None] | None
    ) -> Routed:
        if owner is None or not owner.connected:
            return Offline("station is not connected")
        partition = await self._partition(owner.gateway_id)
        if not isinstance(partition, int):
            log.error("station=%s command %s %s: %s", cmd.station_id, cmd.command_type, cmd.command_id, partition.reason)
            return partition
        cmd = dataclasses.replace(cmd, target_gateway_id=owner.gateway_id, target_epoch=owner.epoch)
        if before_publish is not None:
            before_publish(cmd)
        await self._publish(topics.COMMANDS, cmd.station_id, codec.encode_command(cmd), codec.command_headers(cmd), partition=partition)
        return Sent(cmd, partition)

    async def _partition(self, gateway_id: str) -> int | Unroutable:
        try:
            ordinal = gateway_ordinal(gateway_id)
        except ConfigError as exc:
            return Unroutable(str(exc))
        if self._count is None or ordinal >= self._count:
            self._count = await self._partitions(topics.COMMANDS)
        if ordinal >= self._count:
            return Unroutable(
                f"gateway {gateway_id} has no partition on {topics.COMMANDS} "
                f"({self._count} partitions): CSMS_COMMANDS_PARTITIONS is too low"
            )
        return ordinal




class _RevokeBus(Protocol):
    async def partitions(self, topic: str) -> int: ...

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Any = (), partition: int | None = None
    ) -> None: ...


async def broadcast_revoke(
    bus: _RevokeBus, station_id: str, *, reason: str, close: bool, issuer: str, clock: Clock,
    topic: str = topics.COMMANDS,
) -> None:
    """Tell every gateway that the station's credentials changed (ADR 017): each drops the
    station from its auth caches, the one holding its socket closes it (1008) if `close`.

    One `_Revoke` command (params `{"reason", "close"}`, expiring in `REVOKE_TTL`) per
    partition of csms.commands.v1, keyed by the station, explicit partition: the owner
    lookup is skipped on purpose (a station mid-reconnect may be owned by no one yet, and
    every gateway's caches must hear it anyway). Every partition is produced concurrently;
    a bus failure on any propagates (the caller answers 503; the change itself is stored,
    so a retry of the revoke is harmless). `topic`: csms.commands.v1 but in tests."""
    count = await bus.partitions(topic)
    now = clock()
    cmd = codec.Command(
        command_id=str(uuid.uuid4()),
        station_id=station_id,
        command_type=REVOKE,
        params_json=orjson.dumps({"reason": reason, "close": bool(close)}).decode(),
        issued_at=now,
        expires_at=now + REVOKE_TTL,
        issuer=issuer,
    )
    value, headers = codec.encode_command(cmd), codec.command_headers(cmd)
    await asyncio.gather(
        *(bus.publish(topic, station_id, value, headers, partition=p) for p in range(count))
    )
