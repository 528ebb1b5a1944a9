"""The sessions processor's batch model (ADR 015) on a real store (SQLite; Cassandra too
with CSMS_INFRA=1) and the memory bus: what it reads and writes per MeterValues does not
grow with the session, a 10,000-sample session works, a redelivered batch changes nothing
and publishes again, a poison record in a batch is the only one dead-lettered, and a
session document from before ADR 015 is upgraded on first touch."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Sequence

import orjson
import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime, bootstrap
from services.common.store.port import DocWrite, MeterRow, Station, Store
from services.sessions import codec as snapshots
from services.sessions import handlers
from services.sessions.domain import session_id
from services.sessions.wiring import build_handler, build_sessions
from tests.support import FixedClock

from .builders import NOW, a_register, a_started, an_ended, meter_values

INFRA = os.environ.get("CSMS_INFRA") == "1"
KEYSPACE = f"csms_batches_{os.getpid()}_{secrets.token_hex(3)}"
STORES = [pytest.param("sqlite", id="sqlite")]
if INFRA:
    STORES.append(pytest.param("cassandra", id="cassandra", marks=pytest.mark.infra))
V16 = {"ocpp_version": "1.6"}
TARIFF = {
    "currency": "EUR", "price_per_kwh": "0.30", "price_per_minute": "0", "session_fee": "0",
    "idle_fee_per_minute": "0", "idle_grace_minutes": 0, "tax_rate": "0.19", "bands": [],
}


def _store(backend: str, tmp_path: Path) -> Store:
    if backend == "sqlite":
        from services.common.store.sqlite import SqliteStore

        return SqliteStore(f"sqlite:///{tmp_path}/s.db")
    from services.common.store.cassandra import CassandraStore

    return CassandraStore(f"cassandra://127.0.0.1:9042/{KEYSPACE}")


class World:
    """A runtime, one station with its own tariff, and what the processor published."""

    def __init__(self, rt: Runtime, station: str) -> None:
        self.rt, self.station = rt, station
        self.handler = build_handler(rt)
        self.offset = 0
        self.tx = "tx-1"

    @property
    def store(self) -> Any:
        return self.rt.store

    @property
    def sid(self) -> str:
        return session_id(self.station, self.tx)

    def start(self, meter_start: int = 1_000) -> ev.Envelope:
        return a_started(transaction_id=self.tx, meter_start_wh=meter_start, charging_state="", trigger_reason="",
                         env={"station_id": self.station, **V16})

    def mv(self, minute: float, wh: float) -> ev.Envelope:
        return meter_values(a_register(minute, wh), at_min=minute, transaction_id=self.tx,
                            env={"station_id": self.station, **V16})

    def stop(self, minute: float, meter_stop: int) -> ev.Envelope:
        return an_ended(transaction_id=self.tx, at_min=minute, meter_stop_wh=meter_stop,
                        env={"station_id": self.station, **V16})

    def records(self, events: Sequence[ev.Envelope]) -> list[Record]:
        out = []
        for e in events:
            out.append(Record(topics.EVENTS, 0, self.offset, e.station_id.encode(), codec.encode_event(e),
                              tuple(codec.event_headers(e))))
            self.offset += 1
        return out

    async def feed(self, *events: ev.Envelope, batch: int = 500) -> None:
        for i in range(0, len(events), batch):
            await self.handler.handle_batch(self.records(events[i:i + batch]))

    async def doc(self) -> dict[str, Any]:
        doc = await self.store.get_doc("session", self.sid)
        assert doc is not None
        return doc

    async def published(self, topic: str) -> list[Record]:
        bus = self.rt.bus
        assert isinstance(bus, MemoryBus)
        return [r for r in await bus.read(topic, limit=1_000_000) if r.key == self.station.encode()]


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    store = _store(request.param, tmp_path)
    settings = Settings(events_partitions=4, tariff_cache_s=3600)
    rt = bootstrap(settings, bus=MemoryBus(default_partitions=4, retention_bytes=1 << 30), store=store,
                   clock=FixedClock(NOW), pepper=b"test-pepper")
    await asyncio.wait_for(rt.start(), 180)
    await asyncio.wait_for(store.migrate(), 180)
    station = f"BT{uuid.uuid4().hex[:10]}"
    tariff_id = f"t-{station}"
    await store.put_doc("tariff", tariff_id, {"id": tariff_id, **TARIFF})
    await store.put_station(Station(id=station, password_hash="", tariff_id=tariff_id, site_id=f"site-{station}"))
    try:
        yield World(rt, station)
    finally:
        await rt.close()


class Spy:
    """Counts the bytes the handler hands the store: session documents and sample rows."""

    def __init__(self, store: Any) -> None:
        self.bytes = 0
        self._put_docs, self._append = store.put_docs, store.append_samples
        self._append_many = store.append_samples_many

        async def put_docs(kind: str, items: Sequence[DocWrite]) -> None:
            self.bytes += sum(len(orjson.dumps(i.doc)) for i in items)
            await self._put_docs(kind, items)

        def count(rows: Sequence[MeterRow]) -> None:
            self.bytes += sum(len(orjson.dumps(dataclasses.asdict(r), default=str)) for r in rows)

        async def append_samples(sid: str, rows: Sequence[MeterRow]) -> None:
            count(rows)
            await self._append(sid, rows)

        async def append_samples_many(items: Sequence[tuple[str, Sequence[MeterRow]]]) -> None:
            for _, rows in items:
                count(rows)
            await self._append_many(items)

        store.put_docs, store.append_samples, store.append_samples_many = put_docs, append_samples, append_samples_many


async def _one_meter_values(world: World, minute: float, wh: float) -> tuple[Counter[Any], int]:
    spy = Spy(world.store)
    world.store.ops.clear()
    await world.feed(world.mv(minute, wh))
    ops = Counter(world.store.ops)
    del world.store.put_docs, world.store.append_samples, world.store.append_samples_many  # the class's methods again
    return ops, spy.bytes


async def test_store_traffic_and_bytes_per_meter_values_do_not_grow_with_the_session(world: World) -> None:
    await world.feed(world.start(1_000), *[world.mv(i, 1_000 + 100 * i) for i in range(1, 10)])
    ops_10, bytes_10 = await _one_meter_values(world, 10, 2_000)
    await world.feed(*[world.mv(i, 1_000 + 100 * i) for i in range(11, 2_000)])
    ops_2000, bytes_2000 = await _one_meter_values(world, 2_000, 201_000)

    doc = await world.doc()
    assert (doc["sample_count"], doc["energy_wh"]) == (2_000, 200_000)
    assert ops_10 == ops_2000, (ops_10, ops_2000)
    # one get_docs; one append_samples and one put_docs (one operation per table it touches)
    assert sum(n for (op, _), n in ops_10.items() if op == "read") == 1, ops_10
    assert set(ops_10.values()) == {1} and len([k for k in ops_10 if k[0] == "write"]) >= 2, ops_10
    assert bytes_2000 <= 1.2 * bytes_10, (bytes_10, bytes_2000)
    assert "meter_samples" not in doc


async def test_a_session_of_10000_samples_works_end_to_end(world: World) -> None:
    n = 10_000  # an 8-hour session sampled every 3 s
    events = [world.start(5_000)]
    events += [world.mv(i * 0.05, 5_000 + 10 * i) for i in range(1, n + 1)]
    events.append(world.stop(n * 0.05 + 1, 5_000 + 10 * n))
    await world.feed(*events, batch=1_000)

    doc = await world.doc()
    assert (doc["status"], doc["energy_wh"], doc["sample_count"], doc["excluded_count"]) == ("completed", 10 * n, n, 0)
    rows = await world.store.read_samples(world.sid)
    assert len(rows) == n and rows[0].value == 5_010 and rows[-1].value == 5_000 + 10 * n
    snaps = await world.published(topics.SESSIONS)
    last = snapshots.decode_session(snaps[-1].value)
    assert (last["sample_count"], last["energy_wh"], last["status"]) == (n, 10 * n, "completed")
    assert last["site_id"] == f"site-{world.station}"
    assert last["price"] is not None and last["price"]["running_total_incl_tax"] == "35.70"  # 100 kWh x 0.30 x 1.19
    assert len(snaps) == 11  # one snapshot per batch (the session changed in each)
    mv = await world.published(topics.METER_VALUES)
    assert len(mv) == n and sum(len(snapshots.decode_meter_values(r.value)["samples"]) for r in mv) == n


async def test_a_redelivered_batch_changes_nothing_and_publishes_again(world: World) -> None:
    events = [world.start(1_000), world.mv(15, 3_000), world.mv(30, 5_000)]
    records = world.records(events)
    await world.handler.handle_batch(records)
    doc, rows = await world.doc(), await world.store.read_samples(world.sid)
    snaps, mv = await world.published(topics.SESSIONS), await world.published(topics.METER_VALUES)
    assert len(snaps) == 1 and len(mv) == 2

    world.store.ops.clear()
    await world.handler.handle_batch(records)  # the offsets were not committed: the same batch again
    assert await world.doc() == doc and await world.store.read_samples(world.sid) == rows
    assert not [k for k in world.store.ops if k[0] == "write"], world.store.ops
    snaps2, mv2 = await world.published(topics.SESSIONS), await world.published(topics.METER_VALUES)
    assert [r.value for r in snaps2] == [snaps[0].value] * 2
    assert [r.header("ce_id") for r in snaps2] == [snaps[0].header("ce_id")] * 2
    assert [r.header("ce_id") for r in mv2] == [r.header("ce_id") for r in mv] * 2
    again = [snapshots.decode_meter_values(r.value)["samples"] for r in mv2[2:]]
    first = [snapshots.decode_meter_values(r.value)["samples"] for r in mv]
    assert [[(x["timestamp"], x["value"]) for x in s] for s in again] == [[(x["timestamp"], x["value"]) for x in s] for s in first]


async def test_a_crash_between_the_write_and_the_publish_loses_nothing(world: World) -> None:
    bus = world.rt.bus
    assert isinstance(bus, MemoryBus)
    records = world.records([world.start(1_000), world.mv(15, 3_000)])
    bus.set_available(False)
    with pytest.raises(Exception):
        await world.handler.handle_batch(records)
    stored = await world.doc()
    assert stored["sample_count"] == 1
    bus.set_available(True)
    await world.handler.handle_batch(records)  # redelivered
    assert await world.doc() == stored
    snaps = await world.published(topics.SESSIONS)
    assert [snapshots.decode_session(r.value)["version"] for r in snaps] == [stored["version"]]
    mv = await world.published(topics.METER_VALUES)
    assert [x["value"] for r in mv for x in snapshots.decode_meter_values(r.value)["samples"]] == [3_000]


async def test_a_poison_record_in_a_batch_is_the_only_one_dead_lettered(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(events_partitions=4, tariff_cache_s=3600, batch_max_records=100)
    bus = MemoryBus(default_partitions=4, dlq_max_attempts=2, dlq_backoff_s=0.01, batch_linger_ms=50)
    rt = Runtime(settings=settings, bus=bus, store=world.rt.store, clock=world.rt.clock)
    await bus.start()
    poison = world.mv(20, 4_000)
    real_apply = handlers.apply

    def apply(state: Any, env: ev.Envelope, *args: Any, **kw: Any) -> Any:
        if env.event_id == poison.event_id:
            raise ArithmeticError("a bug")
        return real_apply(state, env, *args, **kw)

    monkeypatch.setattr(handlers, "apply", apply)
    events = [world.start(1_000), world.mv(10, 2_000), poison, world.mv(30, 6_000), world.stop(40, 7_000)]
    for e in events:
        await bus.publish(topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e))
    service = build_sessions(rt)
    await service.start()
    try:
        for _ in range(500):
            doc = await world.store.get_doc("session", world.sid)
            if doc is not None and doc["status"] == "completed" and bus.lag(handlers.GROUP, topics.EVENTS) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await service.stop()
        await bus.close()
    doc = await world.doc()
    assert (doc["status"], doc["energy_wh"], doc["sample_count"]) == ("completed", 6_000, 2)
    letters = await bus.read(topics.dlq_topic(topics.EVENTS))
    assert [codec.decode_event(r.value).event_id for r in letters] == [poison.event_id]


def _legacy_doc(station: str, sid: str) -> dict[str, Any]:
    """A session document as the processor stored it before ADR 015 (samples inside)."""
    key = [0, "2026-11-28T10:00:00.000Z"]
    register = "Energy.Active.Import.Register"
    return {
        "id": sid, "station_id": station, "transaction_id": "tx-1", "id_token": "TOKEN-1", "authorization": "",
        "status": "active", "energy_wh": 2500, "started_at": "2026-11-28T10:00:00.000Z", "stopped_at": None,
        "station_started_at": None, "station_stopped_at": None, "received_at": "2026-11-28T10:00:00.000Z",
        "charging_ended_at": None, "abandoned_at": None, "abandon_reason": "", "evse_id": 1, "connector_id": 1,
        "meter_start_wh": 1000, "meter_stop_wh": None, "stop_reason": "", "ocpp_version": "1.6",
        "remote_start_id": 0, "issued_by": "",
        "meter_samples": [
            {"timestamp": "2026-11-28T10:10:00.000Z", "measurand": register, "value": 2000.0, "unit": "Wh", "phase": ""},
            {"timestamp": "2026-11-28T10:20:00.000Z", "measurand": register, "value": 3500.0, "unit": "Wh", "phase": ""},
        ],
        "orphan": False, "suspect": False, "suspect_reasons": [], "clock_suspect": False, "hold": False,
        "hold_reasons": [], "seq_gaps": False, "version": 3, "updated_at": "2026-11-28T12:00:00.000Z",
        "_state": {
            "start_key": key, "end_key": None, "token_key": key, "event_token": "TOKEN-1", "remote_token": "",
            "location_key": key, "last_charging_key": None, "idle_keys": [], "sample_level": 0,
            "seen_seq_nos": [0], "flags": [],
        },
    }


async def test_a_legacy_session_document_is_upgraded_on_first_touch(world: World) -> None:
    await world.store.put_doc("session", world.sid, _legacy_doc(world.station, world.sid), parent=world.station, version=3)

    await world.feed(world.mv(30, 4_000))
    doc = await world.doc()
    assert "meter_samples" not in doc and doc["version"] > 3
    assert (doc["status"], doc["sample_count"], doc["energy_wh"]) == ("active", 3, 3_000)
    assert [r.value for r in await world.store.read_samples(world.sid)] == [2_000, 3_500, 4_000]
    snaps = await world.published(topics.SESSIONS)
    assert snapshots.decode_session(snaps[-1].value)["version"] == doc["version"]


async def test_the_station_tariff_and_site_are_cached_for_the_configured_time(world: World) -> None:
    clock = [100.0]
    lookups = handlers.StationLookups(world.store, 30, clock=lambda: clock[0])
    tariff, site = await lookups.for_station(world.station)
    assert (tariff.id, site) == (f"t-{world.station}", f"site-{world.station}")
    await world.store.put_doc("tariff", "other", {"id": "other", **TARIFF})
    await world.store.put_station(Station(id=world.station, password_hash="", tariff_id="other", site_id="elsewhere"))
    world.store.ops.clear()
    clock[0] += 29
    assert (await lookups.for_station(world.station))[0].id == f"t-{world.station}"
    assert not world.store.ops  # served from the cache
    clock[0] += 2
    tariff, site = await lookups.for_station(world.station)
    assert (tariff.id, site) == ("other", "elsewhere")
    wired = world.handler.lookups
    assert isinstance(wired, handlers.StationLookups) and wired.ttl_s == 3600  # CSMS_TARIFF_CACHE_S of this runtime


async def test_a_tariff_that_does_not_parse_leaves_the_session_without_a_price(world: World) -> None:
    await world.store.put_doc("tariff", f"t-{world.station}", {"id": f"t-{world.station}", "currency": "nope"})
    await world.feed(world.start(1_000), world.mv(10, 2_000))
    doc = await world.doc()
    assert (doc["energy_wh"], doc["price"]) == (1_000, None)


async def test_lifecycle_decisions_inside_one_batch_see_its_earlier_records(world: World) -> None:
    def start(tx: str, connector: int, minute: float, **body: Any) -> ev.Envelope:
        return a_started(transaction_id=tx, evse_id=connector, connector_id=connector, meter_start_wh=1_000, at_min=minute,
                         charging_state="", trigger_reason="", env={"station_id": world.station, **V16}, **body)

    def status(text: str, connector: int, minute: float) -> ev.Envelope:
        from .builders import an_envelope, at

        return an_envelope(ev.ConnectorStatus(evse_id=connector, connector_id=connector, status=text),
                           station_time=at(minute), station_id=world.station, received_at=at(minute))

    stop1 = an_ended(transaction_id="1", evse_id=0, connector_id=0, at_min=60, meter_stop_wh=8_500,
                     env={"station_id": world.station, **V16})
    # one batch: a ghost start, a new transaction on its connector, a second session that the
    # connector's "Available" closes before its stop arrives
    await world.feed(start("g", 1, 0, id_token_status="Invalid"), start("1", 2, 1), start("2", 1, 5),
                     status("Available", 2, 59), stop1)
    async def open_sessions() -> list[str]:
        index = await world.store.get_doc("open_sessions", world.station) or {}
        return sorted(e["transaction_id"] for e in (index.get("sessions") or {}).values())

    assert await open_sessions() == ["2", "g"]  # "1" ended; the ghost waits for its SessionAbandoned
    abandons = [codec.decode_event(r.value) for r in await world.published(topics.EVENTS)]
    assert [(a.body.transaction_id, a.body.reason) for a in abandons] == [  # type: ignore[union-attr]
        ("g", "new_transaction"), ("1", "connector_available")]
    await world.feed(*abandons)
    ghost = await world.store.get_doc("session", session_id(world.station, "g"))
    one = await world.store.get_doc("session", session_id(world.station, "1"))
    assert (ghost["status"], ghost["abandon_reason"]) == ("abandoned", "new_transaction")
    assert (one["status"], one["abandon_reason"], one["energy_wh"]) == ("completed", "connector_available", 7_500)
    assert await open_sessions() == ["2"]
