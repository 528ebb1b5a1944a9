"""The Bus port's contract: every adapter (memory, kafka) passes this suite.

Every wait is bounded (`eventually`, `asyncio.wait_for`); topics and groups are unique
per test. Where a consumer starts "at the end", the test publishes probe records until
one arrives instead of guessing when the consumer is ready (Kafka assigns partitions
asynchronously), then checks that nothing older was ever delivered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Callable

import pytest

from services.common.bus.memory import MemoryBus
from services.common.bus.port import Bus, Record, Subscription, partition_for
from services.common.errors import BusUnavailable, StoreUnavailable
from tests.support.waiting import eventually


class Inbox:
    """Collects what a handler was given; `fail` decides whether the handler raises."""

    def __init__(self, fail: Callable[[Record], bool] | None = None, *, outage: bool = False) -> None:
        self.records: list[Record] = []
        self.fail = fail
        self.outage = outage

    async def handler(self, record: Record) -> None:
        self.records.append(record)
        if self.fail is not None and self.fail(record):
            if self.outage:
                raise StoreUnavailable(f"store down while handling {record.value!r}")
            raise RuntimeError(f"handler refuses {record.value!r}")

    def values(self, prefix: bytes = b"") -> list[bytes]:
        return [r.value for r in self.records if r.value.startswith(prefix)]


async def stop(sub: Subscription, timeout: float) -> None:
    await asyncio.wait_for(sub.stop(), timeout)


async def probe_until(
    bus: Bus, topic: str, seen: Callable[[], bool], timeout: float, partitions: list[int]
) -> None:
    """Publish `probe` records to `partitions` until `seen()`: the consumer is positioned."""

    async def loop() -> None:
        i = 0
        while not seen():
            for p in partitions:
                await bus.publish(topic, f"probe-{i}", b"probe", partition=p)
            i += 1
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no probe record delivered within {timeout}s") from None


async def settle(patience: float) -> None:
    """A short extra wait, so duplicate or stray deliveries would have time to show up."""
    await asyncio.sleep(min(0.3, patience / 10))


# -- produce / consume -----------------------------------------------------------
async def test_a_record_round_trips_with_key_value_and_headers_byte_for_byte(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(3)
    key = "CP-Straße-1"
    value = bytes(range(256))[::-1] + b"\x00"
    headers = [
        ("ce_type", b"csms.station.booted.v1"),
        ("ce_id", "évènement-1".encode()),
        ("binary", bytes(range(256))),
        ("dup", b"1"),
        ("dup", b"2"),
        ("empty", b""),
    ]
    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), inbox.handler)
    await bus.publish(topic, key, value, headers)
    await bus.publish(topic, key, b"")
    await eventually(lambda: len(inbox.records) == 2, patience, what="both records")
    first, second = inbox.records
    assert (first.topic, first.key, first.value) == (topic, key.encode(), value)
    assert tuple(tuple(h) for h in first.headers) == tuple(headers)
    assert first.header("ce_type") == "csms.station.booted.v1" and first.header("missing") is None
    assert first.partition == second.partition == partition_for(key.encode(), 3)
    assert second.value == b"" and second.offset > first.offset >= 0
    await stop(sub, patience)


async def test_records_of_one_key_arrive_in_publish_order_200_records_over_20_keys(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(8)
    keys = [f"CP-{k:03d}" for k in range(20)]
    for i in range(200):
        await bus.publish(topic, keys[i % 20], str(i).encode())
    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), inbox.handler)
    await eventually(lambda: len(inbox.records) >= 200, patience, what="200 records")
    await settle(patience)
    assert len(inbox.records) == 200
    for k, key in enumerate(keys):
        of_key = [int(r.value) for r in inbox.records if r.key == key.encode()]
        assert of_key == list(range(k, 200, 20)), key
    assert len({r.partition for r in inbox.records}) > 1, "keys should spread over partitions"
    await stop(sub, patience)


async def test_a_key_always_lands_in_the_partition_given_by_partition_for(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(6)
    await bus.ensure_topic(topic, 6)  # idempotent
    assert await bus.partitions(topic) == 6
    keys = [f"station-{i}" for i in range(40)]
    for rnd in range(2):
        for key in keys:
            await bus.publish(topic, key, f"{rnd}".encode())
    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), inbox.handler)
    await eventually(lambda: len(inbox.records) >= 80, patience, what="80 records")
    for r in inbox.records:
        assert r.partition == partition_for(r.key, 6), r.key
    by_key: dict[bytes, set[int]] = {}
    for r in inbox.records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in by_key.values())
    await stop(sub, patience)


async def test_an_explicit_partition_is_respected_whatever_the_key(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(4)
    keys = [f"CP-{i}" for i in range(12)]
    assert {partition_for(k.encode(), 4) for k in keys} != {2}
    for key in keys:
        await bus.publish(topic, key, b"cmd", partition=2)
    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), inbox.handler)
    await eventually(lambda: len(inbox.records) >= 12, patience, what="12 records")
    assert {r.partition for r in inbox.records} == {2}
    assert [r.key.decode() for r in inbox.records] == keys
    await stop(sub, patience)


async def test_two_groups_each_receive_every_record(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(4)
    for i in range(30):
        await bus.publish(topic, f"CP-{i % 7}", f"r{i}".encode())
    sessions, billing = Inbox(), Inbox()
    subs = [await bus.subscribe(topic, new_group(), sessions.handler), await bus.subscribe(topic, new_group(), billing.handler)]
    await eventually(lambda: len(sessions.records) >= 30 and len(billing.records) >= 30, patience, what="30 records each")
    assert sorted(sessions.values()) == sorted(billing.values()) == sorted(f"r{i}".encode() for i in range(30))
    for s in subs:
        await stop(s, patience)


# -- consumer groups ----------------------------------------------------------------
async def test_a_group_of_two_members_splits_the_partitions_and_sees_every_record_exactly_once(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(4), new_group()
    a, b = Inbox(), Inbox()
    subs = [await bus.subscribe(topic, group, a.handler), await bus.subscribe(topic, group, b.handler)]
    # Wait until the group has settled with both members consuming.
    await probe_until(bus, topic, lambda: bool(a.records and b.records), patience, [0, 1, 2, 3])
    keys = [f"CP-{i}" for i in range(25)]
    assert {partition_for(k.encode(), 4) for k in keys} == {0, 1, 2, 3}
    expected = [f"main-{i}".encode() for i in range(100)]
    for i, value in enumerate(expected):
        await bus.publish(topic, keys[i % 25], value)
    await eventually(lambda: len(a.values(b"main-")) + len(b.values(b"main-")) >= 100, patience, what="100 records")
    await settle(patience)
    seen = Counter(a.values(b"main-") + b.values(b"main-"))
    assert seen == Counter(expected), "every record exactly once"
    a_parts = {r.partition for r in a.records if r.value.startswith(b"main-")}
    b_parts = {r.partition for r in b.records if r.value.startswith(b"main-")}
    assert a_parts and b_parts and not (a_parts & b_parts), (a_parts, b_parts)
    for s in subs:
        await stop(s, patience)


async def test_a_handler_that_raises_gets_the_same_record_again_and_later_records_wait(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(1)
    for i in range(5):
        await bus.publish(topic, "CP-1", str(i).encode())
    failed: list[bytes] = []

    def fail_once_on_2(record: Record) -> bool:
        if record.value == b"2" and not failed:
            failed.append(record.value)
            return True
        return False

    inbox = Inbox(fail=fail_once_on_2)
    sub = await bus.subscribe(topic, new_group(), inbox.handler)
    await eventually(lambda: len(inbox.records) >= 6, patience, what="6 deliveries")
    await settle(patience)
    assert inbox.values() == [b"0", b"1", b"2", b"2", b"3", b"4"]
    assert inbox.records[2].offset == inbox.records[3].offset
    await stop(sub, patience)


async def test_a_handler_whose_awaited_work_was_cancelled_gets_the_record_again(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    """A CancelledError that comes out of the handler (e.g. it awaited a command's answer
    future that was cancelled when the station disconnected) is a handler failure like any
    other: the record is redelivered and the partition keeps being consumed."""
    topic = await new_topic(1)
    for i in range(3):
        await bus.publish(topic, "CP-1", str(i).encode())
    cancelled: list[int] = []

    async def handler(record: Record) -> None:
        inbox.records.append(record)
        if record.value == b"1" and not cancelled:
            cancelled.append(record.offset)
            answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, answer.cancel)
            await answer

    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), handler)
    await eventually(lambda: len(inbox.records) >= 4, patience / 2, what="the cancelled record again, then the rest")
    assert inbox.values() == [b"0", b"1", b"1", b"2"]
    await stop(sub, patience)


async def test_a_member_that_leaves_hands_its_partitions_over_and_uncommitted_records_are_redelivered(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(4), new_group()
    expected = {f"r{i}".encode() for i in range(40)}
    for i in range(40):
        await bus.publish(topic, f"CP-{i % 10}", f"r{i}".encode())
    broken = Inbox(fail=lambda r: True, outage=True)  # never commits anything (an outage is never dead-lettered)
    healthy = Inbox()
    sub_broken = await bus.subscribe(topic, group, broken.handler)
    await eventually(lambda: bool(broken.records), patience, what="the failing member to get records")
    sub_healthy = await bus.subscribe(topic, group, healthy.handler)
    await stop(sub_broken, patience)
    await eventually(lambda: set(healthy.values()) >= expected, patience, what="every record at the remaining member")
    assert set(broken.values()) <= set(healthy.values())
    await stop(sub_healthy, patience)


async def test_a_member_that_leaves_after_processing_does_not_replay_committed_records(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(4), new_group()
    for i in range(20):
        await bus.publish(topic, f"CP-{i % 5}", f"old-{i}".encode())
    first = Inbox()
    sub = await bus.subscribe(topic, group, first.handler)
    await eventually(lambda: len(first.records) >= 20, patience, what="the first 20 records")
    await stop(sub, patience)
    second = Inbox()
    sub = await bus.subscribe(topic, group, second.handler, from_beginning=True)
    for i in range(20):
        await bus.publish(topic, f"CP-{i % 5}", f"new-{i}".encode())
    await eventually(lambda: len(second.values(b"new-")) >= 20, patience, what="the 20 new records")
    await settle(patience)
    assert second.values(b"old-") == []
    assert sorted(second.values()) == sorted(f"new-{i}".encode() for i in range(20))
    await stop(sub, patience)


async def test_a_new_group_starting_at_the_end_sees_only_new_records(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(3)
    for i in range(15):
        await bus.publish(topic, f"CP-{i % 4}", f"old-{i}".encode())
    inbox = Inbox()
    sub = await bus.subscribe(topic, new_group(), inbox.handler, from_beginning=False)
    await probe_until(bus, topic, lambda: bool(inbox.values(b"probe")), patience, [0, 1, 2])
    for i in range(10):
        await bus.publish(topic, "CP-1", f"new-{i}".encode())
    await eventually(lambda: len(inbox.values(b"new-")) >= 10, patience, what="10 new records")
    assert inbox.values(b"old-") == []
    assert inbox.values(b"new-") == [f"new-{i}".encode() for i in range(10)]
    await stop(sub, patience)


# -- manual assignment ------------------------------------------------------------------
async def test_assign_reads_only_its_partition_starting_at_the_end(
    bus: Bus, new_topic: Any, patience: float
) -> None:
    topic = await new_topic(4)
    for i in range(5):
        await bus.publish(topic, "CP-1", f"old-{i}".encode(), partition=2)
        await bus.publish(topic, "CP-1", f"old-other-{i}".encode(), partition=1)
    inbox = Inbox()
    sub = await bus.assign(topic, 2, inbox.handler)

    async def probe_both() -> None:  # also publish to another partition, which must stay unseen
        i = 0
        while not inbox.values(b"probe"):
            await bus.publish(topic, f"k{i}", b"other", partition=1)
            await bus.publish(topic, f"k{i}", b"probe", partition=2)
            i += 1
            await asyncio.sleep(0.1)

    await asyncio.wait_for(probe_both(), patience)
    for i in range(5):
        await bus.publish(topic, f"CP-{i}", f"new-{i}".encode(), partition=2)
        await bus.publish(topic, f"CP-{i}", b"other", partition=3)
    await eventually(lambda: len(inbox.values(b"new-")) >= 5, patience, what="5 new records")
    await settle(patience)
    assert {r.partition for r in inbox.records} == {2}
    assert inbox.values(b"old-") == [] and inbox.values(b"other") == []
    assert inbox.values(b"new-") == [f"new-{i}".encode() for i in range(5)]
    await stop(sub, patience)


async def test_assign_from_the_beginning_reads_the_partition_history(
    bus: Bus, new_topic: Any, patience: float
) -> None:
    topic = await new_topic(2)
    for i in range(4):
        await bus.publish(topic, "CP-1", f"h{i}".encode(), partition=1)
        await bus.publish(topic, "CP-1", b"elsewhere", partition=0)
    inbox = Inbox()
    sub = await bus.assign(topic, 1, inbox.handler, from_beginning=True)
    await eventually(lambda: len(inbox.records) >= 4, patience, what="the 4 records of partition 1")
    assert inbox.values() == [f"h{i}".encode() for i in range(4)]
    await stop(sub, patience)


async def test_a_stopped_assignment_receives_nothing_more(bus: Bus, new_topic: Any, patience: float) -> None:
    topic = await new_topic(1)
    inbox = Inbox()
    sub = await bus.assign(topic, 0, inbox.handler)
    await probe_until(bus, topic, lambda: bool(inbox.records), patience, [0])
    await stop(sub, patience)
    count = len(inbox.records)
    await bus.publish(topic, "CP-1", b"after-stop", partition=0)
    await settle(patience)
    assert len(inbox.records) == count


# -- the memory adapter ------------------------------------------------------------------
async def test_a_memory_bus_marked_unavailable_refuses_publishes_and_recovers() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        await bus.ensure_topic("t", 2)
        assert bus.healthy
        bus.set_available(False)
        assert not bus.healthy
        with pytest.raises(BusUnavailable):
            await bus.publish("t", "CP-1", b"x")
        assert bus.end_offsets("t") == [0, 0]
        bus.set_available(True)
        assert bus.healthy
        await bus.publish("t", "CP-1", b"x")
        assert sum(bus.end_offsets("t")) == 1
    finally:
        await bus.close()


async def test_a_memory_bus_reports_a_groups_lag_until_records_are_handled() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        await bus.ensure_topic("t", 2)
        for i in range(6):
            await bus.publish("t", f"CP-{i}", b"x")
        assert bus.lag("g", "t") == 6
        inbox = Inbox()
        await bus.subscribe("t", "g", inbox.handler)
        await eventually(lambda: bus.lag("g", "t") == 0, 5, what="lag 0")
        assert len(inbox.records) == 6
    finally:
        await asyncio.wait_for(bus.close(), 5)
