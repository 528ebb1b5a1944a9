"""A billing runtime on the real MemoryBus and a real store, with a fixed clock, and the
billing handler wired from it (`services.billing.wiring.billing_handler`).

The store is SQLite in memory (a fresh one per test) and, with CSMS_INFRA=1, also
Cassandra (a fresh keyspace per test, dropped afterwards: the tests use fixed ids)."""

from __future__ import annotations

import os
import secrets
from typing import Any, AsyncIterator

import pytest

from services.billing.codec import decode_cdr
from services.billing.handlers import BillingHandler
from services.billing.wiring import billing_handler
from services.common import kinds, topics
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime
from services.common.store.port import Station, Store
from tests.support import FixedClock, a_runtime, eventually, memory_store

from .builders import NOW, Sample, rows

COLLECTOR = "test-cdr-collector"
INFRA = os.environ.get("CSMS_INFRA") == "1"
STORES = [pytest.param("sqlite", id="sqlite")]
if INFRA:
    STORES.append(pytest.param("cassandra", id="cassandra", marks=pytest.mark.infra))


class World:
    """The runtime, the billing handler wired from it, and what a test needs to arrange
    (stations, sites, tariffs) and observe."""

    def __init__(self, rt: Runtime, bus: MemoryBus, published: list[Record]) -> None:
        self.rt, self.bus, self.published = rt, bus, published
        self.billing: BillingHandler = billing_handler(rt)

    def configure(self, **settings: Any) -> None:
        """Override settings (e.g. session_max_duration_h) for the rest of the test: the
        handler is wired again from them, as a restarted processor would be."""
        self.rt.settings = self.rt.settings.with_overrides(**settings)
        self.billing = billing_handler(self.rt)

    async def station(self, station_id: str = "CS1", *, tariff_id: str | None = None, site_id: str | None = None) -> None:
        await self.rt.store.put_station(Station(id=station_id, password_hash="", tariff_id=tariff_id, site_id=site_id))

    async def site(self, site_id: str, *, tariff_id: str | None = None) -> None:
        await self.rt.store.put_doc(kinds.SITE, site_id, {"id": site_id, "grid_limit_a": 100, "phases": 3, "tariff_id": tariff_id})

    async def tariff(self, doc: dict[str, Any]) -> None:
        await self.rt.store.put_doc(kinds.TARIFF, doc["id"], doc)

    async def samples(self, session_id: str, samples: tuple[Sample, ...]) -> None:
        """Store a session's samples (what the sessions processor appends)."""
        await self.rt.store.append_samples(session_id, rows(samples))

    async def cdr_docs(self, session_id: str = "CS1-1") -> list[dict[str, Any]]:
        docs = await self.rt.store.list_docs(kinds.CDR, parent=session_id)
        return sorted(docs, key=lambda d: d["version"])

    async def cdr_records(self) -> list[Record]:
        """Everything published on csms.cdrs.v1 so far (waits until the collector caught up)."""
        await eventually(lambda: self.bus.lag(COLLECTOR, topics.CDRS) == 0, what="the CDR collector caught up")
        return list(self.published)

    async def cdrs_on_the_topic(self) -> list[dict[str, Any]]:
        return [decode_cdr(r.value) for r in await self.cdr_records()]


def _new_store(backend: str) -> Store:
    if backend == "sqlite":
        return memory_store()
    from services.common.store.cassandra import CassandraStore

    return CassandraStore(f"cassandra://127.0.0.1:9042/csms_billing_{os.getpid()}_{secrets.token_hex(4)}")


async def _drop(store: Store) -> None:
    keyspace = getattr(store, "keyspace", None)
    if keyspace:  # Cassandra: this test's keyspace
        await store._run(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)  # type: ignore[attr-defined]


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    bus = MemoryBus(default_partitions=4)
    store = _new_store(str(request.param))
    rt = a_runtime(settings=Settings(), bus=bus, store=store, clock=FixedClock(NOW))
    await rt.start()
    await store.migrate()
    published: list[Record] = []

    async def collect(record: Record) -> None:
        published.append(record)

    await bus.subscribe(topics.CDRS, group=COLLECTOR, handler=collect)
    try:
        yield World(rt, bus, published)
    finally:
        await _drop(store)
        await rt.close()
