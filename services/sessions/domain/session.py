"""Charging sessions as a pure projection of normalized station events (ADR 007, ADR 015).

`apply(session, envelope, now, rules, ...)` folds one event into a session and returns a
`Step`. The state is a set of *facts*, each merged with a commutative, idempotent rule,
plus bounded *aggregates* of the session's meter samples, plus fields *derived* from both
(status, energy, orphan, suspect, hold, charging end, seq gaps). The samples themselves
are not part of the state: they are appended to their own store (`Step.new_samples`),
and nothing in a session grows with its length. So:

- the same event applied twice leaves the session identical (same object, same version);
- any permutation (and duplication) of a session's events ends in the same facts and
  aggregates, hence the same energy, status, stopped_at, ... (only `version`,
  `updated_at` and `applied`, which count, date and locate the real changes, depend on
  arrival order) — provided the caller rebuilds when a step asks for it (below).

Merge rules of the facts (see docs/adr/007-sessions-model.md and docs/plausibility.md):
- identity: uuid5(station id, transaction id); a 1.6 stop with transactionId "-1"
  gets an identity of its own from its business key (timestamp, meterStop).
- idempotency: `position` (partition, offset) at or below `applied` is a redelivery;
  2.0.1 (transactionId, seqNo): an already seen seqNo is a no-op (seen seqNos are kept
  as ranges, at most `MAX_SEQ_RANGES`).
- order key = (seqNo, effective time): the start, the end, the id token (first
  non-empty), the authorization (of the start) and the evse/connector (first one
  naming a connector, else first non-zero evse) come from the lowest key. 1.6 Start
  has seqNo 0 and Stop `SEQ_NO_LAST_16`; MeterValues rank after both.
- effective time: the station time, unless it is before `rules.clock_floor` or more
  than `rules.clock_max_ahead` after the CSMS receive time; then the receive time
  (the station time is kept in station_started_at / station_stopped_at, and in a
  sample's `station_time`) and the sticky flag "clock_before_floor" / "clock_ahead"
  (`clock_suspect`).
- received_at = earliest CSMS receive time.
- reservation: the lowest non-zero reservationId of a TransactionStarted (0: none).
- what the EV said (2.0.1 NotifyEVChargingNeeds / NotifyEVChargingSchedule): not session
  events (they name an EVSE); the processor finds the EVSE's active session and
  `apply_ev_event` keeps the latest of each (domain/ev_needs.py).
- abandoned: a SessionAbandoned (decided by the CSMS, see lifecycle.py) sets
  abandoned_at / abandon_reason (the earliest (time, reason) wins); status is derived:
  an end → "completed", else abandoned → "abandoned", else "active".
- hold: duration over `rules.max_duration`, energy over `rules.max_energy_wh`, or a
  suspect clock: the CDR is held back from export.

Samples and their aggregates (ADR 015). A sample's key is (timestamp, measurand, phase);
on a conflict a usable value beats an unusable one, then the larger value. Each
(measurand, phase) *series* keeps its earliest and its latest sample (the high-water
mark). The judgement, the same code in `apply` (incrementally) and in `rebuild` (one fold
over all samples in key order):
- `excluded`: unusable value (not finite, out of range, or forwarded by the gateway in
  `raw_value`: kept with value 0 and its text), negative energy reading, an energy
  register in another unit than Wh, or a register jump beyond `rules.max_rise_wh(elapsed)`
  from the last kept reading of its series (per phase; the total series starts from a
  trusted meterStart at started_at) inside the session window.
- the window is [started_at − WINDOW_SLACK, stopped_at + WINDOW_SLACK] (bounds used when
  known): register readings outside it are stored but neither judged nor counted.
- aggregates: sample and excluded counts, first/last sample time, per register phase the
  first and last kept reading in the window (energy needs no more), peak power, the
  running price accumulator (services/billing/domain/running.py) advanced with the kept
  total-register readings.
A sample later than its series' latest is judged against the aggregates: O(1); so is one
earlier than its whole series when no other judgement changes (the Transaction.Begin
reading a 1.6 StopTransaction repeats). Anything that would change an earlier judgement
sets `Step.rebuild` with a reason ("out_of_order": a sample between its series' earliest
and latest that is not a repeat of either; "conflict": the key of either with a value
that wins the conflict; "window": a start or stop moving the window over stored register
readings; "anchor": a trusted meterStart (or the price's opening point) changed while
readings were judged from it; "price": a tariff to open the accumulator with, and
readings already past its opening). The caller appends `new_samples` to the store, reads
all the session's samples and calls `rebuild`. In-order traffic (Started, MeterValues,
Updated, Ended after the last sample) never rebuilds, and a station re-sending its last
MeterValues (or a value losing to the stored one) is a no-op.

Energy (`_energy`): meterStart/meterStop delta when both are usable and plausible; else
on the total register series (meterStop or last kept) − (meterStart or first kept); else
the sum over phases of (last − first); else 0. Rounded half up; never negative.

Nothing here raises on a schema-valid event: absurd numbers and times are flagged, and
all time arithmetic saturates at the ends of `datetime`'s range. Times are truncated to
milliseconds on the way in, so a session survives the round trip through its ISO 8601
document unchanged.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from services.billing.domain.running import (
    PriceAccumulator,
    advance_price,
    open_price,
    tariff_fingerprint,
)
from services.common import events as ev
from services.common.decimals import bounded
from services.common.timeutil import parse_ocpp, to_ocpp
from services.sessions.domain.ev_needs import EV_BODIES, EvNeeds, EvSchedule, ev_needs_of, ev_schedule_of

if TYPE_CHECKING:
    from services.billing.domain.tariff import Tariff

__all__ = [
    "Sample",
    "SeriesMark",
    "RegisterSeries",
    "Session",
    "Step",
    "OrderKey",
    "Plausibility",
    "PlausibilitySettings",
    "RemoteStart",
    "DEFAULT_RULES",
    "apply",
    "apply_ev_event",
    "rebuild",
    "refold",
    "bounded_idle",
    "truncate_ms",
    "Reading",
    "judge_samples",
    "kept_register_readings",
    "event_samples",
    "sample_key",
    "sample_winners",
    "seq_seen",
    "session_id",
    "session_ref",
    "is_session_event",
    "effective_time",
    "FUTURE_TOLERANCE",
    "WINDOW_SLACK",
    "UNKNOWN_TRANSACTION_IDS",
    "CLOCK_REASONS",
    "REBUILD_REASONS",
    "MAX_SEQ_RANGES",
    "MAX_IDLE_MARKS",
]

UTC = timezone.utc
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)
SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:csms:sessions:v1")
FUTURE_TOLERANCE = timedelta(minutes=5)  # the default of CSMS_CLOCK_MAX_AHEAD_S
WINDOW_SLACK = timedelta(seconds=60)
# A register may rise by one minute at the maximum power on top of power x elapsed time:
# sample timestamps are often rounded to the minute, and meters report with some lag.
JUMP_SLACK = timedelta(minutes=1)
# Non-charging marks kept after the last Charging one: the earliest decide
# charging_ended_at; in-order streams never need more than the first.
MAX_IDLE_MARKS = 32
# Seen seqNo ranges; beyond this (a station skipping seqNos all the time) the lowest
# range is forgotten (its events would apply again, harmlessly) and seq_gaps stays set.
MAX_SEQ_RANGES = 64
UNKNOWN_TRANSACTION_IDS = frozenset({"-1"})
# Events without a seqNo (1.6 MeterValues) rank after every transaction event.
_NO_SEQ = 2**31
_CHARGING = "Charging"
_POWER = "Power.Active.Import"
_MAX_SPAN_S = 10**13  # ~300,000 years: larger settings saturate instead of overflowing timedelta

# suspect / hold reasons
CLOCK_BEFORE_FLOOR = "clock_before_floor"
CLOCK_AHEAD = "clock_ahead"
CLOCK_REASONS = frozenset({CLOCK_BEFORE_FLOOR, CLOCK_AHEAD})
METER_NOT_A_NUMBER = "meter_not_a_number"
METER_NEGATIVE = "meter_negative"
METER_JUMP = "meter_jump"
METER_UNIT = "meter_unit"
HOLD_DURATION = "duration_exceeds_max"
HOLD_ENERGY = "energy_exceeds_max"
HOLD_CLOCK = "clock_suspect"
# rebuild reasons (Step.rebuild; the runtime counts them)
REBUILD_OUT_OF_ORDER = "out_of_order"
REBUILD_CONFLICT = "conflict"
REBUILD_WINDOW = "window"
REBUILD_ANCHOR = "anchor"
REBUILD_PRICE = "price"
REBUILD_REASONS = frozenset({REBUILD_OUT_OF_ORDER, REBUILD_CONFLICT, REBUILD_WINDOW, REBUILD_ANCHOR, REBUILD_PRICE})

OrderKey = tuple[int, datetime]
Reading = tuple[datetime, float]  # (effective time, value as sent)
SampleKey = tuple[datetime, str, str]
_TX_BODIES = (ev.TransactionStarted, ev.TransactionUpdated, ev.TransactionEnded)
_MERGED_BODIES = (*_TX_BODIES, ev.MeterValues)
_SESSION_BODIES = (*_MERGED_BODIES, ev.SessionAbandoned)


def _span(seconds: float) -> timedelta:
    if not math.isfinite(seconds):
        seconds = _MAX_SPAN_S if seconds > 0 else 0
    return timedelta(seconds=min(max(float(seconds), 0.0), _MAX_SPAN_S))


class PlausibilitySettings(Protocol):
    """The settings the plausibility bounds are made of (CSMS_CLOCK_FLOOR, ...)."""

    @property
    def clock_floor(self) -> str: ...
    @property
    def clock_max_ahead_s(self) -> float: ...
    @property
    def meter_max_power_kw(self) -> float: ...
    @property
    def session_max_duration_h(self) -> float: ...
    @property
    def session_max_energy_wh(self) -> int: ...


_DEFAULT_POWER_KW = 1000.0


@dataclass(frozen=True, slots=True)
class Plausibility:
    """The plausibility bounds (docs/plausibility.md). Defaults = the settings' defaults."""

    clock_floor: datetime = datetime(2010, 1, 1, tzinfo=UTC)
    clock_max_ahead: timedelta = FUTURE_TOLERANCE
    meter_max_power_kw: float = _DEFAULT_POWER_KW
    max_duration: timedelta = timedelta(hours=72)
    max_energy_wh: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: PlausibilitySettings) -> "Plausibility":
        """From `services.common.config.Settings` (structurally: the domain imports no config).
        Raises ValueError for a clock floor that is not an RFC 3339 instant."""
        power = float(settings.meter_max_power_kw)
        return cls(
            clock_floor=parse_ocpp(str(settings.clock_floor)),
            clock_max_ahead=_span(float(settings.clock_max_ahead_s)),
            meter_max_power_kw=power if math.isfinite(power) and power > 0 else _DEFAULT_POWER_KW,
            max_duration=_span(float(settings.session_max_duration_h) * 3600),
            max_energy_wh=int(settings.session_max_energy_wh),
        )

    def max_rise_wh(self, elapsed: timedelta) -> float:
        """The largest plausible register rise over `elapsed` (negative elapsed counts as 0)."""
        seconds = max(elapsed.total_seconds(), 0.0) + JUMP_SLACK.total_seconds()
        return self.meter_max_power_kw * 1000.0 * seconds / 3600.0


