"""Tariffs: base prices, optional time-of-day bands, and the REST dict shape.

A band overrides the base per-kWh / per-minute price while the *local* wall
time (in `Tariff.timezone`) is inside it; the first matching band wins.
`days_of_week` (0=Mon..6=Sun) is checked against the local weekday of the
instant being priced, like OCPI TariffRestrictions: a band "22:00"-"06:00" on
(4,) (Friday) covers Fri 00:00-06:00 and Fri 22:00-24:00; to run Friday night
into Saturday morning list both days.

Every amount is bounded (`services.common.decimals`, pure like this module):
finite, magnitude 1e-15 .. 1e15, at most 64 characters. "1e-999999" is a valid
Decimal whose fixed-point form is a megabyte, and "1e400" overflows every
quantize; both are refused with a TariffError naming the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.decimals import MAX_ABS_EXPONENT, parse_decimal

from .money import PRICING_CONTEXT, CurrencyError, minor_units, validate_currency

__all__ = [
    "TariffError",
    "TariffBand",
    "Tariff",
    "BandSegment",
    "BASE_LABEL",
    "band_segments",
]

UTC = timezone.utc
_ONE_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
_DAY_MEMO_MAX = 4096  # days of band transitions memoized per tariff (then it starts over)
BASE_LABEL = "base"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MAX_GRACE_MINUTES = 525_600  # a year: longer means "no idle fee", not a number to compute with
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class TariffError(ValueError):
    """An invalid tariff definition; the message names the offending field."""


def _shown(value: object) -> str:
    """The offending value for an error message, never a megabyte of digits."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _looks_numeric(text: str) -> bool:
    try:
        Decimal(text[:64])  # only a prefix: the question is "number or not", not its value
    except ArithmeticError:
        return False
    return True


def _decimal(value: object, name: str, *, allow_none: bool = False) -> Decimal | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise TariffError(f"{name} must be a decimal string like \"0.30\", got {type(value).__name__} {_shown(value)}")
    if not isinstance(value, (int, str, Decimal)):
        raise TariffError(f"{name} must be a decimal string like \"0.30\", got {_shown(value)}")
    # A Decimal (a JSON number read exactly) is bounded by its text like a string.
    d = parse_decimal(str(value) if isinstance(value, Decimal) else value)
    if d is None and isinstance(value, str) and not _looks_numeric(value):
        raise TariffError(f"{name} must be a decimal string like \"0.30\", got {_shown(value)}")
    if d is None:
        raise TariffError(
            f"{name} must be a finite decimal of magnitude 1e-{MAX_ABS_EXPONENT} to 1e{MAX_ABS_EXPONENT} "
            f"(at most 64 characters), got {_shown(value)}"
        )
    return d


def _price(value: object, name: str, *, allow_none: bool = False) -> Decimal | None:
    d = _decimal(value, name, allow_none=allow_none)
    if d is not None and d < 0:
        raise TariffError(f"{name} must not be negative, got {d}")
    return d


def _required_price(value: object, name: str) -> Decimal:
    d = _price(value, name)
    assert d is not None
    return d


def _hhmm(value: object, name: str) -> time:
    if not isinstance(value, str) or not _HHMM_RE.match(value):
        raise TariffError(f"{name} must be a time \"HH:MM\" (00:00-23:59), got {value!r}")
    return time(int(value[:2]), int(value[3:]))


@dataclass(frozen=True)
class TariffBand:
    start: str
    end: str
    days_of_week: tuple[int, ...] | None = None
    price_per_kwh: Decimal | None = None
    price_per_minute: Decimal | None = None

    def __post_init__(self) -> None:
        _hhmm(self.start, "band.start")
        _hhmm(self.end, "band.end")
        if self.days_of_week is not None:
            days = self.days_of_week
            if isinstance(days, (str, bytes)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days
            ):
                raise TariffError(f"band.days_of_week must be integers 0 (Mon) .. 6 (Sun), got {days!r}")
            if not days:
                raise TariffError("band.days_of_week must not be empty (use null for every day)")
            object.__setattr__(self, "days_of_week", tuple(sorted(set(days))))
        object.__setattr__(self, "price_per_kwh", _price(self.price_per_kwh, "band.price_per_kwh", allow_none=True))
        object.__setattr__(
            self, "price_per_minute", _price(self.price_per_minute, "band.price_per_minute", allow_none=True)
        )

    @property
    def start_time(self) -> time:
        return _hhmm(self.start, "band.start")

    @property
    def end_time(self) -> time:
        return _hhmm(self.end, "band.end")

    @property
    def label(self) -> str:
        days = "" if self.days_of_week is None else " " + ",".join(DAY_NAMES[d] for d in self.days_of_week)
        return f"{self.start}-{self.end}{days}"

    def contains(self, local: datetime) -> bool:
        """Is the local wall time `local` inside this band? Window is [start, end)."""
        if self.days_of_week is not None and local.weekday() not in self.days_of_week:
            return False
        t, s, e = local.time().replace(tzinfo=None, fold=0), self.start_time, self.end_time
        if s == e:
            return True  # "00:00"-"00:00" (or any s == e): the whole day
        if s < e:
            return s <= t < e
        return t >= s or t < e  # wraps midnight


