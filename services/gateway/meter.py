"""Meter value normalization: 1.6 and 2.0.1 sampled values -> `MeterSample` in base units.

Downstream (sessions, billing) must never care about kWh vs Wh or a 2.0.1 multiplier,
so every sample leaves the gateway in base units (Wh, W, varh, var, VA, VAh, A, V, Hz,
Percent, Celsius). Scaling goes through `Decimal` so "0.1 kWh" becomes exactly 100 Wh
rather than 100.00000000000001. Energy stays a float here; the sessions processor rounds
it to integer Wh.

Nothing a station measured is dropped (docs/gateway-leniency.md):
- a value that is not a usable number (`services.common.decimals.parse_decimal`: does not
  parse, NaN/inf, exponent out of bounds such as "1e308", or out of bounds once scaled)
  is forwarded with `value=0` and `raw_value` = the text as sent (at most
  `RAW_VALUE_MAX` characters); downstream flags it and never counts it;
- units are matched case-insensitively ("kwh" -> kWh); an unknown unit is kept as sent
  and its value is not scaled (the sessions processor counts energy only in Wh).
Only 1.6 `SignedData` samples are skipped: their value is an opaque signed blob, not a
reading. Each leniency is reported through `note(field, detail)` for the core to count.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable, NamedTuple

import orjson

from services.common.decimals import MAX_ABS_EXPONENT, bounded, parse_decimal
from services.common.events import ENERGY_REGISTER, MeterSample
from services.common.timeutil import parse_ocpp

__all__ = ["samples_16", "samples_201", "first_register_wh", "last_register_wh", "station_time", "RAW_VALUE_MAX"]

log = logging.getLogger("csms.gateway.meter")

Note = Callable[[str, str], None]

# Spec defaults (1.6 §7.45, 2.0.1 SampledValueType) applied so consumers need not know them.
DEFAULT_CONTEXT = "Sample.Periodic"
DEFAULT_LOCATION = "Outlet"
RAW_VALUE_MAX = 256  # a reading's text; longer is not a reading, only its start is kept

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
# Every unit of the 1.6 enum and the 2.0.1 standardized list, in its canonical spelling.
_KNOWN_UNITS = frozenset(_SCALED) | {
    "Wh", "varh", "W", "var", "VA", "VAh", "A", "V", "Hz", "Percent", "Celsius", "Fahrenheit", "K",
    "ASU", "B", "dB", "dBm", "Deg", "kg", "km", "l", "Lux", "m", "ppm", "RH", "rpm", "s",
}
# casefold -> canonical. Where two units differ only by case (MWh/mWh do not, but "MW" and
# "mW" would), the first listed wins; none of the standardized units collide.
_UNIT_BY_FOLD = {u.casefold(): u for u in sorted(_KNOWN_UNITS, key=lambda u: (u not in _SCALED, u))}
# Multipliers beyond this cannot yield a bounded value from a bounded one.
_MAX_MULTIPLIER = 2 * MAX_ABS_EXPONENT


class _Raw(NamedTuple):
    """One sampled value, version differences already resolved. (A NamedTuple: built for
    every sampled value of every MeterValues, it costs a third of a frozen dataclass.)"""

    value: Decimal | None   # None: not a usable number
    sent: Any               # the value as sent; its text (`_text`) is kept when not usable
    unit: str
    measurand: str
    phase: str
    context: str
    location: str
    noted: bool = False     # the schema check already reported the value (2.x: not a number)


def station_time(value: Any) -> datetime | None:
    """Parse a station timestamp; None (and a log line) when it is not RFC 3339.

    Transaction messages are never refused, so a bad clock string only loses the
    station time, not the message (the receive time is always kept by the core)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ocpp(value)
    except ValueError:
        log.warning("unparsable station timestamp %.64r", value)
        return None


