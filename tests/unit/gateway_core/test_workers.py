"""CSMS_GATEWAY_WORKERS: worker ids carry their command partition; the supervisor; a
command for a station owned by a worker reaches that worker's partition, routed by a role
that does not know the worker count."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from services.api.wiring import build_api
from services.common import topics
from services.common.bus.memory import MemoryBus
from services.common.codec import Command
from services.common.config import Settings, gateway_ordinal, load_settings
from services.common.errors import ConfigError
from services.common.runtime import Runtime, bootstrap
from services.common.store.sqlite import SqliteStore
from services.common.routing import CommandRouter
from services.gateway.commands import CommandRunner
from services.gateway.publisher import Publisher
from services.gateway.registry import Registry
from services.gateway.workers import supervise, worker_id

from ..api.builders import API_KEY, Api


def test_a_single_gateway_keeps_its_ordinal() -> None:
    assert gateway_ordinal("gateway-0") == 0
    assert gateway_ordinal("gateway-7") == 7
    with pytest.raises(ConfigError):
        gateway_ordinal("gateway")


def test_worker_k_of_pod_n_owns_partition_n_times_workers_plus_k_and_says_so_in_its_id() -> None:
    ids = [worker_id(f"gateway-{n}", k, 2) for n in range(3) for k in range(2)]
    assert ids == ["gateway-0-p0", "gateway-0-p1", "gateway-1-p2", "gateway-1-p3", "gateway-2-p4", "gateway-2-p5"]
    # every worker of every pod its own partition, densely: pods x workers partitions suffice
    assert [gateway_ordinal(i) for i in ids] == [0, 1, 2, 3, 4, 5]
    assert gateway_ordinal(worker_id("gateway-2", 1, 3)) == 7
    with pytest.raises(ValueError):
        worker_id("gateway-0", 2, 2)


def test_the_partition_needs_no_worker_count_in_any_role(monkeypatch: pytest.MonkeyPatch) -> None:
    # the API / smart charging process runs with the default of one worker, whatever the gateways run
    monkeypatch.delenv("CSMS_GATEWAY_WORKERS", raising=False)
    assert load_settings({}).gateway_workers == 1
    assert gateway_ordinal("gateway-2-p7") == 7
    monkeypatch.setenv("CSMS_GATEWAY_WORKERS", "5")  # a different setting changes nothing
    assert gateway_ordinal("gateway-2-p7") == 7


def test_a_pod_without_an_ordinal_cannot_run_workers() -> None:
    def serve(s: Settings, k: int) -> int:  # pragma: no cover - must not be reached
        raise AssertionError("forked without partition ids")

    with pytest.raises(ConfigError):
        supervise(Settings(gateway_id="gateway", gateway_workers=2), serve)


def test_one_worker_runs_in_this_process_under_its_own_id() -> None:
    seen: list[tuple[str, int, int]] = []

    def serve(s: Settings, k: int) -> int:
        seen.append((s.gateway_id, k, os.getpid()))
        return 0

    assert supervise(Settings(gateway_id="gateway-4"), serve) == 0
    assert seen == [("gateway-4", 0, os.getpid())]


def test_workers_are_processes_with_their_own_ids_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    def serve(s: Settings, k: int) -> int:
        (tmp_path / f"w{k}").write_text(f"{s.gateway_id} {os.getpid()}")
        if k == 0:  # the first worker ends cleanly (once the other has started): the supervisor stops the others
            for _ in range(200):  # bounded: a loaded machine may start worker 1 late
                if (tmp_path / "w1").exists():
                    break
                time.sleep(0.05)
            return 0
        time.sleep(30)
        return 3

    t0 = time.monotonic()
    assert supervise(Settings(gateway_id="gateway-2", gateway_workers=2), serve) == 0
    assert time.monotonic() - t0 < 20  # the sleeping worker was stopped, not waited for
    ids = {p.name: p.read_text().split() for p in tmp_path.iterdir()}
    assert {ids["w0"][0], ids["w1"][0]} == {"gateway-2-p4", "gateway-2-p5"}
    assert len({ids["w0"][1], ids["w1"][1], str(os.getpid())}) == 3


def test_a_failing_worker_stops_the_pod_with_its_exit_code(tmp_path: Path) -> None:
    def serve(s: Settings, k: int) -> int:
        if k == 1:
            raise RuntimeError("worker crashed")
        signal.pause()  # until the supervisor's SIGTERM
        return 0

    assert supervise(Settings(gateway_id="gateway-0", gateway_workers=2), serve) == 1


# -- routing to a worker -----------------------------------------------------------------------
@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The API role as tests/unit/api sets it up: one gateway worker (the default) in its settings."""
    settings = Settings(api_key=API_KEY, host="127.0.0.1", api_port=0, command_timeout_s=1.0, events_partitions=4, commands_partitions=8)
    assert settings.gateway_workers == 1
    rt = bootstrap(settings, bus=MemoryBus(), store=SqliteStore(f"sqlite:///{tmp_path}/a.db"), pepper=b"p")
    await rt.start()
    await rt.store.migrate()
    service = build_api(rt)
    await service.start()
    http = aiohttp.ClientSession()
    try:
        yield Api(rt=rt, service=service, http=http)
    finally:
        await http.close()
        await service.stop()
        await rt.close()


