"""Per-site smart-charging state machine (pure, stdlib only).

``apply(state, event, now)`` returns the next state and the profile commands to send.
A command is emitted only for a controllable session whose limit changed, so applying
the same event twice emits nothing the second time. Events for sessions the site
does not know (or for an older transaction at the same EVSE) are ignored.

Exactly one writer per site is expected: the application layer regroups the events
of a site (e.g. Kafka key = site id) and applies them in order. See
docs/adr/006-smart-charging.md.

The rules of ADR 018 §5 (issue 10):
- ``ExternalLimitSet`` / ``ExternalLimitCleared``: a limit a station reported from an
  outside source (NotifyChargingLimit), on one EVSE or (EVSE 0) the whole station. An
  EVSE limit caps that EVSE's session; a station limit is split between the station's
  sessions (water-filled over their own caps, so what one cannot use goes to the
  others of the station); what they cannot use goes to the site's other sessions.
  Several sources on the same EVSE: the lowest holds.
- ``StationRejectsProfiles`` marks a station as not taking profiles: its sessions (this
  one and later ones) are uncontrollable, never commanded, reserved at their measured
  draw plus headroom once a reading exists (at their max before). Only
  ``StationRebooted`` clears the mark (its sessions are then limited again).
- ``ChargingNeeds`` (an Accepted NotifyEVChargingNeeds) caps the session's demand at
  the EV's max current and at the current that delivers the energy by the departure
  time, and always sends the session a TxProfile (the EV waits for one). Needs for an
  EVSE without a session are kept (bounded) until the session starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import TypeAlias

from .allocation import DEFAULT_HEADROOM_A, DEFAULT_STEP_A, Allocation, Demand, allocate

__all__ = [
    "DEFAULT_MIN_A",
    "PENDING_NEEDS_MAX",
    "PENDING_NEEDS_TTL",
    "ActiveSession",
    "ChargingNeeds",
    "Event",
    "ExternalLimitCleared",
    "ExternalLimitSet",
    "LimitChanged",
    "MeterReading",
    "NoProfiles",
    "PendingNeeds",
    "ProfileCommand",
    "ProfileRejected",
    "StationRebooted",
    "StationRejectsProfiles",
    "SessionStarted",
    "SessionStopped",
    "SiteConfig",
    "SiteState",
    "LIMIT_RESOLUTION_A",
    "TransactionId",
    "apply",
    "allocate_site",
    "session_key",
    "site_demands",
]

TransactionId: TypeAlias = int | str
"""OCPP 1.6 transaction ids are integers, 2.0.1 ids are strings: passed through as is."""

DEFAULT_MIN_A = Decimal("6")  # IEC 61851-1: below 6 A the EV may not charge at all.
LIMIT_RESOLUTION_A = Decimal("0.1")  # limits on the wire: 1.6 has multipleOf 0.1, 2.0.1 one decimal
PENDING_NEEDS_TTL = timedelta(minutes=5)  # needs that came before their session wait this long
PENDING_NEEDS_MAX = 64  # ... and at most this many per site (oldest out first)
_ZERO = Decimal(0)
_HOUR_S = Decimal(3600)


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


@dataclass(frozen=True, slots=True)
class ExternalLimitSet:
    """A limit from outside the CSMS (NotifyChargingLimit), in A per phase, in force now.

    ``evse_id`` 0 means the whole station (shared by its sessions)."""

    station_id: str
    evse_id: int
    source: str
    limit_a: Decimal

    def __post_init__(self) -> None:
        if self.evse_id < 0:
            raise ValueError(f"evse_id must be >= 0, got {self.evse_id}")
        if not self.limit_a.is_finite() or self.limit_a < _ZERO:
            raise ValueError(f"limit_a must be a finite current >= 0, got {self.limit_a}")


@dataclass(frozen=True, slots=True)
class ExternalLimitCleared:
    """ClearedChargingLimit: the source's limit on that EVSE is gone (EVSE 0: on every
    EVSE of the station and on the station)."""

    station_id: str
    evse_id: int
    source: str


@dataclass(frozen=True, slots=True)
class StationRejectsProfiles:
    """The station refused a profile (Rejected, or a CALLERROR such as NotImplemented):
    it takes none until its next boot."""

    station_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StationRebooted:
    """The station booted (accepted): it may take profiles again."""

    station_id: str


@dataclass(frozen=True, slots=True)
class ChargingNeeds:
    """What the EV at this EVSE needs (an Accepted NotifyEVChargingNeeds).

    Currents in A per phase (AC ``evMinCurrent``/``evMaxCurrent``, DC ``evMaxCurrent``),
    ``energy_wh`` the energy wanted by ``departure_at``; ``voltage_v`` converts it to a
    current (A = Wh / (hours x V x phases)). ``None`` or 0: not given."""

    station_id: str
    evse_id: int
    voltage_v: Decimal
    ev_min_a: Decimal | None = None
    ev_max_a: Decimal | None = None
    energy_wh: int | None = None
    departure_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.voltage_v <= _ZERO:
            raise ValueError(f"voltage_v must be > 0, got {self.voltage_v}")
        for name in ("ev_min_a", "ev_max_a"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < _ZERO):
                raise ValueError(f"{name} must be a finite current >= 0, got {value}")
        if self.energy_wh is not None and self.energy_wh < 0:
            raise ValueError(f"energy_wh must be >= 0, got {self.energy_wh}")


Event: TypeAlias = (
    SessionStarted
    | SessionStopped
    | MeterReading
    | LimitChanged
    | ProfileRejected
    | ExternalLimitSet
    | ExternalLimitCleared
    | StationRejectsProfiles
    | StationRebooted
    | ChargingNeeds
)


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ProfileCommand:
    """Send a TxProfile limiting this transaction to ``limit_a`` (0 A = pause)."""

    station_id: str
    evse_id: int
    limit_a: Decimal
    transaction_id: TransactionId
    previous_a: Decimal | None = None  # last limit sent, None for a new session
    until: datetime | None = None  # the EV's departure: the schedule may end there
    forced: bool = False  # sent even if the limit did not change (the EV waits for a schedule)


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
    # last limit commanded at; for an uncontrollable session: when its reading was taken
    limit_set_at: datetime | None = None
    # The EV's charging needs (ChargingNeeds): its cap (max current, and the current that
    # delivers the energy by departure), its minimum, and what it asked for.
    ev_cap_a: Decimal | None = None
    ev_min_a: Decimal | None = None
    ev_max_a: Decimal | None = None
    energy_wh: int | None = None
    departure_at: datetime | None = None
    needs_at: datetime | None = None  # when the needs were applied (None: none)

    @property
    def key(self) -> str:
        return session_key(self.station_id, self.evse_id)

    def demand(self) -> Demand:
        """The session's demand on its own (no outside limits: see `site_demands`)."""
        max_a, min_a = self.max_a, self.min_a
        if self.ev_cap_a is not None:
            max_a = min(max_a, self.ev_cap_a)
        if self.ev_min_a is not None:
            min_a = max(min_a, self.ev_min_a)
        return Demand(
            session_key=self.key,
            phases=self.phases,
            min_a=min(min_a, max_a),
            max_a=max_a,
            priority=self.priority,
            measured_a=self.measured_a,
            controllable=self.controllable,
        )


