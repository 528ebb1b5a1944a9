"""Uptime figures of a station over a window (ADR 016 §6): a pure calculation over its
closed outages (the `Outage` history rows) and its open outage (`StationOps.outage`).

A station is *up* when connected and not out of service; the stations processor opens and
closes the outages, this module only measures them. For a window [from, to):

- **Observation** runs from max(from, the station's creation) to min(to, now): time
  before the station existed or in the future is neither up nor down.
- **Outages** are clipped to the observation; an open outage runs to its end. Down time
  is the length of the union of the clipped outages (outages the processor wrote never
  overlap, but a union keeps up + down = observed whatever the input).
- **Failures** are the down periods that *start* in the observation, a down period being
  outages that follow each other with no up time between (the cause changed while the
  station stayed down: faulted, offline during its reboot, unavailable: one failure).
  MTBF = up time / failures (None without failures).
- **MTTR** = the summed *full* duration (not clipped: the repair took that long) of the
  down periods that *ended* in the observation, divided by their count (None when none
  ended there). An open outage has not been repaired and does not count.
- uptime % = up / observed * 100, rounded to 2 decimals; 100 when nothing was observed
  (then up and down are both 0: a window before the station's creation).

`combine` adds figures of several stations into one (site KPIs): sums of up, down,
failures and repairs, the same definitions over the sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.stations.domain.ops import OpenOutage, Outage

__all__ = ["AvailabilityFigures", "OutageSpan", "availability", "combine", "uptime_percent"]


@dataclass(frozen=True, slots=True)
class OutageSpan:
    """An outage as seen through the window: `start`/`end` clipped to it (`end` None: still
    open), `duration_s` the clipped length."""

    cause: str
    start: datetime
    end: datetime | None
    duration_s: float


@dataclass(frozen=True, slots=True)
class AvailabilityFigures:
    observed_from: datetime
    observed_to: datetime
    up_s: float
    down_s: float
    failures: int                  # outages starting in the observation
    repairs: int                   # outages ending in the observation
    repair_s: float                # their summed full durations
    outages: tuple[OutageSpan, ...] = ()  # clipped, oldest first

    @property
    def observed_s(self) -> float:
        return self.up_s + self.down_s

    @property
    def uptime_percent(self) -> float:
        return uptime_percent(self.up_s, self.down_s)

    @property
    def mtbf_s(self) -> float | None:
        return _round(self.up_s / self.failures) if self.failures else None

    @property
    def mttr_s(self) -> float | None:
        return _round(self.repair_s / self.repairs) if self.repairs else None


def _round(seconds: float) -> float:
    return round(seconds, 3)


def uptime_percent(up_s: float, down_s: float) -> float:
    observed = up_s + down_s
    return 100.0 if observed <= 0 else round(100.0 * up_s / observed, 2)


def _seconds(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


def _union_length(spans: Sequence[tuple[datetime, datetime]]) -> float:
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for start, end in sorted(spans):
        if current is None or start > current[1]:
            if current is not None:
                total += _seconds(*current)
            current = (start, end)
        elif end > current[1]:
            current = (current[0], end)
    if current is not None:
        total += _seconds(*current)
    return total


def _down_periods(
    outages: Sequence[tuple[str, datetime, datetime | None]],
) -> list[tuple[datetime, datetime | None]]:
    """Outages that follow each other without the station coming up in between (a cause
    changing while it stays down: faulted, then offline during the reboot, then
    unavailable) are one failure and one repair: (start, end or None while open)."""
    periods: list[tuple[datetime, datetime | None]] = []
    for _, o_start, o_end in sorted(outages, key=lambda o: o[1]):
        if periods:
            p_start, p_end = periods[-1]
            if p_end is None or o_start <= p_end:
                periods[-1] = (p_start, None if p_end is None or o_end is None else max(p_end, o_end))
                continue
        periods.append((o_start, o_end))
    return periods


def availability(
    outages: Iterable[Outage],
    open_outage: OpenOutage | None,
    *,
    window_from: datetime,
    window_to: datetime,
    now: datetime,
    created_at: datetime | None = None,
) -> AvailabilityFigures:
    """The figures of one station over [window_from, window_to) (see the module doc).
    `outages` may hold outages outside the window (they are left out) in any order."""
    start = window_from if created_at is None else max(window_from, created_at)
    end = min(window_to, now)
    if end <= start:
        return AvailabilityFigures(start, max(start, end), 0.0, 0.0, 0, 0, 0.0)
    spans: list[OutageSpan] = []
    clipped: list[tuple[datetime, datetime]] = []
    failures = repairs = 0
    repair_s = 0.0
    candidates: list[tuple[str, datetime, datetime | None]] = [(o.cause, o.start, o.end) for o in outages]
    if open_outage is not None:
        candidates.append((open_outage.cause, open_outage.since, None))
    candidates = [c for c in candidates if c[2] is None or c[2] >= c[1]]  # else not an interval
    for p_start, p_end in _down_periods(candidates):
        if start <= p_start < end:
            failures += 1
        if p_end is not None and start <= p_end < end:
            repairs += 1
            repair_s += _seconds(p_start, p_end)
    for cause, o_start, o_end in candidates:
        effective_end = end if o_end is None else o_end
        lo, hi = max(o_start, start), min(effective_end, end)
        if o_start >= end or (o_end is not None and o_end <= start) or hi < lo:
            continue
        clipped.append((lo, hi))
        spans.append(OutageSpan(cause, lo, None if o_end is None else hi, _round(_seconds(lo, hi))))
    down = min(_union_length(clipped), _seconds(start, end))
    up = _seconds(start, end) - down
    spans.sort(key=lambda s: (s.start, s.end is None, s.end or s.start))
    return AvailabilityFigures(start, end, _round(up), _round(down), failures, repairs, repair_s, tuple(spans))


def combine(figures: Iterable[AvailabilityFigures]) -> AvailabilityFigures | None:
    """The figures of several stations as one (None for none): up, down, failures and
    repairs summed; outages are not listed."""
    items = list(figures)
    if not items:
        return None
    return AvailabilityFigures(
        observed_from=min(f.observed_from for f in items),
        observed_to=max(f.observed_to for f in items),
        up_s=_round(sum(f.up_s for f in items)),
        down_s=_round(sum(f.down_s for f in items)),
        failures=sum(f.failures for f in items),
        repairs=sum(f.repairs for f in items),
        repair_s=sum(f.repair_s for f in items),
    )
