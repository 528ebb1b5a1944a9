"""ADR 018 §5 through the wired smart-charging processor (memory bus and store) and the
gateway's NotifyEVChargingNeeds answer: a CALLERROR marks the station (site state and
`charging_capability`) until its boot, NotifyChargingLimit in W becomes amps, accepted
EV charging needs get a TxProfile that ends at departure."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.common import events as ev
from services.common.kinds import CHARGING_CAPABILITY
from services.common.store.port import Station
from services.gateway.actions.ev_needs import EvNeedsDecider
from services.smart_charging.capability import takes_profiles
from services.smart_charging.domain import ProfileCommand
from tests.support import opened
from tests.unit.smart_charging_worker.builders import T0, booted, current, envelope, later, started
from tests.unit.smart_charging_worker.conftest import World, open_world


def callerror(station_id: str, command_id: str, code: str = "NotImplemented") -> ev.Envelope:
    body = ev.CommandResult(
        command_id=command_id, command_type="SetChargingLimit", status="Rejected", error_code=code,
        error_description="not implemented", ocpp_action="SetChargingProfile",
    )
    return envelope(station_id, body, action="SetChargingProfile")


def tx_sent(w: World, station_id: str, since: int = 0) -> list[dict[str, Any]]:
    return [s.params for s in w.sent_since(since) if s.station_id == station_id and s.purpose == "tx"]


def command_id_of(w: World, station_id: str) -> str:
    return [s.command.command_id for s in w.sent() if s.station_id == station_id and s.purpose == "tx"][-1]


async def test_a_callerror_marks_the_station_until_its_boot_and_reserves_its_measured_draw() -> None:
    async with open_world() as w:
        await w.site(grid_limit_a=40)
        await w.station("R")
        await w.station("C")
        await w.service.start()
        await w.feed(started("R", "1"), started("C", "2"))
        await w.feed(callerror("R", command_id_of(w, "R")))

        cap = await w.rt.store.get_doc(CHARGING_CAPABILITY, "R")
        assert cap is not None and cap["takes_profiles"] is False and "NotImplemented" in cap["reason"]
        assert cap["station_id"] == "R" and cap["since"] and cap["boot_at"] is None
        state = await w.state()
        assert [m["station_id"] for m in state["no_profiles"]] == ["R"]
        assert Decimal(tx_sent(w, "C")[-1]["limit_a"]) == 8  # R reserved at its 32 A max

        w.clock.advance(60)
        await w.feed(current("R", "1", {"L1": 16.0, "L2": 15.8, "L3": 15.9}, at=later(60)))
        assert Decimal(tx_sent(w, "C")[-1]["limit_a"]) == 23  # R reserved at 16 + 1 A

        mark = len(w.sent())
        await w.feed(started("R", "3", connector=2))
        assert tx_sent(w, "R", mark) == []  # a later session is not asked either

        await w.feed(booted("R"))
        cap = await w.rt.store.get_doc(CHARGING_CAPABILITY, "R")
        assert cap is not None and takes_profiles(cap) and cap["boot_at"]
        assert {p["evse_id"] for p in tx_sent(w, "R", mark)} == {1, 2}  # asked again
        assert (await w.state())["no_profiles"] == []


async def test_a_marked_station_is_asked_again_at_a_session_start_after_the_reprobe_interval() -> None:
    async with open_world(smart_charging_reprobe_h=2.0) as w:
        await w.site(grid_limit_a=40)
        await w.station("R")
        await w.service.start()
        await w.feed(started("R", "1"))
        await w.feed(callerror("R", command_id_of(w, "R")))
        assert [m["station_id"] for m in (await w.state())["no_profiles"]] == ["R"]

        w.clock.advance(3600)  # 1 h after the mark: still marked
        mark = len(w.sent())
        await w.feed(started("R", "2", connector=2))
        assert tx_sent(w, "R", mark) == []

        w.clock.advance(3700)  # over 2 h after the mark: the next session asks again
        await w.feed(started("R", "3", connector=3))
        assert {p["evse_id"] for p in tx_sent(w, "R", mark)} == {1, 2, 3}
        assert (await w.state())["no_profiles"] == []
        cap = await w.rt.store.get_doc(CHARGING_CAPABILITY, "R")
        assert cap is not None and takes_profiles(cap) and cap["reason"] == "reprobe" and cap["boot_at"] is None

        # Refused again: marked again, from now.
        await w.feed(callerror("R", command_id_of(w, "R")))
        assert [m["station_id"] for m in (await w.state())["no_profiles"]] == ["R"]
        assert not takes_profiles(await w.rt.store.get_doc(CHARGING_CAPABILITY, "R"))


def failsafe_id(w: World, station_id: str) -> str:
    return [s.command.command_id for s in w.sent() if s.station_id == station_id and s.purpose == "default"][-1]


@pytest.mark.parametrize("answer", [
    {"status": "Rejected", "error_code": "NotImplemented"},  # a CALLERROR (2.0.1 without smart charging)
    {"status": "NotSupported", "error_code": ""},  # 1.6 without the SmartCharging feature profile
])
async def test_a_station_that_refuses_the_fail_safe_is_marked_before_its_first_session(answer: dict[str, str]) -> None:
    async with open_world() as w:
        await w.site(grid_limit_a=40)
        await w.station("R")
        await w.station("C")
        await w.service.start()
        await w.feed(booted("R"))
        body = ev.CommandResult(command_id=failsafe_id(w, "R"), command_type="SetChargingLimit",
                                ocpp_action="SetChargingProfile", **answer)
        await w.feed(envelope("R", body, action="SetChargingProfile"))

        assert [m["station_id"] for m in (await w.state())["no_profiles"]] == ["R"]
        cap = await w.rt.store.get_doc(CHARGING_CAPABILITY, "R")
        assert cap is not None and not takes_profiles(cap) and "fail-safe" in cap["reason"]

        await w.feed(started("R", "1"), started("C", "2"))
        assert tx_sent(w, "R") == []  # never sent a TxProfile it would refuse
        assert Decimal(tx_sent(w, "C")[-1]["limit_a"]) == 8  # R reserved at its 32 A max

        # An accepted fail-safe marks nothing (and is forgotten).
        await w.feed(booted("C"))
        await w.feed(envelope("C", ev.CommandResult(command_id=failsafe_id(w, "C"), command_type="SetChargingLimit",
                                                    status="Accepted"), action="SetChargingProfile"))
        assert [m["station_id"] for m in (await w.state())["no_profiles"]] == ["R"]
        assert not [v for v in (await w.state())["issued"].values() if v.get("kind") == "failsafe" and v["station_id"] == "C"]


async def test_with_a_reprobe_interval_of_0_a_mark_lasts_until_the_boot() -> None:
    async with open_world(smart_charging_reprobe_h=0.0) as w:
        await w.site(grid_limit_a=40)
        await w.station("R")
        await w.service.start()
        await w.feed(started("R", "1"))
        await w.feed(callerror("R", command_id_of(w, "R")))
        w.clock.advance(1000 * 3600)
        mark = len(w.sent())
        await w.feed(started("R", "2", connector=2))
        assert tx_sent(w, "R", mark) == []
        assert [m["station_id"] for m in (await w.state())["no_profiles"]] == ["R"]


async def test_our_own_invalid_command_does_not_mark_the_station() -> None:
    async with open_world() as w:
        await w.site()
        await w.station("R")
        await w.service.start()
        await w.feed(started("R", "1"))
        await w.feed(callerror("R", command_id_of(w, "R"), code="InvalidCommand"))
        assert await w.rt.store.get_doc(CHARGING_CAPABILITY, "R") is None
        assert (await w.state())["no_profiles"] == []


def limit_set(station_id: str, evse_id: int, limit: float, unit: str = "A", *, start_in_s: int | None = None) -> ev.Envelope:
    periods = (ev.SchedulePeriod(start_period=0, limit=limit * 2), ev.SchedulePeriod(start_period=30, limit=limit))
    schedule = ev.ChargingSchedule(
        charging_rate_unit=unit, id=1, periods=periods,
        start_schedule=None if start_in_s is None else T0 + timedelta(seconds=start_in_s),
    )
    body = ev.ChargingLimitSet(source="EMS", evse_id=evse_id, schedules=(schedule,))
    return envelope(station_id, body, version="2.0.1", action="NotifyChargingLimit")


async def test_an_outside_limit_in_watts_is_read_at_now_and_cleared() -> None:
    async with open_world() as w:
        await w.site(grid_limit_a=32)  # 3 phases
        await w.station("CS1")
        await w.service.start()
        await w.feed(started("CS1", "tx-1", version="2.0.1"))
        # started 60 s ago: the second period (6900 W = 10 A on 3 phases at 230 V) is in force
        await w.feed(limit_set("CS1", 1, 6900, "W", start_in_s=-60))
        assert Decimal(tx_sent(w, "CS1")[-1]["limit_a"]) == 10

        body = ev.ChargingLimitCleared(source="EMS", evse_id=1)
        await w.feed(envelope("CS1", body, version="2.0.1", action="ClearedChargingLimit"))
        assert Decimal(tx_sent(w, "CS1")[-1]["limit_a"]) == 32
        assert (await w.state())["external_limits"] == []


def needs(station_id: str, status: str, *, departure_in_s: int = 7200) -> ev.Envelope:
    body = ev.EvChargingNeeds(
        evse_id=1, requested_energy_transfer="AC_three_phase", departure_time=T0 + timedelta(seconds=departure_in_s),
        ac=ev.AcChargingParameters(energy_amount=20_000, ev_min_current=6, ev_max_current=16, ev_max_voltage=400),
        status=status,
    )
    return envelope(station_id, body, version="2.0.1", action="NotifyEVChargingNeeds")


async def test_accepted_ev_needs_get_a_tx_profile_until_departure_and_rejected_ones_nothing() -> None:
    async with open_world() as w:
        await w.site()
        await w.station("CS1")
        await w.service.start()
        await w.feed(started("CS1", "tx-1", version="2.0.1"))
        mark = len(w.sent())
        await w.feed(needs("CS1", "Rejected"))
        assert tx_sent(w, "CS1", mark) == []

        await w.feed(needs("CS1", "Accepted"))
        [params] = tx_sent(w, "CS1", mark)
        # 20 kWh in 2 h on 3 phases at 230 V: 14.49 A, under the EV's 16 A
        assert params["transaction_id"] == "tx-1" and params["limit_a"] == "14.4"
        assert params["duration_s"] == 7200
        _, payload = [s for s in w.sent() if s.station_id == "CS1"][-1].frame("2.0.1")
        assert payload["chargingProfile"]["chargingSchedule"][0]["duration"] == 7200


async def test_the_gateway_accepts_ev_needs_only_for_a_station_in_a_site_that_takes_profiles() -> None:
    async with opened() as store:
        await store.put_station(Station(id="IN", password_hash="", site_id="SITE1"))
        await store.put_station(Station(id="OUT", password_hash=""))
        decider = EvNeedsDecider(store, store)

        assert await decider.status("IN") == "Accepted"
        assert await decider.status("OUT") == "Rejected"
        assert await decider.status("UNKNOWN") == "Rejected"
        await store.put_doc(CHARGING_CAPABILITY, "IN", {"station_id": "IN", "takes_profiles": False})
        assert await decider.status("IN") == "Rejected"


def test_a_profile_command_carries_its_departure() -> None:
    command = ProfileCommand("CS1", 1, Decimal(10), "tx", until=T0 + timedelta(hours=1))
    assert command.until is not None and not command.forced


async def test_bad_outside_limits_and_needs_from_a_station_are_skipped() -> None:
    async with open_world() as w:
        await w.site()
        await w.station("CS1")
        await w.service.start()
        await w.feed(started("CS1", "tx-1", version="2.0.1"))
        mark = len(w.sent())
        future = ev.ChargingSchedule(charging_rate_unit="A", periods=(ev.SchedulePeriod(0, 5.0),), start_schedule=later(3600))
        weird = ev.ChargingSchedule(charging_rate_unit="kW", periods=(ev.SchedulePeriod(0, 5.0),))
        huge = ev.ChargingSchedule(charging_rate_unit="A", periods=(ev.SchedulePeriod(0, 1e300),))
        negative = ev.ChargingSchedule(charging_rate_unit="W", periods=(ev.SchedulePeriod(0, -5.0),))
        for schedules, evse in (((future,), 1), ((weird,), 1), ((negative,), 1), ((), 1), ((huge,), -3)):
            body = ev.ChargingLimitSet(source="EMS", evse_id=evse, schedules=schedules)
            await w.feed(envelope("CS1", body, version="2.0.1", action="NotifyChargingLimit"))
        assert tx_sent(w, "CS1", mark) == []
        await w.feed(envelope("CS1", ev.ChargingLimitSet(source="EMS", evse_id=1, schedules=(huge,)), version="2.0.1"))
        assert tx_sent(w, "CS1", mark) == []  # limits nothing
        odd = ev.EvChargingNeeds(
            evse_id=1, requested_energy_transfer="AC_single_phase", departure_time=later(-60),
            ac=ev.AcChargingParameters(energy_amount=-5, ev_min_current=40, ev_max_current=-1, ev_max_voltage=0),
            status="Accepted",
        )
        await w.feed(envelope("CS1", odd, version="2.0.1"))
        assert [Decimal(p["limit_a"]) for p in tx_sent(w, "CS1", mark)] == [Decimal(32)]  # its min 40 A, capped at max
        no_evse = ev.EvChargingNeeds(evse_id=0, requested_energy_transfer="DC", status="Accepted")
        await w.feed(envelope("CS1", no_evse, version="2.0.1"))
        assert len(tx_sent(w, "CS1", mark)) == 1


def test_a_tx_profile_that_ends_at_departure_is_valid_in_both_versions() -> None:
    from services.common.ocpp.profiles import tx_profile_16, tx_profile_201
    from tests.unit.gateway_actions.test_ocpp_profiles import V16 as SCHEMA_16
    from tests.unit.gateway_actions.test_ocpp_profiles import V201 as SCHEMA_201
    from tests.unit.gateway_actions.test_ocpp_profiles import _check

    p16 = tx_profile_16(1, 7, Decimal("14.4"), 7101, T0, duration_s=7200)
    p201 = tx_profile_201(1, "tx-1", Decimal("14.4"), 7101, T0, duration_s=7200)
    _check(SCHEMA_16, p16, "1.6", "SetChargingProfile")
    _check(SCHEMA_201, p201, "2.0.1", "SetChargingProfile")
    assert p16["csChargingProfiles"]["chargingSchedule"]["duration"] == 7200
    assert p201["chargingProfile"]["chargingSchedule"][0]["duration"] == 7200
    with pytest.raises(ValueError):
        tx_profile_201(1, "tx-1", Decimal(10), 7101, T0, duration_s=0)
