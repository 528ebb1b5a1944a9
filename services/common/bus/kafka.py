"""`kafka://host:9092[,host2:9092]`: the bus on Apache Kafka (aiokafka).

- Producer: idempotent, acks=all, small linger (`linger_ms`), produce batches of up to
  `batch_bytes` per partition; `publish` awaits the broker's ack and
  raises `BusUnavailable` when it does not come within `publish_timeout_s` (the
  gateway then withholds its OCPP answer and retries; the station retries too).
- Group consumers: auto-commit off; a record's offset is committed only after the
  handler returned for it (and everything before it in its partition). A handler
  that raises gets the same record again after a backoff; later records of that
  partition wait (order per station is kept). `delivery.deliver` decides: an outage
  is retried for as long as it takes, a poison record is dead-lettered after
  `dlq_max_attempts` tries (the dead-letter topic is created on first use) and the
  partition moves on.
- Size: `publish` refuses a record over `max_record_bytes` with `RecordTooLarge`
  before it reaches the producer, and so does a broker that refuses it for its size;
  neither is an outage (`healthy` is untouched). The producer's max_request_size and
  the `max.message.bytes` of topics we create leave room for a dead letter's headers.
- Batches (`subscribe_batch`, ADR 015): one `getmany` (up to `max_records`, several
  partitions, each in offset order) goes to the handler at once; afterwards one commit
  carries each owned partition's next offset. `delivery.deliver_batch` applies the
  dead-letter policy. The broker holds a batch consumer's fetch up to `batch_linger_ms`
  (unless it has 1 MiB for it): on this 2-core machine a fetch plus its commit cost
  ~1 ms of client CPU, so a trickle of 2,000 records/s cost 540 µs per record with no
  linger and 62 µs with 50 ms (bench/bus_batches.py --live-rate 2000); an idle member
  pays 1000/linger empty fetches per second (1.5 % of a core at 50 ms).
- `publish_many`: every record handed to the producer first, then all acks awaited
  together (acks=all, idempotent: a partition's records stay in order).
- `assign`: manual assignment of one partition, no group (the gateway's commands).
- Consumer lag (`csms_bus_consumer_lag_records{topic,group}`): set as records finish and,
  every `consumer_lag_interval_s`, from the broker's end offsets of the assigned partitions
  minus the next record to handle, so it grows while a handler is stuck (ADR 019 §6).
- Startup tolerates a broker that is not up yet: the producer connects in the
  background and `healthy` stays False until it has. A broker that answers but refuses
  us (wrong SASL credentials or mechanism, a certificate we do not trust) is not an
  outage: `start` raises `ConfigError` with the broker's reason (`csms` exits 2).
- Secured clusters (ADR 019 §2): every client (producer, consumers, admin) connects with
  the same `KafkaSecurity` (services/common/engine_security.py: PLAINTEXT, SSL,
  SASL_PLAINTEXT or SASL_SSL; PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512). Topics we create get
  `replication_factor` and `min.insync.replicas` (CSMS_KAFKA_REPLICATION_FACTOR,
  CSMS_KAFKA_MIN_INSYNC_REPLICAS); an existing topic's configuration is left alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections import deque
from typing import Any, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    CommitFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import DefaultPartitioner

import services.common.bus.metrics as metrics
from services.common.bus.delivery import DLQ_HEADROOM_BYTES, DeliveryPolicy, Outcome, deliver, deliver_batch
from services.common.bus.port import BatchHandler, Handler, Header, Outgoing, Record, murmur2, record_size
from services.common.engine_security import KafkaSecurity
from services.common.errors import BusUnavailable, ConfigError, RecordTooLarge
from services.common.tasks import cancel_and_wait

__all__ = ["KafkaBus"]

log = logging.getLogger("csms.bus.kafka")

_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
# The producer or the broker refusing a record for its size: this record, not the bus.
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
_READ_TIMEOUT_S = 30.0
# A lingering batch consumer's fetch returns early once the broker has this much for it.
_FETCH_MIN_BYTES = 1 << 20
# A broker that answers and refuses us: our configuration, not an outage.
_REFUSALS = (AuthenticationFailedError, AuthenticationMethodNotSupported, SaslAuthenticationFailed,
             UnsupportedSaslMechanismError, ssl.SSLCertVerificationError)


def _servers(url: str) -> str:
    if not url.startswith("kafka://"):
        raise ConfigError(f"not a kafka URL: {url!r}")
    hosts = url[len("kafka://"):].strip("/")
    if not hosts:
        raise ConfigError("kafka URL without a host")
    return hosts


class _KeyPartitioner:
    """aiokafka's DefaultPartitioner (murmur2, the same placement as `partition_for`) with
    the hashes of recent keys remembered: the same station ids are hashed over and over,
    and the pure-Python murmur2 was a fifth of a publish's CPU. Bounded (cleared when full)."""

    def __init__(self, size: int = 1 << 15) -> None:
        self._hashes: dict[bytes, int] = {}
        self._size = size
        self._default = DefaultPartitioner()

    def hash(self, key: bytes) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)  # type: ignore[no-any-return]
        return all_partitions[self.hash(key) % len(all_partitions)]


