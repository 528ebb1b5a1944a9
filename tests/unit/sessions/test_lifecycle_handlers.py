"""The sessions processor on a real store (SQLite; Cassandra too with CSMS_INFRA=1) and the
memory bus: the issue-7 reproductions (poison records, a 1970 clock, ghost sessions,
a remote start without a token) now end in the right session documents."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime, bootstrap
from services.common.store.port import Store
from services.sessions import codec as snapshots
from services.common.kinds import OPEN_SESSIONS, SESSION
from services.sessions import handlers
from services.sessions.documents import page, session_from_doc
from services.sessions.domain import session_id
from services.sessions.wiring import build_handler, build_sessions
from tests.support import FixedClock

from .builders import NOW, a_register, a_started, an_ended, an_envelope, at, meter_values

UTC = timezone.utc
INFRA = os.environ.get("CSMS_INFRA") == "1"
KEYSPACE = f"csms_sessions_{os.getpid()}_{secrets.token_hex(3)}"
STORES = [pytest.param("sqlite", id="sqlite")]
if INFRA:
    STORES.append(pytest.param("cassandra", id="cassandra", marks=pytest.mark.infra))
COLLECTOR = "test-abandons"


def _store(backend: str, tmp_path: Path) -> Store:
    if backend == "sqlite":
        from services.common.store.sqlite import SqliteStore

        return SqliteStore(f"sqlite:///{tmp_path}/s.db")
    from services.common.store.cassandra import CassandraStore

    return CassandraStore(f"cassandra://127.0.0.1:9042/{KEYSPACE}")


class World:
    """A runtime plus the SessionAbandoned events the processor published on csms.events.v1."""

    def __init__(self, rt: Runtime, station: str, seen: list[Record]) -> None:
        self.rt, self.station, self.seen = rt, station, seen
        self.handler = build_handler(rt)
        self.offset = 0

    # -- building events of this world's station --
    def env(self, **extra: Any) -> dict[str, Any]:
        return {"station_id": self.station, **extra}

    def start16(self, tx: str, connector: int = 1, minute: float = 0, **body: Any) -> ev.Envelope:
        return a_started(
            transaction_id=tx, evse_id=connector, connector_id=connector, charging_state="", trigger_reason="",
            at_min=minute, env=self.env(ocpp_version="1.6", received_at=at(minute)), **{"meter_start_wh": 1_000, **body},
        )

    def stop16(self, tx: str, minute: float, meter_stop: int) -> ev.Envelope:
        return an_ended(transaction_id=tx, evse_id=0, connector_id=0, at_min=minute, meter_stop_wh=meter_stop,
                        env=self.env(ocpp_version="1.6", received_at=at(minute)))

    def status(self, text: str, connector: int, minute: float, evse: int | None = None) -> ev.Envelope:
        body = ev.ConnectorStatus(evse_id=connector if evse is None else evse, connector_id=connector, status=text)
        return an_envelope(body, station_time=at(minute), **self.env(received_at=at(minute)))

    def sid(self, tx: str) -> str:
        return session_id(self.station, tx)

    # -- driving the processor --
    async def feed(self, *events: ev.Envelope) -> None:
        for e in events:
            self.offset += 1
            record = Record(topics.EVENTS, 0, self.offset, e.station_id.encode(), codec.encode_event(e), tuple(codec.event_headers(e)))
            await self.handler.handle_record(record)

    async def abandons(self) -> list[ev.Envelope]:
        """The SessionAbandoned events published so far (not yet taken), oldest first."""
        bus = self.rt.bus
        assert isinstance(bus, MemoryBus)
        for _ in range(500):
            if bus.lag(COLLECTOR, topics.EVENTS) == 0:
                break
            await asyncio.sleep(0.005)
        taken = [codec.decode_event(r.value) for r in self.seen]
        self.seen.clear()
        return [e for e in taken if isinstance(e.body, ev.SessionAbandoned) and e.station_id == self.station]

    async def doc(self, tx: str) -> dict[str, Any]:
        doc = await self.rt.store.get_doc(SESSION, self.sid(tx))
        assert doc is not None, tx
        return doc

    async def samples(self, tx: str) -> list[dict[str, Any]]:
        """The session's stored samples as GET /sessions/{id}/meter-values shows them."""
        items, _ = await page(self.rt.store, session_from_doc(await self.doc(tx)), limit=1000)
        return items

    async def open_sessions(self) -> set[str]:
        index = await self.rt.store.get_doc(OPEN_SESSIONS, self.station) or {}
        return {e["transaction_id"] for e in (index.get("sessions") or {}).values()}


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    store = _store(request.param, tmp_path)
    rt = bootstrap(Settings(events_partitions=4), bus=MemoryBus(default_partitions=4), store=store,
                   clock=FixedClock(NOW), pepper=b"test-pepper")
    await asyncio.wait_for(rt.start(), 180)
    await asyncio.wait_for(store.migrate(), 180)
    seen: list[Record] = []

    async def collect(record: Record) -> None:
        seen.append(record)

    await rt.bus.subscribe(topics.EVENTS, group=COLLECTOR, handler=collect)
    try:
        yield World(rt, f"LC{uuid.uuid4().hex[:10]}", seen)
    finally:
        await rt.close()