@dataclass(frozen=True, slots=True)
class NoProfiles:
    """A station marked as not taking profiles (until its next boot)."""

    since: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PendingNeeds:
    """Charging needs that arrived before their session started."""

    needs: ChargingNeeds
    received_at: datetime


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
    # outside limits (NotifyChargingLimit), (station id, EVSE id (0: station), source) -> A
    external_limits: Mapping[tuple[str, int, str], Decimal] = field(default_factory=dict)
    # stations that rejected a profile, until their next boot
    no_profiles: Mapping[str, NoProfiles] = field(default_factory=dict)
    # charging needs waiting for their session, by session key
    pending_needs: Mapping[str, PendingNeeds] = field(default_factory=dict)

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
    if isinstance(event, ExternalLimitSet):
        return _on_external_set(state, event, now)
    if isinstance(event, ExternalLimitCleared):
        return _on_external_cleared(state, event, now)
    if isinstance(event, StationRejectsProfiles):
        return _on_station_rejects(state, event, now)
    if isinstance(event, StationRebooted):
        return _on_station_rebooted(state, event, now)
    if isinstance(event, ChargingNeeds):
        return _on_needs(state, event, now)
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
        controllable=event.station_id not in state.no_profiles,
    )
    session.demand()  # validate phases / min / max before touching the state
    sessions = dict(state.sessions)
    force: frozenset[str] = frozenset()
    pending = state.pending_needs.get(key)
    if pending is not None:
        state = replace(state, pending_needs={k: v for k, v in state.pending_needs.items() if k != key})
        if now - pending.received_at <= PENDING_NEEDS_TTL:
            session = _with_needs(session, pending.needs, now)
            force = frozenset({key})
    sessions[key] = session
    return _reallocate(state, sessions, now, force)


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
    if session is None:
        return state, []
    if not session.controllable:
        return _on_uncontrolled_reading(state, session, event, now)
    if not session.limit_a:
        return state, []  # paused: nothing to learn
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