class _Deadlines:
    """Publish timeouts without a timer per publish.

    With idempotence aiokafka retries a batch until the broker takes it and never expires
    it (`Sender._can_retry`), so without a deadline of our own a publish during an outage
    would wait forever and the gateway would never turn not-ready. `asyncio.wait_for` per
    publish (a waiter future, a timer handle and a callback per call) was a visible share
    of the gateway's CPU per CALL. Every publish gets the same timeout, so deadlines come in
    order: a FIFO of (deadline, ack future) and one timer that runs every `tick` s while
    anything is in flight; it drops acknowledged futures and fails those past their
    deadline with `TimeoutError` (which `_failed` turns into BusUnavailable). aiokafka
    skips a future that is already done when the ack comes later (it must: `wait_for`
    cancelled it). A publish times out between `timeout_s` and `timeout_s + tick`."""

    __slots__ = ("timeout_s", "tick", "_queue", "_timer")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick = min(1.0, max(0.01, timeout_s / 4))
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, fut: "asyncio.Future[Any]") -> None:
        loop = fut.get_loop()
        self._queue.append((loop.time() + self.timeout_s, fut))
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        queue, now = self._queue, loop.time()
        while queue:
            deadline, fut = queue[0]
            if not fut.done():
                if deadline > now:
                    break
                fut.set_exception(asyncio.TimeoutError(f"no acknowledgement within {self.timeout_s:g} s"))
            queue.popleft()
        if queue:
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


def _record(msg: Any) -> Record:
    headers = msg.headers
    return Record(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key or b"",
        msg.value or b"",
        tuple([(k, v or b"") for k, v in headers]) if headers else (),
        msg.timestamp or 0,
    )