DEFAULT_RULES = Plausibility()


@dataclass(frozen=True, slots=True)
class RemoteStart:
    """What the RequestStartTransaction command said, for an event carrying its remoteStartId."""

    id_token: str = ""
    issued_by: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime     # effective time (the receive time when the station clock was implausible)
    measurand: str
    value: float
    unit: str = "Wh"
    phase: str = ""
    raw_value: str = ""     # the value as sent when it was not a usable number (value is then 0)
    excluded: bool = False  # derived: implausible, left out of energy (never stored as a fact)
    station_time: datetime | None = None  # as sent, only when it was replaced


@dataclass(frozen=True, slots=True)
class SeriesMark:
    """The marks of one (measurand, phase) series: its earliest and its latest sample (the
    high-water mark). A repeat of either is recognised without reading the store."""

    measurand: str
    phase: str
    first: Sample
    last: Sample


@dataclass(frozen=True, slots=True)
class RegisterSeries:
    """One phase of the energy register (phase "" = the total).

    `seen_first`/`seen_last`: the earliest/latest usable reading, in the window or not
    (whether a moving window crosses stored readings); `first`/`last`: the first and last
    kept reading inside the window (energy, and the reference of the jump rule)."""

    phase: str
    seen_first: datetime
    seen_last: datetime
    first: Reading | None = None
    last: Reading | None = None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    station_id: str
    transaction_id: str
    received_at: datetime
    updated_at: datetime
    # derived
    status: str = "active"
    energy_wh: int = 0
    orphan: bool = True
    suspect: bool = False
    suspect_reasons: frozenset[str] = frozenset()
    seq_gaps: bool = False
    charging_ended_at: datetime | None = None
    id_token: str = ""  # event_token, else the remote start command's token
    clock_suspect: bool = False
    hold: bool = False
    hold_reasons: frozenset[str] = frozenset()
    energy_anchor_wh: int | None = None  # the register energy counts from: trusted meterStart, else the first kept reading
    # facts: start / end (from the lowest-keyed Started / Ended); effective times
    started_at: datetime | None = None
    station_started_at: datetime | None = None  # as sent, only when it was implausible
    meter_start_wh: int | None = None
    authorization: str = ""  # id token status the CSMS answered at the start
    start_key: OrderKey | None = None
    stopped_at: datetime | None = None
    station_stopped_at: datetime | None = None
    meter_stop_wh: int | None = None
    stop_reason: str = ""
    end_key: OrderKey | None = None
    # facts: first non-empty id token, first evse/connector
    event_token: str = ""
    token_key: OrderKey | None = None
    evse_id: int = 0
    connector_id: int = 0
    location_key: OrderKey | None = None
    # facts: remote start (2.0.1 remoteStartId and the command it names)
    remote_start_id: int = 0
    remote_token: str = ""
    issued_by: str = ""
    # facts: the reservation the transaction started with (the lowest non-zero id; 0: none)
    reservation_id: int = 0
    # facts: what an ISO 15118 EV said (2.0.1 K15-K17): the latest of each (`apply_ev_event`)
    ev_needs: EvNeeds | None = None
    ev_schedule: EvSchedule | None = None
    # facts: abandoned by the CSMS (earliest (time, reason))
    abandoned_at: datetime | None = None
    abandon_reason: str = ""
    # facts: charging marks (last "Charging" key, later non-charging keys, bounded)
    last_charging_key: OrderKey | None = None
    idle_keys: tuple[OrderKey, ...] = ()
    # facts: the rest
    ocpp_version: str = ""
    seq_ranges: tuple[tuple[int, int], ...] = ()  # seen seqNos, inclusive ranges, sorted, disjoint
    seq_overflow: bool = False  # seqNo ranges were forgotten (MAX_SEQ_RANGES): seq_gaps stays set
    flags: frozenset[str] = frozenset()  # sticky suspect reasons (implausible clocks)
    # aggregates of the samples (bounded; recomputed by `rebuild`)
    sample_count: int = 0
    excluded_count: int = 0
    first_sample_at: datetime | None = None
    last_sample_at: datetime | None = None
    sample_reasons: frozenset[str] = frozenset()  # suspect reasons the samples give
    marks: tuple[SeriesMark, ...] = ()  # per (measurand, phase), sorted
    registers: tuple[RegisterSeries, ...] = ()  # per phase, sorted
    peak_total_w: float | None = None  # highest total power reading / closed phase-sum group
    phase_power: tuple[datetime, tuple[tuple[str, float], ...]] | None = None  # latest per-phase power group
    price: PriceAccumulator | None = None
    price_basis: tuple[datetime, int] | None = None  # (opened_at, open_wh) the accumulator was opened at
    # bookkeeping
    applied: tuple[int, int] | None = None  # the highest csms.events.v1 (partition, offset) applied
    version: int = 0

    @property
    def first_register(self) -> Reading | None:
        """(time, Wh) of the first kept total-register reading in the window."""
        total = _register(self.registers, "")
        return total.first if total else None

    @property
    def last_register(self) -> Reading | None:
        total = _register(self.registers, "")
        return total.last if total else None

    @property
    def peak_power_w(self) -> float | None:
        """Highest Power.Active.Import: a total reading, or the sum of the phases at one time."""
        if not self.phase_power:
            return self.peak_total_w
        group = math.fsum(v for _, v in self.phase_power[1])
        values = [v for v in (self.peak_total_w, group) if v is not None]
        return max(values) if values else None


