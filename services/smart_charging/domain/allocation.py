"""Site current allocation: split a site's per-phase current limit between charging sessions.

Pure and deterministic (stdlib only, no I/O). See docs/adr/006-smart-charging.md.

Model
-----
* The site limit is in amps *per phase*. We do not know how stations are wired
  (phase rotation), so every session's current is conservatively counted against
  the same per-phase budget, whether it charges on 1 or 3 phases:
  ``sum(allocations) <= limit_a``.
* Sessions the station refused to limit (``controllable=False``) are reserved at
  their ``max_a``, or at their measured draw plus ``headroom_a`` (rounded up to a step,
  at most ``max_a``) once a reading exists, and never changed (ADR 006, amended by
  ADR 018 §5).
* Controllable sessions are ranked by ``priority`` (higher first), then by
  ``session_key`` (ascending). The running set is the longest prefix of that ranking
  whose minimum currents fit into the budget; everything after it is paused (0 A).
  So the lowest priority is paused first and, inside a tier, the last key.
* Tiers are then served in priority order: a tier receives the budget left after
  keeping the minimums of the lower running tiers, water-filled in equal shares
  (each session clamped to ``[min_a, cap]``); what a tier cannot use flows down.
* A session's cap is its ``max_a``, or ``measured_a + headroom_a`` when a measurement
  shows it draws less (never below ``min_a``): the unused current goes to the others.
* All currents are whole multiples of ``step_a``: minimums round up (to one step at
  least, so 0 A always means paused), caps and shares round down, and the
  indivisible remainder of a tier is handed out one step at a time in key order
  (so shares in a tier differ by at most one step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from itertools import groupby

__all__ = [
    "DEFAULT_HEADROOM_A",
    "DEFAULT_STEP_A",
    "Allocation",
    "Demand",
    "allocate",
]

DEFAULT_STEP_A = Decimal("0.1")
DEFAULT_HEADROOM_A = Decimal("1")

_ZERO = Decimal(0)
# Fixed arithmetic context: results must not depend on whatever the caller's thread set.
_CONTEXT = Context(prec=28)


@dataclass(frozen=True, slots=True)
class Demand:
    """What one charging session can take.

    ``measured_a`` is the current the session actually draws (per phase), if known.
    ``controllable=False`` means the station rejected our profile: we reserve ``max_a``,
    or ``measured_a`` plus the headroom when it is known.
    """

    session_key: str
    phases: int
    min_a: Decimal
    max_a: Decimal
    priority: int = 0
    measured_a: Decimal | None = None
    controllable: bool = True

    def __post_init__(self) -> None:
        if not self.session_key:
            raise ValueError("session_key must not be empty")
        if self.phases not in (1, 3):
            raise ValueError(f"{self.session_key}: phases must be 1 or 3, got {self.phases}")
        if self.min_a < _ZERO:
            raise ValueError(f"{self.session_key}: min_a must be >= 0, got {self.min_a}")
        if self.max_a <= _ZERO:
            raise ValueError(f"{self.session_key}: max_a must be > 0, got {self.max_a}")
        if self.max_a < self.min_a:
            raise ValueError(
                f"{self.session_key}: max_a ({self.max_a}) must be >= min_a ({self.min_a})"
            )
        if self.measured_a is not None and self.measured_a < _ZERO:
            raise ValueError(f"{self.session_key}: measured_a must be >= 0, got {self.measured_a}")


@dataclass(frozen=True, slots=True)
class Allocation:
    """Result of :func:`allocate`.

    ``limits`` maps every session key to its current in A: 0 when paused, its
    reservation for an uncontrollable session (``max_a``, or the measured draw plus
    the headroom). ``total_a`` includes the reservations.
    ``over_limit`` is set when the reservations alone exceed the limit (then every
    controllable session is paused and ``total_a > limit_a``). ``trace`` explains the
    decision, one line per step, for logs and closing notes.
    """

    limit_a: Decimal
    step_a: Decimal
    limits: Mapping[str, Decimal]
    paused: tuple[str, ...]
    reserved_a: Decimal
    total_a: Decimal
    over_limit: bool = False
    trace: tuple[str, ...] = field(default=(), compare=False)

    def __getitem__(self, session_key: str) -> Decimal:
        return self.limits[session_key]

    def get(self, session_key: str, default: Decimal | None = None) -> Decimal | None:
        return self.limits.get(session_key, default)

    @property
    def running(self) -> tuple[str, ...]:
        """Keys of sessions with a current above 0 A (reserved ones included)."""
        return tuple(k for k, v in sorted(self.limits.items()) if v > _ZERO)


@dataclass(slots=True)
class _Slot:
    """Working copy of one controllable demand, in whole steps."""

    demand: Demand
    lo: int  # minimum, in steps (rounded up)
    hi: int  # cap, in steps (rounded down)
    capped_by: str  # "max" or "measured"
    units: int = 0


def _fmt(value: Decimal) -> str:
    """Compact amps for the trace: 10.60 -> '10.6', 16.0 -> '16'."""
    return format(value.normalize(), "f")


def _floor_units(value: Decimal, step: Decimal) -> int:
    return int((value / step).to_integral_value(rounding=ROUND_FLOOR))


def _ceil_units(value: Decimal, step: Decimal) -> int:
    return int((value / step).to_integral_value(rounding=ROUND_CEILING))


def _water_fill(slots: Sequence[_Slot], budget: int) -> int:
    """Give each slot ``clamp(level, lo, hi)`` steps, spending at most ``budget``.

    Requires ``sum(lo) <= budget``. Picks the highest common level that fits, then
    hands the leftover steps one by one to the slots that could still grow, in the
    given (key) order. Returns the level. Spends exactly ``min(budget, sum(hi))``.
    """
    if sum(s.hi for s in slots) <= budget:
        for s in slots:
            s.units = s.hi
        return max((s.hi for s in slots), default=0)

    def spent(level: int) -> int:
        return sum(min(max(level, s.lo), s.hi) for s in slots)

    low, high = 0, max(s.hi for s in slots)  # spent(low) <= budget < spent(high)
    if spent(low) > budget:  # pragma: no cover - excluded by the precondition
        raise AssertionError("minimums exceed the budget")
    while high - low > 1:
        mid = (low + high) // 2
        if spent(mid) <= budget:
            low = mid
        else:
            high = mid
    level = low
    for s in slots:
        s.units = min(max(level, s.lo), s.hi)
    leftover = budget - spent(level)
    for s in slots:
        if leftover == 0:
            break
        if s.lo <= level < s.hi:
            s.units += 1
            leftover -= 1
    return level


def _reservation(d: Demand, step: Decimal, headroom: Decimal) -> tuple[Decimal, str]:
    """What an uncontrollable session keeps: its max, or its measured draw plus the
    headroom rounded up to a step (never above its max), and why."""
    if d.measured_a is None:
        return d.max_a, ""
    measured = _ceil_units(d.measured_a + headroom, step) * step
    if measured >= d.max_a:
        return d.max_a, f", measured {_fmt(d.measured_a)} A"
    return measured, f", measured {_fmt(d.measured_a)} A + {_fmt(headroom)} A headroom"


def allocate(
    limit_a: Decimal,
    sessions: Sequence[Demand],
    *,
    step_a: Decimal = DEFAULT_STEP_A,
    headroom_a: Decimal = DEFAULT_HEADROOM_A,
) -> Allocation:
    """Split ``limit_a`` (A per phase) between ``sessions``. See the module docstring."""
    with localcontext(_CONTEXT):
        return _allocate(Decimal(limit_a), sessions, Decimal(step_a), Decimal(headroom_a))


def _allocate(
    limit_a: Decimal, sessions: Sequence[Demand], step: Decimal, headroom: Decimal
) -> Allocation:
    if step <= _ZERO:
        raise ValueError(f"step_a must be > 0, got {step}")
    if limit_a < _ZERO:
        raise ValueError(f"limit_a must be >= 0, got {limit_a}")
    if headroom < _ZERO:
        raise ValueError(f"headroom_a must be >= 0, got {headroom}")
    keys = [d.session_key for d in sessions]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate session keys: {', '.join(dupes)}")

    trace: list[str] = []
    limits: dict[str, Decimal] = {}
    reserved_demands = sorted(
        (d for d in sessions if not d.controllable), key=lambda d: d.session_key
    )
    controllable = [d for d in sessions if d.controllable]
    trace.append(
        f"limit {_fmt(limit_a)} A per phase, step {_fmt(step)} A: "
        f"{len(controllable)} controllable, {len(reserved_demands)} uncontrollable session(s)"
    )

    reserved = _ZERO
    for d in reserved_demands:
        amps, why = _reservation(d, step, headroom)
        limits[d.session_key] = amps
        reserved += amps
        trace.append(f"reserve {_fmt(amps)} A for {d.session_key} (uncontrollable{why})")

    ranked = sorted(controllable, key=lambda d: (-d.priority, d.session_key))

    if reserved > limit_a:
        trace.append(
            f"OVER LIMIT: reservations {_fmt(reserved)} A exceed the limit "
            f"{_fmt(limit_a)} A; pausing every controllable session"
        )
        for d in ranked:
            limits[d.session_key] = _ZERO
        return Allocation(
            limit_a=limit_a,
            step_a=step,
            limits=dict(sorted(limits.items())),
            paused=tuple(sorted(d.session_key for d in ranked)),
            reserved_a=reserved,
            total_a=reserved,
            over_limit=True,
            trace=tuple(trace),
        )

    budget = _floor_units(limit_a - reserved, step)
    if reserved_demands:
        trace.append(f"{_fmt(budget * step)} A left for controllable sessions")

    # Caps and minimums in whole steps.
    slots: list[_Slot] = []
    paused: list[str] = []
    for d in ranked:
        lo = max(1, _ceil_units(d.min_a, step))  # running means > 0 A: 0 A is paused
        max_units = _floor_units(d.max_a, step)
        if lo > max_units:
            limits[d.session_key] = _ZERO
            paused.append(d.session_key)
            trace.append(
                f"pause {d.session_key}: min {_fmt(d.min_a)} A and max {_fmt(d.max_a)} A "
                f"leave no multiple of the {_fmt(step)} A step"
            )
            continue
        hi, capped_by = max_units, "max"
        if d.measured_a is not None:
            wanted = max(d.min_a, d.measured_a + headroom)
            measured_units = max(lo, _floor_units(wanted, step))
            if measured_units < max_units:
                hi, capped_by = measured_units, "measured"
                trace.append(
                    f"{d.session_key}: measured {_fmt(d.measured_a)} A, "
                    f"cap {_fmt(hi * step)} A (headroom {_fmt(headroom)} A)"
                )
        slots.append(_Slot(demand=d, lo=lo, hi=hi, capped_by=capped_by))

    # Running set: the longest prefix of the ranking whose minimums fit.
    running: list[_Slot] = []
    needed = 0
    for index, slot in enumerate(slots):
        if needed + slot.lo > budget:
            for later in slots[index:]:
                limits[later.demand.session_key] = _ZERO
                paused.append(later.demand.session_key)
                trace.append(
                    f"pause {later.demand.session_key} (priority {later.demand.priority}): "
                    f"min {_fmt(later.lo * step)} A does not fit, "
                    f"{_fmt((budget - needed) * step)} A left after higher-ranked minimums"
                )
            break
        needed += slot.lo
        running.append(slot)

    # Serve tiers in priority order, keeping the minimums of the lower tiers.
    remaining = budget
    tiers = [list(group) for _, group in groupby(running, key=lambda s: s.demand.priority)]
    for position, tier in enumerate(tiers):
        kept_for_lower = sum(s.lo for lower in tiers[position + 1 :] for s in lower)
        available = remaining - kept_for_lower
        level = _water_fill(tier, available)
        spent = sum(s.units for s in tier)
        remaining -= spent
        kept = f", {_fmt(kept_for_lower * step)} A kept for lower minimums" if kept_for_lower else ""
        trace.append(
            f"tier priority {tier[0].demand.priority}: {len(tier)} session(s), "
            f"{_fmt(available * step)} A available{kept}, "
            f"share {_fmt(level * step)} A, {_fmt(spent * step)} A used"
        )
        for s in tier:
            amps = s.units * step
            limits[s.demand.session_key] = amps
            note = ""
            if s.units == s.hi:
                note = " (measured cap)" if s.capped_by == "measured" else " (max)"
            elif s.units == s.lo and s.lo > level:
                note = " (min)"
            trace.append(f"  {s.demand.session_key} -> {_fmt(amps)} A{note}")

    controllable_total = sum((s.units for s in running), 0) * step
    total = reserved + controllable_total
    trace.append(
        f"total {_fmt(total)} A of {_fmt(limit_a)} A"
        + (f" ({_fmt(reserved)} A reserved)" if reserved_demands else "")
        + (f", paused: {', '.join(sorted(paused))}" if paused else "")
    )
    return Allocation(
        limit_a=limit_a,
        step_a=step,
        limits=dict(sorted(limits.items())),
        paused=tuple(sorted(paused)),
        reserved_a=reserved,
        total_a=total,
        over_limit=False,
        trace=tuple(trace),
    )
