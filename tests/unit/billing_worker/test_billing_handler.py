"""The billing handler: completed session snapshots in, versioned CDRs stored and published."""

from __future__ import annotations

from decimal import Decimal

from services.billing.codec import encode_session
from services.billing.handlers import UNPRICED_TOTAL
from services.billing.domain import Tariff
from services.billing.codec import tariff_to_dict
from services.common import topics
from services.common.errors import BusUnavailable

from .builders import (
    DEFAULT_SAMPLES,
    NOW,
    a_completed_session,
    a_record,
    a_tariff,
    an_active_session,
    at,
    changed,
    domain_tariff,
    energy,
)
from .conftest import World


async def a_station_with_its_own_tariff(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.station("CS1", tariff_id="T-STATION")


async def test_a_completed_session_with_a_station_tariff_gets_one_cdr_with_the_hand_computed_amount(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    outcome = await world.billing.handle_record(a_record(a_completed_session()))

    assert outcome == "cdr"
    # 7.5 kWh x 0.30 = 2.25; 40 min x 0.05 = 2.00; fee 1.00 -> 5.25; x 1.19 = 6.2475 -> 6.25
    [doc] = await world.cdr_docs()
    assert doc["id"] == "CS1-1-v1"
    assert doc["session_id"] == "CS1-1" and doc["station_id"] == "CS1"
    assert doc["version"] == 1 and doc["reason"] == "initial"
    assert doc["energy_wh"] == 7500
    assert doc["total_cost"] == {"amount": "5.25", "currency": "EUR"}
    assert doc["total_cost_incl_tax"] == {"amount": "6.25", "currency": "EUR"}
    assert doc["tariff_id"] == "T-STATION"
    assert doc["started_at"] == "2026-11-28T10:00:00.000Z" and doc["stopped_at"] == "2026-11-28T10:40:00.000Z"
    assert doc["created_at"] == "2026-11-28T12:00:00.000Z"
    assert doc["session_version"] == 5 and doc["currency"] == "EUR"
    assert doc["inputs_fingerprint"].startswith("cdrfp2-")
    assert doc["breakdown"]["energy_cost"] == "2.25" and doc["breakdown"]["time_cost"] == "2.00"
    assert doc["published"] is True

    [record] = await world.cdr_records()
    assert record.topic == topics.CDRS and record.key == b"CS1"
    assert record.header("ce_type") == "csms.billing.v1.Cdr"
    assert record.header("ce_id") == "CS1-1-v1"
    assert record.header("ce_subject") == "CS1"
    assert record.header("ce_source") == "/csms/billing"
    assert record.header("ce_time") == "2026-11-28T12:00:00.000Z"
    assert record.header("content-type") == "application/protobuf"
    [cdr] = await world.cdrs_on_the_topic()
    assert cdr["total_cost"] == {"amount": "5.25", "currency": "EUR"}
    assert cdr["total_cost_incl_tax"] == {"amount": "6.25", "currency": "EUR"}
    assert cdr["inputs_fingerprint"] == doc["inputs_fingerprint"]
    assert cdr["session_version"] == 5 and cdr["currency"] == "EUR" and cdr["version"] == 1
    assert cdr["breakdown"] == doc["breakdown"]


async def test_the_same_snapshot_redelivered_issues_no_second_cdr(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session()

    assert await world.billing.handle_record(a_record(snap)) == "cdr"
    assert await world.billing.handle_record(a_record(snap)) == "stale"

    assert [d["id"] for d in await world.cdr_docs()] == ["CS1-1-v1"]
    assert len(await world.cdr_records()) == 1


async def test_a_newer_snapshot_with_the_same_pricing_inputs_issues_no_second_cdr(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session()
    await world.billing.handle_record(a_record(snap))

    outcome = await world.billing.handle_record(a_record(changed(snap, version=6, stop_reason="Local")))

    assert outcome == "unchanged"
    assert len(await world.cdr_docs()) == 1 and len(await world.cdr_records()) == 1


async def test_a_later_snapshot_with_a_changed_stop_time_issues_version_2_as_late_stop(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session()
    await world.billing.handle_record(a_record(snap))

    outcome = await world.billing.handle_record(a_record(changed(snap, version=7, stopped_at=at(50))))

    assert outcome == "cdr"
    v1, v2 = await world.cdr_docs()
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v2["id"] == "CS1-1-v2" and v2["reason"] == "late_stop" and v2["session_version"] == 7
    # 50 min x 0.05 = 2.50 -> 2.25 + 2.50 + 1.00 = 5.75; x 1.19 = 6.8425 -> 6.84
    assert v2["total_cost"] == {"amount": "5.75", "currency": "EUR"}
    assert v2["total_cost_incl_tax"] == {"amount": "6.84", "currency": "EUR"}
    assert v1["total_cost"]["amount"] == "5.25"  # a correction never overwrites
    assert [(c["id"], c["reason"]) for c in await world.cdrs_on_the_topic()] == [
        ("CS1-1-v1", "initial"),
        ("CS1-1-v2", "late_stop"),
    ]


async def test_late_meter_values_issue_a_new_version_as_late_meter_value(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session()
    await world.samples(snap.id, DEFAULT_SAMPLES)
    await world.billing.handle_record(a_record(snap))

    late = DEFAULT_SAMPLES + (energy(35, 8000),)
    await world.samples(snap.id, late)
    assert await world.billing.handle_record(a_record(changed(snap, version=8, samples=late))) == "cdr"

    assert [d["reason"] for d in await world.cdr_docs()] == ["initial", "late_meter_value"]


async def test_late_meter_values_in_the_accumulator_issue_a_new_version_too(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    tariff = domain_tariff(a_tariff(id="T-STATION"))
    snap = a_completed_session(priced_with=tariff)
    await world.billing.handle_record(a_record(snap))

    late = DEFAULT_SAMPLES + (energy(35, 8000),)
    assert await world.billing.handle_record(a_record(changed(snap, version=8, samples=late, priced_with=tariff))) == "cdr"

    assert [d["reason"] for d in await world.cdr_docs()] == ["initial", "late_meter_value"]


async def test_a_stale_snapshot_older_than_the_priced_one_is_dropped(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session(version=9)
    await world.billing.handle_record(a_record(snap))

    # an out-of-order redelivery of an older state (another stop time) must not look like a change
    outcome = await world.billing.handle_record(a_record(changed(snap, version=8, stopped_at=at(35))))

    assert outcome == "stale"
    assert [d["version"] for d in await world.cdr_docs()] == [1]
    assert len(await world.cdr_records()) == 1


async def test_an_active_session_gets_no_cdr(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    assert await world.billing.handle_record(a_record(an_active_session())) == "active"

    assert await world.cdr_docs() == [] and await world.cdr_records() == []


async def test_the_station_tariff_wins_over_the_site_and_the_default_tariff(world: World) -> None:
    await world.tariff(a_tariff(id="T-STATION"))
    await world.tariff(a_tariff(id="T-SITE", price_per_kwh=Decimal("0.40")))
    await world.tariff(a_tariff(id="T-DEFAULT", price_per_kwh=Decimal("0.50"), default=True))
    await world.site("SITE1", tariff_id="T-SITE")
    await world.station("CS1", tariff_id="T-STATION", site_id="SITE1")

    await world.billing.handle_record(a_record())

    [doc] = await world.cdr_docs()
    assert doc["tariff_id"] == "T-STATION" and doc["total_cost"]["amount"] == "5.25"


async def test_a_station_without_a_tariff_is_priced_with_its_sites_tariff(world: World) -> None:
    await world.tariff(a_tariff(id="T-SITE", price_per_kwh=Decimal("0.40")))
    await world.tariff(a_tariff(id="T-DEFAULT", price_per_kwh=Decimal("0.50"), default=True))
    await world.site("SITE1", tariff_id="T-SITE")
    await world.station("CS1", site_id="SITE1")

    await world.billing.handle_record(a_record())

    [doc] = await world.cdr_docs()
    # 7.5 x 0.40 = 3.00 + 2.00 + 1.00 = 6.00
    assert doc["tariff_id"] == "T-SITE" and doc["total_cost"]["amount"] == "6.00"


async def test_without_a_station_or_site_tariff_the_default_tariff_applies(world: World) -> None:
    await world.tariff(a_tariff(id="T-OTHER", price_per_kwh=Decimal("9.99")))
    await world.tariff(a_tariff(id="T-DEFAULT", price_per_kwh=Decimal("0.50"), default=True))
    await world.site("SITE1")  # a site without a tariff
    await world.station("CS1", site_id="SITE1")

    await world.billing.handle_record(a_record())

    [doc] = await world.cdr_docs()
    # 7.5 x 0.50 = 3.75 + 2.00 + 1.00 = 6.75
    assert doc["tariff_id"] == "T-DEFAULT" and doc["total_cost"]["amount"] == "6.75"


async def test_a_station_tariff_that_was_deleted_falls_through_to_the_default(world: World) -> None:
    await world.tariff(a_tariff(id="T-DEFAULT", price_per_kwh=Decimal("0.50"), default=True))
    await world.station("CS1", tariff_id="T-GONE")

    await world.billing.handle_record(a_record())

    [doc] = await world.cdr_docs()
    assert doc["tariff_id"] == "T-DEFAULT"


async def test_a_session_with_no_tariff_at_all_gets_no_cdr_and_is_counted_once(world: World) -> None:
    await world.tariff(a_tariff(id="T-NOT-ASSIGNED"))
    await world.station("CS1")
    before = UNPRICED_TOTAL._value.get()
    snap = a_completed_session(id="CS1-unpriced")

    assert await world.billing.handle_record(a_record(snap)) == "unpriced"
    assert await world.billing.handle_record(a_record(snap)) == "unpriced"

    assert await world.cdr_docs("CS1-unpriced") == [] and await world.cdr_records() == []
    assert UNPRICED_TOTAL._value.get() == before + 1


async def test_a_record_that_is_not_a_session_snapshot_is_skipped_without_raising(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    assert await world.billing.handle_record(a_record(value=b"\xff\x00garbage")) == "undecodable"
    assert await world.billing.handle_record(a_record(ce_type="csms.sessions.v1.Other")) == "ignored"

    assert await world.cdr_records() == []


async def test_a_cdr_stored_but_not_published_is_published_by_the_next_delivery(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session()
    world.bus.set_available(False)
    try:
        await world.billing.handle_record(a_record(snap))
        raise AssertionError("the handler must raise so the bus redelivers")
    except BusUnavailable:
        pass
    [doc] = await world.cdr_docs()
    assert doc["published"] is False and await world.cdr_records() == []

    world.bus.set_available(True)
    assert await world.billing.handle_record(a_record(snap)) == "stale"  # redelivery of the same snapshot

    [doc] = await world.cdr_docs()
    assert doc["published"] is True and doc["version"] == 1
    [record] = await world.cdr_records()
    assert record.header("ce_id") == "CS1-1-v1"


async def test_a_tariff_with_bookkeeping_fields_is_still_read(world: World) -> None:
    doc = {**tariff_to_dict(Tariff(id="T-X", currency="EUR", price_per_kwh=Decimal("1"))), "updated_at": "2026-01-01T00:00:00.000Z"}
    await world.tariff(doc)
    await world.station("CS1", tariff_id="T-X")

    await world.billing.handle_record(a_record())

    [cdr] = await world.cdr_docs()
    assert cdr["total_cost"]["amount"] == "7.50"


async def test_the_cdr_is_created_at_the_runtime_clock(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    await world.billing.handle_record(a_record())

    [doc] = await world.cdr_docs()
    assert doc["exact"]["created_at"] == NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_encoding_a_snapshot_keeps_its_microseconds() -> None:
    from services.billing.codec import decode_session

    snap = a_completed_session(stopped_at=at(40).replace(microsecond=123456))
    assert decode_session(encode_session(snap)) == snap
