"""`memory://`: an in-process bus with Kafka's semantics.

A product feature (embedded mode: a laptop, a small site, a demo), not a test double:
topics with partitions, murmur2 key placement, per-partition order, consumer groups
that share partitions and rebalance when members come and go, offsets committed only
after the handler returned (a failing handler gets the same record again), and
manual partition assignment. It carries the same encoded bytes and headers as Kafka.

Like Kafka it has a record size limit (`max_record_bytes`, `RecordTooLarge`), dead
letters (`delivery.deliver`, the same policy as KafkaBus) and retention: each partition
keeps a bounded window of records, by bytes (`retention_bytes`: key + value + headers)
and by age (`retention_s`), trimmed on publish. A consumer behind the window continues
at the first retained offset, as a Kafka consumer with auto.offset.reset=earliest does.

Batches (`subscribe_batch`, ADR 015): a member of a group has one reader for all its
partitions that hands over what they hold (up to `max_records`, a partition's records
in offset order, the starting partition rotating so none starves), as a Kafka poll
does; `batch_linger_ms` lets a batch that is not full wait that long for more records
(fewer, larger batches at a little latency). `delivery.deliver_batch` applies the
dead-letter policy to a batch exactly as the Kafka bus does.

Consumer lag (`csms_bus_consumer_lag_records{topic,group}`) is refreshed by the readers
as they go and, every `consumer_lag_interval_s`, by a timer over every subscription
(the end of each partition minus the group's committed offset), so the gauge grows while
a handler is stuck on a record (ADR 019 §6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import services.common.bus.metrics as metrics
from services.common.bus.delivery import DLQ_HEADROOM_BYTES, DeliveryPolicy, Outcome, deliver, deliver_batch
from services.common.bus.port import BatchHandler, Handler, Header, Outgoing, Record, partition_for, record_size
from services.common.errors import BusUnavailable, RecordTooLarge
from services.common.tasks import cancel_and_wait

__all__ = ["MemoryBus"]

log = logging.getLogger("csms.bus.memory")

_COMPACT_AT = 1024  # drop trimmed list slots once this many (and half the list) are dead
_TRIMMED = Record("", 0, -1, b"", b"")  # what a trimmed slot holds until compaction
_LAG_EVERY = 64  # a one-record reader refreshes the lag gauge at least this often


@dataclass
class _Partition:
    # records[head:] are retained; records[:head] were trimmed and await compaction
    # (amortised O(1) trimming from the front of a list).
    records: list[Record] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    head: int = 0
    base: int = 0  # offset of records[head] (older records were trimmed)
    bytes: int = 0  # retained bytes (record_size of records[head:])
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.records) - self.head

    @property
    def end(self) -> int:
        return self.base + self.count

    def at(self, offset: int) -> Record:
        return self.records[self.head + offset - self.base]

    def append(self, record: Record, size: int) -> None:
        self.records.append(record)
        self.sizes.append(size)
        self.bytes += size

    def trim(self, max_bytes: int, min_timestamp_ms: int) -> int:
        """Drop the oldest records while over `max_bytes` or older than `min_timestamp_ms`;
        the newest record always stays (Kafka keeps its active segment). Returns how many."""
        dropped = 0
        while self.count > 1 and (
            self.bytes > max_bytes or self.records[self.head].timestamp_ms < min_timestamp_ms
        ):
            self.bytes -= self.sizes[self.head]
            self.records[self.head] = _TRIMMED  # release the bytes now, not at compaction
            self.head += 1
            self.base += 1
            dropped += 1
        if self.head >= _COMPACT_AT and self.head * 2 >= len(self.records):
            del self.records[: self.head]
            del self.sizes[: self.head]
            self.head = 0
        return dropped

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


class _Reader:
    """What both readers share: a stop flag, a back-off that ends early on stop, and the
    consumer metrics of their (topic, group)."""

    def _init_reader(self, topic: str, group_name: str) -> None:
        self._stopping = False
        self._stop_event = asyncio.Event()
        labels = (topic, group_name)
        self._lag = metrics.CONSUMER_LAG.labels(*labels)
        self._failures = metrics.HANDLER_FAILURES.labels(*labels)
        self._records = metrics.RECORDS.labels(*labels)
        metrics.DEAD_LETTERS.labels(*labels)  # exported at 0 from the start

    async def _pause(self, delay: float) -> None:
        """A back-off that ends early when the reader is stopped."""
        try:
            await asyncio.wait_for(self._stop_event.wait(), delay)
        except asyncio.TimeoutError:
            pass


class _PartitionReader(_Reader):
    """Delivers one partition's records to a handler, one at a time, in order."""

    def __init__(self, bus: "MemoryBus", topic: str, partition: int, handler: Handler, group: "_Group | None", start: int) -> None:
        self.bus, self.topic, self.partition, self.handler, self.group = bus, topic, partition, handler, group
        self.position = start
        self._since_lag = 0
        self.group_name = group.name if group is not None else ""
        self._init_reader(topic, self.group_name)
        self.task = asyncio.create_task(self._run(), name=f"bus-reader-{topic}-{partition}")

    async def _run(self) -> None:
        part = self.bus._topic(self.topic)[self.partition]
        while not self._stopping:
            if self.group is not None:
                self.position = max(self.position, self.group.committed.get((self.topic, self.partition), 0))
            self.position = max(self.position, part.base)
            if part.end <= self.position:
                await part.wait_beyond(self.position)
                continue
            record = part.at(self.position)
            outcome = await deliver(
                record,
                self.handler,
                group=self.group_name,
                policy=self.bus.policy,
                # readers without a group (assign) have nobody to dead-letter for: they retry
                dead_letter=self.bus._dead_letter if self.group is not None else None,
                owned=lambda: not self._stopping,
                pause=self._pause,
                on_failure=self._failures.inc,
            )
            if outcome is Outcome.REVOKED:
                continue  # stopping: the record stays uncommitted for the next owner
            self.position = record.offset + 1
            if outcome is Outcome.HANDLED:
                self._records.inc()
            if self.group is not None:
                self.group.commit(self.topic, self.partition, self.position)
            self._since_lag += 1
            if self._since_lag >= _LAG_EVERY or part.end <= self.position:
                # the group's lag sums every partition: refreshed when caught up, or every
                # _LAG_EVERY records (it cost more than the delivery itself per record)
                self._since_lag = 0
                self._lag.set(self.bus.lag(self.group.name, self.topic) if self.group is not None else part.end - self.position)

    async def stop(self, *, abandon: bool = False) -> None:
        """Graceful: finish the record in hand, then stop. abandon: die now (a crash)."""
        self._stopping = True
        self._stop_event.set()
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

    def assigned(self) -> frozenset[int]:
        return frozenset(self.readers)

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


