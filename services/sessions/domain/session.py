"""Charging sessions as a pure projection of normalized station events.

`apply(session, envelope, now, rules)` folds one event into a session. The state is a
set of *facts*, each merged with a commutative, idempotent rule, plus fields *derived*
from those facts (status, energy, orphan, suspect, hold, charging end, seq gaps). So:

- the same event applied twice leaves the session identical (same `version`);
- any permutation (and duplication) of a session's events ends in the same facts,
  hence the same energy, status, stopped_at, ... (only `version`/`updated_at`,
  which count and date the real changes, depend on arrival order).

Merge rules (see docs/adr/007-sessions-model.md and docs/plausibility.md):
- identity: uuid5(station id, transaction id); a 1.6 stop with transactionId "-1"
  gets an identity of its own from its business key (timestamp, meterStop).
- 2.0.1 idempotency key (transactionId, seqNo): an already seen seqNo is a no-op.
- order key = (seqNo, effective time): the start, the end, the id token (first
  non-empty), the authorization (of the start) and the evse/connector (first one
  naming a connector, else first non-zero evse) come from the lowest key. 1.6 Start
  has seqNo 0 and Stop `SEQ_NO_LAST_16`; MeterValues rank after both.
- effective time: the station time, unless it is before `rules.clock_floor` or more
  than `rules.clock_max_ahead` after the CSMS receive time; then the receive time
  (the station time is kept in station_started_at / station_stopped_at) and the
  sticky flag "clock_before_floor" / "clock_ahead" (`clock_suspect`). Sample
  timestamps likewise, against their envelope's receive time.
- received_at = earliest CSMS receive time.
- samples: union, one per (timestamp, measurand, phase) (a usable value wins over an
  unusable one, then the larger value), bounded by `MAX_SAMPLES` by thinning to the
  first and last sample of aligned time buckets (1 min, ... 1 day, whole session);
  the level never goes down. Unusable values (not finite, out of range, or forwarded
  by the gateway in `raw_value`) are kept with value 0 and their text.
- `excluded` (derived per sample): unusable value, negative energy reading, an energy
  register in another unit than Wh, or a register jump beyond
  `rules.meter_max_power_kw` x elapsed time (+ one minute at that power) from the last
  kept reading. Excluded samples never count as energy.
- energy: see `_energy`; samples count only inside [started_at, stopped_at] ±
  `WINDOW_SLACK` (bounds used when known), so a late MeterValues after the end
  changes energy only if it is a register reading inside the session window.
- abandoned: a SessionAbandoned (decided by the CSMS, see lifecycle.py) sets
  abandoned_at / abandon_reason (the earliest (time, reason) wins); status is derived:
  an end → "completed", else abandoned → "abandoned", else "active".
- hold: duration over `rules.max_duration`, energy over `rules.max_energy_wh`, or a
  suspect clock: the CDR is held back from export.

Nothing here raises on a schema-valid event: absurd numbers and times are flagged, and
all time arithmetic saturates at the ends of `datetime`'s range.

Times are truncated to milliseconds on the way in, so a session survives the
round trip through its ISO 8601 document unchanged.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from services.common import events as ev
from services.common.decimals import bounded
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "Sample",
    "Session",
    "OrderKey",
    "Plausibility",
    "RemoteStart",
    "DEFAULT_RULES",
    "apply",
    "session_id",
    "session_ref",
    "is_session_event",
    "session_to_doc",
    "session_from_doc",
    "effective_time",
    "MAX_SAMPLES",
    "FUTURE_TOLERANCE",
    "WINDOW_SLACK",
    "UNKNOWN_TRANSACTION_IDS",
    "CLOCK_REASONS",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)
SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:csms:sessions:v1")
MAX_SAMPLES = 2000
FUTURE_TOLERANCE = timedelta(minutes=5)  # the default of CSMS_CLOCK_MAX_AHEAD_S
WINDOW_SLACK = timedelta(seconds=60)
# A register may rise by one minute at the maximum power on top of power x elapsed time:
# sample timestamps are often rounded to the minute, and meters report with some lag.
JUMP_SLACK = timedelta(minutes=1)
MAX_IDLE_MARKS = 256
UNKNOWN_TRANSACTION_IDS = frozenset({"-1"})
# Events without a seqNo (1.6 MeterValues) rank after every transaction event.
_NO_SEQ = 2**31
# Thinning levels (bucket width in seconds; None = one bucket for the whole session).
_LEVELS: tuple[int | None, ...] = (0, 60, 300, 900, 3600, 21600, 86400, None)
_CHARGING = "Charging"
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

OrderKey = tuple[int, datetime]
_SESSION_BODIES = (
    ev.TransactionStarted, ev.TransactionUpdated, ev.TransactionEnded, ev.MeterValues, ev.SessionAbandoned,
)


def _span(seconds: float) -> timedelta:
    if not math.isfinite(seconds):
        seconds = _MAX_SPAN_S if seconds > 0 else 0
    return timedelta(seconds=min(max(float(seconds), 0.0), _MAX_SPAN_S))


@dataclass(frozen=True, slots=True)
class Plausibility:
    """The plausibility bounds (docs/plausibility.md). Defaults = the settings' defaults."""

    clock_floor: datetime = datetime(2010, 1, 1, tzinfo=UTC)
    clock_max_ahead: timedelta = FUTURE_TOLERANCE
    meter_max_power_kw: float = 1000.0
    max_duration: timedelta = timedelta(hours=72)
    max_energy_wh: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: Any) -> "Plausibility":
        """From `services.common.config.Settings` (duck-typed: the domain stays stdlib only)."""
        power = float(settings.meter_max_power_kw)
        return cls(
            clock_floor=parse_ocpp(str(settings.clock_floor)),
            clock_max_ahead=_span(float(settings.clock_max_ahead_s)),
            meter_max_power_kw=power if math.isfinite(power) and power > 0 else cls.meter_max_power_kw,
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
    timestamp: datetime
    measurand: str
    value: float
    unit: str = "Wh"
    phase: str = ""
    raw_value: str = ""     # the value as sent when it was not a usable number (value is then 0)
    excluded: bool = False  # derived: implausible, left out of energy


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
    # facts: abandoned by the CSMS (earliest (time, reason))
    abandoned_at: datetime | None = None
    abandon_reason: str = ""
    # facts: charging marks (last "Charging" key, later non-charging keys)
    last_charging_key: OrderKey | None = None
    idle_keys: tuple[OrderKey, ...] = ()
    # facts: the rest
    ocpp_version: str = ""
    samples: tuple[Sample, ...] = ()
    sample_level: int = 0
    seen_seq_nos: frozenset[int] = frozenset()
    flags: frozenset[str] = frozenset()  # sticky suspect reasons (implausible clocks)
    version: int = 0


# -- identity ----------------------------------------------------------------
def session_id(station_id: str, transaction_id: str) -> str:
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
) -> Session | None:
    """Fold one event into its session; None when the event is not about a session (or
    abandons a session that does not exist). Returns `session` itself (same object) when
    nothing changed. `remote` is the matching remote start command of an event carrying a
    remoteStartId, when the caller found one."""
    ref = session_ref(env)
    if ref is None:
        return None
    sid, tx = ref
    if session is not None and session.id != sid:
        raise ValueError(f"event for session {sid} applied to session {session.id}")
    body = env.body
    if isinstance(body, ev.SessionAbandoned) and session is None:
        return None  # nothing to abandon
    seq = None if isinstance(body, (ev.MeterValues, ev.SessionAbandoned)) else int(body.seq_no)
    if session is not None and seq is not None and seq in session.seen_seq_nos:
        return session  # idempotency key (transactionId, seqNo)
    stamp = _ms(now)
    base = session or Session(
        id=sid, station_id=env.station_id, transaction_id=tx, received_at=_ms(env.received_at), updated_at=stamp
    )
    if isinstance(body, ev.SessionAbandoned):
        merged = _derive(_merge_abandoned(base, env, rules), rules)
    else:
        merged = _derive(_merge(base, env, seq, rules, remote), rules)
    if session is None:
        return replace(merged, version=1, updated_at=stamp)
    if merged == session:
        return session
    return replace(merged, version=session.version + 1, updated_at=stamp)


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
        return replace(s, abandoned_at=at, abandon_reason=body.reason)
    return s


