"""The bus port: what services need from Kafka, and nothing more.

Semantics every adapter (memory://, kafka://) must honour, checked by
tests/contract/test_bus_contract.py:
- A topic has a fixed number of partitions; a record without an explicit partition
  goes to `partition_for(key, n)` (Kafka's murmur2 default partitioner), so all
  records of one station stay in one partition, in order.
- `publish` returns only once the record is durably accepted (acks=all); it raises
  `BusUnavailable` when it cannot be, and the caller decides whether to retry.
- `subscribe` joins a consumer group: the group's members share the partitions;
  each partition is delivered to one member, in offset order, one record at a
  time. The offset is committed only after the handler returns, so a handler that
  raises (or a member that dies) gets the record again: at-least-once.
- `subscribe_batch` is `subscribe` with up to `max_records` records per handler call
  (a poll's worth, each partition's in offset order), committed after the handler
  returned; an outage retries the batch whole, anything else replays it one record at a
  time so that only the poison record is dead-lettered (`delivery.deliver_batch`).
- `publish_many` checks every record's size first, then sends them all concurrently and
  returns when all are durable; a key's records keep their order.
- `assign` reads one partition without a group (the gateway's command partition).
- Poison and outages (docs/dead-letters.md): a handler exception that `is_transient`
  (the store or the bus did not answer) pauses the partition and retries for as long
  as it takes; any other exception is retried a bounded number of times, then the
  record is dead-lettered to `topics.dlq_topic(topic)` and the partition moves on
  (`services.common.bus.delivery`, shared by every adapter).
- A record carrying a `csms_replay_group` header (a replay from a dead-letter topic)
  is delivered only to that group; consumers of any other group skip it.
- `publish` raises `RecordTooLarge` (not retriable, and no sign of an outage: `healthy`
  stays True) for a record over the bus's `max_record_bytes` (`record_size`).
- `read` returns a topic's retained records without a group (dead-letter listings).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

from services.common.errors import CsmsError

__all__ = [
    "Record",
    "Handler",
    "BatchHandler",
    "Outgoing",
    "Subscription",
    "Bus",
    "REPLAY_GROUP_HEADER",
    "is_transient",
    "partition_for",
    "murmur2",
    "record_size",
]

Header = tuple[str, bytes]

# Set by a replay from a dead-letter topic: only this consumer group handles the record.
REPLAY_GROUP_HEADER = "csms_replay_group"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[Header, ...] = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None


Handler = Callable[[Record], Awaitable[None]]
# A batch: one poll's records, each partition's in offset order (ADR 015).
BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]
# One record of `publish_many`: (topic, key, value, headers).
Outgoing = tuple[str, str, bytes, Sequence[Header]]


def record_size(key: bytes, value: bytes, headers: Sequence[Header] = ()) -> int:
    """What a record weighs against the bus limit and the memory bus's retention:
    key + value + header names and values (Kafka's per-record framing is left out,
    so both adapters count the same bytes)."""
    return len(key) + len(value) + sum(len(k.encode("utf-8", "surrogateescape")) + len(v) for k, v in headers)


def _cassandra_transient() -> tuple[type[BaseException], ...]:
    """The Cassandra driver's availability and timeout errors, in case one escapes the
    store adapter (it maps the common ones to StoreUnavailable). Empty without the driver."""
    try:
        from cassandra import CoordinationFailure, OperationTimedOut, Timeout, Unavailable
        from cassandra.cluster import NoHostAvailable
        from cassandra.connection import ConnectionException
        from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage
    except ImportError:  # pragma: no cover - the driver is a declared dependency
        return ()
    return (
        Timeout,  # ReadTimeout, WriteTimeout
        Unavailable,
        OperationTimedOut,
        CoordinationFailure,  # ReadFailure, WriteFailure: replicas failed, not the data
        NoHostAvailable,
        ConnectionException,
        OverloadedErrorMessage,
        IsBootstrappingErrorMessage,
    )


_TRANSIENT_TYPES: tuple[type[BaseException], ...] | None = None


def is_transient(exc: BaseException) -> bool:
    """True when a handler's exception means "a dependency did not answer" (an outage:
    pause and retry for as long as it takes, never dead-letter) rather than "this record
    cannot be processed" (poison: bounded tries, then the dead-letter topic).

    Transient: a `CsmsError` with `retriable` (BusUnavailable, StoreUnavailable),
    TimeoutError, OSError (ConnectionError included) and the Cassandra driver's
    availability/timeout errors; also an exception raised *from* one of these, and an
    exception group whose members are all transient. Everything else is poison,
    including a cancelled await inside the handler and RecordTooLarge.
    """
    global _TRANSIENT_TYPES
    if _TRANSIENT_TYPES is None:
        _TRANSIENT_TYPES = (TimeoutError, asyncio.TimeoutError, OSError) + _cassandra_transient()
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, CsmsError):
            return bool(current.retriable)  # the error hierarchy's own verdict
        if isinstance(current, BaseExceptionGroup):
            if current.exceptions and all(is_transient(e) for e in current.exceptions):
                return True
        elif isinstance(current, _TRANSIENT_TYPES):
            return True
        current = current.__cause__
        seen += 1
    return False


class Subscription(Protocol):
    async def stop(self) -> None:
        """Leave the group (or release the partition); uncommitted records go to others."""

    def assigned(self) -> frozenset[int]:
        """The partitions this member holds now (a rebalance changes them): per-partition
        state of a former owner (e.g. per-site gauges) can be dropped."""
        ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool:
        """False while the broker is unreachable (readiness)."""
        ...

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create the topic if missing (idempotent)."""

    async def partitions(self, topic: str) -> int: ...

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> None:
        """Durably append a record; raises BusUnavailable if it could not be."""

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
    ) -> Subscription:
        """Join consumer group `group`; a new group starts at the beginning (or the end)."""

    async def subscribe_batch(
        self,
        topic: str,
        group: str,
        handler: BatchHandler,
        *,
        from_beginning: bool = True,
        max_records: int = 500,
    ) -> Subscription:
        """Like `subscribe`, but the handler gets up to `max_records` records at a time
        (whatever one poll returned, per partition in offset order); the offsets are
        committed after it returns. A batch whose handler raises a transient error is
        retried whole, for as long as it takes; one raising anything else is handed over
        again one record at a time under the dead-letter policy, so only the poison
        record is dead-lettered."""

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        """Publish records concurrently; returns when every one is durably accepted
        (acks=all), raises BusUnavailable (or RecordTooLarge) otherwise. Records with the
        same topic and key keep their order."""

    async def assign(
        self,
        topic: str,
        partition: int,
        handler: Handler,
        *,
        from_beginning: bool = False,
    ) -> Subscription:
        """Read one partition without a group, starting at the end unless told otherwise."""

    async def read(
        self,
        topic: str,
        *,
        limit: int = 1000,
        partition: int | None = None,
        start: int | None = None,
    ) -> list[Record]:
        """The topic's retained records, without a group and without committing: every
        partition (or only `partition`, from offset `start`) from its first retained
        offset up to its end offset at call time, at most `limit` per partition, merged
        oldest first and cut to `limit`. A missing topic reads as empty."""


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner hash)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8) + ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    index = length & ~3
    if extra >= 3:
        h ^= (data[index + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[index + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[index] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Same placement as the Java client / aiokafka's DefaultPartitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
