"""Builders for the billing worker tests: snapshots, records, tariffs, stations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, encode_session
from services.billing.domain import Tariff, fold_price
from services.billing.codec import tariff_from_dict, tariff_to_dict
from services.common import topics
from services.common.bus.port import Record
from services.common.events import ENERGY_REGISTER
from services.common.ocpp_version import OcppVersion
from services.common.store.port import MeterRow

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """`at(40)` -> 10:40 UTC on the test day."""
    return T0 + timedelta(minutes=minutes)


def domain_tariff(doc: dict[str, Any]) -> Tariff:
    """The domain Tariff of a stored tariff document (for `priced_with=`)."""
    return tariff_from_dict(doc)


def a_tariff(**overrides: Any) -> dict[str, Any]:
    """Stored tariff document (the REST shape): 0.30/kWh, 0.05/min, 1.00 fee, 19 % tax."""
    fields: dict[str, Any] = {
        "id": "T-STATION",
        "currency": "EUR",
        "price_per_kwh": Decimal("0.30"),
        "price_per_minute": Decimal("0.05"),
        "session_fee": Decimal("1.00"),
        "tax_rate": Decimal("0.19"),
    }
    fields.update(overrides)
    return tariff_to_dict(Tariff(**fields))


@dataclass(frozen=True)
class Sample:
    """A meter sample as the sessions processor stores and judges it (the snapshot carries
    only its aggregates since ADR 015; `rows` gives the stored form)."""

    timestamp: datetime
    measurand: str
    value: float
    unit: str = "Wh"
    phase: str = ""
    excluded: bool = False  # the sessions processor's judgement (never stored)
    raw_value: str = ""


def energy(minutes: float, wh: int) -> Sample:
    return Sample(timestamp=at(minutes), measurand=ENERGY_REGISTER, value=float(wh), unit="Wh")


DEFAULT_SAMPLES = (energy(10, 3000), energy(20, 5000), energy(30, 7000))


def rows(samples: tuple[Sample, ...]) -> list[MeterRow]:
    """The stored form (`excluded` is derived, not stored)."""
    return [MeterRow(s.timestamp, s.measurand, s.phase, s.value, s.unit, s.raw_value) for s in samples]


def kept_readings(samples: tuple[Sample, ...]) -> list[tuple[datetime, int]]:
    """The kept total-register readings (what the sessions processor counts)."""
    out = []
    for s in sorted(samples, key=lambda x: x.timestamp):
        if s.excluded or s.raw_value or s.phase or s.measurand not in ("", ENERGY_REGISTER):
            continue
        factor = 1000 if s.unit == "kWh" else 1
        out.append((s.timestamp, int(Decimal(repr(s.value)) * factor)))
    return out


def with_samples(
    snap: SessionSnapshot, samples: tuple[Sample, ...], priced_with: Tariff | None = None, **fixed: Any
) -> SessionSnapshot:
    """The snapshot's aggregates as the sessions processor computes them from `samples`
    (counts, first/last times, first/last kept register reading, energy anchor) and, with
    `priced_with`, its price accumulator. `fixed`: aggregates the test sets itself."""
    kept = kept_readings(samples)
    times = [s.timestamp for s in samples]
    anchor = snap.meter_start_wh if snap.meter_start_wh is not None else (kept[0][1] if kept else None)
    aggregates: dict[str, Any] = {
        "sample_count": len(samples),
        "excluded_count": sum(1 for s in samples if s.excluded or s.raw_value),
        "first_sample_at": min(times, default=None),
        "last_sample_at": max(times, default=None),
        "first_register": kept[0] if kept else None,
        "last_register": kept[-1] if kept else None,
        "energy_anchor_wh": anchor,
        "price": None,
    }
    aggregates.update(fixed)
    out = dataclasses.replace(snap, **aggregates)
    if priced_with is not None and out.started_at is not None and out.energy_anchor_wh is not None:
        out = dataclasses.replace(out, price=fold_price(priced_with, out.started_at, out.energy_anchor_wh, kept))
    return out


_AGGREGATES = {"sample_count", "excluded_count", "first_sample_at", "last_sample_at", "first_register",
               "last_register", "energy_anchor_wh", "price"}


def _build(fields: dict[str, Any]) -> SessionSnapshot:
    samples = fields.pop("samples", DEFAULT_SAMPLES)
    priced_with = fields.pop("priced_with", None)
    fixed = {k: fields.pop(k) for k in list(fields) if k in _AGGREGATES}
    return with_samples(SessionSnapshot(**fields), samples, priced_with, **fixed)


def a_completed_session(**overrides: Any) -> SessionSnapshot:
    """10:00-10:40, register 1000 -> 8500 Wh (7.5 kWh), samples every 10 minutes.
    `samples=`: the session's samples (the snapshot gets their aggregates); `priced_with=`
    a domain Tariff: the snapshot carries the accumulator opened with it."""
    fields: dict[str, Any] = {
        "id": "CS1-1",
        "station_id": "CS1",
        "status": "completed",
        "version": 5,
        "transaction_id": "1",
        "id_token": "TOKEN1",
        "energy_wh": 7500,
        "started_at": at(0),
        "stopped_at": at(40),
        "received_at": at(0),
        "meter_start_wh": 1000,
        "meter_stop_wh": 8500,
        "connector_id": 1,
        "ocpp_version": OcppVersion.V16,
    }
    fields.update(overrides)
    return _build(fields)


def an_abandoned_session(**overrides: Any) -> SessionSnapshot:
    """Started 10:00, readings up to 10:30 (7000 Wh on a register from 1000), no stop: the
    CSMS closed it at 11:00 (a newer transaction on the connector)."""
    fields: dict[str, Any] = {
        "status": "abandoned",
        "stopped_at": None,
        "meter_stop_wh": None,
        "energy_wh": 6000,
        "version": 6,
        "abandoned_at": at(60),
        "abandon_reason": "new_transaction",
    }
    fields.update(overrides)
    return a_completed_session(**fields)


def an_active_session(**overrides: Any) -> SessionSnapshot:
    fields: dict[str, Any] = {"status": "active", "stopped_at": None, "meter_stop_wh": None, "version": 2}
    fields.update(overrides)
    return a_completed_session(**fields)


def changed(snap: SessionSnapshot, **changes: Any) -> SessionSnapshot:
    """`snap` with `changes`; `samples=` (all the session's samples now) recomputes the
    aggregates, `priced_with=` the accumulator."""
    samples = changes.pop("samples", None)
    priced_with = changes.pop("priced_with", None)
    out = dataclasses.replace(snap, **changes)
    if samples is not None:
        out = with_samples(out, samples, priced_with)
    elif priced_with is not None:
        raise ValueError("priced_with needs samples=")
    return out


_offsets = iter(range(1_000_000))


def a_record(snap: SessionSnapshot | None = None, *, value: bytes | None = None, ce_type: str = SESSION_CE_TYPE) -> Record:
    snap = snap or a_completed_session()
    headers = (
        ("ce_type", ce_type.encode()),
        ("ce_id", f"{snap.id}:{snap.version}".encode()),
        ("ce_subject", snap.station_id.encode()),
    )
    return Record(
        topic=topics.SESSIONS,
        partition=0,
        offset=next(_offsets),
        key=snap.station_id.encode(),
        value=encode_session(snap) if value is None else value,
        headers=headers,
    )
