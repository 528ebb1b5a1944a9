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
- `assign` reads one partition without a group (the gateway's command partition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

__all__ = ["Record", "Handler", "Subscription", "Bus", "partition_for", "murmur2"]

Header = tuple[str, bytes]


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


class Subscription(Protocol):
    async def stop(self) -> None:
        """Leave the group (or release the partition); uncommitted records go to others."""


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

    async def assign(
        self,
        topic: str,
        partition: int,
        handler: Handler,
        *,
        from_beginning: bool = False,
    ) -> Subscription:
        """Read one partition without a group, starting at the end unless told otherwise."""


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
