"""Per-site smart-charging state machine (pure, stdlib only).

``apply(state, event, now)`` returns the next state and the profile commands to send.
A command is emitted only for a controllable session whose limit changed, so applying
the same event twice emits nothing the second time. Events for sessions the site
does not know (or for an older transaction at the same EVSE) are ignored.

Exactly one writer per site is expected: the application layer regroups the events
of a site (e.g. Kafka key = site id) and applies them in order. See
docs/adr/006-smart-charging.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TypeAlias

from .allocation import DEFAULT_HEADROOM_A, DEFAULT_STEP_A, Allocation, Demand, allocate

__all__ = [
    "DEFAULT_MIN_A",
    "ActiveSession",
    "Event",
    "LimitChanged",
    "MeterReading",
    "ProfileCommand",
    "ProfileRejected",
    "SessionStarted",
    "SessionStopped",
    "SiteConfig",
    "SiteState",
    "LIMIT_RESOLUTION_A",
    "TransactionId",
    "apply",
    "session_key",
]

TransactionId: TypeAlias = int | str
"""OCPP 1.6 transaction ids are integers, 2.0.1 ids are strings: passed through as is."""

DEFAULT_MIN_A = Decimal("6")  # IEC 61851-1: below 6 A the EV may not charge at all.
LIMIT_RESOLUTION_A = Decimal("0.1")  # limits on the wire: 1.6 has multipleOf 0.1, 2.0.1 one decimal
_ZERO = Decimal(0)


def session_key(station_id: str, evse_id: int) -> str:
    """``"station_id/evse_id"``: the key of a session in a site and in an allocation."""
    return f"{station_id}/{evse_id}"


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (as in services.common.timeutil)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _same_tx(a: TransactionId, b: TransactionId) -> bool:
    return str(a) == str(b)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SessionStarted:
    station_id: str
    evse_id: int
    transaction_id: TransactionId
    phases: int
    max_a: Decimal
    priority: int = 0
    min_a: Decimal = DEFAULT_MIN_A


@dataclass(frozen=True, slots=True)
class SessionStopped:
    station_id: str
    evse_id: int
    transaction_id: TransactionId


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Current drawn by a session, in A per phase (the highest phase if several).

    ``measured_at`` is the sample time if the station sent one; ``now`` otherwise.
    """

    station_id: str
    evse_id: int
    current_a: Decimal
    measured_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.current_a < _ZERO:
            raise ValueError(f"current_a must be >= 0, got {self.current_a}")


@dataclass(frozen=True, slots=True)
class LimitChanged:
    """New grid connection limit and/or grid operator cap (A per phase).

    ``None`` leaves a value unchanged; ``clear_external_cap=True`` removes the cap.
    """

    limit_a: Decimal | None = None
    external_cap_a: Decimal | None = None
    clear_external_cap: bool = False

    def __post_init__(self) -> None:
        if self.clear_external_cap and self.external_cap_a is not None:
            raise ValueError("set external_cap_a or clear_external_cap, not both")
        for name in ("limit_a", "external_cap_a"):
            value = getattr(self, name)
            if value is not None and value < _ZERO:
                raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class ProfileRejected:
    """The station rejected our profile: from now on its session is reserved at max_a.

    With ``transaction_id`` set, a rejection for another transaction is ignored.
    """

    station_id: str
    evse_id: int
    transaction_id: TransactionId | None = None


Event: TypeAlias = SessionStarted | SessionStopped | MeterReading | LimitChanged | ProfileRejected


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ProfileCommand:
    """Send a TxProfile limiting this transaction to ``limit_a`` (0 A = pause)."""

    station_id: str
    evse_id: int
    limit_a: Decimal
    transaction_id: TransactionId
    previous_a: Decimal | None = None  # last limit sent, None for a new session