_FIELDS = tuple(f.name for f in fields(Session))


@dataclass(frozen=True, slots=True)
class Step:
    """What `apply` made of one event.

    - `session`: the session after the event (None: not a session event, or an abandon of
      an unknown session). The same object as the input when nothing changed.
    - `changed`: the session changed, or may have (a rebuild is asked for).
    - `new_samples`: the event's samples to append to the store (effective times; repeats
      of a series' mark are left out). Always complete, even when a rebuild is pending.
    - `rebuild`: "" or why the session must be rebuilt from ALL its stored samples: append
      `new_samples`, read the samples, call `rebuild`. Until then `session` holds the merged
      facts but provisional aggregates; later events of a batch may still be applied to it
      (their `new_samples` stay complete) and one rebuild at the end suffices."""

    session: Session | None
    changed: bool
    new_samples: tuple[Sample, ...] = ()
    rebuild: str = ""


def _register(regs: tuple[RegisterSeries, ...], phase: str) -> RegisterSeries | None:
    for r in regs:
        if r.phase == phase:
            return r
    return None


# -- identity ----------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 16)
def session_id(station_id: str, transaction_id: str) -> str:
    """uuid5(station id, transaction id); cached: each event asks twice (batch grouping, apply)."""
    return str(uuid.uuid5(SESSION_NAMESPACE, f"{station_id}\n{transaction_id}"))


def is_session_event(env: ev.Envelope) -> bool:
    return session_ref(env) is not None


def session_ref(env: ev.Envelope) -> tuple[str, str] | None:
    """(session id, transaction id) of the session an event is about, or None."""
    body = env.body
    if not isinstance(body, _SESSION_BODIES):
        return None
    if isinstance(body, ev.SessionAbandoned):
        return (body.session_id, body.transaction_id) if body.session_id else None
    tx = body.transaction_id.strip()
    if isinstance(body, ev.MeterValues) and not tx:
        return None  # outside a transaction (2.0.1 MeterValues, 1.6 without transactionId)
    if isinstance(body, ev.TransactionEnded) and tx in UNKNOWN_TRANSACTION_IDS | {""}:
        # Each unknown stop is its own orphan, identified by its business key.
        when = to_ocpp(_station_time(env))
        return session_id(env.station_id, f"{tx or '-1'}\n{when}\n{body.meter_stop_wh}"), tx or "-1"
    if not tx:
        return None
    return session_id(env.station_id, tx), tx


# -- apply -------------------------------------------------------------------
def apply(
    session: Session | None,
    env: ev.Envelope,
    now: datetime,
    rules: Plausibility = DEFAULT_RULES,
    *,
    remote: RemoteStart | None = None,
    tariff: "Tariff | None" = None,
    position: tuple[int, int] | None = None,
) -> Step:
    """Fold one event into its session (see `Step`).

    `remote`: the matching remote start command of an event carrying a remoteStartId,
    when the caller found one. `tariff`: the tariff that applies to the station now (None:
    none): opens the price accumulator when the session has none and its opening point is
    known, advances it when it matches (id and fingerprint), drops it when it does not (or
    when None is passed). `position`: (partition, offset) of the csms.events.v1 record: at
    or below `session.applied` on the same partition, the event is a redelivery."""
    ref = session_ref(env)
    if ref is None:
        return Step(None, False)
    sid, tx = ref
    if session is not None and session.id != sid:
        raise ValueError(f"event for session {sid} applied to session {session.id}")
    if session is not None and position is not None and _redelivered(session.applied, position):
        return Step(session, False)
    body = env.body
    if isinstance(body, ev.SessionAbandoned) and session is None:
        return Step(None, False)  # nothing to abandon
    seq = int(body.seq_no) if isinstance(body, _TX_BODIES) else None
    if session is not None and seq is not None and seq_seen(session, seq):
        return Step(session, False)  # idempotency key (transactionId, seqNo)
    stamp = _ms(now)
    base = session or Session(
        id=sid, station_id=env.station_id, transaction_id=tx, received_at=_ms(env.received_at), updated_at=stamp
    )
    incoming: list[Sample] = []
    if isinstance(body, ev.SessionAbandoned):
        facts = _merge_abandoned(base, env, rules)
    else:
        facts, incoming = _merge(base, env, seq, rules, remote)
    if facts is base:
        facts = _with(base)
    # `facts` is a fresh object nobody else holds: the aggregates and the derived fields are
    # set on it in place (one copy per event; the hot path)
    merged, new_samples, why = _advance(base, facts, incoming, rules, tariff)
    _derive(merged, rules)
    if session is None:
        _stamp(merged, 1, stamp, position)
        return Step(merged, True, new_samples, why)
    if merged == session:
        return Step(session, bool(why), new_samples, why)
    _stamp(merged, session.version + 1, stamp, position or session.applied)
    return Step(merged, True, new_samples, why)