def _on_uncontrolled_reading(
    state: SiteState, session: ActiveSession, event: MeterReading, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    """An uncontrollable session is reserved at its draw plus headroom: follow the draw
    at once when it eats into the headroom, lower the reservation when the draw falls
    clearly (the same margins as for controllable sessions), ignore noise and readings
    older than the one the reservation is based on."""
    cfg = state.config
    taken_at = _utc(event.measured_at) if event.measured_at is not None else now
    if session.limit_set_at is not None and taken_at <= session.limit_set_at:
        return state, []  # older than (or the same as) the reading in force
    current, measured = event.current_a, session.measured_a
    if measured is not None:
        floor = measured - (cfg.underuse_margin_a - cfg.headroom_a)
        if floor < current <= measured + cfg.saturation_margin_a:
            return state, []
    sessions = dict(state.sessions)
    sessions[session.key] = replace(session, measured_a=current, limit_set_at=taken_at)
    return _reallocate(state, sessions, now)


def _on_external_set(
    state: SiteState, event: ExternalLimitSet, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = (event.station_id, event.evse_id, event.source)
    if state.external_limits.get(key) == event.limit_a and state.allocation is not None:
        return state, []
    limits = dict(state.external_limits)
    limits[key] = event.limit_a
    return _reallocate(replace(state, external_limits=limits), dict(state.sessions), now)


def _on_external_cleared(
    state: SiteState, event: ExternalLimitCleared, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    def cleared(key: tuple[str, int, str]) -> bool:
        station_id, evse_id, source = key
        if station_id != event.station_id or source != event.source:
            return False
        return event.evse_id == 0 or evse_id == event.evse_id

    limits = {k: v for k, v in state.external_limits.items() if not cleared(k)}
    if len(limits) == len(state.external_limits):
        return state, []
    return _reallocate(replace(state, external_limits=limits), dict(state.sessions), now)


def _on_station_rejects(
    state: SiteState, event: StationRejectsProfiles, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    if event.station_id in state.no_profiles:
        return state, []
    marks = dict(state.no_profiles)
    marks[event.station_id] = NoProfiles(since=now, reason=event.reason)
    sessions = {
        k: (
            replace(s, controllable=False, measured_a=None, limit_a=None, limit_set_at=None)
            if s.station_id == event.station_id and s.controllable
            else s
        )
        for k, s in state.sessions.items()
    }
    return _reallocate(replace(state, no_profiles=marks), sessions, now)


def _on_station_rebooted(
    state: SiteState, event: StationRebooted, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    if event.station_id not in state.no_profiles:
        return state, []
    marks = {k: v for k, v in state.no_profiles.items() if k != event.station_id}
    sessions = {
        k: (
            replace(s, controllable=True, measured_a=None, limit_a=None, limit_set_at=None)
            if s.station_id == event.station_id
            else s
        )
        for k, s in state.sessions.items()
    }
    return _reallocate(replace(state, no_profiles=marks), sessions, now)


def _needs_cap(session: ActiveSession, needs: ChargingNeeds, now: datetime) -> Decimal | None:
    """The EV's max current, lowered to the current that delivers its energy by its
    departure (never below its minimum); None: no cap."""
    cap = needs.ev_max_a if needs.ev_max_a else None
    if needs.energy_wh and needs.departure_at is not None:
        seconds = Decimal((_utc(needs.departure_at) - now).total_seconds())
        if seconds > 0:
            needed = Decimal(needs.energy_wh) * _HOUR_S / (seconds * needs.voltage_v * session.phases)
            floor = max(session.min_a, needs.ev_min_a or _ZERO)
            needed = max(needed, floor)
            cap = needed if cap is None else min(cap, needed)
    return cap


def _with_needs(session: ActiveSession, needs: ChargingNeeds, now: datetime) -> ActiveSession:
    cap = _needs_cap(session, needs, now)
    updated = replace(
        session,
        ev_cap_a=cap,
        ev_min_a=needs.ev_min_a if needs.ev_min_a else None,
        ev_max_a=needs.ev_max_a if needs.ev_max_a else None,
        energy_wh=needs.energy_wh if needs.energy_wh else None,
        departure_at=_utc(needs.departure_at) if needs.departure_at is not None else None,
        needs_at=now,
    )
    updated.demand()  # validate
    return updated


def _same_needs(session: ActiveSession, needs: ChargingNeeds) -> bool:
    if session.needs_at is None:
        return False  # no needs yet: even empty ones are owed a schedule
    departure = _utc(needs.departure_at) if needs.departure_at is not None else None
    return (
        session.ev_min_a == (needs.ev_min_a or None)
        and session.ev_max_a == (needs.ev_max_a or None)
        and session.energy_wh == (needs.energy_wh or None)
        and session.departure_at == departure
    )


def _on_needs(
    state: SiteState, event: ChargingNeeds, now: datetime
) -> tuple[SiteState, list[ProfileCommand]]:
    key = session_key(event.station_id, event.evse_id)
    session = state.sessions.get(key)
    if session is None:
        # Before its session (a race): kept, bounded, until the session starts.
        current = state.pending_needs.get(key)
        if current is not None and current.needs == event:
            return state, []
        horizon = now - PENDING_NEEDS_TTL
        kept = [(k, v) for k, v in state.pending_needs.items() if k != key and v.received_at >= horizon]
        kept.append((key, PendingNeeds(needs=event, received_at=now)))
        return replace(state, pending_needs=dict(kept[-PENDING_NEEDS_MAX:])), []
    if _same_needs(session, event):
        return state, []  # delivered again: the EV already has its schedule
    updated = _with_needs(session, event, now)
    sessions = dict(state.sessions)
    sessions[key] = updated
    return _reallocate(state, sessions, now, frozenset({key}))


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


def _floor_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _split(total: Decimal, caps: Mapping[str, Decimal], step: Decimal) -> dict[str, Decimal]:
    """Share ``total`` between sessions with these caps: equal shares (whole steps),
    clamped to each cap, what a capped one leaves going to the others."""
    out: dict[str, Decimal] = {}
    remaining = total
    pending = sorted(caps.items(), key=lambda kv: (kv[1], kv[0]))
    while pending:
        share = _floor_step(remaining / len(pending), step)
        key, cap = pending[0]
        if cap <= share:
            out[key] = cap
            remaining -= cap
            pending.pop(0)
            continue
        for key, _ in pending:
            out[key] = share
        break
    return out


def site_demands(
    state: SiteState, sessions: Mapping[str, ActiveSession]
) -> tuple[list[Demand], list[Demand]]:
    """The sessions' demands, in key order, with the outside limits applied: an EVSE's
    limit caps its session, a station's limit is split between the station's sessions.
    Returns (demands, held): `held` are the sessions an outside limit holds at 0 A (their
    demand is the one without the limit, for its key and controllability)."""
    own = {k: s.demand() for k, s in sorted(sessions.items())}
    if not state.external_limits:
        return list(own.values()), []
    cfg = state.config
    evse_caps: dict[tuple[str, int], Decimal] = {}
    for (station_id, evse_id, _), limit in state.external_limits.items():
        at = (station_id, evse_id)
        evse_caps[at] = min(limit, evse_caps.get(at, limit))
    caps: dict[str, Decimal] = {k: d.max_a for k, d in own.items()}
    by_station: dict[str, list[str]] = {}
    for key, session in sorted(sessions.items()):
        cap = evse_caps.get((session.station_id, session.evse_id))
        if cap is not None:
            caps[key] = min(caps[key], cap)
        by_station.setdefault(session.station_id, []).append(key)
    for station_id, keys in by_station.items():
        station_cap = evse_caps.get((station_id, 0))
        if station_cap is None:
            continue
        wants: dict[str, Decimal] = {}
        for key in keys:
            d, want = own[key], caps[key]
            if d.measured_a is not None:  # as the allocator caps (or reserves) it
                want = min(want, max(d.min_a, d.measured_a + cfg.headroom_a))
            wants[key] = want
        for key, share in _split(station_cap, wants, cfg.step_a).items():
            caps[key] = min(caps[key], share)
    demands: list[Demand] = []
    held: list[Demand] = []
    for key, d in own.items():
        cap = caps[key]
        if cap <= _ZERO:
            held.append(d)
        elif cap < d.max_a:
            demands.append(replace(d, max_a=cap, min_a=min(d.min_a, cap)))
        else:
            demands.append(d)
    return demands, held


def allocate_site(state: SiteState, sessions: Mapping[str, ActiveSession]) -> Allocation:
    """The allocation of these sessions under the site's limits. A session an outside
    limit holds at 0 A gets 0 A (paused, or nothing reserved) without being a demand."""
    cfg = state.config
    demands, held = site_demands(state, sessions)
    allocation = allocate(
        state.effective_limit_a,
        demands,
        step_a=cfg.step_a,
        headroom_a=cfg.headroom_a,
    )
    if not held:
        return allocation
    limits = dict(allocation.limits)
    paused = set(allocation.paused)
    trace = list(allocation.trace)
    for d in held:
        limits[d.session_key] = _ZERO
        if d.controllable:
            paused.add(d.session_key)
        trace.insert(len(trace) - 1, f"  {d.session_key} -> 0 A (outside limit 0 A)")
    return replace(allocation, limits=dict(sorted(limits.items())), paused=tuple(sorted(paused)), trace=tuple(trace))


def _reallocate(
    state: SiteState,
    sessions: Mapping[str, ActiveSession],
    now: datetime,
    force: frozenset[str] = frozenset(),
) -> tuple[SiteState, list[ProfileCommand]]:
    """Re-run the allocator; a command for each controllable session whose limit changed
    (and for those in ``force``, whose EV waits for a schedule)."""
    allocation = allocate_site(state, sessions)
    updated: dict[str, ActiveSession] = {}
    lowering: list[ProfileCommand] = []
    raising: list[ProfileCommand] = []
    for key, session in sorted(sessions.items()):
        new_limit = allocation.limits[key]
        if not session.controllable or (session.limit_a == new_limit and key not in force):
            updated[key] = session
            continue
        until = session.departure_at if session.departure_at is not None and session.departure_at > now else None
        command = ProfileCommand(
            station_id=session.station_id,
            evse_id=session.evse_id,
            limit_a=new_limit,
            transaction_id=session.transaction_id,
            previous_a=session.limit_a,
            until=until,
            forced=key in force,
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