@dataclass(frozen=True, slots=True)
class ActiveSession:
    station_id: str
    evse_id: int
    transaction_id: TransactionId
    phases: int
    min_a: Decimal
    max_a: Decimal
    priority: int
    started_at: datetime
    measured_a: Decimal | None = None  # demand hint used to cap the allocation
    controllable: bool = True
    limit_a: Decimal | None = None  # last limit commanded; None: none yet / not ours
    limit_set_at: datetime | None = None

    @property
    def key(self) -> str:
        return session_key(self.station_id, self.evse_id)

    def demand(self) -> Demand:
        return Demand(
            session_key=self.key,
            phases=self.phases,
            min_a=self.min_a,
            max_a=self.max_a,
            priority=self.priority,
            measured_a=self.measured_a,
            controllable=self.controllable,
        )


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """Tuning of the state machine.

    * ``underuse_margin_a``: a reading this far below the session's limit means the
      EV uses clearly less than its share: its allocation is capped to the reading
      plus ``headroom_a`` and the rest is redistributed.
    * ``saturation_margin_a``: a capped session drawing within this margin of its
      limit may want more: its cap is lifted (must be < ``headroom_a`` so a session
      that draws exactly its measured demand stays capped).
    * ``settle``: readings taken sooner than this after the session's limit changed
      are ignored (the EV is still ramping); it also makes replayed readings harmless
      (keep it > 0: a replayed reading is then always inside the settle window).
    """

    step_a: Decimal = DEFAULT_STEP_A
    headroom_a: Decimal = DEFAULT_HEADROOM_A
    underuse_margin_a: Decimal = Decimal("2")
    saturation_margin_a: Decimal = Decimal("0.5")
    settle: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.saturation_margin_a >= self.headroom_a:
            raise ValueError("saturation_margin_a must be smaller than headroom_a")
        if self.underuse_margin_a <= self.headroom_a:
            raise ValueError("underuse_margin_a must be larger than headroom_a")
        if self.settle <= timedelta(0):
            raise ValueError("settle must be > 0")


@dataclass(frozen=True, slots=True)
class SiteState:
    site_id: str
    limit_a: Decimal
    external_cap_a: Decimal | None = None
    sessions: Mapping[str, ActiveSession] = field(default_factory=dict)
    allocation: Allocation | None = None
    config: SiteConfig = field(default_factory=SiteConfig)

    def __post_init__(self) -> None:
        if self.limit_a < _ZERO:
            raise ValueError(f"limit_a must be >= 0, got {self.limit_a}")
        if self.external_cap_a is not None and self.external_cap_a < _ZERO:
            raise ValueError(f"external_cap_a must be >= 0, got {self.external_cap_a}")

    @property
    def effective_limit_a(self) -> Decimal:
        """The grid limit, lowered by the grid operator's cap when there is one."""
        if self.external_cap_a is None:
            return self.limit_a
        return min(self.limit_a, self.external_cap_a)


# -------------------------------------------------------------------------- apply


def apply(state: SiteState, event: Event, now: datetime) -> tuple[SiteState, list[ProfileCommand]]:
    """Apply one event; return the new state and the commands to send, in sending order."""
    now = _utc(now)
    if isinstance(event, SessionStarted):
        return _on_started(state, event, now)
    if isinstance(event, SessionStopped):
        return _on_stopped(state, event, now)
    if isinstance(event, MeterReading):
        return _on_reading(state, event, now)
    if isinstance(event, LimitChanged):
        return _on_limit(state, event, now)
    if isinstance(event, ProfileRejected):
        return _on_rejected(state, event, now)
    raise TypeError(f"unknown smart-charging event: {type(event).__name__}")


