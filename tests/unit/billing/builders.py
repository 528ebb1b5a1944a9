"""Test data builders: sensible defaults, override only what the test is about."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.billing.domain.pricing import EnergySample, SessionUsage
from services.billing.domain.tariff import Tariff, TariffBand

UTC = timezone.utc
# Saturday 2026-11-28; tests that care about weekdays say so explicitly.
DAY = datetime(2026, 11, 28, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(hhmm: str, day: datetime = DAY) -> datetime:
    """`at("17:30")` -> 17:30 UTC on the test day."""
    h, m = hhmm.split(":")
    return day + timedelta(hours=int(h), minutes=int(m))


def a_tariff(**overrides: Any) -> Tariff:
    fields: dict[str, Any] = {
        "id": "tariff-1",
        "currency": "EUR",
        "price_per_kwh": Decimal("0"),
        "price_per_minute": Decimal("0"),
        "session_fee": Decimal("0"),
        "idle_fee_per_minute": Decimal("0"),
        "idle_grace_minutes": 0,
        "tax_rate": Decimal("0"),
    }
    fields.update(overrides)
    return Tariff(**fields)


def a_band(start: str = "18:00", end: str = "22:00", **overrides: Any) -> TariffBand:
    return TariffBand(start=start, end=end, **overrides)


def a_session(**overrides: Any) -> SessionUsage:
    """One hour 17:30-18:30 UTC, 10 kWh, no samples (uniform attribution)."""
    fields: dict[str, Any] = {
        "started_at": at("17:30"),
        "stopped_at": at("18:30"),
        "meter_start_wh": 0,
        "meter_stop_wh": 10_000,
    }
    fields.update(overrides)
    return SessionUsage(**fields)


def samples(*points: tuple[str, int]) -> tuple[EnergySample, ...]:
    """`samples(("17:45", 2000), ("18:15", 8000))`."""
    return tuple((at(hhmm), wh) for hhmm, wh in points)


def a_tariff_dict(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": "tariff-1",
        "currency": "EUR",
        "price_per_kwh": "0.30",
        "price_per_minute": "0.00",
        "session_fee": "1.00",
        "idle_fee_per_minute": "0.10",
        "idle_grace_minutes": 15,
        "tax_rate": "0.19",
        "bands": [
            {"start": "18:00", "end": "22:00", "days_of_week": [0, 1, 2, 3, 4],
             "price_per_kwh": "0.45", "price_per_minute": None},
        ],
        "min_price": None,
        "max_price": "50.00",
        "timezone": "Europe/Berlin",
        "default": True,
    }
    d.update(overrides)
    return d
