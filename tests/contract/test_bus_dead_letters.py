"""Dead letters, replays, `read`, record size and retention: the same on every bus adapter.

The buses are the fixtures' (`MemoryBus()`, `KafkaBus(url)`) with their DEFAULT policy
(5 tries, 0.2 s first back-off): "the next record is processed within seconds" is
checked against what a deployment gets without tuning.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common import topics
from services.common.bus import dead_letters
from services.common.bus.delivery import DLQ_HEADERS, DeliveryPolicy
from services.common.bus.memory import MemoryBus
from services.common.bus.port import REPLAY_GROUP_HEADER, Bus, Record, is_transient
from services.common.config import Settings
from services.common.errors import BusUnavailable, RecordTooLarge, StoreUnavailable
from services.common.runtime import bootstrap
from services.common.store.sqlite import SqliteStore
from services.common.timeutil import parse_ocpp
from tests.support.waiting import eventually

from .conftest import INFRA, KAFKA_URL
from .test_bus_contract import settle, stop


def dead_letters_metric(topic: str, group: str) -> float:
    return REGISTRY.get_sample_value("csms_bus_dead_letters_total", {"topic": topic, "group": group}) or 0.0


async def dlq_records(bus: Bus, topic: str) -> list[Record]:
    return await bus.read(topics.dlq_topic(topic), limit=100)


async def wait_for_dlq(bus: Bus, topic: str, count: int, timeout: float) -> list[Record]:
    async def enough() -> list[Record]:
        found = [r for r in await dlq_records(bus, topic) if r.header("dlq_topic") is not None]
        return found if len(found) >= count else []

    return await eventually(enough, timeout, interval=0.1, what=f"{count} dead letter(s) in {topics.dlq_topic(topic)}")


# -- poison ---------------------------------------------------------------------------
async def test_a_poison_record_is_dead_lettered_with_its_headers_and_the_partition_moves_on(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(2), new_group()
    original_headers = [("ce_type", b"csms.events.v1.MeterValues"), ("ce_id", b"e-1"), ("bin", bytes(range(5)))]
    await bus.publish(topic, "CP-1", b"before")
    await bus.publish(topic, "CP-1", b"poison", original_headers)
    await bus.publish(topic, "CP-1", b"after")
    tries: list[float] = []
    handled: dict[bytes, float] = {}

    async def handler(record: Record) -> None:
        if record.value == b"poison":
            tries.append(time.monotonic())
            raise ValueError("decimal.InvalidOperation: '1e308'")
        handled[record.value] = time.monotonic()

    sub = await bus.subscribe(topic, group, handler)
    await eventually(lambda: b"after" in handled, patience + 15, what="the record after the poison one")
    # 5 tries with 0.2, 0.4, 0.8, 1.6 s between them: the partition moved on within seconds
    assert len(tries) == 5
    assert handled[b"after"] - tries[0] < 6.0
    assert tries[-1] - tries[0] >= 2.9  # the back-off doubled (0.2 + 0.4 + 0.8 + 1.6)

    [dl] = await wait_for_dlq(bus, topic, 1, patience)
    assert dl.topic == topics.dlq_topic(topic) == f"{topic}.dlq"
    assert (dl.key, dl.value) == (b"CP-1", b"poison")
    assert list(dl.headers[: len(original_headers)]) == original_headers
    source = [r for r in await bus.read(topic, limit=10) if r.value == b"poison"][0]
    assert dl.header("dlq_topic") == topic
    assert dl.header("dlq_partition") == str(source.partition)
    assert dl.header("dlq_offset") == str(source.offset)
    assert dl.header("dlq_group") == group
    assert dl.header("dlq_error") == "ValueError: decimal.InvalidOperation: '1e308'"
    assert dl.header("dlq_attempts") == "5"
    at = dl.header("dlq_at") or ""
    assert at.endswith("Z") and abs(parse_ocpp(at).timestamp() - time.time()) < 60
    assert {k for k, _ in dl.headers} >= set(DLQ_HEADERS)
    assert dead_letters_metric(topic, group) == 1.0

    # committed: a new member of the group does not get the poison record again
    await stop(sub, patience)
    again: list[bytes] = []

    async def collect(record: Record) -> None:
        again.append(record.value)

    sub = await bus.subscribe(topic, group, collect)
    await bus.publish(topic, "CP-1", b"later")
    await eventually(lambda: b"later" in again, patience, what="a record published later")
    assert b"poison" not in again
    await stop(sub, patience)


async def test_an_outage_is_retried_until_it_ends_and_never_dead_lettered(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(1), new_group()
    outage = [StoreUnavailable("cassandra: NoHostAvailable"), BusUnavailable("kafka down"), TimeoutError(),
              ConnectionResetError(), StoreUnavailable("x"), StoreUnavailable("y"), StoreUnavailable("z")]
    assert all(is_transient(e) for e in outage) and len(outage) > 5  # more tries than dlq_max_attempts
    failures = list(outage)
    handled: list[bytes] = []

    async def handler(record: Record) -> None:
        if record.value == b"during-outage" and failures:
            raise failures.pop(0)
        handled.append(record.value)

    sub = await bus.subscribe(topic, group, handler)
    await bus.publish(topic, "CP-1", b"during-outage")
    await bus.publish(topic, "CP-1", b"next")
    await eventually(lambda: handled == [b"during-outage", b"next"], patience + 10, what="both records, in order")
    assert failures == []
    assert await dlq_records(bus, topic) == []
    assert dead_letters_metric(topic, group) == 0.0
    await stop(sub, patience)


async def test_a_cancelled_await_in_the_handler_counts_as_a_failure_and_is_dead_lettered_in_the_end(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(1), new_group()
    calls: list[bytes] = []

    async def handler(record: Record) -> None:
        calls.append(record.value)
        if record.value == b"stuck":
            answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, answer.cancel)
            await answer

    sub = await bus.subscribe(topic, group, handler)
    await bus.publish(topic, "CP-1", b"stuck")
    await bus.publish(topic, "CP-1", b"next")
    await eventually(lambda: b"next" in calls, patience + 15, what="the record after")
    assert calls == [b"stuck"] * 5 + [b"next"]
    [dl] = await wait_for_dlq(bus, topic, 1, patience)
    assert (dl.header("dlq_error") or "").startswith("CancelledError")
    await stop(sub, patience)


# -- replay -----------------------------------------------------------------------------
async def test_a_replay_is_handled_by_the_named_group_only(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, broken_group, other_group = await new_topic(2), new_group(), new_group()
    fixed = asyncio.Event()
    broken_seen: list[Record] = []
    other_seen: list[Record] = []

    async def broken(record: Record) -> None:
        if record.value == b"bad" and not fixed.is_set():
            raise KeyError("a bug, fixed later")
        broken_seen.append(record)

    async def other(record: Record) -> None:
        other_seen.append(record)

    subs = [await bus.subscribe(topic, broken_group, broken), await bus.subscribe(topic, other_group, other)]
    await bus.publish(topic, "CP-7", b"bad", [("ce_id", b"e-7")])
    [dl_record] = await wait_for_dlq(bus, topic, 1, patience + 15)

    listed = await dead_letters.list_dead_letters(bus, topic)
    assert [d.id for d in listed] == [f"{dl_record.partition}-{dl_record.offset}"]
    dl = listed[0]
    assert (dl.group, dl.topic, dl.attempts, dl.key, dl.value) == (broken_group, topic, 5, b"CP-7", b"bad")
    assert dl.error == "KeyError: 'a bug, fixed later'" and dict(dl.headers) == {"ce_id": b"e-7"}
    assert await dead_letters.list_dead_letters(bus, topic, group=other_group) == []
    assert await dead_letters.get_dead_letter(bus, topic, dl.id) == dl

    fixed.set()
    done = await dead_letters.replay(bus, dl)
    assert (done["id"], done["group"], done["topic"]) == (dl.id, broken_group, topic)
    await bus.publish(topic, "CP-7", b"sentinel")  # same key, same partition: after the replay
    await eventually(lambda: any(r.value == b"sentinel" for r in broken_seen), patience, what="the sentinel (broken group)")
    await eventually(lambda: any(r.value == b"sentinel" for r in other_seen), patience, what="the sentinel (other group)")
    replayed = [r for r in broken_seen if r.value == b"bad"]
    assert len(replayed) == 1 and replayed[0].header(REPLAY_GROUP_HEADER) == broken_group
    assert replayed[0].header("ce_id") == "e-7" and replayed[0].partition == dl.partition
    assert replayed[0].header("dlq_group") is None
    assert [r.value for r in other_seen] == [b"bad", b"sentinel"]  # the replay was skipped

    # a replayed dead letter is listed only on request and `replay_all` leaves it alone
    assert await dead_letters.list_dead_letters(bus, topic) == []
    [again] = await dead_letters.list_dead_letters(bus, topic, include_replayed=True)
    assert again.id == dl.id and again.replayed_at == done["replayed_at"]
    assert await dead_letters.replay_all(bus, topic) == []
    for s in subs:
        await stop(s, patience)


async def test_a_group_that_starts_after_a_replay_skips_it_too(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(1)
    await bus.publish(topic, "CP-1", b"replayed", [(REPLAY_GROUP_HEADER, b"someone-else")])
    await bus.publish(topic, "CP-1", b"normal")
    seen: list[bytes] = []

    async def handler(record: Record) -> None:
        seen.append(record.value)

    group = new_group()
    sub = await bus.subscribe(topic, group, handler)
    await eventually(lambda: b"normal" in seen, patience, what="the normal record")
    await settle(patience)
    assert seen == [b"normal"]
    await stop(sub, patience)
    mine: list[bytes] = []

    async def targeted(record: Record) -> None:
        mine.append(record.value)

    await bus.publish(topic, "CP-1", b"for-me", [(REPLAY_GROUP_HEADER, group.encode())])
    sub = await bus.subscribe(topic, group, targeted)
    await eventually(lambda: b"for-me" in mine, patience, what="the replay for this group")
    assert mine == [b"for-me"]
    await stop(sub, patience)


# -- read ---------------------------------------------------------------------------------
async def test_read_returns_retained_records_without_a_group_oldest_first(
    bus: Bus, new_topic: Any, patience: float
) -> None:
    topic = await new_topic(3)
    assert await bus.read(topic, limit=10) == []
    for i in range(9):
        await bus.publish(topic, "k", f"r{i}".encode(), partition=i % 3)
    everything = await bus.read(topic, limit=100)
    assert sorted(r.value for r in everything) == [f"r{i}".encode() for i in range(9)]
    assert [r.value for r in everything if r.partition == 1] == [b"r1", b"r4", b"r7"]
    assert len(await bus.read(topic, limit=4)) == 4
    one = await bus.read(topic, limit=1, partition=2, start=1)
    assert [(r.partition, r.offset, r.value) for r in one] == [(2, 1, b"r5")]
    assert await bus.read(topic, limit=1, partition=2, start=3) == []
    # reading does not consume: a group still gets everything
    again = await bus.read(topic, limit=100)
    assert [(r.partition, r.offset) for r in again] == [(r.partition, r.offset) for r in everything]


async def test_reading_a_missing_topic_is_empty_and_does_not_create_it(bus: Bus, new_topic: Any) -> None:
    name = (await new_topic(1)) + ".never-created"
    assert await bus.read(name, limit=10) == []
    assert await dead_letters.list_dead_letters(bus, name) == []
    assert await dead_letters.get_dead_letter(bus, name, "0-0") is None


# -- size -----------------------------------------------------------------------------------
async def test_an_oversize_record_raises_record_too_large_and_the_bus_stays_healthy(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic = await new_topic(1)
    limit = 1 << 20  # the default of CSMS_BUS_MAX_RECORD_BYTES
    headers = [("ce_type", b"csms.events.v1.DataTransfer")]
    overhead = len(b"CP-1") + len("ce_type") + len(headers[0][1])
    assert bus.healthy
    with pytest.raises(RecordTooLarge):
        await bus.publish(topic, "CP-1", b"x" * (limit - overhead + 1), headers)
    assert bus.healthy  # not an outage: readiness unchanged
    seen: list[Record] = []

    async def handler(record: Record) -> None:
        seen.append(record)

    sub = await bus.subscribe(topic, new_group(), handler)
    await bus.publish(topic, "CP-1", b"y" * (limit - overhead), headers)  # exactly at the limit
    await eventually(lambda: bool(seen), patience, what="the record at the limit")
    assert len(seen[0].value) == limit - overhead and bus.healthy
    assert not isinstance(RecordTooLarge("x"), BusUnavailable) and not is_transient(RecordTooLarge("x"))
    await stop(sub, patience)


async def test_a_record_at_the_limit_can_still_be_dead_lettered(
    bus: Bus, new_topic: Any, new_group: Any, patience: float
) -> None:
    topic, group = await new_topic(1), new_group()
    value = b"z" * ((1 << 20) - len(b"CP-1"))

    async def handler(record: Record) -> None:
        raise ValueError("too much data")

    sub = await bus.subscribe(topic, group, handler)
    await bus.publish(topic, "CP-1", value)
    [dl] = await wait_for_dlq(bus, topic, 1, patience + 15)
    assert dl.value == value and dl.header("dlq_group") == group
    await stop(sub, patience)


if INFRA:

    @pytest.mark.infra
    async def test_kafka_a_broker_refusing_a_record_for_its_size_is_record_too_large_not_an_outage(
        new_group: Any,
    ) -> None:
        """The broker's own limit (a topic with a smaller max.message.bytes) is reported the
        same way as ours, and the producer keeps working for the next record."""
        from services.common.bus.kafka import KafkaBus

        small = KafkaBus(KAFKA_URL, max_record_bytes=10_000)  # creates topics with max.message.bytes ~26 KB
        big = KafkaBus(KAFKA_URL)
        topic = f"contract.broker-size.{new_group()}"
        await small.ensure_topic(topic, 1)
        await big.start()
        try:
            with pytest.raises(RecordTooLarge):
                await big.publish(topic, "CP-1", b"x" * 200_000)
            assert big.healthy
            await big.publish(topic, "CP-1", b"fits")
            assert [r.value for r in await big.read(topic, limit=10)] == [b"fits"]
            assert big.healthy
        finally:
            await big.close()
            await small.close()


# -- readers without a group --------------------------------------------------------------
async def test_an_assigned_reader_is_never_dead_lettered() -> None:
    bus = MemoryBus(dlq_max_attempts=2, dlq_backoff_s=0.01)
    await bus.start()
    try:
        await bus.ensure_topic("cmds", 1)
        failures = [RuntimeError(str(i)) for i in range(4)]
        seen: list[bytes] = []

        async def handler(record: Record) -> None:
            if failures:
                raise failures.pop(0)
            seen.append(record.value)

        await bus.assign("cmds", 0, handler)
        await bus.publish("cmds", "CP-1", b"cmd", partition=0)
        await eventually(lambda: seen == [b"cmd"], 10, what="the command after 4 failures")
        assert await bus.read(topics.dlq_topic("cmds"), limit=10) == []
    finally:
        await asyncio.wait_for(bus.close(), 5)


# -- memory retention -----------------------------------------------------------------------
async def test_the_memory_bus_keeps_a_bounded_window_by_bytes_and_a_consumer_gets_the_tail() -> None:
    """Issue 7: 60 DataTransfers of 1 MiB grew the embedded process by 63 MB for good."""
    bus = MemoryBus(retention_bytes=4 << 20, max_record_bytes=2 << 20)
    await bus.start()
    try:
        await bus.ensure_topic("t", 1)
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for i in range(60):
                await bus.publish("t", "CP-1", f"{i:03d}".encode() + bytes(1 << 20))
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        [(count, size)] = bus.retained("t")
        assert count == 3 and size <= 4 << 20
        assert after - before < 6 << 20, f"memory grew by {(after - before) >> 20} MiB"
        assert bus.end_offsets("t") == [60] and bus.base_offsets("t") == [57]
        seen: list[int] = []

        async def handler(record: Record) -> None:
            seen.append(record.offset)

        await bus.subscribe("t", "late", handler)
        await eventually(lambda: seen == [57, 58, 59], 5, what="the retained tail, from the first retained offset")
    finally:
        await asyncio.wait_for(bus.close(), 5)


async def test_the_memory_bus_drops_records_older_than_the_retention_age() -> None:
    bus = MemoryBus(retention_s=0.2)
    await bus.start()
    try:
        await bus.ensure_topic("t", 1)
        for i in range(5):
            await bus.publish("t", "CP-1", f"old-{i}".encode())
        assert bus.retained("t")[0][0] == 5
        await asyncio.sleep(0.3)
        await bus.publish("t", "CP-1", b"new")
        assert [r.value for r in await bus.read("t", limit=10)] == [b"new"]
        assert bus.base_offsets("t") == [5]
    finally:
        await asyncio.wait_for(bus.close(), 5)


async def test_a_memory_bus_trims_many_small_records_in_amortised_constant_time() -> None:
    bus = MemoryBus(retention_bytes=10_000)
    await bus.start()
    try:
        await bus.ensure_topic("t", 1)
        started = time.perf_counter()
        for i in range(50_000):
            await bus.publish("t", "k", b"%09d" % i)
        assert time.perf_counter() - started < 5.0
        [(count, size)] = bus.retained("t")
        assert size <= 10_000 and count == 10_000 // len(b"k" + b"%09d" % 0)
        values = [r.value for r in await bus.read("t", limit=100_000)]
        assert values == [b"%09d" % i for i in range(50_000 - count, 50_000)]
    finally:
        await asyncio.wait_for(bus.close(), 5)


# -- wiring ----------------------------------------------------------------------------------
async def test_bootstrap_gives_the_bus_the_settings_and_start_creates_the_dead_letter_topics(tmp_path: Any) -> None:
    settings = Settings(
        dlq_max_attempts=3, dlq_backoff_s=0.05, memory_retention_bytes=1234, memory_retention_s=5.0,
        bus_max_record_bytes=4096, events_partitions=3,
    )
    rt = bootstrap(settings, store=SqliteStore(f"sqlite:///{tmp_path}/x.db"), pepper=b"p")
    bus = rt.bus
    assert isinstance(bus, MemoryBus)
    assert bus.policy == DeliveryPolicy(max_attempts=3, backoff_s=0.05)
    assert (bus.retention_bytes, bus.retention_s, bus.max_record_bytes) == (1234, 5.0, 4096)
    await rt.start()
    try:
        assert await bus.partitions(topics.EVENTS_DLQ) == 3
        assert await bus.partitions(topics.dlq_topic(topics.SESSIONS)) == 3
        with pytest.raises(RecordTooLarge):
            await bus.publish(topics.EVENTS, "CP-1", bytes(4096))
    finally:
        await rt.close()


def test_the_policy_backs_off_doubling_up_to_five_seconds() -> None:
    policy = DeliveryPolicy(max_attempts=5, backoff_s=0.2)
    assert [policy.poison_delay(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert policy.outage_delay(1) < policy.outage_delay(5) == policy.outage_delay(500) <= 5.0
    with pytest.raises(ValueError):
        DeliveryPolicy(max_attempts=0)


def test_store_outages_of_both_store_adapters_are_transient() -> None:
    import sqlite3

    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    from services.common.errors import ConflictError, StoreError

    assert is_transient(StoreUnavailable("sqlite: database is locked"))
    for exc in (NoHostAvailable("down", {}), Unavailable("x"), OperationTimedOut(), ReadTimeout("x"),
                WriteTimeout("x", write_type=0)):
        assert is_transient(exc), exc
    try:
        raise StoreError("wrapped") from sqlite3.OperationalError("disk I/O error")
    except StoreError as wrapped:  # a non-retriable CsmsError is the adapter's verdict
        assert not is_transient(wrapped)
    for exc in (ValueError("1e308"), OverflowError("year 1"), KeyError("k"), ConflictError("lwt"), RecordTooLarge("big")):
        assert not is_transient(exc), exc
    assert is_transient(ExceptionGroup("g", [StoreUnavailable("a"), TimeoutError()]))
    assert not is_transient(ExceptionGroup("g", [StoreUnavailable("a"), ValueError()]))


# -- csms dlq ----------------------------------------------------------------------------------
def test_csms_dlq_points_embedded_mode_to_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    from services.common import cli

    assert cli.main(["dlq", "list", "--bus-url", "memory://"]) == 2
    assert "GET /api/v1/dead-letters" in capsys.readouterr().err


if INFRA:

    @pytest.mark.infra
    def test_kafka_csms_dlq_lists_and_replays_for_the_group_only(
        capsys: pytest.CaptureFixture[str], new_group: Any
    ) -> None:
        from services.common import cli
        from services.common.bus.kafka import KafkaBus

        topic, group = f"contract.cli.{new_group()}", new_group()

        async def make_dead_letter() -> None:
            bus = KafkaBus(KAFKA_URL, dlq_max_attempts=1)
            await bus.start()
            try:
                await bus.ensure_topic(topic, 2)

                async def refuse(record: Record) -> None:
                    raise ValueError("poison for the CLI")

                sub = await bus.subscribe(topic, group, refuse)
                await bus.publish(topic, "CP-1", b"bad", partition=1)
                await wait_for_dlq(bus, topic, 1, 60)
                await sub.stop()
            finally:
                await bus.close()

        async def read(name: str) -> list[Record]:
            bus = KafkaBus(KAFKA_URL)
            await bus.start()
            try:
                return await bus.read(name, limit=10)
            finally:
                await bus.close()

        asyncio.run(make_dead_letter())
        [dl] = asyncio.run(read(topics.dlq_topic(topic)))
        dl_id = f"{dl.partition}-{dl.offset}"
        assert cli.main(["dlq", "list", "--bus-url", KAFKA_URL, "--topic", topic]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 1
        assert out[0].startswith(f"{dl_id}  group={group}  {topic}[1]@0  attempts=1  at=")
        assert out[0].endswith("error=ValueError: poison for the CLI")
        assert cli.main(["dlq", "replay", "--bus-url", KAFKA_URL, "--topic", topic, "9-999"]) == 1
        assert cli.main(["dlq", "replay", "--bus-url", KAFKA_URL, "--topic", topic, dl_id]) == 0
        assert capsys.readouterr().out.strip() == f"replayed {dl_id}: {topic}[1]@0 for group {group}"
        replayed = [r for r in asyncio.run(read(topic)) if r.offset == 1]
        assert [(r.partition, r.value, r.header(REPLAY_GROUP_HEADER)) for r in replayed] == [(1, b"bad", group)]
        assert cli.main(["dlq", "list", "--bus-url", KAFKA_URL, "--topic", topic]) == 0
        assert capsys.readouterr().out == ""
        assert cli.main(["dlq", "replay", "--bus-url", KAFKA_URL, "--topic", topic, "--all"]) == 0
        assert capsys.readouterr().out == ""
