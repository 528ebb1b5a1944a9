"""The gateway's 2.0.1 totalCost (services/gateway/running_cost.py): a price accumulator per
transaction and connection, the same arithmetic as billing and the API (ADR 015). The
pricer is wired as the gateway wires it (`services.gateway.wiring.running_cost_pricer`):
billing's tariff resolution, the sessions processor's document as the seed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from services.billing.codec import accumulator_to_dict
from services.billing.domain import finish_price, fold_price
from services.billing.codec import tariff_from_dict
from services.common.events import ENERGY_REGISTER, MeterSample
from services.common import kinds
from services.gateway.running_cost import MAX_TRANSACTIONS, RunningCostPricer, RunningCosts
from services.gateway.wiring import running_cost_pricer
from services.sessions.domain.session import session_id

from .builders import a_tariff, at
from .conftest import World

D = Decimal
BANDED = {"bands": [{"start": "10:15", "end": "10:25", "price_per_kwh": "0.50"}], "price_per_minute": "0"}


async def a_station(world: World) -> tuple[str, dict]:
    station = f"GW-{uuid.uuid4().hex[:8]}"
    doc = {**a_tariff(id=f"T-{station}"), **BANDED}
    await world.tariff(doc)
    await world.station(station, tariff_id=doc["id"])
    return station, doc


def register(wh: int, when: datetime) -> tuple[MeterSample, ...]:
    return (MeterSample(timestamp=when, value=float(wh), unit="Wh", measurand=ENERGY_REGISTER),)


async def event(
    pricer: RunningCostPricer, costs: RunningCosts, station: str, kind: str, minute: int, wh: int, tx: str = "tx1"
) -> Decimal | None:
    return await pricer.total_cost(station, tx, kind, register(wh, at(minute)), at(minute), costs)


async def test_each_event_is_priced_by_the_accumulator_of_the_readings_seen(world: World) -> None:
    station, doc = await a_station(world)
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()

    assert await event(pricer, costs, station, "Started", 0, 1000) is None
    assert await event(pricer, costs, station, "Updated", 10, 3000) == D("1.90")  # 2 kWh x 0.30 + 1.00, x 1.19
    # register 4000 at 10:15 (between 3000 at 10:10 and 5000 at 10:20): 3 x 0.30 + 1 x 0.50 + 1.00
    assert await event(pricer, costs, station, "Updated", 20, 5000) == D("2.86")
    ended = await event(pricer, costs, station, "Ended", 30, 7000)

    tariff = tariff_from_dict(doc)
    acc = fold_price(tariff, at(0), 1000, [(at(10), 3000), (at(20), 5000), (at(30), 7000)])
    assert ended == finish_price(acc, tariff, now=at(30), stopped_at=at(30), end_wh=7000).total_incl_tax.amount
    # 3 kWh x 0.30 before 10:15, 2 kWh x 0.50 in the band (6000 at 10:25), 1 kWh x 0.30 after: 3.20 x 1.19
    assert ended == D("3.81")
    assert costs.get("tx1") is None  # forgotten at the end


async def test_after_a_reconnect_the_sessions_accumulator_seeds_the_connection_once(world: World) -> None:
    station, doc = await a_station(world)
    tariff = tariff_from_dict(doc)
    acc = fold_price(tariff, at(0), 1000, [(at(10), 3000), (at(20), 5000)])
    await world.rt.store.put_doc(
        kinds.SESSION, session_id(station, "tx1"),
        {"id": session_id(station, "tx1"), "started_at": "2026-11-28T10:00:00.000Z", "energy_anchor_wh": 1000,
         "price": accumulator_to_dict(acc)},
    )
    # a new connection: it saw neither the start nor the readings
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()

    first = await event(pricer, costs, station, "Updated", 25, 6000)
    reads = sum(n for (op, table), n in world.rt.store.ops.items() if op == "read")  # type: ignore[attr-defined]
    second = await event(pricer, costs, station, "Updated", 30, 7000)

    # the 10:15 mark (4000) came from the sessions processor: 3 x 0.30 + 2 x 0.50 + ...
    expected = finish_price(fold_price(tariff, at(0), 1000, [(at(10), 3000), (at(20), 5000), (at(25), 6000)]),
                            tariff, now=at(25))
    assert first == expected.total_incl_tax.amount
    assert second is not None and second > first
    # seeded once: the next event reads nothing (the tariff is cached too)
    assert sum(n for (op, table), n in world.rt.store.ops.items() if op == "read") == reads  # type: ignore[attr-defined]


async def test_a_reading_older_than_the_accumulators_keeps_the_estimate(world: World) -> None:
    station, _ = await a_station(world)
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()
    await event(pricer, costs, station, "Started", 0, 1000)
    later = await event(pricer, costs, station, "Updated", 10, 3000)

    assert await event(pricer, costs, station, "Updated", 5, 2000) == later


async def test_a_connection_keeps_a_bounded_number_of_transactions(world: World) -> None:
    station, _ = await a_station(world)
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()
    for i in range(MAX_TRANSACTIONS + 5):
        await event(pricer, costs, station, "Started", 0, 1000, tx=f"tx{i}")
    assert len(costs) == MAX_TRANSACTIONS


async def test_no_tariff_no_total_cost(world: World) -> None:
    station = f"GW-{uuid.uuid4().hex[:8]}"
    await world.station(station)
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()
    await event(pricer, costs, station, "Started", 0, 1000)
    assert await event(pricer, costs, station, "Updated", 10, 3000) is None


async def test_a_session_longer_than_the_bound_gets_no_estimate(world: World) -> None:
    station, _ = await a_station(world)
    pricer, costs = running_cost_pricer(world.rt.store), RunningCosts()
    await event(pricer, costs, station, "Started", 0, 1000)
    bounded = running_cost_pricer(world.rt.store, max_span=timedelta(hours=72))
    cost = await bounded.total_cost(station, "tx1", "Updated", register(3000, at(60 * 80)), at(60 * 80), costs)
    assert cost is None
