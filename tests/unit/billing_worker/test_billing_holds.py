"""Which sessions are billed, and held CDRs: stored, never exported until plausible.

Repro of issue 7: a 10 kWh charge whose StartTransaction said 1970-01-01 was priced at
299,368.82 EUR in a 10.6 MB CDR and blocked the event loop for 2.5 s.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from services.billing.codec import decode_cdr, decode_session, encode_cdr, encode_session
from services.billing.handlers import CDRS_HELD_TOTAL, SNAPSHOTS_TOTAL
from services.common.events import ENERGY_REGISTER

from .builders import (
    DEFAULT_SAMPLES,
    Sample,
    a_completed_session,
    a_record,
    a_tariff,
    an_abandoned_session,
    at,
    changed,
    domain_tariff,
    energy,
)
from .conftest import World

UTC = timezone.utc


async def a_station_with_its_own_tariff(world: World, **tariff: object) -> None:
    await world.tariff(a_tariff(id="T-STATION", **tariff))
    await world.station("CS1", tariff_id="T-STATION")


def held_count(reason: str) -> float:
    return float(CDRS_HELD_TOTAL.labels(reason)._value.get())


def outcome_count(outcome: str) -> float:
    return float(SNAPSHOTS_TOTAL.labels(outcome)._value.get())


# --- which sessions are billed ----------------------------------------------------------


async def test_an_abandoned_session_is_billed_up_to_its_last_reading_with_its_last_energy(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    outcome = await world.billing.handle_record(a_record(an_abandoned_session()))

    assert outcome == "cdr"
    [doc] = await world.cdr_docs()
    # 10:00 -> 10:30 (last reading), 6000 Wh: 6 x 0.30 = 1.80; 30 min x 0.05 = 1.50; fee 1.00
    assert doc["started_at"] == "2026-11-28T10:00:00.000Z" and doc["stopped_at"] == "2026-11-28T10:30:00.000Z"
    assert doc["energy_wh"] == 6000
    assert doc["total_cost"] == {"amount": "4.30", "currency": "EUR"}
    assert doc["hold_reasons"] == [] and doc["published"] is True
    [cdr] = await world.cdrs_on_the_topic()
    assert cdr["id"] == "CS1-1-v1" and cdr["hold_reasons"] == [] and cdr["clock_suspect"] is False


async def test_an_abandoned_session_without_readings_is_billed_until_it_was_closed(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = an_abandoned_session(samples=(), energy_wh=500)

    assert await world.billing.handle_record(a_record(snap)) == "cdr"

    [doc] = await world.cdr_docs()
    # 10:00 -> 11:00 (abandoned_at), 500 Wh: 0.15 + 60 x 0.05 = 3.00 + 1.00
    assert doc["stopped_at"] == "2026-11-28T11:00:00.000Z" and doc["energy_wh"] == 500
    assert doc["total_cost"]["amount"] == "4.15"


@pytest.mark.parametrize("refused", ["Invalid", "Blocked", "Expired", "ConcurrentTx", "Unknown"])
async def test_a_session_whose_token_was_refused_is_never_billed_and_logged_once(
    world: World, refused: str, caplog: pytest.LogCaptureFixture
) -> None:
    await a_station_with_its_own_tariff(world)
    snap = an_abandoned_session(id=f"CS1-ghost-{refused}", authorization=refused)
    before = outcome_count("refused_token")

    with caplog.at_level(logging.WARNING, logger="csms.billing"):
        assert await world.billing.handle_record(a_record(snap)) == "refused_token"
        assert await world.billing.handle_record(a_record(changed(snap, version=9))) == "refused_token"
        completed = changed(snap, version=10, status="completed", stopped_at=at(40), meter_stop_wh=8500)
        assert await world.billing.handle_record(a_record(completed)) == "refused_token"

    assert await world.cdr_docs(snap.id) == [] and await world.cdr_records() == []
    assert outcome_count("refused_token") == before + 3
    lines = [r.getMessage() for r in caplog.records if snap.id in r.getMessage()]
    assert len(lines) == 1 and refused in lines[0] and "not billed" in lines[0]


async def test_an_accepted_or_unknown_authorization_is_billed(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    assert await world.billing.handle_record(a_record(a_completed_session(authorization="Accepted"))) == "cdr"
    assert await world.billing.handle_record(a_record(a_completed_session(id="CS1-2", authorization=""))) == "cdr"


async def test_excluded_and_unusable_samples_never_count(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    tariff = domain_tariff(a_tariff(id="T-STATION"))
    spike = Sample(timestamp=at(35), measurand=ENERGY_REGISTER, value=9_000_000.0, unit="Wh", excluded=True)
    garbage = Sample(timestamp=at(36), measurand=ENERGY_REGISTER, value=0.0, unit="Wh", raw_value="1e308")
    clean = an_abandoned_session(priced_with=tariff)
    dirty = an_abandoned_session(id="CS1-2", samples=DEFAULT_SAMPLES + (spike, garbage), priced_with=tariff)

    await world.billing.handle_record(a_record(clean))
    await world.billing.handle_record(a_record(dirty))

    [a], [b] = await world.cdr_docs("CS1-1"), await world.cdr_docs("CS1-2")
    # the abandoned session still ends at its last *counted* reading, with the same energy
    assert b["stopped_at"] == a["stopped_at"] == "2026-11-28T10:30:00.000Z"
    assert b["energy_wh"] == a["energy_wh"] == 6000
    assert b["total_cost"] == a["total_cost"]
    assert b["breakdown"]["suspect"] is False


# --- held CDRs ------------------------------------------------------------------------------


async def test_a_cdr_of_a_session_on_hold_is_stored_with_its_reasons_and_not_exported(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session(clock_suspect=True, hold=True, hold_reasons=("clock_suspect",))
    before = held_count("clock_suspect")

    assert await world.billing.handle_record(a_record(snap)) == "held"

    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == ["clock_suspect"] and doc["clock_suspect"] is True
    assert doc["published"] is False
    assert doc["total_cost"]["amount"] == "5.25"  # priced as usual: held, not discarded
    assert await world.cdr_records() == []
    assert held_count("clock_suspect") == before + 1


async def test_a_held_cdr_is_never_published_by_the_outbox_on_redeliveries(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session(hold=True, hold_reasons=("energy_exceeds_max",))
    await world.billing.handle_record(a_record(snap))

    assert await world.billing.handle_record(a_record(snap)) == "stale"
    assert await world.billing.handle_record(a_record(changed(snap, version=6, stop_reason="Local"))) == "unchanged"
    assert await world.billing.handle_record(a_record(changed(snap, version=7))) == "unchanged"

    [doc] = await world.cdr_docs()
    assert doc["published"] is False and doc["hold_reasons"] == ["energy_exceeds_max"]
    assert await world.cdr_records() == []


async def test_a_session_on_hold_without_a_reason_is_still_held(world: World) -> None:
    await a_station_with_its_own_tariff(world)

    assert await world.billing.handle_record(a_record(a_completed_session(hold=True))) == "held"

    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == ["session_hold"]


async def test_a_later_version_that_is_no_longer_held_is_published_normally(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    # abandoned with an implausible clock: held; then the real StopTransaction arrives
    ghost = an_abandoned_session(clock_suspect=True, hold=True, hold_reasons=("clock_suspect",))
    assert await world.billing.handle_record(a_record(ghost)) == "held"

    real = changed(
        ghost, version=9, status="completed", stopped_at=at(40), meter_stop_wh=8500, energy_wh=7500,
        clock_suspect=False, hold=False, hold_reasons=(), abandoned_at=None,
    )
    assert await world.billing.handle_record(a_record(real)) == "cdr"

    v1, v2 = await world.cdr_docs()
    assert v1["published"] is False and v1["hold_reasons"] == ["clock_suspect"]
    assert v2["published"] is True and v2["hold_reasons"] == [] and v2["reason"] == "late_stop"
    assert [(c["id"], c["hold_reasons"]) for c in await world.cdrs_on_the_topic()] == [("CS1-1-v2", [])]


async def test_a_lifted_session_hold_releases_the_same_content_as_a_new_version(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    snap = a_completed_session(hold=True, hold_reasons=("energy_exceeds_max",))
    await world.billing.handle_record(a_record(snap))

    outcome = await world.billing.handle_record(a_record(changed(snap, version=6, hold=False, hold_reasons=())))

    assert outcome == "cdr"
    v1, v2 = await world.cdr_docs()
    assert v2["reason"] == "hold_released" and v2["hold_reasons"] == [] and v2["published"] is True
    assert v2["total_cost"] == v1["total_cost"] and v2["inputs_fingerprint"] == v1["inputs_fingerprint"]
    assert [c["id"] for c in await world.cdrs_on_the_topic()] == ["CS1-1-v2"]
    # and the released version is final: a redelivery changes nothing
    assert await world.billing.handle_record(a_record(changed(snap, version=7, hold=False, hold_reasons=()))) == "unchanged"


async def test_a_cdr_longer_than_the_maximum_duration_is_held_and_priced_only_up_to_it(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    world.configure(session_max_duration_h=0.5)
    before = held_count("duration_exceeds_max")

    assert await world.billing.handle_record(a_record(a_completed_session())) == "held"

    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == ["duration_exceeds_max"]
    # all 7.5 kWh (2.25), but only 30 of the 40 minutes (1.50), fee 1.00
    assert doc["total_cost"]["amount"] == "4.75"
    assert doc["breakdown"]["capped"] is True and doc["breakdown"]["charging_minutes"] == "30.00"
    assert held_count("duration_exceeds_max") == before + 1
    assert await world.cdr_records() == []


async def test_a_cdr_of_more_energy_than_the_maximum_is_held(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    world.configure(session_max_energy_wh=7000)

    assert await world.billing.handle_record(a_record(a_completed_session())) == "held"

    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == ["energy_exceeds_max"] and doc["energy_wh"] == 7500
    assert doc["total_cost"]["amount"] == "5.25"


async def test_a_station_clock_in_1970_gives_a_small_bounded_held_cdr_quickly(world: World) -> None:
    """Issue 7 repro: was 299,368.82 EUR, 10.6 MB, 2.5 s of blocked event loop."""
    await a_station_with_its_own_tariff(world, price_per_minute=Decimal("0.01"))
    samples = tuple(energy(m, 1000 + 2500 * i) for i, m in enumerate((10, 20, 30, 40), start=1))
    snap = a_completed_session(
        started_at=datetime(1970, 1, 1, tzinfo=UTC), meter_start_wh=1000, meter_stop_wh=11_000,
        energy_wh=10_000, samples=samples,
    )

    t0 = time.perf_counter()
    outcome = await world.billing.handle_record(a_record(snap))
    elapsed = time.perf_counter() - t0

    assert outcome == "held"
    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == ["duration_exceeds_max"]
    # 10 kWh x 0.30 = 3.00 + 72 h x 60 x 0.01 = 43.20 + fee 1.00 (default CSMS_SESSION_MAX_DURATION_H = 72)
    assert doc["total_cost"] == {"amount": "47.20", "currency": "EUR"}
    assert doc["energy_wh"] == 10_000 and doc["breakdown"]["energy_cost"] == "3.00"
    assert len(json.dumps(doc)) < 20_000
    assert len(encode_cdr(doc)) < 10_000
    assert elapsed < 0.5, elapsed
    assert await world.cdr_records() == []


# --- the wire formats ------------------------------------------------------------------------


def test_the_snapshot_codec_reads_every_new_session_field() -> None:
    snap = an_abandoned_session(
        authorization="Invalid", clock_suspect=True, suspect_reasons=("clock_before_floor",),
        hold=True, hold_reasons=("clock_suspect", "duration_exceeds_max"),
        station_started_at=datetime(1970, 1, 1, tzinfo=UTC), station_stopped_at=at(99),
        remote_start_id=42, issued_by="ops-key",
        samples=DEFAULT_SAMPLES + (
            Sample(timestamp=at(5), measurand=ENERGY_REGISTER, value=0.0, excluded=True, raw_value="NaN"),
        ),
        priced_with=domain_tariff(a_tariff(id="T-STATION")),
    )

    decoded = decode_session(encode_session(snap))

    assert decoded == snap
    assert decoded.abandoned and decoded.abandoned_at == at(60) and decoded.abandon_reason == "new_transaction"
    assert (decoded.sample_count, decoded.excluded_count) == (4, 1)
    assert decoded.first_register == (at(10), 3000) and decoded.last_register == (at(30), 7000)
    assert decoded.energy_anchor_wh == 1000 and decoded.meter_stop_wh is None
    assert decoded.price is not None and decoded.price.tariff_id == "T-STATION" and decoded.price.last_wh == 7000


def test_absent_optional_numbers_decode_as_none_not_zero() -> None:
    snap = an_abandoned_session(meter_start_wh=None, samples=())

    decoded = decode_session(encode_session(snap))

    assert decoded.meter_start_wh is None and decoded.meter_stop_wh is None and decoded.energy_anchor_wh is None
    assert decoded.price is None and decoded.first_register is None
    zero = decode_session(encode_session(changed(snap, meter_start_wh=0, energy_anchor_wh=0)))
    assert zero.meter_start_wh == 0 and zero.energy_anchor_wh == 0


async def test_a_held_cdr_carries_its_flags_on_the_wire(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    await world.billing.handle_record(a_record(a_completed_session(clock_suspect=True, hold=True, hold_reasons=("clock_suspect",)))
    )
    [doc] = await world.cdr_docs()

    cdr = decode_cdr(encode_cdr(doc))

    assert cdr["clock_suspect"] is True and cdr["hold_reasons"] == ["clock_suspect"]


async def test_an_unusable_maximum_duration_falls_back_to_the_default_bound(world: World) -> None:
    await a_station_with_its_own_tariff(world)
    world.configure(session_max_duration_h=0.0)

    assert await world.billing.handle_record(a_record(a_completed_session())) == "cdr"

    [doc] = await world.cdr_docs()
    assert doc["hold_reasons"] == [] and doc["total_cost"]["amount"] == "5.25"
