"""The gateway's command partition: CSMS -> station commands and fences (ADR 001).

Reads only partition `gateway_ordinal(gateway_id)` of csms.commands.v1 (manual
assignment, from the end: a command issued while no gateway read it has expired by
now). The partition reader only enqueues: each command runs as its own task, at most
`command_concurrency` at once (backpressure on the reader beyond that), commands of
one station strictly in order. A command is built into its OCPP CALL from the one command
vocabulary (services/common/ocpp/commands.py); one for a station that is not connected
here is re-routed once through the `CommandRouter`. A fence (the typed `Command.fence_epoch`,
or from a gateway before it, command type "_Fence" with the epoch in its params) closes
this gateway's socket of the station if that socket is older.

A revocation (`_Revoke`, ADR 017; `routing.broadcast_revoke` sends one to every
partition) is handled in the reader itself, never queued behind the station's command
chain nor re-routed: `on_revoke(station_id)` (the authenticator's `invalidate`: this
gateway's auth caches forget the station) on every gateway; with `close`, the gateway
holding the station's socket closes it 1008 "revoked: <reason>" at once (in the
background, bounded by CSMS_WS_CLOSE_TIMEOUT_S, then aborted: a peer that never reads
cannot delay it). An expired revocation is ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from services.common import codec, topics
from services.common.bus.port import Handler as RecordHandler
from services.common.bus.port import Record, Subscription
from services.common.config import gateway_ordinal
from services.common.errors import ConfigError, RecordTooLarge
from services.common.events import Body, CommandIssued, CommandResult, Envelope
from services.common.ocpp import commands as vocabulary
from services.common.ocpp.redact import redact, redact_response
from services.common.ocpp.wire import json_default
from services.common.routing import FENCE, REVOKE, CommandRouter, Sent
from services.common.timeutil import Clock
from services.gateway import frames, metrics
from services.gateway.publisher import ConnectionGone, Publisher, new_event_id
from services.gateway.registry import Registry

__all__ = ["CommandRunner", "PartitionReader", "Revocation", "fence_epoch", "revocation"]

log = logging.getLogger("csms.gateway.commands")

_RESULT_GRACE_S = 30.0   # how long a result may be withheld by a bus outage
CLOSE_POLICY = 1008
_REASON_MAX = 100        # close reasons are at most 123 bytes (RFC 6455); "revoked: " + this


class PartitionReader(Protocol):
    """The bus operations the runner uses to read its command partition."""

    async def partitions(self, topic: str) -> int: ...

    async def assign(self, topic: str, partition: int, handler: RecordHandler, *, from_beginning: bool = False) -> Subscription: ...


def fence_epoch(cmd: codec.Command) -> int | None:
    """The epoch of a fence, None for any other command. A fence from a gateway that predates
    the typed field (a rolling upgrade) is command type "_Fence" with {"epoch": n} params."""
    if cmd.fence_epoch is not None:
        return cmd.fence_epoch
    if cmd.command_type != FENCE:
        return None
    try:
        return int(orjson.loads(cmd.params_json or "{}").get("epoch", cmd.target_epoch))
    except (ValueError, AttributeError, TypeError):
        return cmd.target_epoch


@dataclass(frozen=True, slots=True)
class Revocation:
    reason: str
    close: bool


def revocation(cmd: codec.Command) -> Revocation | None:
    """The revocation a `_Revoke` command carries, None for any other command. Unreadable
    params still revoke (close=True: the safe reading of a credential change)."""
    if cmd.command_type != REVOKE:
        return None
    try:
        params = orjson.loads(cmd.params_json or "{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return Revocation("revoked", True)
    return Revocation(str(params.get("reason") or "revoked"), bool(params.get("close", True)))


def _nothing(station_id: str) -> None:
    return None


class CommandRunner:
    """`on_revoke(station_id)`: drop the station from this gateway's auth caches (wired to
    `Authenticator.invalidate`), called for every revocation this gateway reads."""

    def __init__(
        self,
        *,
        gateway_id: str,
        reader: PartitionReader,
        registry: Registry,
        router: CommandRouter,
        publisher: Publisher,
        clock: Clock,
        concurrency: int,
        command_timeout_s: float,
        call_timeout_s: float,
        on_revoke: Callable[[str], None] = _nothing,
    ) -> None:
        self.gateway_id = gateway_id
        self._on_revoke = on_revoke
        self._reader = reader
        self._registry = registry
        self._router = router
        self._publisher = publisher
        self._clock = clock
        self._timeout_s = min(command_timeout_s, call_timeout_s)
        self._sub: Subscription | None = None
        self._chains: dict[str, deque[codec.Command]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        ordinal = gateway_ordinal(self.gateway_id)
        partitions = await self._reader.partitions(topics.COMMANDS)
        if ordinal >= partitions:
            raise ConfigError(f"{self.gateway_id}: ordinal {ordinal} >= {partitions} partitions of {topics.COMMANDS}")
        self._sub = await self._reader.assign(topics.COMMANDS, ordinal, self.on_record)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
            self._sub = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- intake ------------------------------------------------------------------
    async def on_record(self, record: Record) -> None:
        try:
            cmd = codec.decode_command(record.value)
        except Exception:
            log.warning("undecodable command at %s[%d]@%d dropped", record.topic, record.partition, record.offset)
            return
        epoch = fence_epoch(cmd)
        if epoch is not None:
            self._fence(cmd.station_id, epoch)  # fences go by epoch: whoever holds an older socket closes it
            return
        revoked = revocation(cmd)
        if revoked is not None:
            self.revoke(cmd, revoked)  # every gateway, whoever it was addressed to, ahead of the chain
            return
        if not self._addressed_to_us(cmd):
            return
        await self._slots.acquire()
        chain = self._chains.get(cmd.station_id)
        if chain is not None:
            chain.append(cmd)
            return
        self._chains[cmd.station_id] = deque((cmd,))
        task = asyncio.create_task(self._run_chain(cmd.station_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _addressed_to_us(self, cmd: codec.Command) -> bool:
        """A command addressed to another gateway that reads this same partition is that
        gateway's: while a rolling update changes CSMS_GATEWAY_WORKERS, `gateway-1-p3`
        (two workers per pod) and `gateway-3` (one) both read partition 3 (workers.py).
        Only the addressee runs it (or re-routes it once, ADR 001); running it here too
        would deliver it twice. A command addressed to no one, or to a gateway on another
        partition (which cannot read it), takes the usual path."""
        target = cmd.target_gateway_id
        if not target or target == self.gateway_id:
            return True
        try:
            shared = gateway_ordinal(target) == gateway_ordinal(self.gateway_id)
        except ConfigError:
            return True
        if shared:
            log.info("station=%s command %s (%s) is for %s, which reads this partition too; left to it",
                     cmd.station_id, cmd.command_id, cmd.command_type, target)
        return not shared

    async def _run_chain(self, station_id: str) -> None:
        chain = self._chains[station_id]
        try:
            while chain:
                cmd = chain[0]
                try:
                    await self.execute(cmd)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("station=%s command %s (%s) failed", station_id, cmd.command_id, cmd.command_type)
                finally:
                    chain.popleft()
                    self._slots.release()
        finally:
            if self._chains.get(station_id) is chain:
                del self._chains[station_id]

    def _fence(self, station_id: str, epoch: int) -> None:
        conn = self._registry.get(station_id)
        if conn is not None and conn.epoch < epoch:
            metrics.FENCED.inc()
            log.warning("station=%s fenced by epoch %d (ours %d); closing 1008", station_id, epoch, conn.epoch)
            self._registry.close_later(conn, 1008, "connected to another gateway")

    def revoke(self, cmd: codec.Command, revoked: Revocation) -> None:
        """Apply a revocation now (synchronously: nothing queued can delay it)."""
        station_id = cmd.station_id
        if cmd.expires_at <= self._clock():
            log.info("station=%s revocation %s (%s) expired before delivery; ignored", station_id, cmd.command_id, revoked.reason)
            metrics.COMMANDS.labels(command_type=REVOKE, status="Expired").inc()
            return
        try:
            self._on_revoke(station_id)
        except Exception:  # the close below must still happen
            log.exception("station=%s auth cache invalidation failed", station_id)
        conn = self._registry.get(station_id)
        if revoked.close and conn is not None:
            metrics.COMMANDS.labels(command_type=REVOKE, status="Closed").inc()
            log.warning("station=%s credentials revoked (%s, by %s); closing 1008", station_id, revoked.reason, cmd.issuer)
            self._registry.close_later(conn, CLOSE_POLICY, f"revoked: {revoked.reason[:_REASON_MAX]}")
        else:
            metrics.COMMANDS.labels(command_type=REVOKE, status="Invalidated").inc()
            log.info("station=%s credentials revoked (%s, by %s); auth caches invalidated", station_id, revoked.reason, cmd.issuer)

    # -- one command -----------------------------------------------------------
    async def execute(self, cmd: codec.Command) -> None:
        now = self._clock()
        remaining = (cmd.expires_at - now).total_seconds()
        if remaining <= 0:
            log.info("station=%s command %s (%s) expired before delivery; dropped", cmd.station_id, cmd.command_id, cmd.command_type)
            metrics.COMMANDS.labels(command_type=cmd.command_type, status="Expired").inc()
            return
        conn = self._registry.get(cmd.station_id)
        if conn is None or not conn.alive():
            await self._reroute(cmd, remaining)
            return
        version = conn.version
        try:
            params: Any = orjson.loads(cmd.params_json or "{}")
            if not isinstance(params, dict):
                raise vocabulary.InvalidCommand("params must be a JSON object")
            action, payload = vocabulary.to_ocpp(cmd.command_type, params, version)
        except vocabulary.UnsupportedCommand as exc:
            await self._result(cmd, "NotSupported", remaining, description=str(exc), version=version)
            return
        except ValueError as exc:  # InvalidCommand, bad JSON
            await self._result(cmd, "Rejected", remaining, code="InvalidCommand", description=str(exc), version=version)
            return
        # the station gets `payload`; every record made of it gets `recorded`, without credentials
        # (a rotated password, network passwords: services/common/ocpp/redact.py)
        recorded = redact(action, payload)
        await self._publish(cmd, CommandIssued(cmd.command_id, cmd.command_type, action, orjson.dumps(recorded, default=json_default).decode(), cmd.issuer), remaining, version=version, action=action)
        timeout = min(remaining, self._timeout_s)
        try:
            mid, answer = await conn.call(action, payload, timeout)
        except TimeoutError:
            await self._result(cmd, "Timeout", remaining, description=f"no answer within {timeout:.0f} s", version=version, action=action,
                               request=recorded)
            return
        except ConnectionGone:
            await self._result(cmd, "Timeout", remaining, description="station disconnected before answering", version=version, action=action,
                               request=recorded)
            return
        if isinstance(answer, frames.Error):
            await self._result(cmd, "Rejected", remaining, code=answer.code, description=answer.description, version=version, action=action, mid=mid,
                               request=recorded)
            return
        response = redact_response(action, answer.payload if isinstance(answer.payload, dict) else {})
        try:
            status, normalized = vocabulary.from_ocpp(cmd.command_type, action, response, version)
        except Exception:
            log.exception("station=%s cannot read the answer to %s", cmd.station_id, action)
            status, normalized = "Unknown", response
        await self._result(cmd, status, remaining, response=normalized, version=version, action=action, mid=mid, request=recorded)

    async def _reroute(self, cmd: codec.Command, remaining: float) -> None:
        try:
            routed = await self._router.reroute(cmd, this_gateway=self.gateway_id)
        except Exception as exc:  # the owner lookup or the bus failed: the station is offline to us
            log.warning("station=%s command %s could not be re-routed: %s", cmd.station_id, cmd.command_id, exc)
        else:
            if isinstance(routed, Sent):
                log.info("station=%s command %s re-routed to %s", cmd.station_id, cmd.command_id, routed.gateway_id)
                return
        await self._result(cmd, "StationOffline", remaining, description="station is not connected")

    async def _result(
        self, cmd: codec.Command, status: str, remaining: float, *, response: dict[str, Any] | None = None,
        code: str = "", description: str = "", version: str = "", action: str = "", mid: str = "",
        request: dict[str, Any] | None = None,
    ) -> None:
        """`action`/`request`: the OCPP action and payload the station was sent (ADR 016 §1),
        so a consumer folds the result without joining it to its CommandIssued; empty when
        the command never became a CALL (offline, not translatable)."""
        metrics.COMMANDS.labels(command_type=cmd.command_type, status=status).inc()
        body = CommandResult(
            command_id=cmd.command_id, command_type=cmd.command_type, status=status,
            response_json=orjson.dumps(response or {}, default=str).decode(),
            error_code=code, error_description=description[:255],
            ocpp_action=action,
            request_json="" if request is None else orjson.dumps(request, default=json_default).decode(),
        )
        await self._publish(cmd, body, remaining, version=version, action=action, mid=mid)

    async def _publish(self, cmd: codec.Command, body: Body, remaining: float, *, version: str = "", action: str = "", mid: str = "") -> None:
        env = Envelope(
            event_id=new_event_id(), station_id=cmd.station_id, received_at=self._clock(), body=body,
            gateway_id=self.gateway_id, ocpp_version=version, message_id=mid, action=action,
        )
        deadline = time.monotonic() + max(remaining, 0.0) + _RESULT_GRACE_S
        try:
            published = await self._publisher.publish(env, deadline=deadline)
        except RecordTooLarge as exc:
            # A station's answer (GetConfiguration, a report) can be as large as a frame: keep
            # the command's outcome, drop the body that cannot be a record, and say so.
            log.warning("station=%s %s for command %s too large: %s", cmd.station_id, type(body).__name__, cmd.command_id, exc)
            smaller: list[Body] = []
            if isinstance(body, CommandResult):
                body = dataclasses.replace(body, response_json="{}", error_code=body.error_code or "ResponseTooLarge", error_description=str(exc)[:255])
                # The request is what a consumer folds the result with: kept unless even
                # without the response the record is too large.
                smaller = [body, dataclasses.replace(body, request_json="")]
            elif isinstance(body, CommandIssued):
                smaller = [dataclasses.replace(body, payload_json="{}")]
            published = False
            for i, candidate in enumerate(smaller):
                try:
                    published = await self._publisher.publish(dataclasses.replace(env, body=candidate), deadline=deadline)
                    break
                except RecordTooLarge:
                    if i == len(smaller) - 1:
                        raise
            if not smaller:
                return
        if not published:
            log.warning("station=%s %s for command %s not published (bus down)", cmd.station_id, type(body).__name__, cmd.command_id)
