"""Time helpers. Everything the CSMS sends is UTC, `Z`, millisecond precision:
real charge point firmware rejects Python's default `+00:00` with microseconds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

__all__ = ["Clock", "utcnow", "to_ocpp", "to_iso_us", "parse_ocpp", "from_ms", "to_ms"]

Clock = Callable[[], datetime]

UTC = timezone.utc


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ocpp(dt: datetime) -> str:
    """`2026-11-28T04:21:16.004Z`."""
    if dt.tzinfo is UTC:
        # the common case (every instant the CSMS keeps): C `isoformat` writes the same text
        # (four-digit year included) several times faster than the f-string below
        return dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    # Not strftime("%Y"): glibc writes year 1 as "1", which nothing parses back.
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
        f"{dt.microsecond // 1000:03d}Z"
    )


def to_iso_us(dt: datetime) -> str:
    """`2026-11-28T04:21:16.004123Z`: like `to_ocpp` to the microsecond, for what is stored
    and must read back exactly (CDR documents, price accumulators, fingerprints)."""
    if dt.tzinfo is UTC:
        return dt.isoformat(timespec="microseconds")[:-6] + "Z"  # as in `to_ocpp`
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
        f"{dt.microsecond:06d}Z"
    )


def parse_ocpp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp as stations send it (Z or offset, any fraction).
    Naive timestamps are taken as UTC (some 1.6 firmware omits the zone).
    Raises ValueError for anything else, including instants outside datetime's range
    once converted to UTC (`0001-01-01T00:00:00+01:00`)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # fromisoformat in 3.11 accepts any fraction length and offsets.
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"timestamp out of range: {value!r}") from exc


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