def apply_ev_event(
    session: Session, env: ev.Envelope, now: datetime, *, position: tuple[int, int] | None = None
) -> Session:
    """Keep an EvChargingNeeds / EvChargingSchedule on the session of its EVSE (the caller
    found it): the latest by (receive time, event id) wins. The same object when nothing
    changes (a redelivery at or below `applied`, an older notification, another body);
    else version + 1, `updated_at` = `now`, `applied` = `position`."""
    body = env.body
    if not isinstance(body, EV_BODIES):
        return session
    if position is not None and _redelivered(session.applied, position):
        return session
    changes: dict[str, Any]
    if isinstance(body, ev.EvChargingNeeds):
        needs = ev_needs_of(body, env.received_at, env.event_id)
        if not _newer(needs, session.ev_needs):
            return session
        changes = {"ev_needs": needs}
    else:
        schedule = ev_schedule_of(body, env.received_at, env.event_id)
        if not _newer(schedule, session.ev_schedule):
            return session
        changes = {"ev_schedule": schedule}
    out = _with(session, **changes)
    _stamp(out, session.version + 1, _ms(now), position or session.applied)
    return out


def _newer(new: EvNeeds | EvSchedule, old: EvNeeds | EvSchedule | None) -> bool:
    return old is None or (new.received_at, new.event_id) > (old.received_at, old.event_id)


_set = object.__setattr__


def _with(s: Session, **changes: Any) -> Session:
    """`dataclasses.replace` without `__init__` (the hot path makes a few per event)."""
    new = object.__new__(Session)
    for name in _FIELDS:
        _set(new, name, changes[name] if name in changes else getattr(s, name))
    return new


def _stamp(s: Session, version: int, updated_at: datetime, applied: tuple[int, int] | None) -> None:
    """Version, update time and record position of a session object nobody else holds yet."""
    _set(s, "version", version)
    _set(s, "updated_at", updated_at)
    _set(s, "applied", applied)


def _redelivered(applied: tuple[int, int] | None, position: tuple[int, int]) -> bool:
    return applied is not None and applied[0] == position[0] and position[1] <= applied[1]


def effective_time(station_time: datetime, received: datetime, rules: Plausibility = DEFAULT_RULES) -> tuple[datetime, str]:
    """(time to order and bill by, clock reason or ""): the station time unless it is
    before the floor or too far ahead of the receive time, then the receive time."""
    st, rx = _ms(station_time), _ms(received)
    if st < rules.clock_floor:
        return rx, CLOCK_BEFORE_FLOOR
    if st > _shift(rx, rules.clock_max_ahead):
        return rx, CLOCK_AHEAD
    return st, ""


def _merge_abandoned(s: Session, env: ev.Envelope, rules: Plausibility) -> Session:
    body = env.body
    assert isinstance(body, ev.SessionAbandoned)
    at = _ms(env.received_at)
    if env.station_time is not None:
        at = effective_time(env.station_time, env.received_at, rules)[0]
    candidate = (at, body.reason)
    if s.abandoned_at is None or candidate < (s.abandoned_at, s.abandon_reason):
        return _with(s, abandoned_at=at, abandon_reason=body.reason)
    return s


def _merge(
    s: Session, env: ev.Envelope, seq: int | None, rules: Plausibility, remote: RemoteStart | None
) -> tuple[Session, list[Sample]]:
    """The facts merged, and the event's samples (effective times, one per key, sorted)."""
    body = env.body
    assert isinstance(body, _MERGED_BODIES)
    received = _ms(env.received_at)
    raw_st = _station_time(env)
    st, clock_reason = effective_time(raw_st, received, rules)
    key: OrderKey = (_NO_SEQ if seq is None else seq, st)
    ch: dict[str, Any] = {"received_at": min(s.received_at, received)}
    if env.ocpp_version:
        ch["ocpp_version"] = max(s.ocpp_version, env.ocpp_version)
    if seq is not None:
        ch.update(_seq_add(s, seq))

    incoming, sample_reasons = _samples(body.samples, received, rules)
    flags = {clock_reason} if clock_reason else set()
    flags |= sample_reasons
    if flags - s.flags:
        ch["flags"] = s.flags | flags

    as_sent = raw_st if clock_reason else None
    if isinstance(body, ev.TransactionStarted) and (s.start_key is None or key < s.start_key):
        ch.update(
            start_key=key, started_at=st, station_started_at=as_sent, meter_start_wh=body.meter_start_wh,
            authorization=body.id_token_status,
        )
    if isinstance(body, ev.TransactionEnded) and (s.end_key is None or key < s.end_key):
        ch.update(
            end_key=key, stopped_at=st, station_stopped_at=as_sent, meter_stop_wh=body.meter_stop_wh,
            stop_reason=body.stop_reason,
        )

    token = getattr(body, "id_token", "")
    # Ties on the key (same seqNo and station time) break on the value: order-independent.
    if token and (s.token_key is None or (key, token) < (s.token_key, s.event_token)):
        ch.update(token_key=key, event_token=token)
    where = (body.evse_id, body.connector_id)
    # A location naming the connector beats one naming only the EVSE, then the lowest key.
    if any(where) and (
        s.location_key is None
        or (where[1] == 0, key, where) < (s.connector_id == 0, s.location_key, (s.evse_id, s.connector_id))
    ):
        ch.update(location_key=key, evse_id=where[0], connector_id=where[1])

    reservation = int(getattr(body, "reservation_id", 0) or 0)
    if reservation and (s.reservation_id == 0 or reservation < s.reservation_id):
        ch["reservation_id"] = reservation

    remote_id = int(getattr(body, "remote_start_id", 0) or 0)
    if remote_id and (s.remote_start_id == 0 or remote_id < s.remote_start_id):
        ch["remote_start_id"] = remote_id
    if remote_id and remote is not None and (remote.id_token or remote.issued_by):
        cur = (s.remote_token, s.issued_by)
        new = (remote.id_token, remote.issued_by)
        if cur == ("", "") or new < cur:
            ch.update(remote_token=remote.id_token, issued_by=remote.issued_by)

    state = getattr(body, "charging_state", "")
    if isinstance(body, ev.TransactionEnded) or (state and state != _CHARGING):
        if s.last_charging_key is None or key > s.last_charging_key:
            ch["idle_keys"] = bounded_idle(set(s.idle_keys) | {key})
    elif state == _CHARGING:
        last = key if s.last_charging_key is None else max(s.last_charging_key, key)
        ch.update(last_charging_key=last, idle_keys=tuple(k for k in s.idle_keys if k > last))
    return _with(s, **ch), incoming


