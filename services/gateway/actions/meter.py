"""Meter value normalization: 1.6 and 2.0.1 sampled values -> `MeterSample` in base units.

Downstream (sessions, billing) must never care about kWh vs Wh or a 2.0.1 multiplier,
so every sample leaves the gateway in base units (Wh, W, varh, var, VA, VAh, A, V, Hz,
Percent, Celsius). Scaling goes through `Decimal` so "0.1 kWh" becomes exactly 100 Wh
rather than 100.00000000000001. Energy stays a float here; the sessions processor rounds
it to integer Wh.

A sample that cannot be used (1.6 `SignedData`, a value that does not parse, NaN/inf) is
skipped and logged: one bad sample must not cost the transaction message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterable

from services.common.events import ENERGY_REGISTER, MeterSample
from services.common.timeutil import parse_ocpp

__all__ = ["samples_16", "samples_201", "first_register_wh", "last_register_wh", "station_time"]

log = logging.getLogger("csms.gateway.actions.meter")

# Spec defaults (1.6 §7.45, 2.0.1 SampledValueType) applied so consumers need not know them.
DEFAULT_CONTEXT = "Sample.Periodic"
DEFAULT_LOCATION = "Outlet"

# unit -> (base unit, factor)
_SCALED: dict[str, tuple[str, Decimal]] = {
    "kWh": ("Wh", Decimal(1000)),
    "MWh": ("Wh", Decimal(1_000_000)),
    "kW": ("W", Decimal(1000)),
    "MW": ("W", Decimal(1_000_000)),
    "kvarh": ("varh", Decimal(1000)),
    "kvar": ("var", Decimal(1000)),
    "kVA": ("VA", Decimal(1000)),
    "kVAh": ("VAh", Decimal(1000)),
    "kA": ("A", Decimal(1000)),
    "kV": ("V", Decimal(1000)),
    "%": ("Percent", Decimal(1)),
    "Celcius": ("Celsius", Decimal(1)),  # the 1.6 schema's own misspelling
}


@dataclass(frozen=True, slots=True)
class _Raw:
    """One sampled value, version differences already resolved."""

    value: Decimal
    unit: str
    measurand: str
    phase: str
    context: str
    location: str


def station_time(value: Any) -> datetime | None:
    """Parse a station timestamp; None (and a log line) when it is not RFC 3339.

    Transaction messages are never refused, so a bad clock string only loses the
    station time, not the message (the receive time is always kept by the core)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ocpp(value)
    except ValueError:
        log.warning("unparsable station timestamp %r", value)
        return None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None
    try:
        # str() of a float is its shortest round-trip form, so 0.1 stays exactly 0.1.
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _to_base(value: Decimal, unit: str) -> tuple[Decimal, str]:
    if unit in _SCALED:
        base, factor = _SCALED[unit]
        return value * factor, base
    if unit == "K":
        return value - Decimal("273.15"), "Celsius"
    if unit == "Fahrenheit":
        return (value - 32) * 5 / 9, "Celsius"
    return value, unit


def _sample(raw: _Raw, at: datetime) -> MeterSample:
    value, unit = _to_base(raw.value, raw.unit)
    return MeterSample(
        timestamp=at,
        value=float(value),
        unit=unit,
        measurand=raw.measurand,
        phase=raw.phase,
        context=raw.context,
        location=raw.location,
    )


def _raw_16(sv: dict[str, Any]) -> _Raw | None:
    if sv.get("format") == "SignedData":
        return None  # the value is an opaque signed blob, not a number
    value = _decimal(sv.get("value"))
    if value is None:
        return None
    return _Raw(
        value=value,
        unit=sv.get("unit") or "Wh",
        measurand=sv.get("measurand") or ENERGY_REGISTER,
        phase=sv.get("phase") or "",
        context=sv.get("context") or DEFAULT_CONTEXT,
        location=sv.get("location") or DEFAULT_LOCATION,
    )


def _raw_201(sv: dict[str, Any]) -> _Raw | None:
    value = _decimal(sv.get("value"))
    if value is None:
        return None
    uom = sv.get("unitOfMeasure") or {}
    multiplier = uom.get("multiplier", 0)
    if isinstance(multiplier, int) and not isinstance(multiplier, bool) and multiplier:
        value = value.scaleb(multiplier)  # value x 10^multiplier, exact
    return _Raw(
        value=value,
        unit=uom.get("unit") or "Wh",
        measurand=sv.get("measurand") or ENERGY_REGISTER,
        phase=sv.get("phase") or "",
        context=sv.get("context") or DEFAULT_CONTEXT,
        location=sv.get("location") or DEFAULT_LOCATION,
    )


def _samples(meter_values: Iterable[dict[str, Any]] | None, fallback: datetime, parse: Any) -> tuple[MeterSample, ...]:
    out: list[MeterSample] = []
    for mv in meter_values or ():
        at = station_time(mv.get("timestamp")) or fallback
        for sv in mv.get("sampledValue") or ():
            raw = parse(sv)
            if raw is None:
                log.info("skipped meter sample %r", sv)
                continue
            out.append(_sample(raw, at))
    return tuple(out)


def samples_16(meter_values: Iterable[dict[str, Any]] | None, fallback: datetime) -> tuple[MeterSample, ...]:
    """1.6 `meterValue` / `transactionData` -> samples; `fallback` stamps undated values."""
    return _samples(meter_values, fallback, _raw_16)


def samples_201(meter_values: Iterable[dict[str, Any]] | None, fallback: datetime) -> tuple[MeterSample, ...]:
    """2.0.1 / 2.1 `meterValue` -> samples."""
    return _samples(meter_values, fallback, _raw_201)


def _is_total_register(s: MeterSample) -> bool:
    # Per-phase or EV-side registers are not the transaction's meter reading.
    return s.measurand == ENERGY_REGISTER and not s.phase and s.location in ("", DEFAULT_LOCATION)


def _wh(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def first_register_wh(samples: Iterable[MeterSample]) -> int | None:
    """The first total Energy.Active.Import.Register value in integer Wh, if any."""
    for s in samples:
        if _is_total_register(s):
            return _wh(s.value)
    return None


def last_register_wh(samples: Iterable[MeterSample]) -> int | None:
    """The last total Energy.Active.Import.Register value in integer Wh, if any."""
    found: int | None = None
    for s in samples:
        if _is_total_register(s):
            found = _wh(s.value)
    return found