def _on_started(
    state: SiteState, event: SessionStarted, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = session_key(event.station_id, event.evse_id)
    current = state.sessions.get(key)
    if current is not None and _same_tx(current.transaction_id, event.transaction_id):
        return state, []  # replayed start
    # A different transaction at the same EVSE replaces the old one (its stop was lost).
    session = ActiveSession(
        station_id=event.station_id,
        evse_id=event.evse_id,
        transaction_id=event.transaction_id,
        phases=event.phases,
        min_a=event.min_a,
        max_a=event.max_a,
        priority=event.priority,
        started_at=now,
    )
    session.demand()  # validate phases / min / max before touching the state
    sessions = dict(state.sessions)
    sessions[key] = session
    return _reallocate(state, sessions, now)


def _on_stopped(
    state: SiteState, event: SessionStopped, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = session_key(event.station_id, event.evse_id)
    current = state.sessions.get(key)
    if current is None or not _same_tx(current.transaction_id, event.transaction_id):
        return state, []
    sessions = {k: s for k, s in state.sessions.items() if k != key}
    return _reallocate(state, sessions, now)


def _on_reading(
    state: SiteState, event: MeterReading, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = session_key(event.station_id, event.evse_id)
    session = state.sessions.get(key)
    if session is None or not session.controllable or not session.limit_a:
        return state, []  # unknown, not ours, or paused: nothing to learn
    cfg = state.config
    taken_at = _utc(event.measured_at) if event.measured_at is not None else now
    if session.limit_set_at is not None and taken_at - session.limit_set_at < cfg.settle:
        return state, []  # the EV is still adjusting to its last limit (or a replay)
    current = event.current_a
    if current <= session.limit_a - cfg.underuse_margin_a:
        if session.measured_a == current:
            return state, []
        updated = replace(session, measured_a=current)  # uses clearly less: cap it
    elif session.measured_a is not None and current >= session.limit_a - cfg.saturation_margin_a:
        updated = replace(session, measured_a=None)  # capped and using it all: lift the cap
    else:
        return state, []
    sessions = dict(state.sessions)
    sessions[key] = updated
    return _reallocate(state, sessions, now)


def _on_limit(
    state: SiteState, event: LimitChanged, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    limit_a = state.limit_a if event.limit_a is None else event.limit_a
    if event.clear_external_cap:
        cap: Decimal | None = None
    elif event.external_cap_a is not None:
        cap = event.external_cap_a
    else:
        cap = state.external_cap_a
    if limit_a == state.limit_a and cap == state.external_cap_a and state.allocation is not None:
        return state, []
    changed = replace(state, limit_a=limit_a, external_cap_a=cap)
    return _reallocate(changed, dict(state.sessions), now)


def _on_rejected(
    state: SiteState, event: ProfileRejected, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = session_key(event.station_id, event.evse_id)
    session = state.sessions.get(key)
    if session is None or not session.controllable:
        return state, []
    if event.transaction_id is not None and not _same_tx(
        session.transaction_id, event.transaction_id
    ):
        return state, []
    sessions = dict(state.sessions)
    sessions[key] = replace(session, controllable=False, measured_a=None, limit_a=None)
    return _reallocate(state, sessions, now)


def _reallocate(
    state: SiteState, sessions: Mapping[str, ActiveSession], now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    cfg = state.config
    allocation = allocate(
        state.effective_limit_a,
        [s.demand() for _, s in sorted(sessions.items())],
        step_a=cfg.step_a,
        headroom_a=cfg.headroom_a,
    )
    updated: dict[str, ActiveSession] = {}
    lowering: list[ProfileCommand] = []
    raising: list[ProfileCommand] = []
    for key, session in sorted(sessions.items()):
        new_limit = allocation.limits[key]
        if not session.controllable or session.limit_a == new_limit:
            updated[key] = session
            continue
        command = ProfileCommand(
            station_id=session.station_id,
            evse_id=session.evse_id,
            limit_a=new_limit,
            transaction_id=session.transaction_id,
            previous_a=session.limit_a,
        )
        # Lower first, then raise, so the site never transiently exceeds its limit.
        # A new session's draw is unknown: it is limited in the first batch.
        if session.limit_a is None or new_limit < session.limit_a:
            lowering.append(command)
        else:
            raising.append(command)
        updated[key] = replace(session, limit_a=new_limit, limit_set_at=now)
    new_state = replace(state, sessions=updated, allocation=allocation)
    return new_state, lowering + raising
