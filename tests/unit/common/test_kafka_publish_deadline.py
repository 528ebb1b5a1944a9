"""KafkaBus.publish without a `wait_for` per publish (issue 8): one shared deadline timer
(`_Deadlines`) must still turn an acknowledgement that never comes (an idempotent aiokafka
producer retries forever during an outage) into BusUnavailable, and leave acknowledged
publishes alone. No broker needed: the producer is a stand-in whose acks we control."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common.bus.kafka import KafkaBus, _Deadlines
from services.common.bus.port import partition_for
from services.common.errors import BusUnavailable


class FakeCluster:
    def __init__(self) -> None:
        self.topics: dict[str, set[int]] = {"t": set(range(12))}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.topics.get(topic)


class FakeProducer:
    """`send` returns an ack future; `ack` decides whether it ever resolves."""

    def __init__(self) -> None:
        self.ack = True
        self.sent: list[tuple[str, bytes, int | None, list[Any]]] = []
        self.pending: list[asyncio.Future[Any]] = []
        self.client = type("Client", (), {"cluster": FakeCluster()})()

    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None, headers: Any = None) -> asyncio.Future[Any]:
        self.sent.append((topic, key, partition, headers))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.ack:
            asyncio.get_running_loop().call_soon(fut.set_result, "meta")
        else:
            self.pending.append(fut)
        return fut

    async def stop(self) -> None:
        pass


def _bus(timeout_s: float) -> tuple[KafkaBus, FakeProducer]:
    bus = KafkaBus("kafka://127.0.0.1:1", publish_timeout_s=timeout_s)
    producer = FakeProducer()
    bus._producer, bus._connected = producer, True  # type: ignore[assignment]
    return bus, producer


async def test_an_ack_that_never_comes_is_bus_unavailable_after_the_timeout_and_recovers() -> None:
    bus, producer = _bus(0.2)
    await bus.publish("t", "CP-1", b"ok", [("h", b"1")])
    assert bus.healthy
    producer.ack = False
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(bus.publish("t", "CP-1", b"lost"), 5)
    waited = loop.time() - t0
    assert 0.2 <= waited <= 0.2 + bus._deadlines.tick + 0.5
    assert not bus.healthy
    # a late ack from the producer after our timeout is ignored, as aiokafka does for a done future
    assert all(f.done() for f in producer.pending)
    producer.ack = True
    await bus.publish("t", "CP-1", b"again")
    assert bus.healthy
    await bus.close()


async def test_acknowledged_publishes_are_never_failed_and_the_timer_stops_when_idle() -> None:
    bus, producer = _bus(0.1)
    await asyncio.gather(*(bus.publish("t", f"CP-{i}", b"x") for i in range(200)))
    await asyncio.sleep(0.3)  # a few sweeps: nothing left to watch, no timer armed
    assert bus._deadlines._timer is None and not bus._deadlines._queue
    assert bus.healthy and len(producer.sent) == 200
    await bus.close()


async def test_deadlines_fail_only_what_is_overdue_in_order() -> None:
    loop = asyncio.get_running_loop()
    d = _Deadlines(1.0)  # sweeps every 0.25 s
    early, acked = loop.create_future(), loop.create_future()
    d.watch(early)
    d.watch(acked)
    acked.set_result(1)
    await asyncio.sleep(0.5)
    late = loop.create_future()
    d.watch(late)  # due at 1.5
    await asyncio.sleep(0.8)  # t = 1.3: early (due 1.0) failed by a sweep, late not due yet
    assert isinstance(early.exception(), TimeoutError)
    assert acked.result() == 1
    assert not late.done()
    late.set_result(2)
    await asyncio.sleep(2 * d.tick)
    assert d._timer is None and not d._queue
    d.close()


async def test_a_cancelled_publish_leaves_nothing_behind() -> None:
    bus, producer = _bus(0.2)
    producer.ack = False
    task = asyncio.create_task(bus.publish("t", "CP-1", b"x"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert producer.pending[0].cancelled()
    await asyncio.sleep(0.2 + 2 * bus._deadlines.tick)
    assert bus.healthy  # a cancelled publish is not an outage
    assert not bus._deadlines._queue
    await bus.close()


async def test_the_partition_is_the_key_partitioners_choice_from_the_cached_hash() -> None:
    bus, producer = _bus(1.0)
    keys = [f"CP-{i}" for i in range(300)] + ["ÄÖ-station", "x" * 48]
    for key in keys * 2:  # the second round comes from the hash cache
        await bus.publish("t", key, b"x")
    await bus.publish("unknown-topic", "CP-1", b"x")  # no metadata yet: the producer decides
    await bus.publish("t", "CP-2", b"x", partition=5)  # an explicit partition is kept
    chosen = [(k, p) for t, k, p, _ in producer.sent if t == "t"]
    assert chosen[:-1] == [(k.encode(), partition_for(k.encode(), 12)) for k in keys * 2]
    assert len({p for _, p in chosen}) == 12
    assert chosen[-1] == (b"CP-2", 5)
    assert producer.sent[-2][:3] == ("unknown-topic", b"CP-1", None)
    producer.client.cluster.topics["t"] = set(range(16))  # the topic grew
    await bus.publish("t", "CP-7", b"x")
    assert producer.sent[-1][2] == partition_for(b"CP-7", 12)  # until the producer's metadata says so
    bus._metadata_updated(producer.client.cluster)  # the listener _connect_producer registers
    await bus.publish("t", "CP-7", b"x")
    assert producer.sent[-1][2] == partition_for(b"CP-7", 16)
    await bus.close()