# -- poison repros -------------------------------------------------------------------
async def test_a_reading_of_1e308_and_a_start_dated_year_1_are_processed(world: World) -> None:
    year1 = an_envelope(
        ev.TransactionStarted(transaction_id="7", evse_id=1, connector_id=1, id_token="T", meter_start_wh=100, id_token_status="Accepted"),
        station_time=datetime(1, 1, 1, tzinfo=UTC), **world.env(ocpp_version="1.6", received_at=at(0)),
    )
    huge = meter_values(a_register(10, 1e308), at_min=10, transaction_id="7", env=world.env(ocpp_version="1.6", received_at=at(10)))
    as_text = meter_values(replace(a_register(20, 0), raw_value="1e308"), at_min=20, transaction_id="7",
                           env=world.env(ocpp_version="1.6", received_at=at(20)))
    await world.feed(year1, huge, as_text, world.stop16("7", 30, 2_100))

    doc = await world.doc("7")
    assert (doc["status"], doc["energy_wh"]) == ("completed", 2_000)
    assert (doc["started_at"], doc["station_started_at"]) == ("2026-11-28T10:00:00.000Z", "0001-01-01T00:00:00.000Z")
    samples = await world.samples("7")
    assert [(x["raw_value"], x["excluded"]) for x in samples] == [("1e+308", True), ("1e308", True)]
    assert {"clock_before_floor", "meter_not_a_number"} <= set(doc["suspect_reasons"])


async def test_the_partition_moves_on_past_the_poison_repros(world: World) -> None:
    service = build_sessions(world.rt)
    await service.start()
    try:
        poison = [
            an_envelope(ev.TransactionStarted(transaction_id="p", evse_id=1, connector_id=1, id_token="T", meter_start_wh=0),
                        station_time=datetime(1, 1, 1, tzinfo=UTC), **world.env(ocpp_version="1.6", received_at=at(0))),
            meter_values(a_register(5, 1e308), at_min=5, transaction_id="p", env=world.env(ocpp_version="1.6", received_at=at(5))),
        ]
        healthy = [world.start16("h", connector=2, minute=1), world.stop16("h", 50, 9_000)]
        for e in [*poison, *healthy]:
            await world.rt.bus.publish(topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e))

        async def done() -> bool:
            doc = await world.rt.store.get_doc("session", world.sid("h"))
            return doc is not None and doc["status"] == "completed"

        for _ in range(500):
            if await done():
                break
            await asyncio.sleep(0.01)
        assert (await world.doc("h"))["energy_wh"] == 8_000
        assert (await world.samples("p"))[0]["excluded"] is True
    finally:
        await service.stop()


