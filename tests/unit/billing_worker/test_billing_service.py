"""The billing processor on the bus (`build_billing`): consumes csms.sessions.v1 as a group,
publishes csms.cdrs.v1."""

from __future__ import annotations

from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, encode_session
from services.billing.wiring import CONSUMER_GROUP, build_billing
from services.common import topics
from tests.support import eventually

from .builders import a_completed_session, an_active_session, a_tariff
from .conftest import World


async def publish_snapshot(world: World, snap: SessionSnapshot) -> None:
    await world.bus.publish(
        topics.SESSIONS, snap.station_id, encode_session(snap),
        [("ce_type", SESSION_CE_TYPE.encode()), ("ce_id", f"{snap.id}:{snap.version}".encode())],
    )


async def drained(world: World) -> None:
    await eventually(
        lambda: world.bus.lag(CONSUMER_GROUP, topics.SESSIONS) == 0, what="billing consumed csms.sessions.v1"
    )


async def test_the_processor_turns_completed_session_snapshots_into_published_cdrs(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")
    processor = build_billing(world.rt)
    assert processor.name == "billing" and processor.group == topics.group("csms-billing") and not processor.ready()

    await processor.start()
    try:
        assert processor.ready()
        await publish_snapshot(world, an_active_session())
        await publish_snapshot(world, a_completed_session())
        await publish_snapshot(world, a_completed_session())  # redelivered by the producer
        await drained(world)
    finally:
        await processor.stop()

    assert not processor.ready()
    [doc] = await world.cdr_docs()
    assert doc["total_cost"] == {"amount": "5.25", "currency": "EUR"}
    assert [c["id"] for c in await world.cdrs_on_the_topic()] == ["CS1-1-v1"]


async def test_the_processor_is_not_ready_while_the_bus_is_down(world: World) -> None:
    processor = build_billing(world.rt)
    await processor.start()
    try:
        world.bus.set_available(False)
        assert not processor.ready()
        world.bus.set_available(True)
        assert processor.ready()
    finally:
        await processor.stop()


async def test_a_restarted_processor_continues_where_the_group_left_off(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")
    first = build_billing(world.rt)
    await first.start()
    await publish_snapshot(world, a_completed_session())
    await drained(world)
    await first.stop()

    second = build_billing(world.rt)
    await second.start()
    try:
        await publish_snapshot(world, a_completed_session(id="CS1-2"))
        await drained(world)
    finally:
        await second.stop()

    assert sorted(c["id"] for c in await world.cdrs_on_the_topic()) == ["CS1-1-v1", "CS1-2-v1"]