def _merge(s: Session, env: ev.Envelope, seq: int | None, rules: Plausibility, remote: RemoteStart | None) -> Session:
    body = env.body
    received = _ms(env.received_at)
    raw_st = _station_time(env)
    st, clock_reason = effective_time(raw_st, received, rules)
    key: OrderKey = (_NO_SEQ if seq is None else seq, st)
    ch: dict[str, Any] = {"received_at": min(s.received_at, received)}
    if env.ocpp_version:
        ch["ocpp_version"] = max(s.ocpp_version, env.ocpp_version)
    if seq is not None:
        ch["seen_seq_nos"] = s.seen_seq_nos | {seq}

    incoming, sample_reasons = _samples(body.samples, received, rules)  # type: ignore[union-attr]
    flags = {clock_reason} if clock_reason else set()
    flags |= sample_reasons
    if flags - s.flags:
        ch["flags"] = s.flags | flags
    if incoming:
        ch["samples"], ch["sample_level"] = _merge_samples(s.samples, incoming, s.sample_level)

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
    where = (body.evse_id, body.connector_id)  # type: ignore[union-attr]
    # A location naming the connector beats one naming only the EVSE, then the lowest key.
    if any(where) and (
        s.location_key is None
        or (where[1] == 0, key, where) < (s.connector_id == 0, s.location_key, (s.evse_id, s.connector_id))
    ):
        ch.update(location_key=key, evse_id=where[0], connector_id=where[1])

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
            ch["idle_keys"] = _bounded_idle(set(s.idle_keys) | {key})
    elif state == _CHARGING:
        last = key if s.last_charging_key is None else max(s.last_charging_key, key)
        ch.update(last_charging_key=last, idle_keys=tuple(k for k in s.idle_keys if k > last))
    return replace(s, **ch)


