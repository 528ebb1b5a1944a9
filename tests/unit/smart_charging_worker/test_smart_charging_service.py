"""The smart-charging processor end to end on the bus: station events in, SetChargingLimit commands out."""

from __future__ import annotations

import logging

import pytest

from services.common import topics
from services.smart_charging.commands import TX_PROFILE_ID_BASE

from .builders import command_result, ended_16, latest_limits, started
from .conftest import World

STATIONS = ("CS-A", "CS-B", "CS-C")


async def three_charging(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    for station_id in STATIONS:
        await world.station(station_id)
    await world.service.start()
    for i, station_id in enumerate(STATIONS):  # one at a time: a known order of allocations
        await world.feed(started(station_id, str(100 + i)))


async def test_three_sessions_on_a_32_a_site_get_profiles_that_add_up_to_at_most_32_a(world: World) -> None:
    await three_charging(world)

    sent = world.sent()
    assert {s.command.command_type for s in sent} == {"SetChargingLimit"}
    assert {s.command.issuer for s in sent} == {"smart_charging"}
    assert all(s.partition == 0 and s.command.target_gateway_id == "gateway-0" for s in sent)
    limits = latest_limits(sent)
    assert set(limits) == set(STATIONS)
    assert sum(limits.values()) <= 32
    assert sorted(limits.values()) == [10.6, 10.7, 10.7]


async def test_each_transaction_keeps_one_profile_id_so_a_new_limit_replaces_the_old_one(world: World) -> None:
    await three_charging(world)

    a_profiles = [s for s in world.sent() if s.station_id == "CS-A"]
    assert [s.limit for s in a_profiles] == [32.0, 16.0, 10.7]
    assert {s.params["profile_id"] for s in a_profiles} == {TX_PROFILE_ID_BASE + 1}
    assert {s.profile("1.6")["chargingProfileId"] for s in a_profiles} == {TX_PROFILE_ID_BASE + 1}
    assert {s.profile("1.6")["stackLevel"] for s in a_profiles} == {0}
    first = a_profiles[0]
    assert first.params["evse_id"] == 1 and first.frame("1.6")[1]["connectorId"] == 1
    assert first.profile("1.6")["transactionId"] == 100
    assert first.profile("1.6")["chargingSchedule"]["chargingRateUnit"] == "A"


async def test_when_one_session_ends_the_two_others_are_raised_to_16_a_each(world: World) -> None:
    await three_charging(world)
    mark = len(world.sent())

    await world.feed(ended_16("CS-C", "102"))

    new = world.sent_since(mark)
    assert {s.station_id: s.limit for s in new} == {"CS-A": 16.0, "CS-B": 16.0}
    limits = latest_limits(world.sent())
    assert limits["CS-A"] + limits["CS-B"] <= 32
    state = await world.state()
    assert [s["station_id"] for s in state["sessions"]] == ["CS-A", "CS-B"]


async def test_an_outside_cap_of_12_a_keeps_two_sessions_at_6_a_and_pauses_the_third(world: World) -> None:
    await three_charging(world)
    mark = len(world.sent())

    await world.site_changed({"id": "SITE1", "grid_limit_a": 32, "phases": 3, "external_limit_a": 12})

    assert latest_limits(world.sent()) == {"CS-A": 6.0, "CS-B": 6.0, "CS-C": 0.0}
    # Lowering comes before raising: every command here lowers a limit.
    assert [s.limit for s in world.sent_since(mark)] == [6.0, 6.0, 0.0]
    state = await world.state()
    assert state["external_cap_a"] == "12"


async def test_lifting_the_outside_cap_gives_the_site_its_grid_limit_back(world: World) -> None:
    await three_charging(world)
    await world.site_changed({"id": "SITE1", "grid_limit_a": 32, "phases": 3, "external_limit_a": 12})

    await world.site_changed({"id": "SITE1", "grid_limit_a": 32, "phases": 3, "external_limit_a": None})

    limits = latest_limits(world.sent())
    assert sorted(limits.values()) == [10.6, 10.7, 10.7]


async def test_a_rejected_profile_makes_the_station_uncontrollable_and_reserves_its_max(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A", max_current_a=20)
    await world.station("CS-B")
    await world.station("CS-C")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))
    a_command = [s for s in world.sent() if s.station_id == "CS-A"][-1].command
    mark = len(world.sent())

    await world.feed(command_result("CS-A", a_command.command_id, "Rejected"))

    # CS-A (16 A until now) is reserved at its 20 A max, so CS-B goes from 16 A down to 12 A.
    new = world.sent_since(mark)
    assert [(s.station_id, s.limit) for s in new] == [("CS-B", 12.0)]
    state = await world.state()
    [a] = [s for s in state["sessions"] if s["station_id"] == "CS-A"]
    assert a["controllable"] is False

    await world.feed(started("CS-C", "3"))
    assert all(s.station_id != "CS-A" for s in world.sent_since(mark))  # never commanded again
    limits = latest_limits(world.sent())
    assert (limits["CS-B"], limits["CS-C"]) == (6.0, 6.0)  # the 12 A left, shared


async def test_an_accepted_answer_changes_nothing(world: World) -> None:
    await three_charging(world)
    before = await world.state()
    command = world.sent()[-1].command

    await world.feed(command_result(command.station_id, command.command_id, "Accepted"))

    assert (await world.state())["version"] == before["version"]


async def test_the_allocation_trace_is_logged_with_the_site_id(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="csms.smart_charging")
    await three_charging(world)

    lines = [r.getMessage() for r in caplog.records if "allocation after" in r.getMessage()]
    assert len(lines) == 3
    assert lines[-1].startswith("site=SITE1 allocation after TransactionStarted station=CS-C: limit 32 A")
    assert "total 32 A of 32 A" in lines[-1]


async def test_the_service_is_ready_while_started_and_consumes_in_its_three_groups(world: World) -> None:
    service = world.service
    assert service.name == "smart-charging" and not service.ready()
    await service.start()
    assert service.ready()
    await service.stop()
    assert not service.ready()


async def test_a_restarted_service_continues_with_the_stored_site_state(world: World) -> None:
    await three_charging(world)
    await world.service.stop()
    await world.publish(ended_16("CS-C", "102"))
    mark = len(world.sent())

    await world.service.start()
    await world.settled()

    assert {s.station_id: s.limit for s in world.sent_since(mark)} == {"CS-A": 16.0, "CS-B": 16.0}


async def test_metrics_count_allocations_and_show_the_site_limit_and_allocation(world: World) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    allocations = value("csms_smart_charging_allocations_total")
    sent = value("csms_smart_charging_profiles_sent_total", result="sent")
    await three_charging(world)

    assert value("csms_smart_charging_allocations_total") - allocations == 3
    assert value("csms_smart_charging_profiles_sent_total", result="sent") - sent == 6
    assert value("csms_smart_charging_site_limit_amps", site="SITE1") == 32
    assert value("csms_smart_charging_allocated_amps", site="SITE1") == 32
    assert topics.COMMANDS  # the commands went to the public topic
