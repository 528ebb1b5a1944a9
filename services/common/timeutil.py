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
    return _utc_text(dt, "milliseconds")


def to_iso_us(dt: datetime) -> str:
    """`2026-11-28T04:21:16.004123Z`: like `to_ocpp` to the microsecond, for what is stored
    and must read back exactly (CDR documents, price accumulators, fingerprints)."""
    return _utc_text(dt, "microseconds")


def _utc_text(dt: datetime, timespec: str) -> str:
    """The one formatter: UTC, `Z`, four-digit year, `timespec` digits of fraction. Naive
    datetimes are taken as UTC."""
    if dt.tzinfo is not UTC:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        dt = dt.astimezone(UTC)
    # C `isoformat` of an aware UTC instant ends in "+00:00" and always writes the year with
    # four digits (strftime("%Y") writes year 1 as "1", which nothing parses back); it is
    # several times faster than formatting the fields one by one.
    return dt.isoformat(timespec=timespec)[:-6] + "Z"


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
