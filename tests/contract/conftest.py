"""Fixtures that run the SAME contract suite against every adapter.

- `store`: "sqlite" always (a fresh file under tmp_path); "sqlite-memory" always (the same
  adapter on an in-memory database, tests/support/store.py: the store other tests use
  instead of a fake, so it is held to this contract too); "cassandra" when CSMS_INFRA=1
  (one keyspace per test session, ids made unique by the builders).
- `bus`: "memory" always; "kafka" when CSMS_INFRA=1 (unique topics and groups per test).

With CSMS_INFRA=1 an adapter that cannot be imported or cannot connect makes the test
fail (fixture error); nothing here ever skips.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from services.common.bus.port import Bus
from services.common.store.port import Store
from tests.support.store import SharedMemoryDatabase

INFRA = os.environ.get("CSMS_INFRA") == "1"
SESSION_TAG = f"{os.getpid()}_{secrets.token_hex(3)}"
CASSANDRA_URL = f"cassandra://127.0.0.1:9042/csms_contract_{SESSION_TAG}"
KAFKA_URL = "kafka://127.0.0.1:9092"

# Bounds for lifecycle calls and for "eventually" waits, per backend.
START_TIMEOUT_S = {"sqlite": 10.0, "sqlite-memory": 10.0, "cassandra": 180.0, "memory": 5.0, "kafka": 60.0}
PATIENCE_S = {"memory": 5.0, "kafka": 60.0}

STORE_BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("sqlite-memory", id="sqlite-memory")]
BUS_BACKENDS = [pytest.param("memory", id="memory")]
if INFRA:
    STORE_BACKENDS.append(pytest.param("cassandra", id="cassandra", marks=pytest.mark.infra))
    BUS_BACKENDS.append(pytest.param("kafka", id="kafka", marks=pytest.mark.infra))


# -- store -------------------------------------------------------------------
def _new_store(backend: str, url: str) -> Store:
    if backend in ("sqlite", "sqlite-memory"):
        from services.common.store.sqlite import SqliteStore

        return SqliteStore(url)
    if backend == "cassandra":
        # Written separately; with CSMS_INFRA=1 a missing module is a failure, not a skip.
        from services.common.store.cassandra import CassandraStore  # type: ignore[import-not-found]

        return CassandraStore(url)  # type: ignore[no-any-return]
    raise AssertionError(f"unknown store backend {backend!r}")


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_backend: str, tmp_path: Any) -> Iterator[str]:
    if store_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'csms.db'}"  # tmp_path is absolute: sqlite:////tmp/...
    elif store_backend == "sqlite-memory":
        # One database for the test, shared by every store it opens and kept across a
        # store closing (as a file would be); gone after the test.
        with SharedMemoryDatabase() as db:
            yield db.url
    else:
        yield CASSANDRA_URL


OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture
async def open_store(store_backend: str, store_url: str) -> AsyncIterator[OpenStore]:
    """Opens (start + migrate) another store on the same database; closed at teardown."""
    opened: list[Store] = []

    async def _open() -> Store:
        s = _new_store(store_backend, store_url)
        opened.append(s)
        await asyncio.wait_for(s.start(), START_TIMEOUT_S[store_backend])
        await asyncio.wait_for(s.migrate(), START_TIMEOUT_S[store_backend])
        return s

    yield _open
    for s in reversed(opened):
        await asyncio.wait_for(s.close(), START_TIMEOUT_S[store_backend])


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()


# -- bus ---------------------------------------------------------------------
@pytest.fixture(params=BUS_BACKENDS)
def bus_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def patience(bus_backend: str) -> float:
    """Seconds a bus test waits for something that should happen (bounded, never forever)."""
    return PATIENCE_S[bus_backend]


@pytest.fixture
async def bus(bus_backend: str) -> AsyncIterator[Bus]:
    if bus_backend == "memory":
        from services.common.bus.memory import MemoryBus

        b: Bus = MemoryBus()
    elif bus_backend == "kafka":
        from services.common.bus.kafka import KafkaBus  # type: ignore[import-not-found]

        b = KafkaBus(KAFKA_URL)
    else:
        raise AssertionError(f"unknown bus backend {bus_backend!r}")
    await asyncio.wait_for(b.start(), START_TIMEOUT_S[bus_backend])
    yield b
    await asyncio.wait_for(b.close(), START_TIMEOUT_S[bus_backend])


def _slug(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")


NewTopic = Callable[[int], Awaitable[str]]


@pytest.fixture
def new_topic(bus: Bus, request: pytest.FixtureRequest) -> NewTopic:
    """`await new_topic(partitions)` -> a fresh, created topic name unique to this test."""

    async def _new(partitions: int) -> str:
        name = f"contract.{_slug(request)}.{uuid.uuid4().hex[:10]}"
        await bus.ensure_topic(name, partitions)
        return name

    return _new


@pytest.fixture
def new_group(request: pytest.FixtureRequest) -> Callable[[], str]:
    return lambda: f"contract-{_slug(request)}-{uuid.uuid4().hex[:10]}"
