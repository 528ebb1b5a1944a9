"""A smart-charging runtime on the real MemoryBus and SQLite store, with a settable clock."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime
from services.common.store.port import Station
from services.common.store.sqlite import SqliteStore
from services.smart_charging.handlers import CONSUMER_GROUP, STATE_KIND
from services.smart_charging.repartition import BY_SITE, REPARTITION_GROUP, SITES_GROUP
from services.smart_charging.worker import SmartChargingService

from .builders import T0, SentProfile, site_change


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class World:
    """The runtime, the service under test, and what a test arranges and observes."""

    def __init__(self, rt: Runtime, bus: MemoryBus, clock: Clock, commands: list[Record]) -> None:
        self.rt, self.bus, self.clock, self._commands = rt, bus, clock, commands
        self.service = SmartChargingService(rt)

    async def site(self, site_id: str = "SITE1", grid_limit_a: float = 32, **extra: Any) -> dict[str, Any]:
        doc = {"id": site_id, "grid_limit_a": grid_limit_a, "phases": 3, "external_limit_a": None, **extra}
        await self.rt.store.put_doc("site", site_id, doc)
        return doc

    async def station(
        self, station_id: str, site_id: str | None = "SITE1", *, gateway: str | None = "gateway-0",
        max_current_a: float | None = None, phases: int | None = None, priority: int = 0,
    ) -> None:
        await self.rt.store.put_station(Station(
            id=station_id, password_hash="", site_id=site_id,
            max_current_a=max_current_a, phases=phases, priority=priority,
        ))
        if gateway is not None:
            await self.rt.store.claim_station(station_id, gateway)

    async def publish(self, *envelopes: ev.Envelope) -> None:
        for env in envelopes:
            await self.bus.publish(topics.EVENTS, env.station_id, codec.encode_event(env), codec.event_headers(env))

    async def publish_site(self, site: dict[str, Any], *, version: int = 0, deleted: bool = False) -> sites_codec.SiteChange:
        """A SiteUpdated on csms.sites.v1, as the API publishes it after a site change."""
        change = site_change(site, version=version, deleted=deleted)
        await self.bus.publish(
            topics.SITES, change.site_id, sites_codec.encode_site_updated(change), sites_codec.site_headers(change)
        )
        return change

    async def site_changed(self, site: dict[str, Any], *, version: int = 0, deleted: bool = False) -> sites_codec.SiteChange:
        change = await self.publish_site(site, version=version, deleted=deleted)
        await self.settled()
        return change

    async def settled(self) -> None:
        """Every stage has consumed everything published so far."""
        for _ in range(1000):
            if (
                self.bus.lag(REPARTITION_GROUP, topics.EVENTS) == 0
                and self.bus.lag(SITES_GROUP, topics.SITES) == 0
                and self.bus.lag(CONSUMER_GROUP, BY_SITE) == 0
            ):
                await asyncio.sleep(0)  # let the command collectors run
                return
            await asyncio.sleep(0.005)
        raise AssertionError("smart charging did not consume its topics")

    async def feed(self, *envelopes: ev.Envelope) -> None:
        await self.publish(*envelopes)
        await self.settled()

    def sent(self) -> list[SentProfile]:
        """Every command produced so far, in order (partitions 0 and 1)."""
        out = []
        for record in self._commands:
            command = codec.decode_command(record.value)
            out.append(SentProfile(command, record.partition, json.loads(command.params_json)))
        return out

    def sent_since(self, mark: int) -> list[SentProfile]:
        return self.sent()[mark:]

    async def state(self, site_id: str = "SITE1") -> dict[str, Any]:
        doc = await self.rt.store.get_doc(STATE_KIND, site_id)
        assert doc is not None, f"no {STATE_KIND} for {site_id}"
        return doc


@asynccontextmanager
async def open_world(tmp_path: Path, **settings: Any) -> AsyncIterator[World]:
    """A World on a fresh MemoryBus and SQLite store; `settings` override the defaults."""
    bus = MemoryBus(default_partitions=4)
    store = SqliteStore(f"sqlite:///{tmp_path}/x.db")
    clock = Clock(T0)
    rt = Runtime(settings=Settings(**{"events_partitions": 4, "commands_partitions": 4, **settings}), bus=bus, store=store, clock=clock)
    await rt.start()
    await store.migrate()
    commands: list[Record] = []

    async def collect(record: Record) -> None:
        commands.append(record)

    for partition in (0, 1):
        await bus.assign(topics.COMMANDS, partition, collect, from_beginning=True)
    w = World(rt, bus, clock, commands)
    try:
        yield w
    finally:
        await w.service.stop()
        await rt.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(tmp_path) as w:
        yield w
