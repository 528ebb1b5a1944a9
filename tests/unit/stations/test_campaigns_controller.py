"""The campaign controller over a real store: two controllers racing over one store send
each station's UpdateFirmware once; the controller as a processor sends through the router
to the owning gateway's partition; a station reported Installed and rebooted succeeds."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from services.common import kinds, topics
from services.common.bus.port import Record
from services.common.codec import Command, decode_command
from services.common.routing import Offline, Routed, Sent
from services.common.runtime import Runtime
from services.sessions.documents import station_status_to_doc
from services.sessions.domain.station_status import Boot, StationStatus
from services.stations.campaign_documents import campaign_from_doc, campaign_to_doc
from services.stations.campaigns import CampaignController, build_campaigns
from services.stations.documents import station_ops_to_doc
from services.stations.domain.campaigns import ACTIVE, new_campaign
from services.stations.domain.ops import FirmwareState, StationOps
from tests.support.clock import T0, FixedClock
from tests.support.runtime import a_runtime, running
from tests.support.waiting import eventually

STATIONS = [f"CP-{i}" for i in range(6)]


def _lost() -> float:
    return REGISTRY.get_sample_value("csms_firmware_campaign_dispatches_total", {"result": "lost"}) or 0.0


class RecordingSender:
    def __init__(self, offline: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.offline = offline

    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed:
        await asyncio.sleep(0)  # let a racing controller interleave
        if station_id in self.offline:
            return Offline("not connected")
        self.sent.append((station_id, command_id or "", dict(params)))
        return Sent(Command(command_id or "", station_id, command_type, "{}", T0, T0, "test"), 0)


async def _status(rt: Runtime, station_id: str, *, version: str = "1.0", at: Any = None, connected: bool = True) -> None:
    status = StationStatus(station_id, connected=connected, epoch=1, gateway_id="gateway-1",
                           boot=Boot(vendor="V", model="M", firmware_version=version, at=at or T0 - timedelta(days=1)))
    await rt.store.put_doc(kinds.STATION_STATUS, station_id, station_status_to_doc(status))


async def _create(rt: Runtime, campaign_id: str = "fw-1", **kw: Any) -> None:
    c = new_campaign(campaign_id, kw.pop("stations", STATIONS), location="https://fw/2.0.bin", version="2.0", at=T0, **kw)
    c = replace(c, revision=1)  # as the API writes it
    assert await rt.store.put_doc(kinds.FIRMWARE_CAMPAIGN, c.id, campaign_to_doc(c), parent=ACTIVE, version=1)


async def _campaign(rt: Runtime, campaign_id: str = "fw-1") -> Any:
    doc = await rt.store.get_doc(kinds.FIRMWARE_CAMPAIGN, campaign_id)
    assert doc is not None
    return campaign_from_doc(doc)


async def test_two_controllers_racing_over_one_store_send_each_station_once() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        for s in STATIONS:
            await _status(rt, s)
        await _create(rt, max_in_flight=2)
        one, two = RecordingSender(), RecordingSender()
        lost_before = _lost()
        a = CampaignController(rt.store, one, clock, station_timeout=timedelta(seconds=60))
        b = CampaignController(rt.store, two, clock, station_timeout=timedelta(seconds=60))
        for _ in range(8):
            clock.advance(seconds=5)
            await asyncio.gather(a.run(), b.run())
            c = await _campaign(rt)
            in_flight = [s for s in c.stations if s.status == "in_flight"]
            assert len(in_flight) <= 2
            for s in in_flight:  # each station installs and boots into 2.0 before the next tick
                ops = StationOps(s.station_id, firmware=FirmwareState(
                    "Installed", request_id=s.request_id, command_id=s.command_id, updated_at=clock()))
                await rt.store.put_doc(kinds.STATION_OPS, s.station_id, station_ops_to_doc(ops))
                await _status(rt, s.station_id, version="2.0", at=clock() + timedelta(seconds=1))
        sends = [(s, cid) for s, cid, _ in one.sent + two.sent]
        assert sorted(s for s, _ in sends) == sorted(STATIONS)  # each station once, by one controller or the other
        assert len(set(cid for _, cid in sends)) == 6
        assert _lost() > lost_before  # the race did happen: a controller lost a write and sent nothing
        c = await _campaign(rt)
        assert c.status == "completed" and {s.status for s in c.stations} == {"succeeded"}
        assert [d["id"] for d in await rt.store.list_docs(kinds.FIRMWARE_CAMPAIGN, parent="done")] == ["fw-1"]
        assert not await rt.store.list_docs(kinds.FIRMWARE_CAMPAIGN, parent=ACTIVE)


async def test_an_offline_station_waits_and_an_undeliverable_send_goes_back_to_pending() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        await _status(rt, "CP-0", connected=False)
        await _status(rt, "CP-1")
        await _create(rt, stations=["CP-0", "CP-1", "CP-9"])  # CP-9: never seen
        sender = RecordingSender(offline=frozenset({"CP-1"}))
        controller = CampaignController(rt.store, sender, clock, station_timeout=timedelta(hours=1))
        assert await controller.run() == 0
        c = await _campaign(rt)
        assert [(s.status, s.attempts) for s in c.stations] == [("pending", 0), ("pending", 1), ("pending", 0)]
        assert c.stations[1].reason == "command_StationOffline" and c.revision == 3


async def test_the_controller_processor_sends_update_firmware_and_follows_the_station_to_success() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock, campaign_tick_s=0.05)) as rt:
        got: list[tuple[int, Command]] = []

        async def on_command(record: Record) -> None:
            got.append((record.partition, decode_command(record.value)))

        sub = await rt.bus.assign(topics.COMMANDS, 3, on_command)
        await rt.store.claim_station("CP-0", "gateway-3")
        await _status(rt, "CP-0")
        await _create(rt, stations=["CP-0"])
        processor = build_campaigns(rt)
        await processor.start()
        try:
            assert processor.ready()
            await eventually(lambda: got, what="UpdateFirmware sent")
            [(partition, cmd)] = got
            assert partition == 3 and cmd.command_type == "UpdateFirmware" and cmd.issuer == "firmware_campaign"
            c = await _campaign(rt)
            [s] = c.stations
            assert s.status == "in_flight" and s.command_id == cmd.command_id
            assert '"location":"https://fw/2.0.bin"' in cmd.params_json and str(s.request_id) in cmd.params_json
            # the station reports Installed (stations processor) and boots into 2.0 (sessions processor)
            clock.advance(seconds=30)
            ops = StationOps("CP-0", firmware=FirmwareState("Installed", request_id=s.request_id, command_id=s.command_id,
                                                            updated_at=clock()))
            await rt.store.put_doc(kinds.STATION_OPS, "CP-0", station_ops_to_doc(ops))
            clock.advance(seconds=30)
            await _status(rt, "CP-0", version="2.0", at=clock())

            async def done() -> bool:
                return bool((await _campaign(rt)).status == "completed")

            await eventually(done, what="campaign completed")
            [s] = (await _campaign(rt)).stations
            assert s.status == "succeeded" and s.firmware_status == "Installed" and len(got) == 1
            assert Counter(p for p, _ in got) == {3: 1}
        finally:
            await processor.stop()
            await sub.stop()
        assert not processor.ready()
