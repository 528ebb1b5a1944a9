"""The local list sync loop and fold over a real store, with a recording sender and a
scripted station: chunked Full + Differential with one version, confirmation, a token
change as a one-entry Differential, failures retried as Full after the backoff, results
redelivered or stale ignored, two replicas racing, the maximum asked of the station, a
boot verified, a lost command."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from services.common import events as ev
from services.common import kinds
from services.common.codec import Command
from services.common.routing import Offline, Routed, Sent
from services.common.runtime import Runtime
from services.common.store.port import Token
from services.sessions.documents import station_status_to_doc
from services.sessions.domain.station_status import StationStatus
from services.stations.domain.local_lists import MODE_ALL, MODE_EXPLICIT, ListEntry
from services.stations.drivers.local_lists import LOST_AFTER, LocalListSync
from services.stations.local_list_documents import (
    DesiredList,
    ENTRIES_PARENT,
    HEADER_PARENT,
    bump_tokens_revision,
    content_hash,
    entries_doc_id,
    entries_to_doc,
    header_to_doc,
    sync_from_doc,
)
from tests.support.clock import T0, FixedClock
from tests.support.runtime import a_runtime, running

Answer = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []  # station, command id, type, params
        self.offline: set[str] = set()

    async def send(self, station_id: str, command_type: str, params: Mapping[str, Any], *, ttl: timedelta,
                   command_id: str | None = None) -> Routed:
        await asyncio.sleep(0)
        if station_id in self.offline:
            return Offline("not connected")
        self.sent.append((station_id, command_id or "", command_type, json.loads(json.dumps(dict(params)))))
        return Sent(Command(command_id or "", station_id, command_type, "{}", T0, T0, "test"), 0)


def accept_all(max_len: int | None = 1000) -> Answer:
    version = {"v": 0}

    def answer(command: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if command == "SendLocalList":
            version["v"] = params["list_version"]
            return "Accepted", {"status": "Accepted"}
        if command == "GetLocalListVersion":
            return "Accepted", {"list_version": version["v"]}
        if command == "GetConfiguration":
            keys = [] if max_len is None else [{"key": "SendLocalListMaxLength", "readonly": True, "value": str(max_len)}]
            return "Accepted", {"configuration_key": keys}
        return "Accepted", {}

    return answer


class Harness:
    def __init__(self, rt: Runtime, clock: FixedClock) -> None:
        self.rt, self.clock = rt, clock
        self.sender = Sender()
        self.sync = LocalListSync(rt.store, rt.store, self.sender, clock, default_chunk=100, retry_s=60)
        self.answered = 0

    async def station(self, sid: str = "CP", version: str = "1.6", connected: bool = True) -> None:
        s = StationStatus(sid, connected=connected, epoch=1, gateway_id="gateway-1", ocpp_version=version)  # type: ignore[arg-type]
        await self.rt.store.put_doc(kinds.STATION_STATUS, sid, station_status_to_doc(s))

    async def desire(self, sid: str, mode: str, entries: list[ListEntry] = (), version: int = 1,  # type: ignore[assignment]
                     groups: tuple[str, ...] = ()) -> None:
        d = DesiredList(sid, mode, groups, tuple(entries), len(entries), version, content_hash(mode, groups, entries),
                        T0, self.clock())
        await self.rt.store.put_doc_if(kinds.LOCAL_LIST, entries_doc_id(sid), entries_to_doc(d), parent=ENTRIES_PARENT,
                                       expected_version=None if version == 1 else version - 1, version=version)
        await self.rt.store.put_doc_if(kinds.LOCAL_LIST, sid, header_to_doc(d), parent=HEADER_PARENT,
                                       expected_version=None if version == 1 else version - 1, version=version)

    async def result(self, sid: str, cid: str, command: str, status: str, response: dict[str, Any]) -> None:
        body = ev.CommandResult(cid, command, status, json.dumps(response))
        await self.sync.apply([ev.Envelope(str(uuid.uuid4()), sid, self.clock(), body)])

    async def run(self, answer: Answer, sid: str = "CP") -> list[tuple[str, dict[str, Any]]]:
        """Answer every command sent (and those the answers cause) like the station would."""
        out = []
        while self.answered < len(self.sender.sent):
            station, cid, command, params = self.sender.sent[self.answered]
            self.answered += 1
            out.append((command, params))
            status, response = answer(command, params)
            await self.result(station, cid, command, status, response)
        return out

    async def state(self, sid: str = "CP") -> Any:
        doc = await self.rt.store.get_doc(kinds.LOCAL_LIST_SYNC, sid)
        assert doc is not None
        return sync_from_doc(doc)


def _tokens(n: int) -> list[ListEntry]:
    return [ListEntry(f"TOK{i:05d}") for i in range(n)]


async def test_2500_entries_go_as_full_then_differentials_and_are_confirmed() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station()
        await h.desire("CP", MODE_EXPLICIT, _tokens(2500))
        await h.sync.tick()
        steps = await h.run(accept_all(1000))
        assert [c for c, _ in steps] == ["GetConfiguration", "SendLocalList", "SendLocalList", "SendLocalList",
                                         "GetLocalListVersion"]
        lists = [p for c, p in steps if c == "SendLocalList"]
        assert [(p["update_type"], len(p["local_authorization_list"]), p["list_version"]) for p in lists] == [
            ("Full", 1000, 1), ("Differential", 1000, 1), ("Differential", 500, 1)]
        s = await h.state()
        assert s.status == "in_sync" and s.confirmed_version == 1 and len(s.confirmed) == 2500
        assert s.max_per_message == 1000 and s.max_source == "station"
        # in sync: the next tick sends nothing
        assert await h.sync.tick() == 0
        # one entry changed: one Differential with just it, a new version
        changed = _tokens(2500)
        changed[7] = ListEntry("TOK00007", "Blocked")
        await h.desire("CP", MODE_EXPLICIT, changed, version=2)
        await h.sync.tick()
        steps = await h.run(accept_all(1000))
        assert steps[0] == ("SendLocalList", {"list_version": 2, "update_type": "Differential",
                                              "local_authorization_list": [{"id_token": "TOK00007", "status": "Blocked"}]})
        assert [c for c, _ in steps] == ["SendLocalList", "GetLocalListVersion"]
        assert (await h.state()).confirmed_version == 2


async def test_a_token_change_reaches_a_synced_list_and_an_irrelevant_one_sends_nothing() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station(version="2.0.1")
        for i in range(5):
            await rt.store.put_token(Token(f"T{i}", group_id="fleet" if i < 3 else "other"))
        await h.desire("CP", "groups", groups=("fleet",))
        await h.sync.tick()
        station = accept_all()
        steps = await h.run(lambda c, p: ("Accepted", {"get_variable_result": []}) if c == "GetVariables"
                            else station(c, p))
        assert [c for c, _ in steps][0] == "GetVariables"
        assert [e["id_token"] for e in steps[1][1]["local_authorization_list"]] == ["T0", "T1", "T2"]
        s = await h.state()
        assert s.status == "in_sync" and s.max_per_message == 100 and s.max_source == "default"
        # a token of another group changes: nothing to send
        await rt.store.put_token(Token("T4", "Blocked", group_id="other"))
        await bump_tokens_revision(rt.store, clock)
        assert await h.sync.tick() == 0
        assert (await h.state()).status == "in_sync"
        # a fleet token is deleted: a Differential removal at a new version
        await rt.store.delete_token("T1")
        await bump_tokens_revision(rt.store, clock)
        await h.sync.tick()
        station_version = {"v": 1}

        def answer(c: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            if c == "SendLocalList":
                station_version["v"] = p["list_version"]
                return "Accepted", {}
            return "Accepted", {"version_number": station_version["v"]}

        steps = await h.run(answer)
        assert steps[0][1]["update_type"] == "Differential" and steps[0][1]["list_version"] == 2
        assert steps[0][1]["local_authorization_list"] == [{"id_token": "T1"}]
        assert (await h.state()).confirmed_version == 2


async def test_failed_and_version_mismatch_are_retried_as_full_after_the_backoff() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station()
        await rt.store.put_doc(kinds.DEVICE_MODEL, "CP", {"station_id": "CP", "entries": [
            {"component": "", "variable": "SendLocalListMaxLength", "attribute_type": "Actual", "value": "2"}]})
        await h.desire("CP", MODE_EXPLICIT, _tokens(3))
        await h.sync.tick()
        answers = iter(["Accepted", "VersionMismatch"])
        steps = await h.run(lambda c, p: (next(answers), {}))
        assert [p["update_type"] for _, p in steps] == ["Full", "Differential"]
        s = await h.state()
        assert s.status == "failed" and "VersionMismatch" in (s.last_error or "") and s.attempts == 1
        assert s.confirmed is None and s.next_attempt_at == T0 + timedelta(seconds=60)
        assert await h.sync.tick() == 0  # backing off
        clock.advance(61)
        await h.sync.tick()
        steps = await h.run(lambda c, p: ("Failed", {}))
        assert [(c, p["update_type"], p["list_version"]) for c, p in steps] == [("SendLocalList", "Full", 1)]
        s = await h.state()
        assert s.attempts == 2 and s.next_attempt_at == clock() + timedelta(seconds=120)
        clock.advance(121)
        await h.sync.tick()
        steps = await h.run(accept_all())
        assert [p.get("update_type") for _, p in steps] == ["Full", "Differential", None]
        s = await h.state()
        assert s.status == "in_sync" and s.attempts == 0 and s.last_error is None and s.max_source == "device_model"


async def test_redelivered_and_stale_results_change_nothing() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station()
        await h.desire("CP", MODE_EXPLICIT, _tokens(3))
        await h.sync.tick()
        await h.run(accept_all())
        before = await h.state()
        assert before.status == "in_sync"
        # the whole sequence of results again (the bus redelivers)
        for station, cid, command, params in list(h.sender.sent):
            await h.result(station, cid, command, *accept_all()(command, params))
        await h.result("CP", "local-list/CP/999", "SendLocalList", "Failed", {})
        await h.result("CP", "someone-else", "SendLocalList", "Failed", {})
        assert await h.state() == before
        assert len(h.sender.sent) == h.answered


async def test_two_replicas_racing_send_each_step_once() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        other = LocalListSync(rt.store, rt.store, h.sender, clock, default_chunk=100, retry_s=60)
        await h.station()
        await rt.store.put_doc(kinds.DEVICE_MODEL, "CP", {"station_id": "CP", "entries": [
            {"component": "", "variable": "SendLocalListMaxLength", "value": "10"}]})
        await h.desire("CP", MODE_EXPLICIT, _tokens(3))
        await asyncio.gather(h.sync.tick(), other.tick())
        assert [c for _, _, c, _ in h.sender.sent] == ["SendLocalList"]


async def test_offline_stations_wait_and_a_boot_is_verified() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station(connected=False)
        await h.desire("CP", MODE_EXPLICIT, _tokens(3))
        assert await h.sync.tick() == 0 and h.sender.sent == []
        await h.station()
        h.sender.offline.add("CP")  # the router does not reach it after all
        await rt.store.put_doc(kinds.DEVICE_MODEL, "CP", {"station_id": "CP", "entries": [
            {"component": "", "variable": "SendLocalListMaxLength", "value": "10"}]})
        assert await h.sync.tick() == 0
        assert (await h.state()).status == "pending"
        h.sender.offline.clear()
        await h.sync.tick()
        await h.run(accept_all())
        assert (await h.state()).status == "in_sync"
        # a boot: the station is asked its version; it lost its list -> Full after the backoff
        await h.sync.apply([ev.Envelope("e1", "CP", clock(), ev.StationBooted("V", "M"))])
        await h.sync.tick()
        steps = await h.run(lambda c, p: ("Accepted", {"list_version": 0}))
        assert [c for c, _ in steps] == ["GetLocalListVersion"]
        s = await h.state()
        assert s.status == "failed" and "reports list version 0" in (s.last_error or "")
        # it reconnects: tried again at once, as a Full update
        await h.sync.apply([ev.Envelope("e2", "CP", clock(), ev.StationConnected(2))])
        await h.sync.tick()
        steps = await h.run(accept_all())
        assert steps[0][1]["update_type"] == "Full" and (await h.state()).status == "in_sync"
        # a boot of a station that kept its list: one GetLocalListVersion, nothing sent
        await h.sync.apply([ev.Envelope("e3", "CP", clock(), ev.StationBooted("V", "M"))])
        await h.sync.tick()
        steps = await h.run(lambda c, p: ("Accepted", {"list_version": 1}))
        assert [c for c, _ in steps] == ["GetLocalListVersion"] and (await h.state()).status == "in_sync"


async def test_a_command_without_a_result_is_taken_as_lost_and_retried() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station()
        await rt.store.put_doc(kinds.DEVICE_MODEL, "CP", {"station_id": "CP", "entries": [
            {"component": "", "variable": "SendLocalListMaxLength", "value": "10"}]})
        await h.desire("CP", MODE_ALL)
        await h.sync.tick()
        assert len(h.sender.sent) == 1
        h.answered = 1  # never answered
        assert await h.sync.tick() == 0 and (await h.state()).status == "sending"
        clock.advance(LOST_AFTER + timedelta(seconds=1))
        await h.sync.tick()
        s = await h.state()
        assert s.status == "failed" and "no answer" in (s.last_error or "")
        clock.advance(61)
        await h.sync.tick()
        await h.run(accept_all())
        s = await h.state()
        assert s.status == "in_sync" and s.confirmed == {}


async def test_an_unreadable_answer_does_not_stop_the_fold() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        h = Harness(rt, clock)
        await h.station()
        await h.desire("CP", MODE_EXPLICIT, _tokens(1))
        await h.sync.tick()
        station, cid, command, _ = h.sender.sent[0]
        await h.result(station, cid, command, "Accepted", "not an object")  # type: ignore[arg-type]
        body = ev.CommandResult(cid, command, "Accepted", "{bad json")
        await h.sync.apply([ev.Envelope("x", station, clock(), body)])
        s = await h.state()
        assert s.status in ("pending", "sending", "failed")