def _assigned(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    return tp in consumer.assignment()


def _always() -> bool:
    return True


class _Loop:
    """One consumer and the task that feeds its records to a handler."""

    def __init__(
        self,
        bus: "KafkaBus",
        consumer: AIOKafkaConsumer,
        handler: Handler,
        *,
        commit: bool,
        name: str,
        topic: str,
        group: str,
    ) -> None:
        self.bus, self.consumer, self.handler, self.commit, self.name = bus, consumer, handler, commit, name
        self.group = group
        self.task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._lag: dict[TopicPartition, int] = {}
        # the next offset to hand to the handler, per partition: the first record of the last
        # fetch until the handler is done with it (the lag timer counts from there)
        self._next: dict[TopicPartition, int] = {}
        # Never commit below our own last commit: after a rebalance hands the same partition
        # back, the position resets to the committed offset and records are replayed.
        self._committed: dict[TopicPartition, int] = {}
        self._lag_gauge = metrics.CONSUMER_LAG.labels(topic, group)
        self._failures = metrics.HANDLER_FAILURES.labels(topic, group)
        self._records = metrics.RECORDS.labels(topic, group)
        metrics.DEAD_LETTERS.labels(topic, group)  # exported at 0 from the start

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"kafka-{self.name}")
        if self.bus.consumer_lag_interval_s > 0:
            self._lag_task = asyncio.create_task(self._lag_every(), name=f"kafka-lag-{self.name}")

    async def _lag_every(self) -> None:
        """Consumer lag on a timer, from the broker's end offsets: the gauge keeps growing
        while the handler is stuck on a record (retries, the store down), when no record
        finishes to refresh it."""
        while True:
            await asyncio.sleep(self.bus.consumer_lag_interval_s)
            try:
                await asyncio.wait_for(self.refresh_lag(), max(1.0, self.bus.consumer_lag_interval_s))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: try again at the next interval
                log.debug("%s: measuring consumer lag failed: %r", self.name, exc)

    def assigned(self) -> frozenset[int]:
        return frozenset(tp.partition for tp in self.consumer.assignment())

    async def refresh_lag(self) -> None:
        """Lag of the assigned partitions now: end offset minus the next record to handle
        (known from the last fetch, else the consumer's position)."""
        consumer = self.consumer
        assigned = list(consumer.assignment())
        if not assigned:
            self._lag.clear()
            self._lag_gauge.set(0)
            return
        for tp in [tp for tp in self._next if tp not in assigned]:
            del self._next[tp]  # moved to another member: its next record is theirs
        ends = await consumer.end_offsets(assigned)
        lag: dict[TopicPartition, int] = {}
        for tp in assigned:
            nxt = self._next.get(tp)
            if nxt is None:
                nxt = await consumer.position(tp)
            lag[tp] = max(0, ends.get(tp, nxt) - nxt)
        self._lag = lag
        self._lag_gauge.set(sum(lag.values()))

    async def _run(self) -> None:
        consumer, commit = self.consumer, self.commit
        # an assigned reader (no group) has nobody to dead-letter for: it retries
        dead_letter = self.bus._dead_letter if commit else None
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("%s: fetch failed (%s); retrying", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            offsets: dict[TopicPartition, int] = {}
            for tp, msgs in batches.items():
                # partition moved to another member: it will redeliver from the last commit
                owned = functools.partial(_assigned, consumer, tp) if commit else _always
                done = None
                handled = 0
                if msgs:
                    self._next[tp] = msgs[0].offset
                for msg in msgs:
                    if commit and tp not in consumer.assignment():
                        break
                    outcome = await deliver(
                        _record(msg),
                        self.handler,
                        group=self.group,
                        policy=self.bus.policy,
                        dead_letter=dead_letter,
                        owned=owned,
                        on_failure=self._failures.inc,
                    )
                    if outcome is Outcome.REVOKED:
                        break
                    handled += outcome is Outcome.HANDLED
                    done = msg.offset
                    self._next[tp] = done + 1
                if handled:
                    self._records.inc(handled)
                if done is not None:
                    high = consumer.highwater(tp)
                    if high is not None:
                        self._lag[tp] = max(0, high - done - 1)
                        self._lag_gauge.set(sum(self._lag.values()))
                    if commit and done + 1 > self._committed.get(tp, -1):
                        offsets[tp] = done + 1
            await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """One commit for a poll's partitions that are still ours."""
        if not offsets:
            return
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # a rebalance took a partition: the new owner redelivers (idempotent handlers)
            log.warning("%s: commit of %s failed (%s)", self.name, offsets, exc)

    async def stop(self) -> None:
        for task in (self._lag_task, self.task):
            await cancel_and_wait(task)
        await self.consumer.stop()


class _BatchLoop(_Loop):
    """A group consumer feeding a batch handler: a poll's records at once (module docstring)."""

    def __init__(
        self,
        bus: "KafkaBus",
        consumer: AIOKafkaConsumer,
        handler: BatchHandler,
        *,
        name: str,
        topic: str,
        group: str,
        max_records: int,
    ) -> None:
        super().__init__(bus, consumer, _unused_handler, commit=True, name=name, topic=topic, group=group)
        self.batch_handler, self.max_records = handler, max_records
        self._sizes = metrics.BATCH_RECORDS.labels(topic, group)

    async def _poll(self) -> list[Any]:
        # The linger is the broker's (fetch_max_wait_ms with a large fetch_min_bytes, see
        # KafkaBus._group_consumer): a client-side wait would not save fetch requests.
        fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
        for tp, msgs in fetched.items():
            if msgs:  # each partition's records come in offset order: the next to handle
                self._next[tp] = msgs[0].offset
        return [m for msgs in fetched.values() for m in msgs]

    async def _run(self) -> None:
        consumer = self.consumer
        while True:
            try:
                msgs = await self._poll()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("%s: fetch failed (%s); retrying", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            if not msgs:
                continue
            self._sizes.observe(len(msgs))

            result = await deliver_batch(
                [_record(m) for m in msgs],
                self.batch_handler,
                group=self.group,
                policy=self.bus.policy,
                dead_letter=self.bus._dead_letter,
                # partition moved to another member: it will redeliver from the last commit
                owned=lambda r: TopicPartition(r.topic, r.partition) in consumer.assignment(),
                on_failure=self._failures.inc,
            )
            if result.handled:
                self._records.inc(result.handled)
            offsets: dict[TopicPartition, int] = {}
            for (topic, partition), offset in result.done.items():
                tp = TopicPartition(topic, partition)
                self._next[tp] = offset
                high = consumer.highwater(tp)
                if high is not None:
                    self._lag[tp] = max(0, high - offset)
                if offset > self._committed.get(tp, -1):
                    offsets[tp] = offset
            self._lag_gauge.set(sum(self._lag.values()))
            await self._commit(offsets)


async def _all_of(futures: list["asyncio.Future[Any]"]) -> None:
    """Await delivery futures in order (cheaper than gather: most are done by the time
    the first one is, and a done future costs no callback); the first failure raises."""
    for f in futures:
        await f


def _quiet(fut: "asyncio.Future[Any]") -> None:
    """Retrieve a delivery future's outcome nobody awaits any more (no asyncio warning)."""
    if not fut.cancelled():
        fut.exception()


async def _unused_handler(record: Record) -> None:  # pragma: no cover - batch loops never call it
    raise AssertionError("a batch loop delivers batches")


class KafkaBus:
    def __init__(
        self,
        url: str,
        *,
        publish_timeout_s: float = 10.0,
        replication_factor: int = 1,
        linger_ms: int = 2,
        client_id: str = "csms",
        max_record_bytes: int = 1 << 20,
        dlq_max_attempts: int = 5,
        dlq_backoff_s: float = 0.2,
        batch_linger_ms: float = 50.0,
        batch_bytes: int = 64 << 10,
        consumer_lag_interval_s: float = 5.0,
        min_insync_replicas: int = 1,
        security: KafkaSecurity | None = None,
    ) -> None:
        """`replication_factor`, `min_insync_replicas`: of the topics this bus creates.
        `security`: how every client connects (PLAINTEXT when left out)."""
        self.servers = _servers(url)
        if replication_factor < 1:
            raise ConfigError(f"CSMS_KAFKA_REPLICATION_FACTOR={replication_factor}: must be at least 1")
        if not 1 <= min_insync_replicas <= replication_factor:
            raise ConfigError(
                f"CSMS_KAFKA_MIN_INSYNC_REPLICAS={min_insync_replicas}: must be between 1 and "
                f"CSMS_KAFKA_REPLICATION_FACTOR={replication_factor} (acks=all could never be met)"
            )
        self.min_insync_replicas = min_insync_replicas
        self.security = security if security is not None else KafkaSecurity()
        # the keywords every client of this bus takes (one TLS context for all of them)
        self._client_options = self.security.client_options()
        self.consumer_lag_interval_s = consumer_lag_interval_s
        self.batch_bytes = batch_bytes
        self.batch_linger_ms = batch_linger_ms
        self.max_record_bytes = max_record_bytes
        # The broker and the producer accept a dead letter of a record at the limit.
        self.max_message_bytes = max_record_bytes + DLQ_HEADROOM_BYTES
        self.policy = DeliveryPolicy(max_attempts=dlq_max_attempts, backoff_s=dlq_backoff_s)
        self._dlq_ready: set[str] = set()
        self.publish_timeout_s = publish_timeout_s
        self._deadlines = _Deadlines(publish_timeout_s)
        self._partitioner = _KeyPartitioner()
        # partitions per topic as the producer's metadata has them; emptied on every metadata
        # update (a topic that grew is placed like the producer's partitioner would place it)
        self._partition_counts: dict[str, int] = {}
        self.replication_factor = replication_factor
        self.linger_ms = linger_ms
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._connected = False
        self._failing_since: float | None = None
        self._connector: asyncio.Task[None] | None = None
        self._loops: list[_Loop] = []

    # -- lifecycle -----------------------------------------------------------------
    async def _connect_producer(self) -> None:
        attempt = 0
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers,
                client_id=self.client_id,
                **self._client_options,
                acks="all",
                enable_idempotence=True,
                linger_ms=self.linger_ms,
                # one produce batch per partition holds this many bytes (aiokafka: 16 KiB):
                # fewer, larger batches cost less CPU per record (bench/bus_batches.py)
                max_batch_size=self.batch_bytes,
                request_timeout_ms=int(self.publish_timeout_s * 1000),
                retry_backoff_ms=100,
                max_request_size=self.max_message_bytes,
                partitioner=self._partitioner,
            )
            try:
                await producer.start()
                producer.client.cluster.add_listener(self._metadata_updated)
                self._partition_counts.clear()
                self._producer, self._connected = producer, True
                log.info("kafka producer connected to %s (%s)", self.servers, self.security.describe())
                return
            except Exception as exc:
                await producer.stop()
                refusal = await self._refusal()
                if refusal is not None:
                    raise ConfigError(refusal) from exc
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                attempt += 1
                if attempt == 1 or attempt % 30 == 0:
                    log.warning("kafka at %s unreachable (%s); retrying", self.servers, exc)
                await asyncio.sleep(delay)

    async def _refusal(self) -> str | None:
        """After a failed connect: why the first broker refuses us, when it answers and the
        cause is our configuration (credentials, SASL mechanism, TLS trust); None for an
        outage (aiokafka's bootstrap error does not say which it was)."""
        host, _, port = self.servers.split(",")[0].strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(
                host or "127.0.0.1", int(port or 9092), client_id=f"{self.client_id}-check",
                request_timeout_ms=int(self.publish_timeout_s * 1000), **self._client_options,
            ), min(5.0, self.publish_timeout_s))
        except _REFUSALS as exc:
            hint = ("check CSMS_KAFKA_SSL_CAFILE and CSMS_KAFKA_SSL_CHECK_HOSTNAME"
                    if isinstance(exc, ssl.SSLError) else
                    "check CSMS_KAFKA_SASL_MECHANISM, CSMS_KAFKA_SASL_USERNAME and CSMS_KAFKA_SASL_PASSWORD")
            return f"kafka at {host}:{port} refused the connection ({self.security.describe()}): {exc}; {hint}"
        except Exception:  # unreachable, or no answer: an outage, retried
            return None
        conn.close()
        return None

    def _connector_done(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("kafka: %s; the bus stays unavailable", task.exception())

    async def start(self, *, wait_s: float = 15.0) -> None:
        """Connect the producer; returns after `wait_s` even if the broker is not up yet
        (not ready until it is). Raises ConfigError when the broker refuses us."""
        self._connector = asyncio.create_task(self._connect_producer())
        self._connector.add_done_callback(self._connector_done)
        try:
            await asyncio.wait_for(asyncio.shield(self._connector), wait_s)
        except asyncio.TimeoutError:
            log.warning("kafka not reachable yet; continuing, not ready until it is")

    async def close(self) -> None:
        loops, self._loops = self._loops, []
        for loop in loops:
            await loop.stop()
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._deadlines.close()

    @property
    def healthy(self) -> bool:
        return self._connected and self._failing_since is None

    def _metadata_updated(self, _cluster: object) -> None:
        self._partition_counts.clear()

    # -- topics --------------------------------------------------------------------
    async def ensure_topic(self, topic: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers, client_id=f"{self.client_id}-admin", **self._client_options)
        try:
            await admin.start()
            try:
                await admin.create_topics([NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=self.replication_factor,
                    topic_configs={
                        "max.message.bytes": str(self.max_message_bytes),
                        "min.insync.replicas": str(self.min_insync_replicas),
                    },
                )])
                log.info("created topic %s (%d partitions, replication factor %d, min.insync.replicas %d)",
                         topic, partitions, self.replication_factor, self.min_insync_replicas)
            except TopicAlreadyExistsError:
                pass
        except KafkaError as exc:
            if "TopicAlreadyExists" not in repr(exc):
                raise BusUnavailable(f"cannot create topic {topic}: {exc}") from exc
        finally:
            await admin.close()

    async def partitions(self, topic: str) -> int:
        if self._producer is None:
            raise BusUnavailable("kafka producer not connected")
        parts = await self._producer.partitions_for(topic)
        return len(parts)

    # -- produce -------------------------------------------------------------------
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
        await self._send(topic, kb, value, headers, partition)

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        """Every size checked first (RecordTooLarge before anything is sent); then all
        records handed to the producer in the order given and their acks awaited together.
        On a failure some records may have landed: the caller retries the whole batch
        (consumers are idempotent), as it would retry a failed `publish`."""
        encoded: list[tuple[str, bytes, bytes, list[Header]]] = []
        for topic, key, value, headers in items:
            kb = key.encode("utf-8", "surrogateescape")
            size = record_size(kb, value, headers)
            if size > self.max_record_bytes:
                raise RecordTooLarge(f"record of {size} bytes for {topic} exceeds the bus limit of {self.max_record_bytes} bytes")
            encoded.append((topic, kb, value, list(headers)))
        if not encoded:
            return
        producer = self._producer
        if producer is None:
            raise BusUnavailable("kafka producer not connected")
        where = encoded[0][0] if len({e[0] for e in encoded}) == 1 else "several topics"
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, kb, value, headers in encoded:
                futures.append(await producer.send(topic, value=value, key=kb, headers=headers))
            await asyncio.wait_for(_all_of(futures), self.publish_timeout_s)
        except BaseException as exc:
            for f in futures:  # nobody awaits the rest: do not log "exception never retrieved"
                if f.done() and not f.cancelled():
                    f.exception()
                else:
                    f.add_done_callback(_quiet)
            if isinstance(exc, Exception):
                self._failed(where, exc)
            raise
        self._recovered()

    async def _send(self, topic: str, kb: bytes, value: bytes, headers: Sequence[Header], partition: int | None) -> None:
        producer = self._producer
        if producer is None:
            raise BusUnavailable("kafka producer not connected")
        if partition is None and kb:
            # the key's partition from the cached hash and the topic's partition count in the
            # producer's metadata (Kafka partitions are 0..n-1, so this is the partitioner's
            # choice): aiokafka then skips building two partition lists and the partitioner
            # call on every send. Unknown topic (no metadata yet): the producer waits and decides.
            n = self._partition_counts.get(topic)
            if n is None:
                parts = producer.client.cluster.partitions_for_topic(topic)
                if parts:
                    n = self._partition_counts[topic] = len(parts)
            if n:
                partition = self._partitioner.hash(kb) % n
        try:
            fut = await producer.send(topic, value=value, key=kb, partition=partition,
                                      headers=headers if type(headers) is list else list(headers))
            if not fut.done():
                self._deadlines.watch(fut)  # one shared timer, not a wait_for per publish
            await fut
        except Exception as exc:
            self._failed(topic, exc)
            raise
        self._recovered()

    def _failed(self, topic: str, exc: Exception) -> None:
        """Map a producer failure: RecordTooLarge (this record; the bus is fine) or
        BusUnavailable (not ready until a publish succeeds again); raises either."""
        if isinstance(exc, _TOO_LARGE):
            # this record can never be accepted; the bus itself is fine (readiness unchanged)
            raise RecordTooLarge(f"publish to {topic} refused for its size: {exc!r}") from exc
        if isinstance(exc, (KafkaError, asyncio.TimeoutError)):
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.error("kafka publish to %s failed (%r): not ready until it recovers", topic, exc)
            raise BusUnavailable(f"publish to {topic} failed: {exc!r}") from exc

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning("kafka publishing recovered after %.1fs", time.monotonic() - self._failing_since)
            self._failing_since = None

    async def _dead_letter(self, dlq: str, record: Record, headers: list[Header]) -> None:
        """Delivery's sink: make sure the dead-letter topic exists (once per process; as
        many partitions as the consumed topic), then publish with the dead-letter headroom."""
        if dlq not in self._dlq_ready:
            await self.ensure_topic(dlq, await self.partitions(record.topic))
            self._dlq_ready.add(dlq)
        size = record_size(record.key, record.value, headers)
        if size > self.max_message_bytes:
            raise RecordTooLarge(f"dead letter of {size} bytes exceeds {self.max_message_bytes}")
        await self._send(dlq, record.key, record.value, headers, None)

    # -- consume -------------------------------------------------------------------
    async def subscribe(self, topic: str, group: str, handler: Handler, *, from_beginning: bool = True) -> _Loop:
        consumer = self._group_consumer(topic, group, from_beginning)
        await consumer.start()
        loop = _Loop(self, consumer, handler, commit=True, name=f"{group}/{topic}", topic=topic, group=group)
        loop.start()
        self._loops.append(loop)
        return loop

    def _group_consumer(self, topic: str, group: str, from_beginning: bool, *, linger_ms: float = 0) -> AIOKafkaConsumer:
        """A member of `group` on `topic` that commits by hand (after the handler).

        `linger_ms` (batch consumers): the broker holds a fetch until it has _FETCH_MIN_BYTES
        or `linger_ms` passed, so a trickle arrives in fewer, fuller fetches (each fetch, and
        the commit after its batch, costs a request; the records in it cost far less)."""
        fetch: dict[str, int] = {}
        if linger_ms > 0:
            fetch = {"fetch_max_wait_ms": max(1, int(linger_ms)), "fetch_min_bytes": _FETCH_MIN_BYTES}
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.servers,
            client_id=f"{self.client_id}-{group}",
            **self._client_options,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            max_partition_fetch_bytes=max(1 << 20, self.max_message_bytes),
            **fetch,
        )

    async def subscribe_batch(
        self,
        topic: str,
        group: str,
        handler: BatchHandler,
        *,
        from_beginning: bool = True,
        max_records: int = 500,
    ) -> _Loop:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        consumer = self._group_consumer(topic, group, from_beginning, linger_ms=self.batch_linger_ms)
        await consumer.start()
        loop = _BatchLoop(self, consumer, handler, name=f"{group}/{topic}", topic=topic, group=group,
                          max_records=max_records)
        loop.start()
        self._loops.append(loop)
        return loop

    def _groupless_consumer(self, role: str) -> AIOKafkaConsumer:
        """A consumer outside any group (manual assignment, never commits) that can fetch
        the largest record the bus accepts, dead letters included."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            client_id=f"{self.client_id}-{role}",
            **self._client_options,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=max(1 << 20, self.max_message_bytes),
        )

    async def assign(self, topic: str, partition: int, handler: Handler, *, from_beginning: bool = False) -> _Loop:
        consumer = self._groupless_consumer("assign")
        await consumer.start()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        if from_beginning:
            await consumer.seek_to_beginning(tp)
        else:
            await consumer.seek_to_end(tp)
        loop = _Loop(self, consumer, handler, commit=False, name=f"assign/{topic}[{partition}]", topic=topic, group="")
        loop.start()
        self._loops.append(loop)
        return loop

    # -- read (no group) -------------------------------------------------------------
    async def read(
        self,
        topic: str,
        *,
        limit: int = 1000,
        partition: int | None = None,
        start: int | None = None,
    ) -> list[Record]:
        if limit <= 0:
            return []
        consumer = self._groupless_consumer("read")
        try:
            await consumer.start()
            return await asyncio.wait_for(self._read(consumer, topic, limit, partition, start), _READ_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise BusUnavailable(f"reading {topic} did not finish within {_READ_TIMEOUT_S:.0f}s") from exc
        except KafkaError as exc:
            raise BusUnavailable(f"reading {topic} failed: {exc!r}") from exc
        finally:
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer, topic: str, limit: int, partition: int | None, start: int | None) -> list[Record]:
        if topic not in await consumer.topics():  # never auto-create a topic by reading it
            return []
        count = await self.partitions(topic)
        tps = [TopicPartition(topic, p) for p in range(count) if partition is None or p == partition]
        if not tps:
            return []
        firsts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        begin = {tp: max(firsts[tp], start) if start is not None and partition is not None else firsts[tp] for tp in tps}
        stop_at = {tp: min(ends[tp], begin[tp] + limit) for tp in tps}
        pending = {tp for tp in tps if stop_at[tp] > begin[tp]}
        if not pending:
            return []
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, begin[tp])
        out: list[Record] = []
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=500)
            for tp, msgs in batches.items():
                out.extend(_record(m) for m in msgs if m.offset < stop_at[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= stop_at[tp]:
                    pending.discard(tp)
        out.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        return out[:limit]