def bounded_idle(keys: set[OrderKey]) -> tuple[OrderKey, ...]:
    """Non-charging marks after the last Charging one, bounded: the earliest ones
    (they decide charging_ended_at) plus the latest (usually the end)."""
    ordered = sorted(keys)
    if len(ordered) > MAX_IDLE_MARKS:
        ordered = ordered[: MAX_IDLE_MARKS - 1] + ordered[-1:]
    return tuple(ordered)


# -- seqNos as ranges ------------------------------------------------------------
def seq_seen(s: Session, seq: int) -> bool:
    """Was an event with this seqNo applied to the session?"""
    for lo, hi in s.seq_ranges:
        if lo <= seq <= hi:
            return True
        if seq < lo:
            return False
    return False


def _seq_add(s: Session, seq: int) -> dict[str, Any]:
    ranges = list(s.seq_ranges)
    lo, hi = seq, seq
    kept: list[tuple[int, int]] = []
    for a, b in ranges:
        if b < lo - 1 or a > hi + 1:
            kept.append((a, b))
        else:
            lo, hi = min(lo, a), max(hi, b)
    kept.append((lo, hi))
    kept.sort()
    out: dict[str, Any] = {}
    if len(kept) > MAX_SEQ_RANGES:
        kept = kept[len(kept) - MAX_SEQ_RANGES:]
        out["seq_overflow"] = True
    out["seq_ranges"] = tuple(kept)
    return out


def _seq_gaps(s: Session) -> bool:
    """A hole in the seen seqNos in [0, max] (1.6's stop sentinel left out)."""
    if s.seq_overflow:
        return True
    ranges: list[tuple[int, int]] = []
    sentinel = ev.SEQ_NO_LAST_16
    for lo, hi in s.seq_ranges:
        if lo <= sentinel <= hi:
            if lo < sentinel:
                ranges.append((lo, sentinel - 1))
            if hi > sentinel:
                ranges.append((sentinel + 1, hi))
        else:
            ranges.append((lo, hi))
    return bool(ranges) and not (len(ranges) == 1 and ranges[0][0] == 0)


# -- derived fields ------------------------------------------------------------------
def _derive(s: Session, rules: Plausibility) -> Session:
    """Sets the derived fields on `s` (a fresh object nobody else holds) and returns it."""
    energy, energy_reasons = _energy(s, rules)
    reasons = set(s.flags) | s.sample_reasons | energy_reasons
    charging_ended = s.stopped_at
    if s.last_charging_key is not None:
        later = [k for k in s.idle_keys if k > s.last_charging_key]
        charging_ended = min(later)[1] if later else (s.stopped_at if s.end_key else None)
    status = "completed" if s.end_key is not None else "abandoned" if s.abandoned_at is not None else "active"
    clock_suspect = bool(reasons & CLOCK_REASONS)
    hold = set()
    duration = _duration(s)
    if duration is not None and duration > rules.max_duration:
        hold.add(HOLD_DURATION)
    if energy > rules.max_energy_wh:
        hold.add(HOLD_ENERGY)
    if clock_suspect:
        hold.add(HOLD_CLOCK)
    anchor = _trusted_meter_start(s, rules)
    first = s.first_register
    _set(s, "status", status)
    _set(s, "orphan", s.start_key is None)
    _set(s, "energy_wh", energy)
    _set(s, "suspect_reasons", frozenset(reasons))
    _set(s, "suspect", bool(reasons))
    _set(s, "seq_gaps", _seq_gaps(s))
    _set(s, "charging_ended_at", charging_ended)
    _set(s, "id_token", s.event_token or s.remote_token)
    _set(s, "clock_suspect", clock_suspect)
    _set(s, "hold", bool(hold))
    _set(s, "hold_reasons", frozenset(hold))
    _set(s, "energy_anchor_wh", anchor if anchor is not None else (_round(_dec(first[1])) if first else None))
    return s


def _duration(s: Session) -> timedelta | None:
    """Start to end (else abandon, else the latest sample) in effective times, if known."""
    if s.start_key is None or s.started_at is None:
        return None
    if s.end_key is not None and s.stopped_at is not None:
        end: datetime | None = s.stopped_at
    else:
        ends = [t for t in (s.abandoned_at, s.last_sample_at) if t is not None]
        end = max(ends) if ends else None
    return None if end is None else end - s.started_at


# -- judgement inputs: usability, window, anchor -----------------------------------
def _is_energy(x: Sample) -> bool:
    """An energy measurand that cannot go below zero (registers, intervals; not *.Net)."""
    return x.measurand.startswith("Energy") and ".Net" not in x.measurand


def _intrinsic(x: Sample) -> str:
    """Why a sample is unusable whatever the others say, or ""."""
    if x.raw_value:
        return METER_NOT_A_NUMBER
    if _is_energy(x) and x.value < 0:
        return METER_NEGATIVE
    if x.measurand == ev.ENERGY_REGISTER and x.unit not in ("Wh", ""):
        return METER_UNIT
    return ""


Window = tuple[datetime | None, datetime | None]


def _window(s: Session) -> Window:
    lo = _shift(s.started_at, -WINDOW_SLACK) if s.start_key is not None and s.started_at else None
    hi = _shift(s.stopped_at, WINDOW_SLACK) if s.end_key is not None and s.stopped_at else None
    return lo, hi


def _in_window(t: datetime, w: Window) -> bool:
    lo, hi = w
    return not ((lo and t < lo) or (hi and t > hi))


def _usable_reading(value: int | None) -> bool:
    if type(value) is int:
        return 0 <= value < 10**16  # what bounded(Decimal(value)) says of a non-negative int
    return value is not None and value >= 0 and bounded(Decimal(value))


def _trusted_meter_start(s: Session, rules: Plausibility) -> int | None:
    """meterStart, unless unusable or contradicted by an implausible meterStop delta."""
    if not _usable_reading(s.meter_start_wh):
        return None
    assert s.meter_start_wh is not None
    if _usable_reading(s.meter_stop_wh) and not _plausible_delta(s, rules):
        return None
    return s.meter_start_wh


def _plausible_delta(s: Session, rules: Plausibility) -> bool:
    """meterStop − meterStart within the physical bound over the session's duration."""
    assert s.meter_start_wh is not None and s.meter_stop_wh is not None
    elapsed = (s.stopped_at - s.started_at) if s.stopped_at and s.started_at else timedelta(0)
    return s.meter_stop_wh - s.meter_start_wh <= rules.max_rise_wh(elapsed)


