"""A smart-charging runtime on the real MemoryBus and the in-memory store, with a settable
clock; the processor wired as `csms smart-charging` wires it (`wiring.wire_stages`)."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from collections.abc import Awaitable, Callable
from typing import Any, AsyncIterator

import pytest

from services.common import codec, sites_codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.runtime import Runtime
from services.common.kinds import SITE, SITE_STATE
from services.common.store.port import Station
from services.common.routing import CommandRouter
from services.smart_charging.commands import ISSUER, LimitSender
from services.smart_charging.documents import Sites, SiteStates
from services.smart_charging.handlers import CONSUMER_GROUP, SiteStage
from services.smart_charging.repartition import BY_SITE, REPARTITION_GROUP, SITES_GROUP
from services.smart_charging.wiring import wire_stages
from tests.support import FixedClock, eventually, memory_store

from .builders import T0, SentProfile, site_change


class World:
    """The runtime, the service under test (`service`, the processor group; its stages
    `regroup` and `sites`), and what a test arranges and observes."""

    def __init__(self, rt: Runtime, bus: MemoryBus, clock: FixedClock, commands: list[Record]) -> None:
        self.rt, self.bus, self.clock, self._commands = rt, bus, clock, commands
        wired = wire_stages(rt)
        self.service, self.regroup, self.sites = wired.group, wired.regroup, wired.sites

    def site_stage(self, *, publish: Callable[..., Awaitable[None]] | None = None) -> SiteStage:
        """Another site stage on the same store, as another consumer would wire it; its
        commands go through `publish` (default: the bus)."""
        router = CommandRouter(
            owners=self.rt.store, publish=publish or self.bus.publish, partitions=self.bus.partitions,
            clock=self.clock, issuer=ISSUER,
        )
        return SiteStage(
            states=SiteStates(self.rt.store), sites=Sites(self.rt.store), stations=self.rt.store,
            sender=LimitSender(router), clock=self.clock,
        )

    async def site(self, site_id: str = "SITE1", grid_limit_a: float = 32, **extra: Any) -> dict[str, Any]:
        doc = {"id": site_id, "grid_limit_a": grid_limit_a, "phases": 3, "external_limit_a": None, **extra}
        await self.rt.store.put_doc(SITE, site_id, doc)
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

        def lags() -> dict[str, int]:
            return {
                "regrouping": self.bus.lag(REPARTITION_GROUP, topics.EVENTS),
                "site changes": self.bus.lag(SITES_GROUP, topics.SITES),
                "by site": self.bus.lag(CONSUMER_GROUP, BY_SITE),
            }

        await eventually(lambda: not any(lags().values()), 5.0, interval=0.005,
                         what="smart charging consumed its topics", detail=lags)
        await asyncio.sleep(0)  # let the command collectors run

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
        doc = await self.rt.store.get_doc(SITE_STATE, site_id)
        assert doc is not None, f"no {SITE_STATE} for {site_id}"
        return doc


@asynccontextmanager
async def open_world(**settings: Any) -> AsyncIterator[World]:
    """A World on a fresh MemoryBus and in-memory store; `settings` override the defaults."""
    bus = MemoryBus(default_partitions=4)
    store = memory_store()
    clock = FixedClock(T0)
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
async def world() -> AsyncIterator[World]:
    async with open_world() as w:
        yield w
