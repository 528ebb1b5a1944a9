"""The charging profiles fold of the stations-drivers stage on SQLite: profiles recorded from
Accepted results (operator, smart charging, another issuer), cleared, ended with their
transaction, expired; a station's report assembled by request id; redelivery harmless; junk
logged, counted and skipped; and the stage on the memory bus decoding only what it asked for."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from services.common import events as ev
from services.common import kinds, topics
from services.common.codec import encode_event, event_headers
from services.common.processor import Processor
from services.common.runtime import Runtime
from services.stations.charging_profile_documents import profiles_from_doc, report_from_doc, report_profiles
from services.stations.drivers import GROUP, DriversStage
from services.stations.drivers import charging_profiles
from services.stations.drivers.charging_profiles import ChargingProfilesFold
from tests.support.clock import T0, FixedClock
from tests.support.runtime import a_runtime, running
from tests.support.waiting import eventually

from .test_domain import req16, req201


def env(body: ev.Body, *, at: float = 0.0, station: str = "CP-1", event_id: str | None = None,
        version: str = "1.6") -> ev.Envelope:
    return ev.Envelope(event_id or str(uuid.uuid4()), station, T0 + timedelta(seconds=at), body,
                       gateway_id="gateway-0", ocpp_version=version)


def result(command_type: str, request: dict[str, Any] | str, status: str = "Accepted", *, cid: str | None = None,
           action: str = "") -> ev.CommandResult:
    text = request if isinstance(request, str) else json.dumps(request)
    return ev.CommandResult(cid or str(uuid.uuid4()), command_type, status, json.dumps({"status": status}),
                            ocpp_action=action or ("SetChargingProfile" if "Charging" in command_type else command_type),
                            request_json=text)


async def profiles(rt: Runtime, station: str = "CP-1") -> dict[int, Any]:
    doc = await rt.store.get_doc(kinds.CHARGING_PROFILES, station)
    if doc is None:
        return {}
    return {p.id: p for p in profiles_from_doc(doc).profiles}


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("csms_charging_profiles_records_total", {"outcome": outcome}) or 0.0


async def test_accepted_profiles_are_recorded_with_who_installed_them() -> None:
    async with running(a_runtime(clock=FixedClock())) as rt:
        fold = ChargingProfilesFold(rt.store, rt.clock)
        limit_request = {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 7101, "transactionId": 42, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "startSchedule": "2026-11-28T04:00:00.000Z", "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.6}]}}}
        await fold.apply([
            env(result("SetChargingProfile", req16(1, connector=0, purpose="TxDefaultProfile"), cid="op-1")),
            env(result("SetChargingLimit", limit_request, cid="sc-1"), at=1),
            env(result("SetChargingProfile", req16(2, connector=2, purpose="TxDefaultProfile"), "Rejected"), at=2),
            env(ev.CommandIssued("camp-1", "SetChargingProfile", "SetChargingProfile", "{}", "campaigns"), at=3),
            env(ev.CommandIssued("api-1", "SetChargingProfile", "SetChargingProfile", "{}", "api"), at=3),
        ])
        got = await profiles(rt)
        assert sorted(got) == [1, 7101]
        assert got[1].source == "operator" and got[1].command_id == "op-1" and got[1].installed_at == T0
        assert got[7101].source == "smart_charging" and got[7101].transaction_id == "42"
        assert got[7101].schedules[0].periods[0].limit == 10.6
        doc = await rt.store.get_doc(kinds.CHARGING_PROFILES, "CP-1")
        assert doc is not None and doc["issuers"] == {"camp-1": "campaigns"}  # the api issuer is the default: not kept
        # the other issuer's result names it, and its entry goes
        await fold.apply([env(result("SetChargingProfile", req16(3, connector=3, purpose="TxDefaultProfile"),
                                     cid="camp-1"), at=4)])
        got = await profiles(rt)
        assert got[3].source == "campaigns"
        doc = await rt.store.get_doc(kinds.CHARGING_PROFILES, "CP-1")
        assert doc is not None and doc["issuers"] == {} and doc["version"] == 2


async def test_clears_transaction_ends_and_expiry_remove_profiles() -> None:
    clock = FixedClock()
    async with running(a_runtime(clock=clock)) as rt:
        fold = ChargingProfilesFold(rt.store, rt.clock)
        later = (T0 + timedelta(minutes=5)).isoformat()
        await fold.apply([
            env(result("SetChargingProfile", req201(1, evse=1, stack=0), cid="a"), version="2.0.1"),
            env(result("SetChargingProfile", req201(2, evse=2, stack=0)), version="2.0.1"),
            env(result("SetChargingProfile", req201(3, evse=1, stack=1, purpose="TxProfile", tx="TX-9")), version="2.0.1"),
            env(result("SetChargingProfile", req201(4, evse=0, purpose="ChargingStationMaxProfile")), version="2.0.1"),
            env(result("SetChargingProfile", {**req16(5, connector=4, purpose="TxDefaultProfile", valid_to=later)})),
        ])
        assert sorted(await profiles(rt)) == [1, 2, 3, 4, 5]
        await fold.apply([env(ev.TransactionEnded("TX-9", evse_id=1), at=1)])
        assert sorted(await profiles(rt)) == [1, 2, 4, 5]
        await fold.apply([env(result("ClearChargingProfile", {"chargingProfileId": 2}, action="ClearChargingProfile"), at=2)])
        assert sorted(await profiles(rt)) == [1, 4, 5]
        # Unknown: the station had nothing matching, so the record should not have it either
        await fold.apply([env(result("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 0}}, "Unknown",
                                     action="ClearChargingProfile"), at=3)])
        assert sorted(await profiles(rt)) == [1, 5]
        # a refused clear changes nothing
        await fold.apply([env(result("ClearChargingProfile", {}, "Rejected", action="ClearChargingProfile"), at=4)])
        assert sorted(await profiles(rt)) == [1, 5]
        clock.advance(minutes=10)  # profile 5's valid_to passed: dropped at the next write
        await fold.apply([env(result("SetChargingProfile", req201(6, evse=3)), at=5, version="2.0.1")])
        assert sorted(await profiles(rt)) == [1, 6]
        await fold.apply([env(result("ClearChargingProfile", {}, action="ClearChargingProfile"), at=6)])
        assert await profiles(rt) == {}


async def test_a_redelivered_batch_gives_the_same_record() -> None:
    async with running(a_runtime(clock=FixedClock())) as rt:
        fold = ChargingProfilesFold(rt.store, rt.clock)
        batch = [
            env(result("SetChargingProfile", req201(1, evse=1, stack=0)), version="2.0.1"),
            env(result("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 1}}, action="ClearChargingProfile"), at=1),
            env(result("SetChargingProfile", req201(2, evse=1, stack=0)), at=2, version="2.0.1"),
            env(result("SetChargingProfile", req201(3, evse=1, stack=0)), at=3, version="2.0.1"),
            env(ev.CommandIssued("x-1", "SetChargingLimit", "SetChargingProfile", "{}", "someone"), at=4),
            env(result("SetChargingLimit", req201(4, evse=2, purpose="TxProfile", tx="T1"), cid="x-1"), at=5,
                version="2.0.1"),
        ]
        await fold.apply(batch)
        first = await rt.store.get_doc(kinds.CHARGING_PROFILES, "CP-1")
        await fold.apply(batch)
        again = await rt.store.get_doc(kinds.CHARGING_PROFILES, "CP-1")
        assert first is not None and again is not None
        assert again["profiles"] == first["profiles"] and again["issuers"] == first["issuers"] == {}
        assert sorted(p["id"] for p in again["profiles"]) == [3, 4]
        assert {p["id"]: p["source"] for p in again["profiles"]}[4] == "someone"


async def test_junk_is_counted_and_skipped_and_the_rest_applied() -> None:
    async with running(a_runtime(clock=FixedClock())) as rt:
        fold = ChargingProfilesFold(rt.store, rt.clock)
        failed = _count("failed")
        await fold.apply([
            env(result("SetChargingProfile", "not json")),
            env(result("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": True}})),
            env(result("ClearChargingProfile", {"chargingProfileId": "x"}, action="ClearChargingProfile")),
            env(result("SetChargingProfile", "[1, 2]")),
            env(result("SetChargingProfile", req16(9))),
        ])
        assert _count("failed") - failed == 4
        assert sorted(await profiles(rt)) == [9]


def _part(rid: int, tbc: bool, *pids: int, evse: int = 1) -> ev.ChargingProfilesReport:
    return ev.ChargingProfilesReport(rid, "CSO", evse, tbc, tuple(
        ev.ChargingProfile(pid, 0, "TxDefaultProfile", "Absolute", schedules=(ev.ChargingSchedule(
            "A", id=1, periods=(ev.SchedulePeriod(0, 16.0),)),)) for pid in pids))


async def test_a_report_is_assembled_by_request_id() -> None:
    async with running(a_runtime(clock=FixedClock())) as rt:
        fold = ChargingProfilesFold(rt.store, rt.clock)
        get = result("GetChargingProfiles", {"requestId": 77, "chargingProfile": {}}, action="GetChargingProfiles", cid="g")
        first = env(_part(77, True, 1, 2, evse=1), at=1, version="2.0.1")
        await fold.apply([env(get, version="2.0.1"), first])
        doc = await rt.store.get_doc(kinds.CHARGING_PROFILES_REPORT, "CP-1/77")
        assert doc is not None
        report = report_from_doc(doc)
        assert not report.complete and report.station_status == "Accepted" and report.command_id == "g"
        assert doc["parts"][0]["profiles"][0]["source"] == "CSO"
        # the first part again (redelivered), then the last part
        await fold.apply([first, env(_part(77, False, 3, evse=2), at=2, version="2.0.1")])
        doc = await rt.store.get_doc(kinds.CHARGING_PROFILES_REPORT, "CP-1/77")
        assert doc is not None
        report = report_from_doc(doc)
        assert report.complete and report.completed_at == T0 + timedelta(seconds=2)
        assert [(p.evse_id, p.id) for p in report_profiles(report)] == [(1, 1), (1, 2), (2, 3)]
        # NoProfiles completes a report without parts; another station's ids are its own
        await fold.apply([env(result("GetChargingProfiles", {"requestId": 77}, "NoProfiles", action="GetChargingProfiles"),
                              station="CP-2", version="2.0.1")])
        doc = await rt.store.get_doc(kinds.CHARGING_PROFILES_REPORT, "CP-2/77")
        assert doc is not None and doc["complete"] is True and doc["parts"] == [] and doc["station_status"] == "NoProfiles"


async def test_the_stage_decodes_only_what_it_asked_for_and_skips_undecodable_records() -> None:
    async with running(a_runtime(clock=FixedClock())) as rt:
        fold = charging_profiles.build(rt)
        stage = DriversStage([fold])
        proc = Processor("test-drivers", rt.bus, topics.EVENTS, GROUP, stage.handle_batch, max_records=100)
        await proc.start()
        try:
            await rt.bus.publish(topics.EVENTS, "CP-1", b"\x00junk", [("ce_type", b"csms.events.v1.CommandResult")])
            for e in (env(ev.Heartbeat()), env(result("SetChargingProfile", req16(4, connector=1, tx=8)), at=1),
                      env(ev.MeterValues("8", 1), at=2)):
                await rt.bus.publish(topics.EVENTS, e.station_id, encode_event(e), event_headers(e))

            async def recorded() -> bool:
                return 4 in await profiles(rt)

            await eventually(recorded, 5, what="the profile recorded through the stage")
            end = env(ev.TransactionEnded("8", connector_id=1), at=3)
            await rt.bus.publish(topics.EVENTS, end.station_id, encode_event(end), event_headers(end))

            async def ended() -> bool:
                return await profiles(rt) == {}

            await eventually(ended, 5, what="the TxProfile gone with its transaction")
        finally:
            await proc.stop()