class _BatchReader(_Reader):
    """Delivers the records of a member's partitions to a batch handler (module docstring).
    Positions live in the group's committed offsets: a batch is committed after its handler
    returned, and a reader that stops with a batch in hand leaves it to the next owner."""

    def __init__(self, bus: "MemoryBus", group: _Group, handler: BatchHandler, max_records: int, linger_s: float) -> None:
        self.bus, self.group, self.handler = bus, group, handler
        self.topic = group.topic
        self.max_records, self.linger_s = max_records, linger_s
        self.partitions: list[int] = []
        self._turn = 0
        self._wake: asyncio.Future[None] | None = None
        self._init_reader(self.topic, group.name)
        self._sizes = metrics.BATCH_RECORDS.labels(self.topic, group.name)
        self.task = asyncio.create_task(self._run(), name=f"bus-batch-reader-{self.topic}-{group.name}")

    def _collect(self, parts: list[_Partition]) -> list[Record]:
        """Up to max_records uncommitted records, partition by partition, each in offset order."""
        batch: list[Record] = []
        owned = self.partitions
        if not owned:
            return batch
        committed = self.group.committed
        first = self._turn % len(owned)
        for p in owned[first:] + owned[:first]:
            part = parts[p]
            pos = max(committed.get((self.topic, p), 0), part.base)
            last = min(part.end, pos + self.max_records - len(batch))
            if last > pos:
                i = part.head + pos - part.base
                batch.extend(part.records[i : i + last - pos])
                if len(batch) >= self.max_records:
                    break
        return batch

    async def _wait(self, parts: list[_Partition]) -> None:
        """Until a record arrives in one of our partitions, or we are stopped."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = fut
        watched = [parts[p] for p in self.partitions]
        for part in watched:
            part.waiters.append(fut)
        try:
            await fut
        finally:
            self._wake = None
            for part in watched:
                try:
                    part.waiters.remove(fut)
                except ValueError:
                    pass  # woken (the partition cleared its waiters)

    async def _run(self) -> None:
        parts = self.bus._topic(self.topic)
        while not self._stopping:
            batch = self._collect(parts)
            if not batch:
                await self._wait(parts)
                continue
            if self.linger_s > 0 and len(batch) < self.max_records:
                await self._pause(self.linger_s)
                if self._stopping:
                    break
                batch = self._collect(parts)
            self._turn += 1
            self._sizes.observe(len(batch))
            result = await deliver_batch(
                batch,
                self.handler,
                group=self.group.name,
                policy=self.bus.policy,
                dead_letter=self.bus._dead_letter,
                owned=lambda r: not self._stopping,
                pause=self._pause,
                on_failure=self._failures.inc,
            )
            for (topic, p), offset in result.done.items():
                self.group.commit(topic, p, offset)
            if result.handled:
                self._records.inc(result.handled)
            self._lag.set(self.bus.lag(self.group.name, self.topic))

    async def stop(self, *, abandon: bool = False) -> None:
        """Graceful: finish the batch in hand, then stop. abandon: die now (a crash)."""
        self._stopping = True
        self._stop_event.set()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if abandon:
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


class _BatchMember(_Member):
    """A group member whose partitions feed one batch handler (`subscribe_batch`)."""

    def __init__(self, bus: "MemoryBus", group: _Group, handler: BatchHandler, max_records: int, linger_s: float) -> None:
        super().__init__(bus, group, _unused_handler)
        self.batch_handler, self.max_records, self.linger_s = handler, max_records, linger_s
        self.reader: _BatchReader | None = None

    def assigned(self) -> frozenset[int]:
        return frozenset(self.reader.partitions) if self.reader is not None else frozenset()

    def take(self, partition: int) -> None:
        if self.reader is None:
            self.reader = _BatchReader(self.bus, self.group, self.batch_handler, self.max_records, self.linger_s)
        self.reader.partitions.append(partition)

    async def revoke_all(self, *, abandon: bool = False) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            await reader.stop(abandon=abandon)


async def _unused_handler(record: Record) -> None:  # pragma: no cover - batch members never call it
    raise AssertionError("a batch member delivers batches")


class _Assignment:
    def __init__(self, reader: _PartitionReader) -> None:
        self.reader = reader

    def assigned(self) -> frozenset[int]:
        return frozenset() if self.reader._stopping else frozenset((self.reader.partition,))

    async def stop(self) -> None:
        await self.reader.stop()


class MemoryBus:
    """See module docstring. `default_partitions` applies to topics created on first use
    (a dead-letter topic included). The keyword options are the settings of the same
    names (`runtime.bus_options`); the defaults are the settings' defaults."""

    def __init__(
        self,
        default_partitions: int = 8,
        *,
        retention_bytes: int = 8 << 20,
        retention_s: float = 86_400.0,
        max_record_bytes: int = 1 << 20,
        dlq_max_attempts: int = 5,
        dlq_backoff_s: float = 0.2,
        batch_linger_ms: float = 50.0,
        consumer_lag_interval_s: float = 5.0,
    ) -> None:
        self.default_partitions = default_partitions
        self.consumer_lag_interval_s = consumer_lag_interval_s
        self._lag_timer: asyncio.Task[None] | None = None
        self.batch_linger_ms = batch_linger_ms
        self.retention_bytes = retention_bytes
        self.retention_s = retention_s
        self.max_record_bytes = max_record_bytes
        self.policy = DeliveryPolicy(max_attempts=dlq_max_attempts, backoff_s=dlq_backoff_s)
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._available = True
        self._subs: list[_Member | _Assignment] = []

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        timer, self._lag_timer = self._lag_timer, None
        await cancel_and_wait(timer)
        subs, self._subs = self._subs, []
        for s in subs:
            await s.stop()

    # -- consumer lag --------------------------------------------------------
    def _watch_lag(self) -> None:
        """Start the lag timer with the first subscription (a running loop is needed)."""
        if self._lag_timer is None and self.consumer_lag_interval_s > 0:
            self._lag_timer = asyncio.create_task(self._lag_every(), name="bus-consumer-lag")

    async def _lag_every(self) -> None:
        while True:
            await asyncio.sleep(self.consumer_lag_interval_s)
            self.refresh_lag()

    def refresh_lag(self) -> None:
        """Set every live subscription's lag gauge from the partitions' ends now."""
        for sub in self._subs:
            if isinstance(sub, _Member):
                g = sub.group
                if sub in g.members:
                    metrics.CONSUMER_LAG.labels(g.topic, g.name).set(self.lag(g.name, g.topic))
            else:
                r = sub.reader
                if not r._stopping:
                    end = self._topic(r.topic)[r.partition].end
                    metrics.CONSUMER_LAG.labels(r.topic, r.group_name).set(max(0, end - r.position))

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
        kb = key.encode("utf-8", "surrogateescape")
        size = record_size(kb, value, headers)
        if size > self.max_record_bytes:
            raise RecordTooLarge(f"record of {size} bytes for {topic} exceeds the bus limit of {self.max_record_bytes} bytes")
        self._append(topic, kb, value, headers, partition, size)

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        """All or nothing: every size is checked, and the bus's availability, before any
        record is appended (in the order given, so a key's records keep their order)."""
        encoded = []
        for topic, key, value, headers in items:
            kb = key.encode("utf-8", "surrogateescape")
            size = record_size(kb, value, headers)
            if size > self.max_record_bytes:
                raise RecordTooLarge(f"record of {size} bytes for {topic} exceeds the bus limit of {self.max_record_bytes} bytes")
            encoded.append((topic, kb, value, headers, size))
        if not self._available:
            raise BusUnavailable("memory bus marked unavailable")
        for topic, kb, value, headers, size in encoded:
            self._append(topic, kb, value, headers, None, size)

    def _append(self, topic: str, kb: bytes, value: bytes, headers: Sequence[Header], partition: int | None, size: int) -> None:
        if not self._available:
            raise BusUnavailable("memory bus marked unavailable")
        parts = self._topic(topic)
        p = partition_for(kb, len(parts)) if partition is None else partition
        if not 0 <= p < len(parts):
            raise ValueError(f"partition {p} out of range for {topic} ({len(parts)})")
        part = parts[p]
        now_ms = int(time.time() * 1000)
        part.append(Record(topic, p, part.end, kb, value, tuple(headers), now_ms), size)
        part.trim(self.retention_bytes, now_ms - int(self.retention_s * 1000))
        part.wake()

    async def _dead_letter(self, dlq: str, record: Record, headers: list[Header]) -> None:
        """Delivery's sink: the original key and value, allowed the dead-letter headroom."""
        size = record_size(record.key, record.value, headers)
        if size > self.max_record_bytes + DLQ_HEADROOM_BYTES:
            raise RecordTooLarge(f"dead letter of {size} bytes exceeds {self.max_record_bytes + DLQ_HEADROOM_BYTES}")
        self._append(dlq, record.key, record.value, headers, None, size)

    # -- consume -----------------------------------------------------------
    async def subscribe(self, topic: str, group: str, handler: Handler, *, from_beginning: bool = True) -> _Member:
        g = self._group(topic, group, from_beginning)
        member = _Member(self, g, handler)
        async with g.lock:
            g.members.append(member)
            await g.rebalance()
        self._subs.append(member)
        self._watch_lag()
        return member

    async def subscribe_batch(
        self,
        topic: str,
        group: str,
        handler: BatchHandler,
        *,
        from_beginning: bool = True,
        max_records: int = 500,
    ) -> _Member:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        g = self._group(topic, group, from_beginning)
        member = _BatchMember(self, g, handler, max_records, self.batch_linger_ms / 1000)
        async with g.lock:
            g.members.append(member)
            await g.rebalance()
        self._subs.append(member)
        self._watch_lag()
        return member

    def _group(self, topic: str, group: str, from_beginning: bool) -> _Group:
        g = self._groups.get((group, topic))
        if g is None:
            g = self._groups[(group, topic)] = _Group(self, group, topic)
            if not from_beginning:
                for i, part in enumerate(self._topic(topic)):
                    g.committed[(topic, i)] = part.end
        return g

    async def assign(self, topic: str, partition: int, handler: Handler, *, from_beginning: bool = False) -> _Assignment:
        parts = self._topic(topic)
        start = parts[partition].base if from_beginning else parts[partition].end
        sub = _Assignment(_PartitionReader(self, topic, partition, handler, None, start))
        self._subs.append(sub)
        self._watch_lag()
        return sub

    async def read(
        self,
        topic: str,
        *,
        limit: int = 1000,
        partition: int | None = None,
        start: int | None = None,
    ) -> list[Record]:
        parts = self._topics.get(topic)
        if parts is None or limit <= 0:
            return []
        chosen = range(len(parts)) if partition is None else [partition] if 0 <= partition < len(parts) else []
        out: list[Record] = []
        for i in chosen:
            part = parts[i]
            first = max(part.base, start if start is not None and partition is not None else part.base)
            last = min(part.end, first + limit)
            out.extend(part.at(o) for o in range(first, last))
        out.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        return out[:limit]

    # -- introspection (tests, /metrics) -------------------------------------
    def end_offsets(self, topic: str) -> list[int]:
        return [p.end for p in self._topic(topic)]

    def retained(self, topic: str) -> list[tuple[int, int]]:
        """(records, bytes) retained per partition."""
        return [(p.count, p.bytes) for p in self._topic(topic)]

    def base_offsets(self, topic: str) -> list[int]:
        """The first retained offset of each partition."""
        return [p.base for p in self._topic(topic)]

    def lag(self, group: str, topic: str) -> int:
        g = self._groups.get((group, topic))
        committed = g.committed if g else {}
        return sum(p.end - committed.get((topic, i), 0) for i, p in enumerate(self._topic(topic)))


