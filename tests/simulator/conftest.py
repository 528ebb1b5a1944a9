"""Fixtures: a fake CSMS (tests/simulator/fake_csms.py) and simulated stations connected to it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from services.simulator.station import StationSpec, StationState, run_station
from services.simulator.stats import Stats
from tests.simulator.fake_csms import Connection, FakeCsms
from tests.support.waiting import eventually


@pytest.fixture
async def csms() -> AsyncIterator[FakeCsms]:
    server = FakeCsms()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Sim:
    spec: StationSpec
    state: StationState
    task: "asyncio.Task[bool]"
    csms: FakeCsms

    @property
    def id(self) -> str:
        return self.spec.station_id

    @property
    def conn(self) -> Connection:
        conn = self.csms.connection(self.id)
        assert conn is not None
        return conn

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.conn.result(action, payload)


StartStation = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def station(csms: FakeCsms) -> AsyncIterator[StartStation]:
    """`await station("CP-1", "2.0.1", firmware_outcome=...)`: a simulated station connected,
    booted and idle (no sessions), holding its connection for the test."""
    started: list[Sim] = []

    async def start(station_id: str, protocol: str, **kw: Any) -> Sim:
        kw = {"firmware_step_s": 0.01, "sessions": 0, "hold_s": 120.0} | kw
        spec = StationSpec(station_id=station_id, password="pw", protocol=protocol, url=csms.ocpp_url, **kw)
        state = StationState.for_spec(spec)
        task = asyncio.create_task(run_station(spec, Stats(), state))
        sim = Sim(spec, state, task, csms)
        started.append(sim)
        await eventually(lambda: "Heartbeat" in csms.actions(station_id), 10, what=f"{station_id} to boot",
                         detail=lambda: csms.actions(station_id))
        return sim

    try:
        yield start
    finally:
        for sim in started:
            sim.task.cancel()
            await asyncio.gather(sim.task, return_exceptions=True)
