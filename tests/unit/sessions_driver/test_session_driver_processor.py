"""The sessions processor (memory bus + SQLite; Cassandra too with CSMS_INFRA=1) keeps what an EV said on the active
session of its EVSE, skips a notification without one (counted), carries the reservation
into the document and the snapshot, and keeps the token index next to the sessions:
written when a session opens and ends, never for an ordinary reading."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.common import codec, kinds, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime, bootstrap
from services.common.store.port import DocWrite, Store
from services.common.store.sqlite import SqliteStore
from services.sessions import codec as snapshots
from services.sessions import handlers
from services.sessions.domain import session_id
from services.sessions.wiring import build_handler
from tests.support import FixedClock
from tests.unit.sessions.builders import NOW, a_register, a_started, an_ended, an_updated

from .test_session_driver_domain import a_needs, a_schedule

STATION = "CS-1"
SID = session_id(STATION, "tx-1")
INFRA = os.environ.get("CSMS_INFRA") == "1"
STORES = [pytest.param("sqlite", id="sqlite")]
if INFRA:
    STORES.append(pytest.param("cassandra", id="cassandra", marks=pytest.mark.infra))


class Feed:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handler = build_handler(rt)
        self.offset = 0
        self.kinds_written: list[str] = []
        store: Any = rt.store
        real = store.put_docs

        async def put_docs(kind: str, items: Sequence[DocWrite]) -> None:
            self.kinds_written.append(kind)
            await real(kind, items)

        store.put_docs = put_docs

    def records(self, events: Sequence[ev.Envelope]) -> list[Record]:
        out = []
        for e in events:
            out.append(Record(topics.EVENTS, 0, self.offset, e.station_id.encode(), codec.encode_event(e),
                              tuple(codec.event_headers(e))))
            self.offset += 1
        return out

    async def __call__(self, *events: ev.Envelope) -> list[Record]:
        records = self.records(events)
        await self.handler.handle_batch(records)
        return records

    async def session(self) -> dict[str, Any]:
        doc = await self.rt.store.get_doc(kinds.SESSION, SID)
        assert doc is not None
        return doc


def _store(backend: str, tmp_path: Path) -> Store:
    if backend == "sqlite":
        return SqliteStore(f"sqlite:///{tmp_path}/s.db")
    from services.common.store.cassandra import CassandraStore

    return CassandraStore(f"cassandra://127.0.0.1:9042/csms_driver_{os.getpid()}_{secrets.token_hex(3)}")


@pytest.fixture(params=STORES)
async def feed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Feed]:
    rt = bootstrap(Settings(events_partitions=4), bus=MemoryBus(default_partitions=4),
                   store=_store(request.param, tmp_path), clock=FixedClock(NOW), pepper=b"p")
    await asyncio.wait_for(rt.start(), 180)
    await asyncio.wait_for(rt.store.migrate(), 180)
    try:
        yield Feed(rt)
    finally:
        await rt.close()


def _skipped() -> float:
    return handlers.EVENTS_SKIPPED.labels(reason="no_active_session")._value.get()


async def test_needs_and_schedule_in_the_batch_of_the_start_land_on_the_session(feed: Feed) -> None:
    await feed(a_started(reservation_id=7), a_needs(1), a_schedule(2))
    doc = await feed.session()
    assert doc["reservation_id"] == 7
    assert doc["ev_charging_needs"]["energy_amount_wh"] == 22_000
    assert doc["ev_charging_needs"]["departure_time"] == "2026-11-28T14:00:00.000Z"
    assert doc["ev_charging_needs"]["status"] == "Accepted"
    assert [p["start_period"] for p in doc["ev_charging_schedule"]["periods"]] == [0, 600]
    snaps = await feed.rt.bus.read(topics.SESSIONS, limit=100)  # type: ignore[attr-defined]
    assert snapshots.decode_session(snaps[-1].value)["reservation_id"] == 7


async def test_a_later_notification_is_applied_once_and_a_redelivery_changes_nothing(feed: Feed) -> None:
    await feed(a_started())
    before = await feed.session()
    records = await feed(a_needs(3, departure_time=None))
    after = await feed.session()
    assert after["version"] == before["version"] + 1
    assert after["ev_charging_needs"]["departure_time"] is None
    await feed.handler.handle_batch(records)
    assert (await feed.session())["version"] == after["version"]


async def test_a_notification_for_an_evse_without_an_active_session_is_skipped_and_counted(feed: Feed) -> None:
    await feed(a_started())
    version = (await feed.session())["version"]
    skipped = _skipped()
    await feed(a_needs(3, evse_id=2), a_schedule(4, evse_id=2))
    assert _skipped() == skipped + 2
    doc = await feed.session()
    assert doc["version"] == version and "ev_charging_needs" not in doc
    await feed(an_ended(seq_no=1, at_min=30))
    await feed(a_needs(40))  # the session ended: nothing to keep it on
    assert _skipped() == skipped + 3
    assert "ev_charging_needs" not in await feed.session()


async def test_the_token_index_follows_the_session_and_readings_do_not_write_it(feed: Feed) -> None:
    await feed(a_started(id_token="DRIVER-1"))
    entries = await feed.rt.store.list_docs(kinds.TOKEN_SESSION, parent="DRIVER-1")
    assert [(e["session_id"], e["station_id"], e["status"]) for e in entries] == [(SID, STATION, "active")]
    assert entries[0]["started_at"] == "2026-11-28T10:00:00.000Z"
    feed.kinds_written.clear()
    await feed(an_updated(1, at_min=10, samples=(a_register(10, 5_000),)))
    assert kinds.TOKEN_SESSION not in feed.kinds_written and kinds.SESSION in feed.kinds_written
    await feed(an_ended(seq_no=2, at_min=30))
    (entry,) = await feed.rt.store.list_docs(kinds.TOKEN_SESSION, parent="DRIVER-1")
    assert entry["status"] == "completed" and entry["version"] == (await feed.session())["version"]


async def test_a_session_without_a_token_has_no_index_entry(feed: Feed) -> None:
    await feed(a_started(id_token=""))
    assert await feed.rt.store.list_docs(kinds.TOKEN_SESSION, limit=10) == []
