"""Billing never raises on a schema-valid snapshot, however absurd (shared design 1: the
domain must not produce poison records), and its CDR stays small and bounded."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.adapters import cdr_from_doc, cdr_to_doc, head_from_doc, usage_from_snapshot
from services.billing.codec import SessionSnapshot, SnapshotSample, decode_cdr, decode_session, encode_cdr, encode_session
from services.billing.domain import Tariff, cdr_hold_reasons, decide_cdr
from services.common.events import ENERGY_REGISTER

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
INT64 = st.integers(-(2**63), 2**63 - 1)
TARIFF = Tariff(
    id="T", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"),
    session_fee=Decimal("1.00"), idle_fee_per_minute=Decimal("0.10"), tax_rate=Decimal("0.19"),
)
CAP = timedelta(hours=72)

instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))
optional_instants = st.none() | instants
samples = st.builds(
    SnapshotSample,
    timestamp=optional_instants,
    measurand=st.sampled_from([ENERGY_REGISTER, "", "Power.Active.Import"]),
    value=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([9.99e15, 1e15, 1e12, -5.0, 3000.0]),
    unit=st.sampled_from(["Wh", "kWh", "", "kwh", "W"]),
    phase=st.sampled_from(["", "", "L1"]),
    excluded=st.booleans(),
    raw_value=st.sampled_from(["", "", "1e308", "NaN"]),
)
snapshots = st.builds(
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
    meter_start_wh=INT64,
    meter_stop_wh=INT64,
    samples=st.lists(samples, max_size=8).map(tuple),
    clock_suspect=st.booleans(),
    hold=st.booleans(),
)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(snapshots)
def test_any_billable_snapshot_is_priced_into_a_small_cdr_without_raising(snap: SessionSnapshot) -> None:
    snap = decode_session(encode_session(snap))  # exactly what the wire can carry
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