def _anchor(s: Session, rules: Plausibility) -> tuple[datetime, int] | None:
    """Where the total register series starts for the jump rule: (started_at, trusted meterStart)."""
    start = _trusted_meter_start(s, rules)
    if start is None or s.start_key is None or s.started_at is None:
        return None
    return s.started_at, start


def _price_basis(s: Session, rules: Plausibility, first: Reading | None) -> tuple[datetime, int] | None:
    """The price accumulator's opening point: (started_at, else the first kept total
    reading's time; trusted meterStart, else the first kept total reading)."""
    opened = s.started_at if s.start_key is not None and s.started_at is not None else (first[0] if first else None)
    start = _trusted_meter_start(s, rules) if s.start_key is not None else None
    open_wh = start if start is not None else (_round(_dec(first[1])) if first else None)
    return None if opened is None or open_wh is None else (opened, open_wh)


# -- energy ------------------------------------------------------------------
def _energy(s: Session, rules: Plausibility) -> tuple[int, set[str]]:
    """(energy Wh, suspect reasons).

    meterStart/meterStop count only when usable (0 <= value < 10^16); both known and
    their delta within the physical bound → the delta; a delta beyond it → "meter_jump"
    and both are left out (energy from the samples alone). Then, on the kept (not
    excluded) register readings inside the window (the aggregates keep the first and
    last of each phase):
    1. meterStop − meterStart when both are known;
    2. else on the total register series (ENERGY_REGISTER without phase):
       (meterStop or last) − (meterStart or first);
    3. else the sum over phases of (last − first) of the per-phase register series;
    4. else 0. Negative → 0 and suspect. Rounded half up to an int.
    """
    reasons: set[str] = set()
    start, stop = s.meter_start_wh, s.meter_stop_wh
    for value in (start, stop):
        if value is not None and not _usable_reading(value):
            reasons.add(METER_NEGATIVE if value < 0 else METER_NOT_A_NUMBER)
    start = start if _usable_reading(start) else None
    stop = stop if _usable_reading(stop) else None
    if start is not None and stop is not None:
        raw = Decimal(stop) - Decimal(start)
        if raw < 0:
            return 0, reasons | {"meter_stop_before_start"}
        if _plausible_delta(s, rules):
            return _round(raw), reasons
        reasons.add(METER_JUMP)
        start = stop = None
    total = _register(s.registers, "")
    phases = [(f, la) for r in s.registers if r.phase and (f := r.first) is not None and (la := r.last) is not None]
    if total is not None and total.first is not None and total.last is not None:
        first = Decimal(start) if start is not None else _dec(total.first[1])
        last = _dec(total.last[1])
        if stop is not None:
            if Decimal(stop) - last > Decimal(repr(rules.max_rise_wh(_since(s.stopped_at, total.last[0])))):
                reasons.add(METER_JUMP)  # meterStop far above the last reading: keep the reading
            else:
                last = Decimal(stop)
        raw = last - first
    elif phases:
        raw = sum((_dec(la[1]) - _dec(f[1]) for f, la in phases), Decimal(0))
    else:
        return 0, reasons
    if raw < 0:
        return 0, reasons | {"negative_energy"}
    return _round(raw), reasons


def _since(later: datetime | None, earlier: datetime) -> timedelta:
    return later - earlier if later is not None else timedelta(0)


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- samples: one event's, and the aggregates -----------------------------------------
def _usable_value(m: ev.MeterSample) -> tuple[float, str]:
    """(value, raw text): the value when usable, else (0.0, the text as sent)."""
    if m.raw_value:
        return 0.0, m.raw_value
    try:
        value = float(m.value)
    except (TypeError, ValueError, OverflowError):
        return 0.0, str(m.value)[:64]
    # 1e-15 <= |value| < 1e16 (or 0) is exactly what bounded(Decimal(repr(value))) accepts
    # (repr is monotone); anything else takes the exact test
    magnitude = abs(value)
    if not (1e-15 <= magnitude < 1e16 or magnitude == 0.0) and (
        not math.isfinite(value) or not bounded(Decimal(repr(value)))
    ):
        return 0.0, repr(value)
    return value + 0.0, ""  # -0.0 is 0.0


def _samples(raw: Iterable[ev.MeterSample], received: datetime, rules: Plausibility) -> tuple[list[Sample], set[str]]:
    """An event's samples at their effective times, one per key, in key order."""
    out, reasons = [], set()
    for m in raw:
        at, why = effective_time(m.timestamp, received, rules)
        if why:
            reasons.add(why)
        value, text = _usable_value(m)
        out.append(Sample(
            at, m.measurand or ev.ENERGY_REGISTER, value, m.unit, m.phase, raw_value=text,
            station_time=_ms(m.timestamp) if why else None,
        ))
    return _one_per_key(out), reasons


def event_samples(env: ev.Envelope, rules: Plausibility = DEFAULT_RULES) -> tuple[Sample, ...]:
    """The samples an event carries as the session stores them (effective times, one per
    key, in key order), `excluded` set only where the value itself shows it (unusable,
    negative energy, a register in another unit): the judgement against the session's
    other readings is `apply`'s / `judge_samples`'."""
    raw = getattr(env.body, "samples", ()) or ()
    out, _ = _samples(raw, _ms(env.received_at), rules)
    return tuple(replace(x, excluded=True) if _intrinsic(x) else x for x in out)


def sample_key(x: Sample) -> SampleKey:
    return (x.timestamp, x.measurand, x.phase)


def _rank(x: Sample) -> tuple[bool, float, str, str, bool, datetime]:
    """On a (timestamp, measurand, phase) conflict: usable beats unusable, then the larger
    value (then the rest, so that only equal samples tie)."""
    return (not _intrinsic(x), x.value, x.unit, x.raw_value, x.station_time is not None, x.station_time or _MIN)


def _one_per_key(samples: Iterable[Sample]) -> list[Sample]:
    pool: dict[SampleKey, Sample] = {}
    for x in samples:
        if x.excluded:
            x = replace(x, excluded=False)  # derived, never a fact
        k = sample_key(x)
        cur = pool.get(k)
        if cur is None or _rank(x) > _rank(cur):
            pool[k] = x
    return [pool[k] for k in sorted(pool)]


def sample_winners(stored: Iterable[Sample], new: Iterable[Sample]) -> list[Sample]:
    """The samples of `new` to write over a store that overwrites by key: one per key, each
    unless the stored sample with its key wins the conflict rule (usable beats unusable,
    then the larger value). With it a store holds the same samples in any arrival order;
    the runtime can use it when it reads the samples for a rebuild anyway."""
    have = {sample_key(x): x for x in stored}
    out = []
    for x in _one_per_key(new):
        cur = have.get(sample_key(x))
        if cur is None or _rank(x) > _rank(cur):
            out.append(x)
    return out


def _stored(x: Sample, mark: Sample) -> bool:
    """`x` changes nothing next to the stored `mark`: a repeat, or its key with a value losing the conflict."""
    return x.timestamp == mark.timestamp and _rank(x) <= _rank(mark)


