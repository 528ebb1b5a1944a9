"""Billing on compact snapshots (ADR 015): the accumulator path, the samples path, batches."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.billing.handlers import PRICED_TOTAL
from services.common.store.port import Store

from .builders import (
    DEFAULT_SAMPLES,
    a_completed_session,
    a_record,
    a_tariff,
    an_active_session,
    changed,
    domain_tariff,
    energy,
)
from .conftest import World

D = Decimal
# 10:15-10:25 UTC costs 0.50/kWh: the band split shows which readings were used
BANDED = {"bands": [{"start": "10:15", "end": "10:25", "price_per_kwh": "0.50"}], "price_per_minute": "0"}


def banded_tariff(**overrides: Any) -> dict[str, Any]:
    """0.30/kWh (0.50 from 10:15 to 10:25), no time price, 1.00 fee."""
    return {**a_tariff(id="T-STATION", **overrides), **BANDED}


def priced(path: str) -> float:
    return float(PRICED_TOTAL.labels(path)._value.get())


def reads(store: Store, table_part: str) -> int:
    return sum(n for (op, table), n in store.ops.items() if op == "read" and table_part in table)  # type: ignore[attr-defined]


async def test_a_snapshot_priced_with_the_tariff_that_applies_is_finished_without_reading_samples(world: World) -> None:
    tariff_doc = banded_tariff()
    await world.tariff(tariff_doc)
    await world.station("CS1", tariff_id="T-STATION")
    snap = a_completed_session(priced_with=domain_tariff(tariff_doc))
    before, sample_reads = priced("accumulator"), reads(world.rt.store, "sample")

    assert await world.billing.handle_record(a_record(snap)) == "cdr"

    [doc] = await world.cdr_docs()
    # register 4000 at 10:15, 6000 at 10:25: 2 kWh x 0.50 + 5.5 kWh x 0.30 + fee 1.00 = 3.65
    assert doc["total_cost"] == {"amount": "3.65", "currency": "EUR"}
    assert [line["kwh"] for line in doc["breakdown"]["lines"]] == ["3.000", "2.000", "2.500"]
    assert priced("accumulator") == before + 1
    assert reads(world.rt.store, "sample") == sample_reads


async def test_a_tariff_edited_since_the_start_is_applied_by_folding_the_stored_samples(world: World) -> None:
    opened_with = banded_tariff()
    now_doc = banded_tariff(price_per_kwh=D("0.40"))
    await world.tariff(now_doc)
    await world.station("CS1", tariff_id="T-STATION")
    await world.samples("CS1-1", DEFAULT_SAMPLES)
    snap = a_completed_session(priced_with=domain_tariff(opened_with))
    before = priced("samples")

    assert await world.billing.handle_record(a_record(snap)) == "cdr"

    [doc] = await world.cdr_docs()
    # the same split from the stored readings, at the new base price: 1.00 + 5.5 x 0.40 + 1.00 = 4.20
    assert doc["total_cost"]["amount"] == "4.20"
    assert [line["kwh"] for line in doc["breakdown"]["lines"]] == ["3.000", "2.000", "2.500"]
    assert priced("samples") == before + 1


async def test_both_paths_give_the_same_cdr_so_switching_between_them_issues_no_new_version(world: World) -> None:
    tariff_doc = banded_tariff()
    await world.tariff(tariff_doc)
    await world.station("CS1", tariff_id="T-STATION")
    await world.samples("CS1-1", DEFAULT_SAMPLES)
    without = a_completed_session()  # no accumulator: the samples path

    assert await world.billing.handle_record(a_record(without)) == "cdr"
    with_acc = changed(without, version=6, samples=DEFAULT_SAMPLES, priced_with=domain_tariff(tariff_doc))
    assert await world.billing.handle_record(a_record(with_acc)) == "unchanged"

    [doc] = await world.cdr_docs()
    assert doc["total_cost"]["amount"] == "3.65"


async def test_a_batch_bills_only_each_sessions_latest_snapshot_and_drops_active_ones_without_the_store(
    world: World,
) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")
    first = a_completed_session(version=5)
    latest = changed(first, version=7, stopped_at=first.stopped_at.replace(minute=50))  # type: ignore[union-attr]
    other = a_completed_session(id="CS1-2", version=3)
    ops_before = sum(world.rt.store.ops.values())  # type: ignore[attr-defined]

    actives = [a_record(an_active_session(id=f"CS1-a{i}", version=i + 1)) for i in range(20)]
    assert await world.billing.handle_batch(actives) == ["active"] * 20
    # billing reads nothing for them; cost updates read the 1.6 station once, for its costmsg
    # flag (SetUserPrice, cached per station): not set, so no tariff and no cost_update read
    ops = world.rt.store.ops  # type: ignore[attr-defined]
    assert sum(ops.values()) == ops_before + 1 and ops[("read", "stations")] == 1

    outcomes = await world.billing.handle_batch([a_record(latest), a_record(first), a_record(other)])

    assert sorted(outcomes) == ["cdr", "cdr", "superseded"]
    [v1] = await world.cdr_docs()
    assert v1["session_version"] == 7 and v1["stopped_at"] == "2026-11-28T10:50:00.000Z"
    assert [d["id"] for d in await world.cdr_docs("CS1-2")] == ["CS1-2-v1"]
    # the batch redelivered (the bus retries a failed batch whole): nothing new
    again = await world.billing.handle_batch([a_record(latest), a_record(first), a_record(other)])
    assert sorted(again) == ["stale", "stale", "superseded"]
    assert len(await world.cdr_records()) == 2


async def test_a_batch_with_an_undecodable_record_bills_the_rest(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")

    outcomes = await world.billing.handle_batch([a_record(value=b"\xff\x00garbage"), a_record(a_completed_session())])

    assert outcomes == ["undecodable", "cdr"]


async def test_a_late_reading_after_the_charging_end_goes_to_the_last_line(world: World) -> None:
    tariff_doc = banded_tariff()
    await world.tariff(tariff_doc)
    await world.station("CS1", tariff_id="T-STATION")
    samples = DEFAULT_SAMPLES + (energy(35, 8000),)
    snap = a_completed_session(
        charging_ended_at=energy(22, 0).timestamp, samples=samples, priced_with=domain_tariff(tariff_doc)
    )

    assert await world.billing.handle_record(a_record(snap)) == "cdr"

    [doc] = await world.cdr_docs()
    lines = doc["breakdown"]["lines"]
    # 10:00-10:15 base (3 kWh), 10:15-10:22 band: everything from 4000 to 8500 (4.5 kWh)
    assert [(line["label"], line["kwh"]) for line in lines] == [("base", "3.000"), ("10:15-10:25", "4.500")]