async def test_a_start_dated_1970_is_billed_from_the_receive_time_and_held(world: World) -> None:
    start = world.start16("70", minute=0, station_time=datetime(1970, 1, 1, tzinfo=UTC))
    await world.feed(start, world.stop16("70", 60, 11_000))
    doc = await world.doc("70")
    assert (doc["started_at"], doc["station_started_at"]) == ("2026-11-28T10:00:00.000Z", "1970-01-01T00:00:00.000Z")
    assert doc["clock_suspect"] and doc["hold"] and doc["hold_reasons"] == ["clock_suspect"]
    assert doc["energy_wh"] == 10_000
    before = handlers.CLOCK_SUSPECT.labels(reason="clock_before_floor")._value.get()
    await world.feed(world.start16("71", connector=2, minute=5, station_time=datetime(1970, 1, 1, tzinfo=UTC)))
    assert handlers.CLOCK_SUSPECT.labels(reason="clock_before_floor")._value.get() == before + 1


# -- ghost sessions -------------------------------------------------------------------
async def test_a_ghost_invalid_session_is_abandoned_by_a_new_transaction_on_its_connector(world: World) -> None:
    await world.feed(world.start16("1", connector=1, minute=0, id_token_status="Invalid"),
                     world.start16("2", connector=2, minute=5))
    assert await world.open_sessions() == {"1", "2"}
    await world.feed(world.start16("3", connector=1, minute=30))

    abandons = await world.abandons()
    assert [(a.body.transaction_id, a.body.reason, a.station_time) for a in abandons] == [("1", "new_transaction", at(30))]  # type: ignore[union-attr]
    await world.feed(*abandons)
    ghost = await world.doc("1")
    assert (ghost["status"], ghost["authorization"], ghost["abandon_reason"], ghost["abandoned_at"]) == (
        "abandoned", "Invalid", "new_transaction", "2026-11-28T10:30:00.000Z"
    )
    assert await world.open_sessions() == {"2", "3"}
    # a redelivered start publishes the same decision again (same event id): harmless
    await world.feed(world.start16("3", connector=1, minute=30))
    assert await world.abandons() == []  # the ghost is no longer open


async def test_a_boot_abandons_the_open_sessions(world: World) -> None:
    await world.feed(world.start16("1", connector=1, minute=0), world.start16("2", connector=2, minute=5))
    await world.feed(an_envelope(ev.StationBooted(vendor="V", model="M"), station_time=None, **world.env(received_at=at(40))))
    abandons = await world.abandons()
    assert sorted((a.body.transaction_id, a.body.reason) for a in abandons) == [("1", "boot"), ("2", "boot")]  # type: ignore[union-attr]
    await world.feed(*abandons)
    assert [(await world.doc(tx))["status"] for tx in ("1", "2")] == ["abandoned", "abandoned"]
    assert await world.open_sessions() == set()


async def test_available_after_the_stop_changes_nothing(world: World) -> None:
    await world.feed(world.start16("1", minute=0), world.status("Charging", 1, 1), world.stop16("1", 60, 8_500),
                     world.status("Finishing", 1, 60), world.status("Available", 1, 61))
    assert await world.abandons() == []
    doc = await world.doc("1")
    assert (doc["status"], doc["energy_wh"], doc["abandoned_at"]) == ("completed", 7_500, None)


async def test_available_before_the_stop_abandons_and_the_stop_then_completes_with_its_energy(world: World) -> None:
    await world.feed(world.start16("1", minute=0),
                     meter_values(a_register(30, 4_000), at_min=30, transaction_id="1", env=world.env(ocpp_version="1.6")),
                     world.status("Available", 1, 59))
    abandons = await world.abandons()
    assert [(a.body.reason, a.body.energy_wh) for a in abandons] == [("connector_available", 3_000)]  # type: ignore[union-attr]
    await world.feed(*abandons)
    assert ((await world.doc("1"))["status"], (await world.doc("1"))["energy_wh"]) == ("abandoned", 3_000)

    await world.feed(world.stop16("1", 60, 8_500))
    doc = await world.doc("1")
    assert (doc["status"], doc["energy_wh"], doc["abandon_reason"]) == ("completed", 7_500, "connector_available")