def _bounded_idle(keys: set[OrderKey]) -> tuple[OrderKey, ...]:
    """Non-charging marks after the last Charging one, bounded: the earliest ones
    (they decide charging_ended_at) plus the latest (usually the end)."""
    ordered = sorted(keys)
    if len(ordered) > MAX_IDLE_MARKS:
        ordered = ordered[: MAX_IDLE_MARKS - 1] + ordered[-1:]
    return tuple(ordered)


def _derive(s: Session, rules: Plausibility) -> Session:
    samples, sample_reasons = _judge_samples(s, rules)
    s = replace(s, samples=samples) if samples != s.samples else s
    energy, energy_reasons = _energy(s, rules)
    reasons = set(s.flags) | sample_reasons | energy_reasons
    charging_ended = s.stopped_at
    if s.last_charging_key is not None:
        later = [k for k in s.idle_keys if k > s.last_charging_key]
        charging_ended = min(later)[1] if later else (s.stopped_at if s.end_key else None)
    nos = {n for n in s.seen_seq_nos if n != ev.SEQ_NO_LAST_16}
    gaps = bool(nos) and (min(nos) < 0 or len(nos) != max(nos) + 1)
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
    return replace(
        s,
        status=status,
        orphan=s.start_key is None,
        energy_wh=energy,
        suspect_reasons=frozenset(reasons),
        suspect=bool(reasons),
        seq_gaps=gaps,
        charging_ended_at=charging_ended,
        id_token=s.event_token or s.remote_token,
        clock_suspect=clock_suspect,
        hold=bool(hold),
        hold_reasons=frozenset(hold),
    )


def _duration(s: Session) -> timedelta | None:
    """Start to end (else abandon, else the latest sample) in effective times, if known."""
    if s.start_key is None or s.started_at is None:
        return None
    if s.end_key is not None and s.stopped_at is not None:
        end: datetime | None = s.stopped_at
    else:
        ends = [t for t in (s.abandoned_at, s.samples[-1].timestamp if s.samples else None) if t is not None]
        end = max(ends) if ends else None
    return None if end is None else end - s.started_at


