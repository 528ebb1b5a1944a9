"""Time helpers. Everything the CSMS sends is UTC, `Z`, millisecond precision:
real charge point firmware rejects Python's default `+00:00` with microseconds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

__all__ = ["Clock", "utcnow", "to_ocpp", "parse_ocpp", "from_ms", "to_ms"]

Clock = Callable[[], datetime]

UTC = timezone.utc


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ocpp(dt: datetime) -> str:
    """`2026-11-28T04:21:16.004Z`."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ocpp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp as stations send it (Z or offset, any fraction).
    Naive timestamps are taken as UTC (some 1.6 firmware omits the zone)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # fromisoformat in 3.11 accepts any fraction length and offsets.
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