@dataclass(frozen=True)
class Tariff:
    id: str
    currency: str
    price_per_kwh: Decimal = Decimal(0)
    price_per_minute: Decimal = Decimal(0)
    session_fee: Decimal = Decimal(0)
    idle_fee_per_minute: Decimal = Decimal(0)
    idle_grace_minutes: int = 0
    tax_rate: Decimal = Decimal(0)
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    bands: tuple[TariffBand, ...] = field(default_factory=tuple)
    timezone: str = "UTC"
    default: bool = False
    # The band transitions of each UTC day asked for (`band_transitions_on`), memoized on
    # the tariff itself: derived from the fields above, so it lives and dies with this
    # value and needs no cache of its own anywhere; not part of its identity (no init,
    # repr, equality, hash or fingerprint). Bounded by `_DAY_MEMO_MAX`.
    _day_transitions: dict[date, tuple[datetime, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _fingerprint: str = field(default="", init=False, repr=False, compare=False, hash=False)  # memo

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise TariffError(f"id must be a non-empty string, got {self.id!r}")
        try:
            validate_currency(self.currency)
        except CurrencyError as e:
            raise TariffError(str(e)) from None
        for name in ("price_per_kwh", "price_per_minute", "session_fee", "idle_fee_per_minute"):
            object.__setattr__(self, name, _required_price(getattr(self, name), name))
        for name in ("min_price", "max_price"):
            object.__setattr__(self, name, _price(getattr(self, name), name, allow_none=True))
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise TariffError(f"min_price {self.min_price} is greater than max_price {self.max_price}")
        g = self.idle_grace_minutes
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= _MAX_GRACE_MINUTES:
            raise TariffError(
                f"idle_grace_minutes must be a non-negative integer of at most {_MAX_GRACE_MINUTES}, got {_shown(g)}"
            )
        rate = _decimal(self.tax_rate, "tax_rate")
        assert rate is not None
        if not (Decimal(0) <= rate < Decimal(1)):
            raise TariffError(f"tax_rate must be in [0, 1) (e.g. \"0.19\"), got {rate}")
        object.__setattr__(self, "tax_rate", rate)
        bands = tuple(self.bands)
        if not all(isinstance(b, TariffBand) for b in bands):
            raise TariffError("bands must be TariffBand instances")
        object.__setattr__(self, "bands", bands)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise TariffError(
                f"timezone must be an IANA zone name like \"Europe/Berlin\", got {self.timezone!r}"
            ) from None
        if not isinstance(self.default, bool):
            raise TariffError(f"default must be a boolean, got {self.default!r}")

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical tariff (decimals normalised, "0.30" and "0.3" alike; the
        `default` flag left out: which tariff is the default does not change what this one
        charges). A price accumulator pins it (running.py). Memoized on the tariff."""
        if not self._fingerprint:
            canon = {k: v for k, v in _canonical(self).items() if k != "default"}
            text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
            object.__setattr__(self, "_fingerprint", hashlib.sha256(text.encode()).hexdigest())
        return self._fingerprint

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def band_index_at(self, instant: datetime) -> int | None:
        """Index of the first band containing `instant` (aware), or None for base prices."""
        local = instant.astimezone(self.zone)
        for i, band in enumerate(self.bands):
            if band.contains(local):
                return i
        return None

    def energy_price(self, band_index: int | None) -> Decimal:
        if band_index is not None and (p := self.bands[band_index].price_per_kwh) is not None:
            return p
        return self.price_per_kwh

    def time_price(self, band_index: int | None) -> Decimal:
        if band_index is not None and (p := self.bands[band_index].price_per_minute) is not None:
            return p
        return self.price_per_minute

    def band_label(self, band_index: int | None) -> str:
        return BASE_LABEL if band_index is None else self.bands[band_index].label

    def band_transitions_on(self, day: date) -> tuple[datetime, ...]:
        """The instants T in [day 00:00 UTC, next day 00:00 UTC) where the band in force
        changes, ascending; `day` inside the priced range (a day after 0001-01-01 and
        before 9999-12-31). Memoized on this tariff: the running price advancing by one
        reading looks up one or two days instead of splitting a window (which walks three
        local days of walls and the zone's offsets)."""
        memo = self._day_transitions
        found = memo.get(day)
        if found is None:
            lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # Transitions fall on whole seconds: a window opening 1 µs early reports one at `lo`.
            found = tuple(seg.start for seg in band_segments(self, lo - _ONE_US, lo + _ONE_DAY)[1:])
            if len(memo) >= _DAY_MEMO_MAX:
                memo.clear()
            memo[day] = found
        return found


def _canonical(value: Any) -> Any:
    """The JSON form a fingerprint hashes: the identity fields only (not the memos)."""
    if isinstance(value, Decimal):
        return f"{value.normalize(PRICING_CONTEXT):f}"  # "0.30" and "0.3" are the same price
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in fields(value) if f.compare}
    return value


# --- splitting a time window by band -------------------------------------------------


@dataclass(frozen=True)
class BandSegment:
    """[start, end) during which one band (or the base prices, band_index None) applies."""

    start: datetime
    end: datetime
    band_index: int | None


def _epoch_seconds(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


def _offset_transitions(zone: ZoneInfo, start: datetime, end: datetime) -> set[datetime]:
    """UTC instants in (start, end) where the zone's UTC offset changes (DST)."""

    def offset(s: int) -> timedelta | None:
        return datetime.fromtimestamp(s, UTC).astimezone(zone).utcoffset()

    found: set[datetime] = set()
    step = 3 * 3600  # offsets never change twice within 3 hours
    lo_s, stop_s = _epoch_seconds(start), _epoch_seconds(end) + 1
    while lo_s < stop_s:
        hi_s = min(lo_s + step, stop_s)
        if offset(lo_s) != offset(hi_s):
            a, b = lo_s, hi_s  # offset(a) is old, offset(b) is new
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if offset(mid) == offset(a) else (a, mid)
            t = datetime.fromtimestamp(b, UTC)
            if start < t < end:
                found.add(t)
        lo_s = hi_s
    return found


def band_segments(tariff: Tariff, start: datetime, end: datetime) -> tuple[BandSegment, ...]:
    """Split [start, end) into maximal consecutive segments of constant band.

    Exact to the microsecond, DST-safe: candidate cut points are every band
    boundary and local midnight on each local day (both folds of ambiguous wall
    times) plus the zone's offset transitions; between two cuts the local clock
    runs continuously without crossing a boundary, so membership is constant.
    An empty window (end <= start) yields one zero-length segment at start.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return (BandSegment(start, start, tariff.band_index_at(start)),)
    if not tariff.bands:
        return (BandSegment(start, end, None),)
    zone = tariff.zone
    cuts: set[datetime] = {start, end} | _offset_transitions(zone, start, end)
    walls = {time(0, 0)} | {b.start_time for b in tariff.bands} | {b.end_time for b in tariff.bands}
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last_day: date = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last_day:
        for wall in walls:
            for fold in (0, 1):
                t = datetime.combine(day, wall, tzinfo=zone).replace(fold=fold).astimezone(UTC)
                if start < t < end:
                    cuts.add(t)
        day += timedelta(days=1)
    points = sorted(cuts)
    segments: list[BandSegment] = []
    for a, b in zip(points, points[1:]):
        idx = tariff.band_index_at(a)
        if segments and segments[-1].band_index == idx:
            segments[-1] = BandSegment(segments[-1].start, b, idx)
        else:
            segments.append(BandSegment(a, b, idx))
    return tuple(segments)


# --- REST dict shape -----------------------------------------------------------------
