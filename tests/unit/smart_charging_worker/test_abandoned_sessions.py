"""Ghost sessions (issue 7): a session the CSMS closed releases its current at once, and
a transaction whose token was refused reserves nothing.

Repro: a 1.6 StartTransaction answered Invalid, never stopped, whose station rejected
our profile, kept 32 A reserved, so a real session on the same 40 A site got 8 A.
"""

from __future__ import annotations

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.smart_charging.repartition import BY_SITE, is_relevant

from .builders import command_result, envelope, latest_limits, started
from .conftest import World


def start(station_id: str, tx: str, *, status: str = "", connector: int = 1) -> ev.Envelope:
    body = ev.TransactionStarted(
        transaction_id=tx, evse_id=connector, connector_id=connector, id_token="TOKEN1", id_token_status=status,
    )
    return envelope(station_id, body, action="StartTransaction")


def abandoned(station_id: str, tx: str, *, connector: int = 1, reason: str = ev.ABANDONED_BOOT) -> ev.Envelope:
    body = ev.SessionAbandoned(
        transaction_id=tx, session_id=f"{station_id}-{tx}", evse_id=connector, connector_id=connector, reason=reason,
    )
    return ev.Envelope(
        event_id=f"abandoned-{station_id}-{tx}", station_id=station_id, received_at=envelope(station_id, body).received_at,
        body=body, gateway_id="sessions", ocpp_version="1.6",
    )


def as_record(env: ev.Envelope, topic: str = topics.EVENTS) -> Record:
    return Record(topic, 0, 0, env.station_id.encode(), codec.encode_event(env), tuple(codec.event_headers(env)))


async def a_40a_site_with_a_ghost_holding_32a(world: World) -> None:
    await world.site("SITE1", grid_limit_a=40)
    await world.station("GHOST")
    await world.station("REAL")
    await world.service.start()
    await world.feed(start("GHOST", "1"))
    [profile] = world.sent()
    await world.feed(command_result("GHOST", profile.command.command_id, "Rejected"))  # reserved at 32 A from now on
    await world.feed(start("REAL", "2"))
    assert latest_limits(world.sent())["REAL"] == 8.0  # the bug as reported


async def test_an_abandoned_ghost_session_releases_its_reservation_and_the_real_session_gets_it(world: World) -> None:
    await a_40a_site_with_a_ghost_holding_32a(world)
    mark = len(world.sent())

    await world.feed(abandoned("GHOST", "1"))

    assert latest_limits(world.sent_since(mark)) == {"REAL": 32.0}  # its max: 40 A are free
    state = await world.state()
    assert [s["station_id"] for s in state["sessions"]] == ["REAL"]


async def test_a_redelivered_abandonment_changes_nothing(world: World) -> None:
    await a_40a_site_with_a_ghost_holding_32a(world)
    await world.feed(abandoned("GHOST", "1"))
    mark, version = len(world.sent()), (await world.state())["version"]

    await world.feed(abandoned("GHOST", "1"))

    assert world.sent_since(mark) == []
    assert (await world.state())["version"] == version


async def test_a_transaction_whose_token_was_refused_reserves_nothing(world: World) -> None:
    await world.site("SITE1", grid_limit_a=40)
    await world.station("GHOST")
    await world.station("REAL")
    await world.service.start()

    await world.feed(start("GHOST", "1", status="Invalid"), start("REAL", "2", status="Accepted"))

    assert latest_limits(world.sent()) == {"REAL": 32.0}
    state = await world.state()
    assert [s["station_id"] for s in state["sessions"]] == ["REAL"]


async def test_the_abandonment_of_an_older_transaction_does_not_stop_the_newer_one_at_the_same_evse(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.service.start()
    await world.feed(start("CS-A", "1"), start("CS-A", "2"))  # the newer start replaced the lost one
    mark = len(world.sent())

    await world.feed(abandoned("CS-A", "1", reason=ev.ABANDONED_NEW_TRANSACTION))

    assert world.sent_since(mark) == []
    state = await world.state()
    assert [(s["station_id"], str(s["transaction_id"])) for s in state["sessions"]] == [("CS-A", "2")]


async def test_a_2_0_1_abandonment_found_by_transaction_id_alone_releases_the_session(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    await world.station("CS-B")
    await world.service.start()
    await world.feed(started("CS-A", "tx-a", connector=2, version="2.0.1"), start("CS-B", "7"))
    mark = len(world.sent())

    await world.feed(abandoned("CS-A", "tx-a", connector=0, reason=ev.ABANDONED_IDLE_TIMEOUT))

    assert latest_limits(world.sent_since(mark)) == {"CS-B": 32.0}


async def test_the_regrouping_stage_forwards_abandonments_and_drops_refused_starts(world: World) -> None:
    await world.site("SITE1")
    await world.station("CS-A")

    assert is_relevant(abandoned("CS-A", "1"))
    assert not is_relevant(start("CS-A", "1", status="Invalid"))
    assert not is_relevant(start("CS-A", "1", status="Blocked"))
    assert is_relevant(start("CS-A", "1", status="Accepted")) and is_relevant(start("CS-A", "1"))
    assert await world.regroup.handle_event_record(as_record(abandoned("CS-A", "1"))) == "forwarded"
    assert await world.regroup.handle_event_record(as_record(start("CS-A", "1", status="Invalid"))) == "ignored"


async def test_a_refused_start_that_reached_the_site_stage_is_not_managed_either(world: World) -> None:
    await world.site("SITE1", grid_limit_a=32)
    await world.station("CS-A")
    record = as_record(start("CS-A", "1", status="Invalid"), topic=BY_SITE)

    outcome = await world.sites.handle_record(Record(BY_SITE, 0, 0, b"SITE1", record.value, record.headers + (("site_id", b"SITE1"),)))

    assert outcome in ("updated", "unchanged")
    assert world.sent() == []
    assert (await world.state())["sessions"] == []
