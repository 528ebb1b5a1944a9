"""The sessions handler takes its ports, not a runtime (ADR 010, update): built from a
repository on the in-memory store, a publish that collects, a fixed clock and the rules,
it processes a session, keeps the station status as a value, and sweeps as a function of
those ports alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest

from services.billing.domain.limits import billing_limits
from services.billing.domain.tariff import Tariff
from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Header, Outgoing, Record
from services.common.store.sqlite import SqliteStore
from services.sessions import codec as snapshots
from services.sessions.domain import DEFAULT_RULES, session_id
from services.sessions.handlers import SessionsHandler, sweep_once
from services.sessions.repository import SessionCache, StoreRepository
from tests.support import FixedClock, opened

from .builders import NOW, STATION, TX, a_16_session, an_envelope, at


class Published:
    """`publish` and `publish_many` that keep what they were given."""

    def __init__(self) -> None:
        self.records: list[Outgoing] = []

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Sequence[Header] = (), partition: int | None = None,
    ) -> None:
        self.records.append((topic, key, value, headers))

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        self.records.extend(items)

    def on(self, topic: str) -> list[Outgoing]:
        return [r for r in self.records if r[0] == topic]


class NoTariff:
    async def for_station(self, station_id: str) -> tuple[Tariff | None, str]:
        return None, "site-1"


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    async with opened() as s:
        yield s


def a_handler(repository: StoreRepository, published: Published, clock: FixedClock) -> SessionsHandler:
    return SessionsHandler(
        sessions=repository, stations=repository, lifecycle=repository, lookups=NoTariff(),
        publish=published.publish, publish_many=published.publish_many, clock=clock, rules=DEFAULT_RULES,
        limits=billing_limits(72, 1_000_000), idle_timeout=timedelta(hours=24),
    )


def records(events: Sequence[ev.Envelope]) -> list[Record]:
    return [
        Record(topics.EVENTS, 0, i, e.station_id.encode(), codec.encode_event(e), tuple(codec.event_headers(e)))
        for i, e in enumerate(events)
    ]


async def test_a_handler_made_of_ports_alone_processes_a_session(store: SqliteStore) -> None:
    repository, published = StoreRepository(store, SessionCache(100)), Published()
    handler = a_handler(repository, published, FixedClock(NOW))

    await handler.handle_batch(records(a_16_session()))

    s = await repository.get_session(session_id(STATION, TX))
    assert s is not None and (s.status, s.energy_wh, s.updated_at) == ("completed", 7_500, NOW)
    assert [x.value for x in await repository.read_samples(s.id)] == [3_000, 5_000]
    snap = snapshots.decode_session(published.on(topics.SESSIONS)[-1][2])
    assert (snap["version"], snap["site_id"]) == (s.version, "site-1")
    assert len(published.on(topics.METER_VALUES)) == 2
    # the document it wrote is the one the cache gives back without decoding it
    assert repository.cache.hits == 1
    assert (await repository.get_sessions([s.id]))[s.id].session is s and repository.cache.hits == 2


async def test_the_station_status_is_kept_as_a_value_through_the_repository(store: SqliteStore) -> None:
    repository, published = StoreRepository(store), Published()
    handler = a_handler(repository, published, FixedClock(NOW))
    events = [
        an_envelope(ev.StationConnected(epoch=2), station_time=None, received_at=at(0)),
        an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Occupied"), station_time=at(1)),
    ]
    await handler.handle_batch(records(events))

    status = await repository.get_status(STATION)
    assert status is not None and (status.connected, status.epoch, status.connectors["1/1"].status) == (True, 2, "Occupied")
    assert (await repository.get_statuses([STATION, "nobody"])).keys() == {STATION}


async def test_the_sweeper_is_a_function_of_its_ports(store: SqliteStore) -> None:
    repository, published = StoreRepository(store), Published()
    clock = FixedClock(NOW)
    await a_handler(repository, published, clock).handle_batch(records(a_16_session()[:2]))  # open, then silent
    published.records.clear()

    assert await sweep_once(repository, repository, published.publish, NOW + timedelta(hours=23), timedelta(hours=24)) == 0
    assert await sweep_once(repository, repository, published.publish, NOW + timedelta(hours=24), timedelta(hours=24)) == 1
    [(topic, key, value, headers)] = published.records
    abandoned = codec.decode_event(value)
    assert (topic, key) == (topics.EVENTS, STATION)
    assert isinstance(abandoned.body, ev.SessionAbandoned) and abandoned.body.reason == "idle_timeout"
    assert abandoned.body.energy_wh == 2_000 and abandoned.received_at == NOW + timedelta(hours=24)
