"""Batch consumption and batch publishing (ADR 015): the same on every bus adapter.

`subscribe_batch` hands a handler up to `max_records` records at a time, each partition's
in offset order, and commits after the handler returned; an outage retries the whole
batch, anything else replays it one record at a time under the dead-letter policy.
`publish_many` checks every size first, then sends all records and returns when all
are durable. The buses are the fixtures' (default policy: 5 tries, 0.2 s first back-off).
The last section drives `delivery.deliver_batch` directly (no bus) for what a bus cannot
be made to do on demand (a partition revoked in the middle of an outage).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Callable, Sequence

import pytest
from prometheus_client import REGISTRY

from services.common.bus import bus_from_url
from services.common.bus.delivery import DeliveryPolicy, deliver_batch
from services.common.bus.kafka import KafkaBus
from services.common.bus.memory import MemoryBus
from services.common.bus.port import REPLAY_GROUP_HEADER, Bus, Header, Record
from services.common.config import load_settings
from services.common.errors import BusUnavailable, RecordTooLarge, StoreUnavailable
from services.common.runtime import bus_options
from tests.support.waiting import eventually

from .test_bus_contract import Inbox, probe_until, settle, stop
from .test_bus_dead_letters import dead_letters_metric, wait_for_dlq


class BatchInbox:
    """Every batch a handler was given (`batches`) and the records of the calls that
    returned (`handled`); `fail(batch)` may raise to make the call fail."""

    def __init__(self, fail: Callable[[list[Record]], None] | None = None) -> None:
        self.batches: list[list[Record]] = []
        self.handled: list[Record] = []
        self.fail = fail

    async def handler(self, records: Sequence[Record]) -> None:
        batch = list(records)
        self.batches.append(batch)
        if self.fail is not None:
            self.fail(batch)
        self.handled.extend(batch)

    def values(self, prefix: bytes = b"") -> list[bytes]:
        return [r.value for r in self.handled if r.value.startswith(prefix)]


def in_partition_order(batch: list[Record]) -> bool:
    last: dict[tuple[str, int], int] = {}
    for r in batch:
        tp = (r.topic, r.partition)
        if r.offset <= last.get(tp, -1):
            return False
        last[tp] = r.offset
    return True


def batch_count(topic: str, group: str) -> float:
    return REGISTRY.get_sample_value("csms_bus_batch_records_count", {"topic": topic, "group": group}) or 0.0


# -- delivery ----------------------------------------------------------------------
async def test_batches_keep_each_partitions_order_and_deliver_every_record_exactly_once(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(6), new_group()
    keys = [f"CP-{k:03d}" for k in range(40)]
    await bus.publish_many([(topic, keys[i % 40], f"r{i}".encode(), ()) for i in range(1000)])
    inbox = BatchInbox()
    sub = await bus.subscribe_batch(topic, group, inbox.handler, max_records=100)
    await eventually(lambda: len(inbox.handled) >= 1000, patience, what="1000 records")
    await settle(patience)
    assert Counter(inbox.values()) == Counter(f"r{i}".encode() for i in range(1000)), "exactly once"
    assert all(in_partition_order(b) for b in inbox.batches)
    assert all(1 <= len(b) <= 100 for b in inbox.batches)
    assert len(inbox.batches) < 1000 / 2, "records come in batches, not one by one"
    for k, key in enumerate(keys):
        of_key = [int(r.value[1:]) for r in inbox.handled if r.key == key.encode()]
        assert of_key == list(range(k, 1000, 40)), key
    assert batch_count(topic, group) == len(inbox.batches)
    await stop(sub, patience)


async def test_max_records_is_respected(bus: Bus, new_topic: Any, new_group: Any, patience: float) -> None:
    topic = await new_topic(2)
    await bus.publish_many([(topic, f"CP-{i % 5}", f"r{i}".encode(), ()) for i in range(200)])
    inbox = BatchInbox()
    sub = await bus.subscribe_batch(topic, new_group(), inbox.handler, max_records=7)
    await eventually(lambda: len(inbox.handled) >= 200, patience, what="200 records")
    assert max(len(b) for b in inbox.batches) == 7
    assert sorted(inbox.values()) == sorted(f"r{i}".encode() for i in range(200))
    await stop(sub, patience)


async def test_max_records_below_one_is_refused(bus: Bus, new_topic: Any, new_group: Any) -> None:
    topic = await new_topic(1)
    with pytest.raises(ValueError):
        await bus.subscribe_batch(topic, new_group(), BatchInbox().handler, max_records=0)


async def test_two_batch_members_split_the_partitions_and_see_every_record_exactly_once(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(4), new_group()
    a, b = BatchInbox(), BatchInbox()
    subs = [await bus.subscribe_batch(topic, group, a.handler), await bus.subscribe_batch(topic, group, b.handler)]
    await probe_until(bus, topic, lambda: bool(a.handled and b.handled), patience, [0, 1, 2, 3])
    expected = [f"main-{i}".encode() for i in range(200)]
    await bus.publish_many([(topic, f"CP-{i % 25}", v, ()) for i, v in enumerate(expected)])
    await eventually(lambda: len(a.values(b"main-")) + len(b.values(b"main-")) >= 200, patience, what="200 records")
    await settle(patience)
    assert Counter(a.values(b"main-") + b.values(b"main-")) == Counter(expected)
    a_parts = {r.partition for r in a.handled if r.value.startswith(b"main-")}
    b_parts = {r.partition for r in b.handled if r.value.startswith(b"main-")}
    assert a_parts and b_parts and not (a_parts & b_parts), (a_parts, b_parts)
    for s in subs:
        await stop(s, patience)


async def test_a_memory_batch_that_is_not_full_lingers_for_more_records() -> None:
    for linger_ms, expected in ((300.0, [[b"r0", b"r1", b"r2", b"r3", b"r4"]]), (0.0, [[b"r0"], [b"r1", b"r2", b"r3", b"r4"]])):
        bus = MemoryBus(batch_linger_ms=linger_ms)
        await bus.start()
        try:
            await bus.ensure_topic("t", 1)
            inbox = BatchInbox()
            await bus.subscribe_batch("t", "g", inbox.handler)
            await asyncio.sleep(0.05)  # the reader waits for records
            await bus.publish("t", "CP-1", b"r0")
            await asyncio.sleep(0.05)  # the reader woke up with one record
            await bus.publish_many([("t", "CP-1", f"r{i}".encode(), ()) for i in range(1, 5)])
            await eventually(lambda: len(inbox.handled) >= 5, 5, what="5 records")
            assert [[r.value for r in b] for b in inbox.batches] == expected, linger_ms
        finally:
            await asyncio.wait_for(bus.close(), 5)


def test_the_batch_and_producer_settings_reach_both_buses() -> None:
    defaults = load_settings({})
    assert (defaults.batch_max_records, defaults.batch_linger_ms) == (500, 50.0)
    assert (defaults.kafka_linger_ms, defaults.kafka_batch_bytes) == (2, 65536)
    settings = load_settings({"CSMS_BATCH_MAX_RECORDS": "64", "CSMS_BATCH_LINGER_MS": "7",
                              "CSMS_KAFKA_LINGER_MS": "3", "CSMS_KAFKA_BATCH_BYTES": "131072"})
    assert settings.batch_max_records == 64
    memory = bus_from_url("memory://", **bus_options(settings))
    assert isinstance(memory, MemoryBus) and memory.batch_linger_ms == 7.0
    kafka_settings = settings.with_overrides(bus_url="kafka://127.0.0.1:9092")
    kafka = bus_from_url(kafka_settings.bus_url, **bus_options(kafka_settings))  # not started: no connection
    assert isinstance(kafka, KafkaBus)
    assert (kafka.batch_linger_ms, kafka.linger_ms, kafka.batch_bytes) == (7.0, 3, 131072)


# -- commit after the handler ---------------------------------------------------------
async def test_a_batch_that_meets_an_outage_is_retried_whole_and_nothing_is_lost_or_duplicated(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(3), new_group()
    await bus.publish_many([(topic, f"CP-{i % 9}", f"r{i}".encode(), ()) for i in range(60)])
    outages = [StoreUnavailable("cassandra: NoHostAvailable"), TimeoutError()]

    def fail(batch: list[Record]) -> None:
        if outages:
            raise outages.pop(0)

    inbox = BatchInbox(fail)
    sub = await bus.subscribe_batch(topic, group, inbox.handler)
    await eventually(lambda: len(inbox.handled) >= 60, patience, what="60 records")
    await settle(patience)
    first, second, third = inbox.batches[:3]
    assert len(first) > 1
    assert [(r.partition, r.offset) for r in first] == [(r.partition, r.offset) for r in second] \
        == [(r.partition, r.offset) for r in third], "the same batch again, whole"
    assert Counter(inbox.values()) == Counter(f"r{i}".encode() for i in range(60)), "handled exactly once"
    assert dead_letters_metric(topic, group) == 0
    # committed: the next member of the group starts after them
    await stop(sub, patience)
    later = BatchInbox()
    sub = await bus.subscribe_batch(topic, group, later.handler)
    await bus.publish(topic, "CP-1", b"later")
    await eventually(lambda: b"later" in later.values(), patience, what="a record published later")
    await settle(patience)
    assert later.values() == [b"later"]
    await stop(sub, patience)


async def test_a_member_that_leaves_with_a_failing_batch_leaves_it_uncommitted_for_the_next_owner(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(4), new_group()
    expected = {f"r{i}".encode() for i in range(40)}
    await bus.publish_many([(topic, f"CP-{i % 10}", f"r{i}".encode(), ()) for i in range(40)])

    def outage(batch: list[Record]) -> None:
        raise StoreUnavailable("store down")

    broken, healthy = BatchInbox(outage), BatchInbox()
    sub_broken = await bus.subscribe_batch(topic, group, broken.handler)
    await eventually(lambda: bool(broken.batches), patience, what="the failing member to get a batch")
    sub_healthy = await bus.subscribe_batch(topic, group, healthy.handler)
    await stop(sub_broken, patience)
    await eventually(lambda: set(healthy.values()) >= expected, patience, what="every record at the remaining member")
    assert broken.handled == []
    assert Counter(healthy.values()) == Counter(expected)
    await stop(sub_healthy, patience)


async def test_a_crashed_memory_member_s_batch_in_hand_is_redelivered() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        await bus.ensure_topic("t", 2)
        await bus.publish_many([("t", f"CP-{i}", f"r{i}".encode(), ()) for i in range(10)])
        entered, release = asyncio.Event(), asyncio.Event()

        async def stuck(records: Sequence[Record]) -> None:
            entered.set()
            await release.wait()

        member = await bus.subscribe_batch("t", "g", stuck)
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.wait_for(member.crash(), 5)  # type: ignore[attr-defined]
        assert bus.lag("g", "t") == 10
        inbox = BatchInbox()
        await bus.subscribe_batch("t", "g", inbox.handler)
        await eventually(lambda: bus.lag("g", "t") == 0, 5, what="lag 0")
        assert sorted(inbox.values()) == sorted(f"r{i}".encode() for i in range(10))
    finally:
        await asyncio.wait_for(bus.close(), 5)


# -- poison -------------------------------------------------------------------------
async def test_a_poison_record_in_a_batch_of_ten_is_dead_lettered_alone_and_the_nine_others_are_handled(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(1), new_group()
    values = [f"r{i}".encode() for i in range(10)]
    values[4] = b"poison"
    await bus.publish_many([(topic, "CP-1", v, [("ce_id", v)]) for v in values])

    def refuse_poison(batch: list[Record]) -> None:
        if any(r.value == b"poison" for r in batch):
            raise ValueError("decimal.InvalidOperation: '1e308'")

    inbox = BatchInbox(refuse_poison)
    sub = await bus.subscribe_batch(topic, group, inbox.handler)
    [dl] = await wait_for_dlq(bus, topic, 1, patience + 15)
    await eventually(lambda: len(inbox.handled) >= 9, patience, what="the 9 good records")
    await settle(patience)
    assert any(len(b) > 1 and b"poison" in [r.value for r in b] for b in inbox.batches), "poison arrived in a batch"
    assert sorted(inbox.values()) == sorted(v for v in values if v != b"poison"), "each good record exactly once"
    assert sum(1 for b in inbox.batches if [r.value for r in b] == [b"poison"]) == 5, "5 tries alone"
    assert (dl.key, dl.value) == (b"CP-1", b"poison")
    assert dl.header("ce_id") == "poison" and dl.header("dlq_group") == group and dl.header("dlq_attempts") == "5"
    assert dl.header("dlq_error") == "ValueError: decimal.InvalidOperation: '1e308'"
    assert dead_letters_metric(topic, group) == 1.0
    await stop(sub, patience)
    # all committed, the poison record included
    later = BatchInbox()
    sub = await bus.subscribe_batch(topic, group, later.handler)
    await bus.publish(topic, "CP-1", b"later")
    await eventually(lambda: b"later" in later.values(), patience, what="a record published later")
    await settle(patience)
    assert [r.value for b in later.batches for r in b] == [b"later"]
    await stop(sub, patience)


# -- replays --------------------------------------------------------------------------
async def test_replays_for_another_group_are_filtered_out_of_batches_and_committed(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(2), new_group()
    other = [(REPLAY_GROUP_HEADER, b"someone-else")]
    ours = [(REPLAY_GROUP_HEADER, group.encode())]
    items: list[tuple[str, str, bytes, Sequence[Header]]] = [(topic, "CP-1", f"other-{i}".encode(), other) for i in range(5)]
    items += [(topic, "CP-1", b"plain-0", ()), (topic, "CP-1", b"other-5", other), (topic, "CP-1", b"ours-0", ours)]
    items += [(topic, "CP-2", f"other-only-{i}".encode(), other) for i in range(3)]  # a batch of skips alone
    await bus.publish_many(items)
    inbox = BatchInbox()
    sub = await bus.subscribe_batch(topic, group, inbox.handler)
    await eventually(lambda: b"ours-0" in inbox.values(), patience, what="the replay for this group")
    await settle(patience)
    assert inbox.values() == [b"plain-0", b"ours-0"]
    assert all(r.header(REPLAY_GROUP_HEADER) in (None, group) for b in inbox.batches for r in b)
    await stop(sub, patience)
    later = BatchInbox()
    sub = await bus.subscribe_batch(topic, group, later.handler)
    await bus.publish_many([(topic, "CP-1", b"later-1", ()), (topic, "CP-2", b"later-2", ())])
    await eventually(lambda: len(later.handled) >= 2, patience, what="records published later")
    await settle(patience)
    assert sorted(later.values()) == [b"later-1", b"later-2"], "the skipped replays were committed"
    await stop(sub, patience)


# -- publish_many ---------------------------------------------------------------------
async def test_publish_many_keeps_each_keys_order_across_topics(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    first, second = await new_topic(4), await new_topic(3)
    items = [(first if i % 3 else second, f"CP-{i % 10}", f"{i}".encode(), [("n", str(i).encode())]) for i in range(300)]
    await bus.publish_many(items)
    a, b = Inbox(), Inbox()
    subs = [await bus.subscribe(first, new_group(), a.handler), await bus.subscribe(second, new_group(), b.handler)]
    await eventually(lambda: len(a.records) + len(b.records) >= 300, patience, what="300 records")
    await settle(patience)
    for topic, inbox in ((first, a), (second, b)):
        for k in range(10):
            got = [int(r.value) for r in inbox.records if r.key == f"CP-{k}".encode()]
            want = [i for i, it in enumerate(items) if it[0] == topic and it[1] == f"CP-{k}"]
            assert got == want, (topic, k)
        assert all(r.header("n") == r.value.decode() for r in inbox.records)
    for s in subs:
        await stop(s, patience)


async def test_publish_many_with_one_oversize_record_sends_nothing(bus: Bus, new_topic: Any) -> None:
    topic = await new_topic(2)
    limit = getattr(bus, "max_record_bytes")
    items = [(topic, "CP-1", b"small", ()), (topic, "CP-2", b"x" * (limit + 1), ()), (topic, "CP-3", b"small", ())]
    with pytest.raises(RecordTooLarge):
        await bus.publish_many(items)
    assert await bus.read(topic) == []
    assert bus.healthy
    await bus.publish_many([])  # nothing to do


async def test_publish_many_on_an_unavailable_memory_bus_raises_and_sends_nothing() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        await bus.ensure_topic("t", 2)
        bus.set_available(False)
        with pytest.raises(BusUnavailable):
            await bus.publish_many([("t", "CP-1", b"a", ()), ("t", "CP-2", b"b", ())])
        assert bus.end_offsets("t") == [0, 0]
    finally:
        await bus.close()


async def test_publish_many_without_a_producer_raises_bus_unavailable() -> None:
    bus = KafkaBus("kafka://127.0.0.1:1")  # never started: no producer
    with pytest.raises(BusUnavailable):
        await bus.publish_many([("t", "CP-1", b"a", ())])


# -- deliver_batch, driven directly ----------------------------------------------------
def rec(partition: int, offset: int, value: bytes = b"v", headers: tuple[Header, ...] = ()) -> Record:
    return Record("t", partition, offset, b"k", value, headers)


FAST = DeliveryPolicy(max_attempts=3, backoff_s=0.0, outage_backoff_s=(0.0,))


async def test_deliver_batch_drops_a_partition_revoked_during_an_outage_and_finishes_the_others() -> None:
    records = [rec(0, 10), rec(1, 5), rec(0, 11), rec(1, 6)]
    owned = {0, 1}
    calls: list[list[tuple[int, int]]] = []

    async def handler(batch: Sequence[Record]) -> None:
        calls.append([(r.partition, r.offset) for r in batch])
        if len(calls) == 1:
            owned.discard(1)  # a rebalance took partition 1 while the store was down
            raise StoreUnavailable("down")

    result = await deliver_batch(records, handler, group="g", policy=FAST, dead_letter=None,
                                 owned=lambda r: r.partition in owned)
    assert calls == [[(0, 10), (1, 5), (0, 11), (1, 6)], [(0, 10), (0, 11)]]
    assert result.done == {("t", 0): 12} and result.handled == 2


async def test_deliver_batch_isolates_poison_per_partition_and_commits_past_the_dead_letter() -> None:
    records = [rec(0, 1), rec(1, 1), rec(0, 2, b"poison"), rec(1, 2), rec(0, 3)]
    dead: list[tuple[str, int, int]] = []

    async def sink(dlq: str, record: Record, headers: list[Header]) -> None:
        dead.append((dlq, record.partition, record.offset))

    async def handler(batch: Sequence[Record]) -> None:
        if any(r.value == b"poison" for r in batch):
            raise KeyError("bug")

    result = await deliver_batch(records, handler, group="g", policy=FAST, dead_letter=sink)
    assert dead == [("t.dlq", 0, 2)]
    assert result.done == {("t", 0): 4, ("t", 1): 3} and result.handled == 4


async def test_deliver_batch_of_only_replays_for_others_commits_without_calling_the_handler() -> None:
    other = ((REPLAY_GROUP_HEADER, b"other"),)
    called: list[int] = []

    async def handler(batch: Sequence[Record]) -> None:
        called.append(len(batch))

    result = await deliver_batch([rec(0, 7, headers=other), rec(2, 3, headers=other)], handler,
                                 group="g", policy=FAST, dead_letter=None)
    assert called == [] and result.done == {("t", 0): 8, ("t", 2): 4} and result.handled == 0