class RecordingRunner(CommandRunner):
    """The gateway's own partition reader (start: `gateway_ordinal(its id)`); records instead of
    calling a station."""

    def __init__(self, rt: Runtime, gateway_id: str) -> None:
        super().__init__(
            gateway_id=gateway_id, reader=rt.bus, registry=Registry(),
            router=CommandRouter(owners=rt.store, publish=rt.bus.publish, partitions=rt.bus.partitions, clock=rt.clock,
                                 issuer=gateway_id),
            publisher=Publisher(rt.bus.publish, rt.settings.bus_max_record_bytes), clock=rt.clock, concurrency=4,
            command_timeout_s=rt.settings.command_timeout_s, call_timeout_s=30.0,
        )
        self.executed: list[Command] = []

    async def execute(self, cmd: Command) -> None:
        self.executed.append(cmd)


async def test_a_command_for_a_station_owned_by_a_worker_reaches_that_workers_partition(api: Api) -> None:
    # pod gateway-1 with two workers; the station is connected to the second one
    w0, w1 = worker_id("gateway-1", 0, 2), worker_id("gateway-1", 1, 2)
    await api.a_station("CP-1")
    epoch = await api.connected("CP-1", w1)
    runners = [RecordingRunner(api.rt, w) for w in (w0, w1)]
    for r in runners:
        await r.start()
    try:
        status, _body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Soft"})
        assert status == 504  # nobody answered: the recording runner does not call a station
    finally:
        for r in runners:
            await r.stop()
    assert api.rt.bus.end_offsets(topics.COMMANDS) == [0, 0, 0, 1, 0, 0, 0, 0]  # type: ignore[attr-defined]
    [cmd] = runners[1].executed
    assert (cmd.station_id, cmd.target_gateway_id, cmd.target_epoch) == ("CP-1", w1, epoch)
    assert runners[0].executed == []


async def test_a_command_for_another_gateway_on_a_shared_partition_is_left_to_it(api: Api) -> None:
    """During a rolling change of CSMS_GATEWAY_WORKERS `gateway-3` (one worker) and
    `gateway-1-p3` (two) both read partition 3: each runs only what is addressed to it."""
    await api.rt.bus.ensure_topic(topics.COMMANDS, 8)
    old, new = RecordingRunner(api.rt, "gateway-3"), RecordingRunner(api.rt, worker_id("gateway-1", 1, 2))
    for r in (old, new):
        await r.start()
    try:
        for station, owner in (("CP-A", "gateway-3"), ("CP-B", "gateway-1-p3")):
            await api.a_station(station)
            await api.connected(station, owner)
            status, _ = await api.post(f"/api/v1/stations/{station}/commands", {"type": "Reset", "reset_type": "Soft"})
            assert status == 504
        await asyncio.sleep(0.05)
    finally:
        for r in (old, new):
            await r.stop()
    assert [c.station_id for c in old.executed] == ["CP-A"]
    assert [c.station_id for c in new.executed] == ["CP-B"]
