"""Builders for the billing worker tests: snapshots, records, tariffs, stations."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.billing.codec import SESSION_CE_TYPE, SessionSnapshot, SnapshotSample, encode_session
from services.billing.domain import Tariff, tariff_to_dict
from services.common import topics
from services.common.bus.port import Record
from services.common.events import ENERGY_REGISTER

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """`at(40)` -> 10:40 UTC on the test day."""
    return T0 + timedelta(minutes=minutes)


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


def energy(minutes: float, wh: int) -> SnapshotSample:
    return SnapshotSample(timestamp=at(minutes), measurand=ENERGY_REGISTER, value=float(wh), unit="Wh")


def a_completed_session(**overrides: Any) -> SessionSnapshot:
    """10:00-10:40, register 1000 -> 8500 Wh (7.5 kWh), samples every 10 minutes."""
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
        "ocpp_version": "1.6",
        "samples": (energy(10, 3000), energy(20, 5000), energy(30, 7000)),
    }
    fields.update(overrides)
    return SessionSnapshot(**fields)


def an_abandoned_session(**overrides: Any) -> SessionSnapshot:
    """Started 10:00, readings up to 10:30 (7000 Wh on a register from 1000), no stop: the
    CSMS closed it at 11:00 (a newer transaction on the connector)."""
    fields: dict[str, Any] = {
        "status": "abandoned",
        "stopped_at": None,
        "meter_stop_wh": 0,
        "energy_wh": 6000,
        "version": 6,
        "abandoned_at": at(60),
        "abandon_reason": "new_transaction",
    }
    fields.update(overrides)
    return a_completed_session(**fields)


def an_active_session(**overrides: Any) -> SessionSnapshot:
    fields: dict[str, Any] = {"status": "active", "stopped_at": None, "meter_stop_wh": 0, "version": 2}
    fields.update(overrides)
    return a_completed_session(**fields)


def changed(snap: SessionSnapshot, **changes: Any) -> SessionSnapshot:
    return dataclasses.replace(snap, **changes)


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