# -- samples: usability and jumps -----------------------------------------------
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


def _window(s: Session) -> tuple[datetime | None, datetime | None]:
    lo = _shift(s.started_at, -WINDOW_SLACK) if s.start_key is not None and s.started_at else None
    hi = _shift(s.stopped_at, WINDOW_SLACK) if s.end_key is not None and s.stopped_at else None
    return lo, hi


def _in_window(x: Sample, lo: datetime | None, hi: datetime | None) -> bool:
    return not ((lo and x.timestamp < lo) or (hi and x.timestamp > hi))


def _usable_reading(value: int | None) -> bool:
    return value is not None and value >= 0 and bounded(Decimal(value))


def _judge_samples(s: Session, rules: Plausibility) -> tuple[tuple[Sample, ...], set[str]]:
    """The samples with `excluded` decided, and the suspect reasons they give.

    Register jumps: per phase, in time order inside the window, a reading more than
    `rules.max_rise_wh(elapsed)` above the last kept one is excluded (the total register
    starts from meterStart at started_at when that is trustworthy)."""
    reasons: set[str] = set()
    lo, hi = _window(s)
    last: dict[str, tuple[datetime, float]] = {}
    anchor = _trusted_meter_start(s, rules)
    if anchor is not None and s.started_at is not None:
        last[""] = (s.started_at, float(anchor))
    jumps: set[int] = set()
    for i, x in enumerate(s.samples):  # sorted by timestamp
        why = _intrinsic(x)
        if why:
            reasons.add(why)
            continue
        if x.measurand != ev.ENERGY_REGISTER or not _in_window(x, lo, hi):
            continue
        prev = last.get(x.phase)
        if prev is not None and x.value - prev[1] > rules.max_rise_wh(x.timestamp - prev[0]):
            jumps.add(i)
            reasons.add(METER_JUMP)
            continue
        last[x.phase] = (x.timestamp, x.value)
    out = tuple(
        x if x.excluded == (bool(_intrinsic(x)) or i in jumps) else replace(x, excluded=not x.excluded)
        for i, x in enumerate(s.samples)
    )
    return out, reasons


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