async def test_the_sweeper_abandons_idle_sessions_and_duplicate_sweeps_are_harmless(world: World) -> None:
    await world.feed(world.start16("1", minute=0, id_token_status="Invalid"))
    await world.handler.sweep(NOW + timedelta(hours=23))
    assert await world.abandons() == []
    assert await world.handler.sweep(NOW + timedelta(hours=25)) >= 1
    other = build_handler(world.rt)
    assert await other.sweep(NOW + timedelta(hours=26)) >= 1  # another process sweeping too
    abandons = await world.abandons()
    assert len(abandons) == 2 and abandons[0].event_id == abandons[1].event_id
    assert {a.body.reason for a in abandons} == {"idle_timeout"}  # type: ignore[union-attr]

    await world.feed(*abandons)
    doc = await world.doc("1")
    assert (doc["status"], doc["abandon_reason"], doc["version"]) == ("abandoned", "idle_timeout", 2)
    assert doc["abandoned_at"] == "2026-11-29T13:00:00.000Z"  # the first sweep's time (the earliest wins)
    assert await world.open_sessions() == set()
    await world.handler.sweep(NOW + timedelta(days=3))
    assert await world.abandons() == []


# -- remote start ----------------------------------------------------------------------
async def test_a_remote_start_without_a_token_takes_it_from_the_command_and_the_connector_from_the_status(world: World) -> None:
    issued = an_envelope(
        ev.CommandIssued(command_id="cmd-1", command_type="RemoteStart", ocpp_action="RequestStartTransaction",
                         payload_json=json.dumps({"idToken": {"idToken": "RFID-9", "type": "Central"}, "remoteStartId": 4242, "evseId": 1})),
        station_time=None, **world.env(received_at=at(0)),
    )
    occupied = world.status("Occupied", 2, 0.5, evse=1)
    started = a_started(transaction_id="R1", evse_id=1, connector_id=0, id_token="", remote_start_id=4242,
                        trigger_reason="RemoteStart", at_min=1, env=world.env(received_at=at(1)))
    await world.feed(issued, world.status("Available", 1, 0.2, evse=1), occupied, started)

    doc = await world.doc("R1")
    assert (doc["id_token"], doc["remote_start_id"], doc["evse_id"], doc["connector_id"]) == ("RFID-9", 4242, 1, 2)
    snap = snapshots.decode_session(snapshots.encode_session(session_from_doc(doc)))
    assert (snap["id_token"], snap["remote_start_id"], snap["connector_id"]) == ("RFID-9", 4242, 2)


async def test_a_domain_error_is_counted_and_re_raised_for_the_dead_letter_topic(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kw: Any) -> None:
        raise ArithmeticError("a bug")

    monkeypatch.setattr(handlers, "apply", broken)
    before = handlers.DOMAIN_ERRORS.labels(type="TransactionStarted")._value.get()
    with pytest.raises(ArithmeticError):
        await world.feed(world.start16("1"))
    assert handlers.DOMAIN_ERRORS.labels(type="TransactionStarted")._value.get() == before + 1


async def test_the_service_sweeps_periodically_and_applies_its_own_decisions(world: World) -> None:
    settings = Settings(events_partitions=4, session_sweep_interval_s=0.01, session_idle_timeout_h=0)
    rt = Runtime(settings=settings, bus=world.rt.bus, store=world.rt.store, clock=world.rt.clock)
    await world.feed(world.start16("1"))
    service = build_sessions(rt)
    await service.start()
    try:
        for _ in range(400):  # the interval is at least 1 s
            if (await world.doc("1"))["status"] == "abandoned":
                break
            await asyncio.sleep(0.01)
        assert (await world.doc("1"))["abandon_reason"] == "idle_timeout"
    finally:
        await service.stop()
    assert not service.ready()
