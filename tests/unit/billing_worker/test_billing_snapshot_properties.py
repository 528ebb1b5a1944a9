"""Billing never raises on a schema-valid snapshot, however absurd (shared design 1: the
domain must not produce poison records), and its CDR stays small and bounded."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.codec import SessionSnapshot, decode_cdr, decode_session, encode_cdr, encode_session
from services.billing.documents import cdr_from_doc, cdr_to_doc, head_from_doc
from services.billing.domain import (
    PriceAccumulator,
    RunningUsage,
    StaleAccumulator,
    Tariff,
    TariffBand,
    cdr_hold_reasons,
    decide_cdr,
    fold_price,
    tariff_fingerprint,
)
from services.billing.snapshots import running_usage_from_snapshot, usage_from_snapshot

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
INT64 = st.integers(-(2**63), 2**63 - 1)
TARIFF = Tariff(
    id="T", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    session_fee=Decimal("1.00"), idle_fee_per_minute=Decimal("0.10"), tax_rate=Decimal("0.19"),
    bands=(TariffBand(start="22:00", end="06:00", price_per_kwh=Decimal("0.20")),),
)
CAP = timedelta(hours=72)

instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))
optional_instants = st.none() | instants
optional_int64 = st.none() | INT64
readings = st.none() | st.tuples(instants, INT64)


@st.composite
def accumulators(draw: st.DrawFn) -> PriceAccumulator | None:
    """None, the real one of this tariff (readings anywhere), or garbage naming the tariff."""
    kind = draw(st.sampled_from(["none", "real", "garbage"]))
    if kind == "none":
        return None
    if kind == "real":
        opened = draw(instants)
        points = draw(st.lists(st.tuples(instants, st.integers(0, 10**15)), max_size=6))
        return fold_price(TARIFF, opened, draw(st.integers(0, 10**15)), points, max_duration=CAP)
    return PriceAccumulator(
        tariff_id="T", tariff_fingerprint=tariff_fingerprint(TARIFF), currency="EUR",
        opened_at=draw(instants), open_wh=draw(st.integers(0, 2**62)), last_at=draw(instants),
        last_wh=draw(st.integers(0, 2**62)),
        marks=tuple(draw(st.lists(st.tuples(instants, st.decimals(min_value=0, max_value=10**15, places=6)), max_size=3))),
    )


plain_snapshots = st.builds(
    SessionSnapshot,
    id=st.just("S-1"),
    station_id=st.just("CS1"),
    status=st.sampled_from(["completed", "abandoned"]),
    version=st.integers(1, 2**62),
    energy_wh=INT64,
    started_at=optional_instants,
    stopped_at=optional_instants,
    received_at=optional_instants,
    charging_ended_at=optional_instants,
    updated_at=optional_instants,
    abandoned_at=optional_instants,
    meter_start_wh=optional_int64,
    meter_stop_wh=optional_int64,
    first_register=readings,
    last_register=readings,
    energy_anchor_wh=optional_int64,
    price=accumulators(),
    clock_suspect=st.booleans(),
    hold=st.booleans(),
)


@st.composite
def snapshots(draw: st.DrawFn) -> SessionSnapshot:
    """Often a snapshot whose accumulator matches its start and anchor (the accumulator path)."""
    snap = draw(plain_snapshots)
    if snap.price is not None and draw(st.booleans()):
        snap = replace(snap, started_at=snap.price.opened_at, energy_anchor_wh=snap.price.open_wh)
    return snap


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(snapshots())
def test_any_billable_snapshot_is_priced_into_a_small_cdr_without_raising(snap: SessionSnapshot) -> None:
    snap = decode_session(encode_session(snap))  # exactly what the wire can carry
    usage = running_usage_from_snapshot(snap, TARIFF) or usage_from_snapshot(snap)
    if isinstance(usage, RunningUsage):
        try:
            decide_cdr(None, snap.id, snap.station_id, TARIFF, usage, NOW, max_duration=CAP)
        except StaleAccumulator:  # an accumulator without the marks it should have: the handler refolds
            usage = usage_from_snapshot(snap)
    if usage is None:
        ends = (snap.stopped_at, snap.updated_at) + ((snap.abandoned_at,) if snap.abandoned else ())
        assert (snap.started_at or snap.received_at) is None or all(end is None for end in ends)
        return
    cdr = decide_cdr(None, snap.id, snap.station_id, TARIFF, usage, NOW, max_duration=CAP)
    assert cdr is not None
    hold = cdr_hold_reasons(
        started_at=cdr.started_at, stopped_at=cdr.stopped_at, energy_wh=cdr.energy_wh, max_duration=CAP,
        max_energy_wh=1_000_000, session_hold=snap.hold, session_reasons=snap.hold_reasons,
        clock_suspect=snap.clock_suspect,
    )
    doc = cdr_to_doc(cdr, snap, hold_reasons=hold)

    assert cdr.energy_wh >= 0
    bound = Decimal(cdr.energy_wh) / 1000 * TARIFF.price_per_kwh + TARIFF.session_fee + 72 * 60 * (
        TARIFF.price_per_minute + TARIFF.idle_fee_per_minute
    )
    assert cdr.breakdown.subtotal.amount <= bound
    assert len(json.dumps(doc)) < 50_000
    # what is stored reads back: the next delivery and the API depend on it
    assert head_from_doc(doc).stopped_at == cdr.stopped_at
    assert cdr_from_doc(doc).total_cost == cdr.total_cost
    assert decode_cdr(encode_cdr(doc))["hold_reasons"] == list(hold)
