"""`memory://`: an in-process bus with Kafka's semantics.

A product feature (embedded mode: a laptop, a small site, a demo), not a test double:
topics with partitions, murmur2 key placement, per-partition order, consumer groups
that share partitions and rebalance when members come and go, offsets committed only
after the handler returned (a failing handler gets the same record again), and
manual partition assignment. It carries the same encoded bytes and headers as Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from services.common.bus import metrics
from services.common.bus.port import Handler, Header, Record, partition_for
from services.common.errors import BusUnavailable

__all__ = ["MemoryBus"]

log = logging.getLogger("csms.bus.memory")

_RETRY_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class _Partition:
    records: list[Record] = field(default_factory=list)
    base: int = 0  # offset of records[0] (older records were trimmed)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def wait_beyond(self, offset: int) -> None:
        if self.end > offset:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        await fut


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _PartitionReader:
    """Delivers one partition's records to a handler, one at a time, in order."""

    def __init__(self, bus: "MemoryBus", topic: str, partition: int, handler: Handler, group: "_Group | None", start: int) -> None:
        self.bus, self.topic, self.partition, self.handler, self.group = bus, topic, partition, handler, group
        self.position = start
        self._stopping = False
        labels = (topic, group.name if group is not None else "")
        self._lag = metrics.CONSUMER_LAG.labels(*labels)
        self._failures = metrics.HANDLER_FAILURES.labels(*labels)
        self._records = metrics.RECORDS.labels(*labels)
        self.task = asyncio.create_task(self._run(), name=f"bus-reader-{topic}-{partition}")

    async def _run(self) -> None:
        part = self.bus._topic(self.topic)[self.partition]
        attempt = 0
        while not self._stopping:
            if self.group is not None:
                self.position = max(self.position, self.group.committed.get((self.topic, self.partition), 0))
            self.position = max(self.position, part.base)
            if part.end <= self.position:
                await part.wait_beyond(self.position)
                continue
            record = part.records[self.position - part.base]
            try:
                await self.handler(record)
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise
                # the handler's own awaited work was cancelled: a failure like any other
                self._failures.inc()
                self._failed(record, attempt)
                await asyncio.sleep(_RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)])
                attempt += 1
                continue
            except Exception:
                self._failures.inc()
                delay = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S) - 1)]
                attempt += 1
                log.exception(
                    "handler failed on %s[%d]@%d (attempt %d); redelivering in %.2fs",
                    self.topic, self.partition, record.offset, attempt, delay,
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.position = record.offset + 1
            self._records.inc()
            if self.group is not None:
                self.group.commit(self.topic, self.partition, self.position)
                self._lag.set(self.bus.lag(self.group.name, self.topic))
            else:
                self._lag.set(part.end - self.position)

    def _failed(self, record: Record, attempt: int) -> None:
        log.error("handler cancelled on %s[%d]@%d (attempt %d); redelivering",
                  self.topic, self.partition, record.offset, attempt + 1)

    async def stop(self, *, abandon: bool = False) -> None:
        """Graceful: finish the record in hand, then stop. abandon: die now (a crash)."""
        self._stopping = True
        part = self.bus._topic(self.topic)[self.partition]
        if abandon or not self.task.done():
            # Wake a reader parked on an empty partition; a busy one finishes its record.
            part.wake()
        if abandon:
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


class _Group:
    def __init__(self, bus: "MemoryBus", name: str, topic: str) -> None:
        self.bus, self.name, self.topic = bus, name, topic
        self.committed: dict[tuple[str, int], int] = {}
        self.members: list[_Member] = []
        self.lock = asyncio.Lock()

    def commit(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if offset > self.committed.get(key, -1):
            self.committed[key] = offset

    async def rebalance(self) -> None:
        """Range-style assignment over the current members, in join order."""
        n = len(self.bus._topic(self.topic))
        for m in self.members:
            await m.revoke_all()
        for i in range(n):
            if self.members:
                self.members[i % len(self.members)].take(i)


class _Member:
    def __init__(self, bus: "MemoryBus", group: _Group, handler: Handler) -> None:
        self.bus, self.group, self.handler = bus, group, handler
        self.readers: dict[int, _PartitionReader] = {}

    def take(self, partition: int) -> None:
        start = self.group.committed.get((self.group.topic, partition), 0)
        self.readers[partition] = _PartitionReader(self.bus, self.group.topic, partition, self.handler, self.group, start)

    async def revoke_all(self, *, abandon: bool = False) -> None:
        readers, self.readers = self.readers, {}
        await asyncio.gather(*(r.stop(abandon=abandon) for r in readers.values()))

    async def stop(self, *, abandon: bool = False) -> None:
        """Leave the group; its partitions move to the remaining members."""
        async with self.group.lock:
            await self.revoke_all(abandon=abandon)
            if self in self.group.members:
                self.group.members.remove(self)
            await self.group.rebalance()

    async def crash(self) -> None:
        """Leave without finishing the record in hand (tests: a killed processor)."""
        await self.stop(abandon=True)


class _Assignment:
    def __init__(self, reader: _PartitionReader) -> None:
        self.reader = reader

    async def stop(self) -> None:
        await self.reader.stop()


class MemoryBus:
    """See module docstring. `default_partitions` applies to topics created on first use."""

    def __init__(self, default_partitions: int = 8, retention: int = 500_000) -> None:
        self.default_partitions = default_partitions
        self.retention = retention
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._available = True
        self._subs: list[_Member | _Assignment] = []

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for s in subs:
            await s.stop()

    @property
    def healthy(self) -> bool:
        return self._available

    def set_available(self, available: bool) -> None:
        """Simulate a broker outage: publishes raise BusUnavailable while False."""
        self._available = available

    # -- topics ------------------------------------------------------------
    def _topic(self, topic: str) -> list[_Partition]:
        parts = self._topics.get(topic)
        if parts is None:
            parts = self._topics[topic] = [_Partition() for _ in range(self.default_partitions)]
        return parts

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        if topic not in self._topics:
            self._topics[topic] = [_Partition() for _ in range(partitions)]

    async def partitions(self, topic: str) -> int:
        return len(self._topic(topic))

    # -- produce -----------------------------------------------------------
    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> None:
        if not self._available:
            raise BusUnavailable("memory bus marked unavailable")
        parts = self._topic(topic)
        kb = key.encode()
        p = partition_for(kb, len(parts)) if partition is None else partition
        if not 0 <= p < len(parts):
            raise ValueError(f"partition {p} out of range for {topic} ({len(parts)})")
        part = parts[p]
        part.records.append(
            Record(topic, p, part.end, kb, value, tuple(headers), int(time.time() * 1000))
        )
        if len(part.records) > self.retention:
            drop = len(part.records) - self.retention
            del part.records[:drop]
            part.base += drop
        part.wake()

    # -- consume -----------------------------------------------------------
    async def subscribe(self, topic: str, group: str, handler: Handler, *, from_beginning: bool = True) -> _Member:
        g = self._groups.get((group, topic))
        if g is None:
            g = self._groups[(group, topic)] = _Group(self, group, topic)
            if not from_beginning:
                for i, part in enumerate(self._topic(topic)):
                    g.committed[(topic, i)] = part.end
        member = _Member(self, g, handler)
        async with g.lock:
            g.members.append(member)
            await g.rebalance()
        self._subs.append(member)
        return member

    async def assign(self, topic: str, partition: int, handler: Handler, *, from_beginning: bool = False) -> _Assignment:
        parts = self._topic(topic)
        start = parts[partition].base if from_beginning else parts[partition].end
        sub = _Assignment(_PartitionReader(self, topic, partition, handler, None, start))
        self._subs.append(sub)
        return sub

    # -- introspection (tests, /metrics) -------------------------------------
    def end_offsets(self, topic: str) -> list[int]:
        return [p.end for p in self._topic(topic)]

    def lag(self, group: str, topic: str) -> int:
        g = self._groups.get((group, topic))
        committed = g.committed if g else {}
        return sum(p.end - committed.get((topic, i), 0) for i, p in enumerate(self._topic(topic)))