def _as_wh(value: float) -> int:
    return _round(_dec(value))


class _Work:
    """The aggregates while samples are folded in (mutable; `into` freezes them). The
    one place the judgement happens: `apply` feeds it an event's new samples, `rebuild`
    all of them in key order."""

    __slots__ = ("marks", "regs", "count", "excluded", "first_at", "last_at", "reasons", "peak", "group",
                 "price", "basis")

    def __init__(self, s: Session) -> None:
        self.marks: dict[tuple[str, str], list[Sample]] = {(m.measurand, m.phase): [m.first, m.last] for m in s.marks}
        self.regs: dict[str, list[Any]] = {r.phase: [r.seen_first, r.seen_last, r.first, r.last] for r in s.registers}
        self.count, self.excluded = s.sample_count, s.excluded_count
        self.first_at, self.last_at = s.first_sample_at, s.last_sample_at
        self.reasons = set(s.sample_reasons)
        self.peak = s.peak_total_w
        self.group: tuple[datetime, dict[str, float]] | None = (
            (s.phase_power[0], dict(s.phase_power[1])) if s.phase_power else None
        )
        self.price, self.basis = s.price, s.price_basis

    def into(self, s: Session) -> Session:
        """Sets the aggregates on `s` (a fresh object nobody else holds) and returns it."""
        _set(s, "sample_count", self.count)
        _set(s, "excluded_count", self.excluded)
        _set(s, "first_sample_at", self.first_at)
        _set(s, "last_sample_at", self.last_at)
        _set(s, "sample_reasons", frozenset(self.reasons))
        _set(s, "marks", tuple(SeriesMark(m, p, fl[0], fl[1]) for (m, p), fl in sorted(self.marks.items())))
        _set(s, "registers", tuple(RegisterSeries(p, *v) for p, v in sorted(self.regs.items())))
        _set(s, "peak_total_w", self.peak)
        _set(s, "phase_power", (self.group[0], tuple(sorted(self.group[1].items()))) if self.group else None)
        _set(s, "price", self.price)
        _set(s, "price_basis", self.basis)
        return s

    def sync_price(self, facts: Session, rules: Plausibility, tariff: "Tariff | None") -> str:
        """Drop an accumulator of another tariff (or when no tariff applies); open one when a
        tariff applies and the opening point is known, unless kept readings are already past
        it (then only a rebuild can fold them: "price")."""
        if self.price is not None and (
            tariff is None
            or rules.max_duration <= timedelta(0)
            or (tariff.id, tariff_fingerprint(tariff)) != (self.price.tariff_id, self.price.tariff_fingerprint)
        ):
            self.price, self.basis = None, None
        if self.price is None and tariff is not None and rules.max_duration > timedelta(0):
            total = self.regs.get("")
            basis = _price_basis(facts, rules, total[2] if total else None)
            if basis is None:
                return ""
            if total is not None and total[3] is not None and total[3][0] > basis[0]:
                return REBUILD_PRICE
            self.price = open_price(tariff, basis[0], basis[1], max_duration=rules.max_duration)
            self.basis = basis
        return ""

    def take(
        self, x: Sample, facts: Session, window: Window, anchor: tuple[datetime, int] | None,
        rules: Plausibility, tariff: "Tariff | None", *, before: bool = False,
    ) -> tuple[Sample, str]:
        """Fold in one sample later than its series' latest (or, `before`, earlier than its
        series' earliest): (the sample with `excluded` judged, ""), or (x, rebuild reason)
        with nothing changed. A reading earlier than the rest of its series is judged here
        only when that leaves every other judgement as it was (the common case: the
        Transaction.Begin reading a 1.6 StopTransaction repeats); else a rebuild."""
        why = _intrinsic(x)
        t = x.timestamp
        group = self.group
        if not why and x.measurand == _POWER and x.phase and group is not None and (before or t < group[0]):
            return x, REBUILD_OUT_OF_ORDER  # a phase of an earlier power group: the sum is not ours to fix
        kept = jump = False
        reg = None
        price, basis = self.price, self.basis
        if not why and x.measurand == ev.ENERGY_REGISTER:
            reg = self.regs.get(x.phase)
            if _in_window(t, window):
                if before and reg is not None:
                    ref = anchor if x.phase == "" else None
                else:
                    ref = reg[3] if reg is not None and reg[3] is not None else (anchor if x.phase == "" else None)
                if ref is not None and x.value - ref[1] > rules.max_rise_wh(t - ref[0]):
                    jump = True
                else:
                    kept = True
            if kept and before and reg is not None:
                first = reg[2]
                # the readings after it keep their judgement only if the first of them is the
                # series' earliest usable reading and stays kept against this one
                if first is None or first[0] != reg[0] or first[1] - x.value > rules.max_rise_wh(first[0] - t):
                    return x, REBUILD_OUT_OF_ORDER
                if x.phase == "" and price is not None:
                    if t > price.opened_at or _price_basis(facts, rules, (t, x.value)) != basis:
                        return x, REBUILD_OUT_OF_ORDER  # the price folded the later readings from elsewhere
            elif kept and x.phase == "" and tariff is not None and rules.max_duration > timedelta(0):
                if price is None:
                    first = reg[2] if reg is not None and reg[2] is not None else (t, x.value)
                    basis = _price_basis(facts, rules, first)
                    if basis is not None:
                        price = open_price(tariff, basis[0], basis[1], max_duration=rules.max_duration)
                if price is not None:
                    price = advance_price(price, tariff, t, _as_wh(x.value), max_duration=rules.max_duration)
                    if price is None:
                        return x, REBUILD_PRICE
        # commit
        key = (x.measurand, x.phase)
        fl = self.marks.get(key)
        if fl is None:
            self.marks[key] = [x, x]
        else:
            fl[0 if before else 1] = x
        self.count += 1
        self.first_at = t if self.first_at is None or t < self.first_at else self.first_at
        self.last_at = t if self.last_at is None or t > self.last_at else self.last_at
        if x.measurand == ev.ENERGY_REGISTER and not why:  # a usable reading, kept or not
            if reg is None:
                reg = self.regs[x.phase] = [t, t, None, None]
            reg[0], reg[1] = min(reg[0], t), max(reg[1], t)
        if why or jump:
            self.excluded += 1
            self.reasons.add(why or METER_JUMP)
            return replace(x, excluded=True), ""
        if x.measurand == _POWER:
            if not x.phase:
                self.peak = x.value if self.peak is None else max(self.peak, x.value)
            elif group is not None and group[0] == t:
                group[1][x.phase] = x.value
            else:
                if group is not None:
                    closed = math.fsum(group[1].values())
                    self.peak = closed if self.peak is None else max(self.peak, closed)
                self.group = (t, {x.phase: x.value})
        if kept:
            assert reg is not None
            if reg[2] is None or before:
                reg[2] = (t, x.value)
            if reg[3] is None or not before:
                reg[3] = (t, x.value)
            self.price, self.basis = price, basis
        return x, ""


