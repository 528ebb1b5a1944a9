"""How station and site events change a site's allocation: fail-safe, versions, readings,
ownership, redeliveries and sites that change."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.common import codec, topics
from services.common.bus.port import Record
from services.common.kinds import SITE, SITE_STATE
from services.smart_charging.commands import FAILSAFE_PROFILE_ID
from services.smart_charging.repartition import BY_SITE

from .builders import booted, current, ended_16, latest_limits, later, started
from .conftest import World


async def test_a_station_of_a_site_gets_a_fail_safe_default_profile_when_it_boots(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    for station_id in ("CS-A", "CS-B", "CS-C", "CS-D"):
        await world.station(station_id)
    await world.service.start()

    await world.feed(booted("CS-A"), booted("CS-B", version="2.0.1"))

    a, b = sorted(world.sent(), key=lambda s: s.station_id)
    assert a.purpose == b.purpose == "default"
    assert a.limit == b.limit == 8.0  # 32 A / 4 stations
    assert a.params["evse_id"] == b.params["evse_id"] == 0
    # The gateway makes it a station-wide TxDefaultProfile of each station's version.
    assert a.frame("1.6")[1]["connectorId"] == 0 and b.frame("2.0.1")[1]["evseId"] == 0
    assert a.profile("1.6")["chargingProfileId"] == b.profile("2.0.1")["id"] == FAILSAFE_PROFILE_ID
    assert a.profile("1.6")["chargingProfilePurpose"] == b.profile("2.0.1")["chargingProfilePurpose"] == "TxDefaultProfile"
    assert a.profile("1.6")["chargingProfileKind"] == "Relative"


async def test_the_fail_safe_is_at_least_6_a_and_at_most_the_station_max(world: World) -> None:
    await world.site("SITE1", grid_limit_a=20)
    await world.station("SMALL", max_current_a=5)
    for i in range(4):
        await world.station(f"CS-{i}")
    await world.service.start()

    await world.feed(booted("CS-0"), booted("SMALL"))

    # 20 A / 5 stations = 4 A -> raised to 6 A; SMALL's max is 5 A.
    assert {s.station_id: s.limit for s in world.sent()} == {"CS-0": 6.0, "SMALL": 5.0}


async def test_a_boot_that_was_not_accepted_gets_no_fail_safe(world: World) -> None:
    await world.site()
    await world.station("CS-A")
    await world.service.start()

    await world.feed(booted("CS-A", status="Pending"))

    assert world.sent() == []


async def test_events_of_stations_without_a_site_are_dropped(world: World) -> None:
    await world.site()
    await world.station("LONELY", site_id=None)
    await world.service.start()

    await world.feed(booted("LONELY"), started("LONELY", "7"))

    assert world.sent() == []
    assert world.bus.end_offsets(BY_SITE) == [0, 0, 0, 0]


async def test_a_201_transaction_gets_a_limit_for_its_evse_and_string_transaction_id(world: World) -> None:
    await world.site()
    await world.station("CS-201", phases=1)
    await world.service.start()

    await world.feed(started("CS-201", "tx-2a4f", connector=2, version="2.0.1"))

    [sent] = world.sent()
    assert sent.params["evse_id"] == 2 and sent.params["transaction_id"] == "tx-2a4f"
    assert sent.profile("2.0.1")["transactionId"] == "tx-2a4f"
    assert sent.profile("2.0.1")["chargingProfilePurpose"] == "TxProfile"
    assert sent.limit == 32.0
    state = await world.state()
    assert state["sessions"][0]["phases"] == 1
    assert "station_versions" not in state  # the limit is version-neutral: no version to remember


async def test_a_redelivered_transaction_start_sends_nothing_new(world: World) -> None:
    await world.site()
    await world.station("CS-A")
    await world.service.start()
    event = started("CS-A", "11")

    await world.feed(event)
    version = (await world.state())["version"]
    await world.feed(event)

    assert len(world.sent()) == 1
    assert (await world.state())["version"] == version


async def test_a_station_priority_and_max_shape_its_share(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("VIP", priority=10, max_current_a=20)
    await world.station("CS-B")
    await world.station("CS-C")
    await world.service.start()

    await world.feed(started("CS-B", "1"), started("CS-C", "2"), started("VIP", "3"))

    assert latest_limits(world.sent()) == {"VIP": 20.0, "CS-B": 6.0, "CS-C": 6.0}


async def test_a_meter_reading_well_below_the_limit_gives_the_unused_current_to_the_other(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))
    world.clock.advance(60)  # past the 30 s settling time

    await world.feed(current("CS-A", "1", {"L1": 4.2, "L2": 5.0, "L3": 4.8, "N": 9.0}, at=later(60)))

    # CS-A draws 5 A on its highest phase: capped at 6 A (5 + 1 A headroom), CS-B gets 26 A.
    assert latest_limits(world.sent()) == {"CS-A": 6.0, "CS-B": 26.0}
    state = await world.state()
    assert [s["measured_a"] for s in state["sessions"]] == ["5.0", None]


async def test_a_station_that_is_not_connected_gets_its_profile_at_the_next_allocation(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("OFFLINE", gateway=None)
    await world.service.start()
    await world.feed(started("OFFLINE", "1"), started("CS-A", "2"))
    assert [s.station_id for s in world.sent()] == ["CS-A"]
    await world.rt.store.claim_station("OFFLINE", "gateway-0")

    await world.feed(ended_16("CS-A", "2"))

    assert latest_limits(world.sent())["OFFLINE"] == 32.0


async def test_the_commands_go_to_the_partition_of_the_owning_gateway(world: World) -> None:
    await world.site()
    await world.station("CS-A", gateway="gateway-1")
    await world.service.start()

    await world.feed(started("CS-A", "1"))

    [sent] = world.sent()
    assert sent.partition == 1
    assert sent.command.target_gateway_id == "gateway-1"
    assert sent.command.target_epoch >= 1
    assert sent.command.expires_at - sent.command.issued_at == (later(60) - later(0))


async def test_profiles_decided_but_not_sent_are_sent_when_the_record_is_redelivered(world: World) -> None:
    await world.site()
    await world.station("CS-A")
    env = started("CS-A", "5")
    record = Record(BY_SITE, 0, 0, b"SITE1", codec.encode_event(env), (("site_id", b"SITE1"),))

    async def commands_down(topic: str, *args: Any, **kwargs: Any) -> None:
        if topic == topics.COMMANDS:
            raise ConnectionError("broker away")
        await world.bus.publish(topic, *args, **kwargs)

    with pytest.raises(ConnectionError):  # a consumer whose producer fails after the state write
        await world.site_stage(publish=commands_down).handle_record(record)
    assert len((await world.state())["outbox"]) == 1

    assert await world.sites.handle_record(record) == "unchanged"  # the redelivery

    await world.settled()
    [sent] = world.sent()
    assert sent.limit == 32.0
    assert (await world.state())["outbox"] == []


async def test_an_outbox_left_by_the_previous_version_is_sent_as_it_was_built(world: World) -> None:
    """Before SetChargingLimit, the outbox held OCPP profiles already built for the
    station's version, without a command type: after an upgrade they go out unchanged,
    as the SetChargingProfile they were."""
    await world.site()
    await world.station("CS-A")
    await world.service.start()
    await world.feed(started("CS-A", "5"))
    mark = len(world.sent())
    state = await world.state()
    legacy = {
        "command_id": "legacy-1", "station_id": "CS-A", "kind": "tx", "evse_id": 1, "transaction_id": "5",
        "limit_a": "32",
        "params": {"connector_id": 1, "charging_profile": {
            "chargingProfileId": 7101, "transactionId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "startSchedule": "2026-11-28T10:00:00.000Z", "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}],
            },
        }},
    }
    state["version"] += 1
    state["outbox"] = [legacy]  # as the previous version left it when it crashed
    await world.rt.store.put_doc(SITE_STATE, "SITE1", state, version=state["version"])

    await world.feed(current("CS-A", "5", {"L1": 31.0}, at=later(60)))  # the site's next record

    [resent] = world.sent_since(mark)
    assert (resent.command.command_id, resent.command.command_type) == ("legacy-1", "SetChargingProfile")
    assert resent.params == legacy["params"]
    assert resent.frame("1.6") == ("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": legacy["params"]["charging_profile"]})
    assert (await world.state())["outbox"] == []


async def test_a_station_that_leaves_the_site_no_longer_holds_current_there(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))
    await world.station("CS-B", site_id=None)

    await world.site_changed({"id": "SITE1", "grid_limit_a": 32, "phases": 3})

    assert latest_limits(world.sent())["CS-A"] == 32.0
    assert [s["station_id"] for s in (await world.state())["sessions"]] == ["CS-A"]


async def test_a_deleted_site_drops_its_state(world: World) -> None:
    await world.site()
    await world.station("CS-A")
    await world.service.start()
    await world.feed(started("CS-A", "1"))
    await world.rt.store.delete_doc(SITE, "SITE1")

    await world.site_changed({"id": "SITE1"}, deleted=True)

    assert await world.rt.store.get_doc(SITE_STATE, "SITE1") is None


async def test_a_new_grid_limit_from_the_site_is_applied_to_the_running_sessions(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"), started("CS-B", "2"))

    await world.site_changed({"id": "SITE1", "grid_limit_a": 20, "phases": 3})

    assert latest_limits(world.sent()) == {"CS-A": 10.0, "CS-B": 10.0}
    assert (await world.state())["limit_a"] == str(Decimal(20))


async def test_a_lost_site_notification_is_made_up_for_by_re_reading_the_site(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "1"))
    await world.site("SITE1", grid_limit_a=32, external_limit_a=12)  # stored, never notified
    world.sites.recheck_s = 0.0

    await world.feed(started("CS-B", "2"))

    assert latest_limits(world.sent()) == {"CS-A": 6.0, "CS-B": 6.0}