def _text(value: Any) -> str:
    """The value as the station wrote it (JSON numbers in their shortest form)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        text = str(value)
    else:
        text = orjson.dumps(value, default=str).decode()
    return text[:RAW_VALUE_MAX]


def canonical_unit(unit: str) -> str | None:
    """The standardized spelling of `unit` (case-insensitive), or None if unknown."""
    if unit in _KNOWN_UNITS:
        return unit
    return _UNIT_BY_FOLD.get(unit.casefold())


_CONVERTED = frozenset({"K", "Fahrenheit"})  # offset conversions to Celsius (`_to_base`)


def _to_base(value: Decimal, unit: str) -> tuple[Decimal, str]:
    if unit in _SCALED:
        base, factor = _SCALED[unit]
        return value * factor, base
    if unit == "K":
        return value - Decimal("273.15"), "Celsius"
    if unit == "Fahrenheit":
        return (value - 32) * 5 / 9, "Celsius"
    return value, unit


def _sample(raw: _Raw, at: datetime, field: str, note: Note | None) -> MeterSample:
    value = raw.value
    unit = raw.unit
    if value is not None:
        if unit in _SCALED or unit in _CONVERTED:
            value, unit = _to_base(value, unit)
        if not bounded(value):  # e.g. 1e15 MWh, or a 2.x multiplier: parseable, but out of bounds
            value = None
    text = ""
    if value is None:
        unit = raw.unit
        text = _text(raw.sent)
        if note is not None and not raw.noted:
            note(field + ".value", f"{text[:64]!r} is not a usable number; kept as raw_value")
    return MeterSample(
        timestamp=at,
        value=0.0 if value is None else float(value),
        unit=unit,
        measurand=raw.measurand,
        phase=raw.phase,
        context=raw.context,
        location=raw.location,
        raw_value="" if value is not None else (text or "\"\""),
    )


def _raw_16(sv: dict[str, Any], field: str, note: Note | None) -> _Raw | None:
    if sv.get("format") == "SignedData":
        return None  # the value is an opaque signed blob, not a number
    value = sv.get("value")
    # The schema validator canonicalised known units; an unknown one is kept (and was noted).
    unit = sv.get("unit") or "Wh"
    get = sv.get
    return _Raw(
        parse_decimal(value),
        value,
        unit,
        get("measurand") or ENERGY_REGISTER,
        get("phase") or "",
        get("context") or DEFAULT_CONTEXT,
        get("location") or DEFAULT_LOCATION,
    )


def _raw_201(sv: dict[str, Any], field: str, note: Note | None) -> _Raw | None:
    raw_value = sv.get("value")
    value = parse_decimal(raw_value)
    uom = sv.get("unitOfMeasure")
    uom = uom if isinstance(uom, dict) else {}
    multiplier = uom.get("multiplier", 0)
    if isinstance(multiplier, float) and multiplier.is_integer():
        multiplier = int(multiplier)
    if value is not None and isinstance(multiplier, int) and not isinstance(multiplier, bool) and multiplier:
        if abs(multiplier) > _MAX_MULTIPLIER:
            value = None
            if note is not None:
                note(field + ".unitOfMeasure.multiplier", f"{multiplier!r} is out of bounds")
        else:
            value = value.scaleb(multiplier)  # value x 10^multiplier, exact
    # 2.0.1 units are free strings (no enum): matched here, case-insensitively.
    sent = uom.get("unit") or "Wh"
    unit = canonical_unit(sent) if isinstance(sent, str) else None
    if unit is None:
        unit = sent if isinstance(sent, str) else _text(sent)
        if note is not None:
            note(field + ".unitOfMeasure.unit", f"{unit[:64]!r} is not a standardized unit; kept, value not scaled")
    elif unit != sent and note is not None:
        note(field + ".unitOfMeasure.unit", f"{sent!r} -> {unit!r}")
    return _Raw(
        value=value,
        sent=raw_value,
        unit=unit,
        measurand=sv.get("measurand") or ENERGY_REGISTER,
        phase=sv.get("phase") or "",
        context=sv.get("context") or DEFAULT_CONTEXT,
        location=sv.get("location") or DEFAULT_LOCATION,
        noted=isinstance(raw_value, bool) or not isinstance(raw_value, (int, float, Decimal)),
    )


def _samples(
    meter_values: Iterable[dict[str, Any]] | None, fallback: datetime, parse: Any, note: Note | None, prefix: str,
) -> tuple[MeterSample, ...]:
    out: list[MeterSample] = []
    field = prefix + ".sampledValue"
    for mv in meter_values or ():
        if not isinstance(mv, dict):
            continue
        at = station_time(mv.get("timestamp")) or fallback
        for sv in mv.get("sampledValue") or ():
            if not isinstance(sv, dict):
                continue
            raw = parse(sv, field, note)
            if raw is None:
                log.info("skipped signed meter sample (format SignedData)")
                continue
            out.append(_sample(raw, at, field, note))
    return tuple(out)


def samples_16(
    meter_values: Iterable[dict[str, Any]] | None, fallback: datetime, note: Note | None = None, prefix: str = "meterValue",
) -> tuple[MeterSample, ...]:
    """1.6 `meterValue` / `transactionData` -> samples; `fallback` stamps undated values.
    `note(field, detail)` hears of every value kept raw; `prefix` names the list's field."""
    return _samples(meter_values, fallback, _raw_16, note, prefix)


def samples_201(
    meter_values: Iterable[dict[str, Any]] | None, fallback: datetime, note: Note | None = None, prefix: str = "meterValue",
) -> tuple[MeterSample, ...]:
    """2.0.1 / 2.1 `meterValue` -> samples; `note` as for `samples_16`."""
    return _samples(meter_values, fallback, _raw_201, note, prefix)


def _is_total_register(s: MeterSample) -> bool:
    # Per-phase or EV-side registers are not the transaction's meter reading, and neither
    # is a value kept raw or one in a unit that is not Wh.
    return (
        s.measurand == ENERGY_REGISTER and not s.phase and s.location in ("", DEFAULT_LOCATION)
        and not s.raw_value and s.unit == "Wh"
    )


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
