"""BillingService on the bus: consumes csms.sessions.v1 as a group, publishes csms.cdrs.v1."""

from __future__ import annotations

import asyncio

from services.billing.codec import SESSION_CE_TYPE, encode_session
from services.billing.worker import BillingService
from services.common import topics

from .builders import a_completed_session, an_active_session, a_tariff
from .conftest import World


async def publish_snapshot(world: World, snap) -> None:  # type: ignore[no-untyped-def]
    await world.bus.publish(
        topics.SESSIONS, snap.station_id, encode_session(snap),
        [("ce_type", SESSION_CE_TYPE.encode()), ("ce_id", f"{snap.id}:{snap.version}".encode())],
    )


async def drained(world: World) -> None:
    for _ in range(400):
        if world.bus.lag("csms-billing", topics.SESSIONS) == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("billing did not consume csms.sessions.v1")


async def test_the_service_turns_completed_session_snapshots_into_published_cdrs(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")
    service = BillingService(world.rt)
    assert service.name == "billing" and not service.ready()

    await service.start()
    try:
        assert service.ready()
        await publish_snapshot(world, an_active_session())
        await publish_snapshot(world, a_completed_session())
        await publish_snapshot(world, a_completed_session())  # redelivered by the producer
        await drained(world)
    finally:
        await service.stop()

    assert not service.ready()
    [doc] = await world.cdr_docs()
    assert doc["total_cost"] == {"amount": "5.25", "currency": "EUR"}
    assert [c["id"] for c in await world.cdrs_on_the_topic()] == ["CS1-1-v1"]


async def test_a_restarted_service_continues_where_the_group_left_off(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")
    first = BillingService(world.rt)
    await first.start()
    await publish_snapshot(world, a_completed_session())
    await drained(world)
    await first.stop()

    second = BillingService(world.rt)
    await second.start()
    try:
        await publish_snapshot(world, a_completed_session(id="CS1-2"))
        await drained(world)
    finally:
        await second.stop()

    assert sorted(c["id"] for c in await world.cdrs_on_the_topic()) == ["CS1-1-v1", "CS1-2-v1"]
