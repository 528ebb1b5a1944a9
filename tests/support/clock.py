"""A clock a test sets and moves: `FixedClock`.

Everything in the CSMS that reads the time takes a `Clock` (a callable returning an aware
UTC datetime, `services.common.timeutil.Clock`). A test passes a `FixedClock` instead of
`utcnow`, so "30 minutes later" is `clock.advance(minutes=30)` rather than a sleep, and the
times a test asserts on are known exactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["FixedClock", "T0"]

# 2026-11-28T04:21:16.004Z: millisecond precision, the precision OCPP times and the stores keep.
T0 = datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=timezone.utc)


class FixedClock:
    """Returns the same instant until told otherwise; usable wherever a `Clock` is."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = _utc(now)

    def __call__(self) -> datetime:
        return self.now

    def advance(
        self, by: float | timedelta = 0.0, *, seconds: float = 0.0, minutes: float = 0.0, hours: float = 0.0
    ) -> datetime:
        """Moves forward (`advance(5)`, `advance(timedelta(...))`, `advance(minutes=3)`);
        returns the new now. Time never runs backwards here: a negative step is refused."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        step += timedelta(seconds=seconds, minutes=minutes, hours=hours)
        if step < timedelta(0):
            raise ValueError(f"a clock does not go back: advance({step})")
        self.now += step
        return self.now

    def set(self, now: datetime) -> datetime:
        """Jumps to `now` (either direction: for tests about clocks that are wrong)."""
        self.now = _utc(now)
        return self.now

    def __repr__(self) -> str:
        return f"FixedClock({self.now.isoformat()})"


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"a clock returns aware datetimes, got naive {now!r}")
    return now.astimezone(timezone.utc)