# -- energy ------------------------------------------------------------------
def _energy(s: Session, rules: Plausibility) -> tuple[int, set[str]]:
    """(energy Wh, suspect reasons).

    meterStart/meterStop count only when usable (0 <= value < 10^16); both known and
    their delta within the physical bound → the delta; a delta beyond it → "meter_jump"
    and both are left out (energy from the samples alone). Then, on the kept (not
    excluded) samples inside the window:
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
    lo, hi = _window(s)
    series: dict[str, list[Sample]] = {}
    for x in s.samples:  # already sorted by timestamp
        if x.excluded or x.measurand != ev.ENERGY_REGISTER or not _in_window(x, lo, hi):
            continue
        series.setdefault(x.phase, []).append(x)
    total = series.pop("", None)
    if total:
        first = Decimal(start) if start is not None else _dec(total[0].value)
        last = _dec(total[-1].value)
        if stop is not None:
            if Decimal(stop) - last > Decimal(repr(rules.max_rise_wh(_since(s.stopped_at, total[-1].timestamp)))):
                reasons.add(METER_JUMP)  # meterStop far above the last reading: keep the reading
            else:
                last = Decimal(stop)
        raw = last - first
    elif series:
        raw = sum((_dec(v[-1].value) - _dec(v[0].value) for v in series.values()), Decimal(0))
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


# -- samples -----------------------------------------------------------------
def _usable_value(m: ev.MeterSample) -> tuple[float, str]:
    """(value, raw text): the value when usable, else (0.0, the text as sent)."""
    if m.raw_value:
        return 0.0, m.raw_value
    try:
        value = float(m.value)
    except (TypeError, ValueError, OverflowError):
        return 0.0, str(m.value)[:64]
    if not math.isfinite(value) or not bounded(Decimal(repr(value))):
        return 0.0, repr(value)
    return value, ""


def _samples(raw: Iterable[ev.MeterSample], received: datetime, rules: Plausibility) -> tuple[list[Sample], set[str]]:
    out, reasons = [], set()
    for m in raw:
        at, why = effective_time(m.timestamp, received, rules)
        if why:
            reasons.add(why)
        value, text = _usable_value(m)
        out.append(Sample(at, m.measurand or ev.ENERGY_REGISTER, value, m.unit, m.phase, raw_value=text))
    return out, reasons


def _skey(x: Sample) -> tuple[datetime, str, str]:
    return (x.timestamp, x.measurand, x.phase)


def _rank(x: Sample) -> tuple[bool, float, str, str]:
    """On a (timestamp, measurand, phase) conflict: usable beats unusable, then the larger value."""
    return (not _intrinsic(x), x.value, x.unit, x.raw_value)


def _merge_samples(existing: tuple[Sample, ...], incoming: list[Sample], level: int) -> tuple[tuple[Sample, ...], int]:
    pool = {_skey(x): x for x in existing}
    for x in incoming:
        cur = pool.get(_skey(x))
        if cur is None or _rank(x) > _rank(cur):
            pool[_skey(x)] = x
    values = list(pool.values())
    while True:
        thinned = _thin(values, _LEVELS[level])
        if len(thinned) <= MAX_SAMPLES or level == len(_LEVELS) - 1:
            return tuple(sorted(thinned, key=_skey)), level
        level += 1


def _thin(values: list[Sample], width: int | None) -> list[Sample]:
    """Keep the first and the last sample of each (measurand, phase, aligned bucket).
    Nested widths make thinning associative: thin(thin(A) ∪ B) == thin(A ∪ B)."""
    if width == 0:
        return values
    buckets: dict[tuple[str, str, int], tuple[Sample, Sample]] = {}
    for x in values:
        b = 0 if width is None else (x.timestamp - _EPOCH) // timedelta(seconds=width)
        k = (x.measurand, x.phase, b)
        cur = buckets.get(k)
        if cur is None:
            buckets[k] = (x, x)
        else:
            buckets[k] = (min(cur[0], x, key=_skey), max(cur[1], x, key=_skey))
    return list({_skey(x): x for pair in buckets.values() for x in pair}.values())


# -- time --------------------------------------------------------------------
def _ms(dt: datetime) -> datetime:
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


# -- documents ---------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else parse_ocpp(value)


def _key_out(k: OrderKey | None) -> list[Any] | None:
    return None if k is None else [k[0], to_ocpp(k[1])]


def _key_in(v: Any) -> OrderKey | None:
    return None if v is None else (int(v[0]), parse_ocpp(v[1]))


def _sample_out(x: Sample) -> dict[str, Any]:
    d: dict[str, Any] = {
        "timestamp": to_ocpp(x.timestamp), "measurand": x.measurand, "value": x.value, "unit": x.unit, "phase": x.phase,
    }
    # Only when set: up to 2,000 samples per document.
    if x.excluded:
        d["excluded"] = True
    if x.raw_value:
        d["raw_value"] = x.raw_value
    return d


def _sample_in(d: dict[str, Any]) -> Sample:
    return Sample(
        parse_ocpp(d["timestamp"]), d["measurand"], float(d["value"]), d.get("unit", ""), d.get("phase", ""),
        raw_value=d.get("raw_value", ""), excluded=bool(d.get("excluded", False)),
    )


def session_to_doc(s: Session) -> dict[str, Any]:
    """The stored document, also the REST API's view. Keys starting with "_" are
    bookkeeping (the API may drop them). Samples carry `excluded` / `raw_value` only
    when set."""
    return {
        "id": s.id,
        "station_id": s.station_id,
        "transaction_id": s.transaction_id,
        "id_token": s.id_token,
        "authorization": s.authorization,
        "status": s.status,
        "energy_wh": s.energy_wh,
        "started_at": _iso(s.started_at),
        "stopped_at": _iso(s.stopped_at),
        "station_started_at": _iso(s.station_started_at),
        "station_stopped_at": _iso(s.station_stopped_at),
        "received_at": _iso(s.received_at),
        "charging_ended_at": _iso(s.charging_ended_at),
        "abandoned_at": _iso(s.abandoned_at),
        "abandon_reason": s.abandon_reason,
        "evse_id": s.evse_id,
        "connector_id": s.connector_id,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "stop_reason": s.stop_reason,
        "ocpp_version": s.ocpp_version,
        "remote_start_id": s.remote_start_id,
        "issued_by": s.issued_by,
        "meter_samples": [_sample_out(x) for x in s.samples],
        "orphan": s.orphan,
        "suspect": s.suspect,
        "suspect_reasons": sorted(s.suspect_reasons),
        "clock_suspect": s.clock_suspect,
        "hold": s.hold,
        "hold_reasons": sorted(s.hold_reasons),
        "seq_gaps": s.seq_gaps,
        "version": s.version,
        "updated_at": _iso(s.updated_at),
        "_state": {
            "start_key": _key_out(s.start_key),
            "end_key": _key_out(s.end_key),
            "token_key": _key_out(s.token_key),
            "event_token": s.event_token,
            "remote_token": s.remote_token,
            "location_key": _key_out(s.location_key),
            "last_charging_key": _key_out(s.last_charging_key),
            "idle_keys": [_key_out(k) for k in s.idle_keys],
            "sample_level": s.sample_level,
            "seen_seq_nos": sorted(s.seen_seq_nos),
            "flags": sorted(s.flags),
        },
    }


def session_from_doc(d: dict[str, Any]) -> Session:
    st = d.get("_state") or {}
    received = _dt(d["received_at"])
    updated = _dt(d.get("updated_at")) or received
    assert received is not None and updated is not None
    return Session(
        id=d["id"],
        station_id=d["station_id"],
        transaction_id=d["transaction_id"],
        received_at=received,
        updated_at=updated,
        status=d.get("status", "active"),
        energy_wh=int(d.get("energy_wh", 0)),
        orphan=bool(d.get("orphan", False)),
        suspect=bool(d.get("suspect", False)),
        suspect_reasons=frozenset(d.get("suspect_reasons", ())),
        seq_gaps=bool(d.get("seq_gaps", False)),
        charging_ended_at=_dt(d.get("charging_ended_at")),
        id_token=d.get("id_token", ""),
        clock_suspect=bool(d.get("clock_suspect", False)),
        hold=bool(d.get("hold", False)),
        hold_reasons=frozenset(d.get("hold_reasons", ())),
        started_at=_dt(d.get("started_at")),
        station_started_at=_dt(d.get("station_started_at")),
        meter_start_wh=d.get("meter_start_wh"),
        authorization=d.get("authorization", ""),
        start_key=_key_in(st.get("start_key")),
        stopped_at=_dt(d.get("stopped_at")),
        station_stopped_at=_dt(d.get("station_stopped_at")),
        meter_stop_wh=d.get("meter_stop_wh"),
        stop_reason=d.get("stop_reason", ""),
        end_key=_key_in(st.get("end_key")),
        # documents written before the remote start facts: id_token was the event token
        event_token=st.get("event_token", d.get("id_token", "")),
        token_key=_key_in(st.get("token_key")),
        evse_id=int(d.get("evse_id", 0)),
        connector_id=int(d.get("connector_id", 0)),
        location_key=_key_in(st.get("location_key")),
        remote_start_id=int(d.get("remote_start_id", 0)),
        remote_token=st.get("remote_token", ""),
        issued_by=d.get("issued_by", ""),
        abandoned_at=_dt(d.get("abandoned_at")),
        abandon_reason=d.get("abandon_reason", ""),
        last_charging_key=_key_in(st.get("last_charging_key")),
        idle_keys=tuple(k for k in (_key_in(v) for v in st.get("idle_keys", ())) if k is not None),
        ocpp_version=d.get("ocpp_version", ""),
        samples=tuple(_sample_in(x) for x in d.get("meter_samples", ())),
        sample_level=int(st.get("sample_level", 0)),
        seen_seq_nos=frozenset(int(n) for n in st.get("seen_seq_nos", ())),
        flags=frozenset(st.get("flags", ())),
        version=int(d.get("version", 0)),
    )