def _inputs_changed(base: Session, facts: Session, rules: Plausibility) -> str:
    """Why the merged facts change the judgement of samples already folded in, or ""."""
    if base.sample_count == 0 and base.price is None:
        return ""
    old_w, new_w = _window(base), _window(facts)
    if old_w != new_w and base.registers:
        lo = min(r.seen_first for r in base.registers)
        hi = max(r.seen_last for r in base.registers)
        if _crosses_lo(old_w[0], new_w[0], lo, hi) or _crosses_hi(old_w[1], new_w[1], lo, hi):
            return REBUILD_WINDOW
    if _anchor(base, rules) != _anchor(facts, rules) and _register(base.registers, "") is not None:
        return REBUILD_ANCHOR
    if base.price is not None and _price_basis(facts, rules, base.first_register) != base.price_basis:
        return REBUILD_ANCHOR
    return ""


def _crosses_lo(old: datetime | None, new: datetime | None, lo: datetime, hi: datetime) -> bool:
    """Readings spanning [lo, hi] may be on different sides of the lower bounds old/new."""
    if old == new:
        return False
    a = None if old is None or new is None else min(old, new)
    b = max(t for t in (old, new) if t is not None)
    return lo < b and (a is None or hi >= a)


def _crosses_hi(old: datetime | None, new: datetime | None, lo: datetime, hi: datetime) -> bool:
    if old == new:
        return False
    a = min(t for t in (old, new) if t is not None)
    b = None if old is None or new is None else max(old, new)
    return hi > a and (b is None or lo <= b)


def _advance(
    base: Session, facts: Session, incoming: list[Sample], rules: Plausibility, tariff: "Tariff | None"
) -> tuple[Session, tuple[Sample, ...], str]:
    """The event's samples folded into the aggregates of `facts` (= those of `base`):
    (session, samples to store, rebuild reason). With a reason the aggregates are left as
    they were (provisional) and every sample that is not a repeat of its mark is returned."""
    why = _inputs_changed(base, facts, rules)
    work = _Work(facts)
    if not why:
        why = work.sync_price(facts, rules, tariff)
    if not incoming and not why:
        return work.into(facts), (), ""
    window, anchor = _window(facts), _anchor(facts, rules)
    out: list[Sample] = []
    for x in incoming:
        before = False
        fl = work.marks.get((x.measurand, x.phase))  # stored, or in `out` already
        if fl is not None and x.timestamp <= fl[1].timestamp:
            if _stored(x, fl[1]) or _stored(x, fl[0]):
                continue  # a repeat of the latest or earliest reading of its series (or a value losing to it)
            if x.timestamp < fl[0].timestamp:
                before = True  # earlier than the whole series: often judged without a rebuild
            else:
                why = why or (REBUILD_CONFLICT if x.timestamp in (fl[0].timestamp, fl[1].timestamp) else REBUILD_OUT_OF_ORDER)
        if why:
            out.append(replace(x, excluded=True) if _intrinsic(x) else x)
            continue
        judged, why = work.take(x, facts, window, anchor, rules, tariff, before=before)
        out.append(judged if not why else (replace(x, excluded=True) if _intrinsic(x) else x))
    if why:
        return facts, tuple(out), why
    return work.into(facts), tuple(out), ""


def _cleared(s: Session) -> Session:
    return _with(
        s, sample_count=0, excluded_count=0, first_sample_at=None, last_sample_at=None, sample_reasons=frozenset(),
        marks=(), registers=(), peak_total_w=None, phase_power=None, price=None, price_basis=None,
    )


def _fold(
    s: Session, samples: Iterable[Sample], rules: Plausibility, tariff: "Tariff | None"
) -> tuple[Session, list[Sample]]:
    facts = _cleared(s)
    work = _Work(facts)
    work.sync_price(facts, rules, tariff)
    window, anchor = _window(facts), _anchor(facts, rules)
    judged = []
    for x in _one_per_key(samples):
        j, why = work.take(x, facts, window, anchor, rules, tariff)
        assert not why, why  # key order: nothing is out of order
        judged.append(j)
    return work.into(facts), judged


def rebuild(
    session: Session,
    samples: Sequence[Sample],
    rules: Plausibility = DEFAULT_RULES,
    *,
    tariff: "Tariff | None" = None,
    now: datetime | None = None,
) -> Session:
    """One fold over ALL the session's samples (any order and repeats in: one per key, the
    conflict rule, key order inside) with the session's facts: aggregates, energy and the
    price accumulator (with `tariff`) recomputed. Returns the session with version + 1
    (and `updated_at` = `now` when given) if anything changed, the same object if not."""
    folded, _ = _fold(session, samples, rules, tariff)
    out = _derive(folded, rules)
    if out == session:
        return session
    stamp = _ms(now) if now is not None else session.updated_at
    _stamp(out, session.version + 1, stamp, session.applied)
    return out


def refold(session: Session, samples: Iterable[Sample], rules: Plausibility = DEFAULT_RULES) -> Session:
    """The session with its aggregates and derived fields folded again from `samples` (no
    tariff), version and stamps kept: how a document of the version before ADR 015, which
    derived everything from the samples it carried, is read."""
    return _derive(_fold(session, samples, rules, None)[0], rules)


def judge_samples(session: Session, samples: Sequence[Sample], rules: Plausibility = DEFAULT_RULES) -> list[Sample]:
    """The samples one per key, in key order, with `excluded` as the session's facts and
    the other samples decide it (what the REST API shows)."""
    return _fold(session, samples, rules, None)[1]


def kept_register_readings(
    session: Session, samples: Sequence[Sample], rules: Plausibility = DEFAULT_RULES
) -> list[tuple[datetime, int]]:
    """The (time, Wh) total-register readings that count for energy and pricing: kept and
    inside the session window, in time order (Wh rounded half up)."""
    window = _window(session)
    return [
        (x.timestamp, _as_wh(x.value))
        for x in judge_samples(session, samples, rules)
        if x.measurand == ev.ENERGY_REGISTER and not x.phase and not x.excluded and _in_window(x.timestamp, window)
    ]


# -- time --------------------------------------------------------------------
def truncate_ms(dt: datetime) -> datetime:
    """`dt` as an aware UTC instant truncated to the millisecond (every instant of a
    session is one, so it survives the round trip through its document), saturating at
    the ends of datetime's range."""
    return _ms(dt)


def _ms(dt: datetime) -> datetime:
    if dt.tzinfo is UTC and not dt.microsecond % 1000:
        return dt  # the common case: already aware UTC to the millisecond
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:  # an offset pushing it past year 1 or 9999
        dt = _MIN if dt.year < 5000 else _MAX
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _shift(dt: datetime, delta: timedelta) -> datetime:
    """dt + delta, saturating at the ends of datetime's range instead of overflowing."""
    try:
        return dt + delta
    except OverflowError:
        return _MAX if delta > timedelta(0) else _MIN


def _station_time(env: ev.Envelope) -> datetime:
    return _ms(env.station_time if env.station_time is not None else env.received_at)
