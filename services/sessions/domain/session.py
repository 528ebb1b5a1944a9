"""Charging sessions as a pure projection of normalized station events.

`apply(session, envelope, now)` folds one event into a session. The state is a set
of *facts*, each merged with a commutative, idempotent rule, plus fields *derived*
from those facts (status, energy, orphan, suspect, charging end, seq gaps). So:

- the same event applied twice leaves the session identical (same `version`);
- any permutation (and duplication) of a session's events ends in the same facts,
  hence the same energy, status, stopped_at, ... (only `version`/`updated_at`,
  which count and date the real changes, depend on arrival order).

Merge rules (see docs/adr/007-sessions-model.md):
- identity: uuid5(station id, transaction id); a 1.6 stop with transactionId "-1"
  gets an identity of its own from its business key (timestamp, meterStop).
- 2.0.1 idempotency key (transactionId, seqNo): an already seen seqNo is a no-op.
- order key = (seqNo, station time): the start, the end, the id token (first
  non-empty) and the evse/connector (first non-zero) come from the lowest key.
  1.6 Start has seqNo 0 and Stop `SEQ_NO_LAST_16`; MeterValues rank after both.
- received_at = earliest CSMS receive time; station times are kept as sent.
- samples: union, one per (timestamp, measurand, phase) (the larger value wins),
  bounded by `MAX_SAMPLES` by thinning to the first and last sample of aligned
  time buckets (1 min, 5 min, ... 1 day, whole session); the level never goes down.
- energy: see `_energy`; samples count only inside [started_at, stopped_at] ±
  `WINDOW_SLACK` (bounds used when known), so a late MeterValues after the end
  changes energy only if it is a register reading inside the session window.
- suspect: meterStop < meterStart (or any negative energy), or a station
  timestamp more than `FUTURE_TOLERANCE` ahead of the receive time.

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
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "Sample",
    "Session",
    "OrderKey",
    "apply",
    "session_id",
    "session_ref",
    "is_session_event",
    "session_to_doc",
    "session_from_doc",
    "MAX_SAMPLES",
    "FUTURE_TOLERANCE",
    "WINDOW_SLACK",
    "UNKNOWN_TRANSACTION_IDS",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:csms:sessions:v1")
MAX_SAMPLES = 2000
FUTURE_TOLERANCE = timedelta(minutes=5)
WINDOW_SLACK = timedelta(seconds=60)
MAX_IDLE_MARKS = 256
UNKNOWN_TRANSACTION_IDS = frozenset({"-1"})
# Events without a seqNo (1.6 MeterValues) rank after every transaction event.
_NO_SEQ = 2**31
# Thinning levels (bucket width in seconds; None = one bucket for the whole session).
_LEVELS: tuple[int | None, ...] = (0, 60, 300, 900, 3600, 21600, 86400, None)
_CHARGING = "Charging"

OrderKey = tuple[int, datetime]
_SESSION_BODIES = (ev.TransactionStarted, ev.TransactionUpdated, ev.TransactionEnded, ev.MeterValues)


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime
    measurand: str
    value: float
    unit: str = "Wh"
    phase: str = ""


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
    # facts: start / end (from the lowest-keyed Started / Ended)
    started_at: datetime | None = None
    meter_start_wh: int | None = None
    start_key: OrderKey | None = None
    stopped_at: datetime | None = None
    meter_stop_wh: int | None = None
    stop_reason: str = ""
    end_key: OrderKey | None = None
    # facts: first non-empty id token, first non-zero evse/connector
    id_token: str = ""
    token_key: OrderKey | None = None
    evse_id: int = 0
    connector_id: int = 0
    location_key: OrderKey | None = None
    # facts: charging marks (last "Charging" key, later non-charging keys)
    last_charging_key: OrderKey | None = None
    idle_keys: tuple[OrderKey, ...] = ()
    # facts: the rest
    ocpp_version: str = ""
    samples: tuple[Sample, ...] = ()
    sample_level: int = 0
    seen_seq_nos: frozenset[int] = frozenset()
    flags: frozenset[str] = frozenset()  # sticky suspect reasons (future timestamps)
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
def apply(session: Session | None, env: ev.Envelope, now: datetime) -> Session | None:
    """Fold one event into its session; None when the event is not about a session.
    Returns `session` itself (same object) when nothing changed."""
    ref = session_ref(env)
    if ref is None:
        return None
    sid, tx = ref
    if session is not None and session.id != sid:
        raise ValueError(f"event for session {sid} applied to session {session.id}")
    body = env.body
    seq = None if isinstance(body, ev.MeterValues) else int(body.seq_no)  # type: ignore[union-attr]
    if session is not None and seq is not None and seq in session.seen_seq_nos:
        return session  # idempotency key (transactionId, seqNo)
    stamp = _ms(now)
    base = session or Session(
        id=sid, station_id=env.station_id, transaction_id=tx, received_at=_ms(env.received_at), updated_at=stamp
    )
    merged = _derive(_merge(base, env, seq))
    if session is None:
        return replace(merged, version=1, updated_at=stamp)
    if merged == session:
        return session
    return replace(merged, version=session.version + 1, updated_at=stamp)


def _merge(s: Session, env: ev.Envelope, seq: int | None) -> Session:
    body = env.body
    received = _ms(env.received_at)
    st = _station_time(env)
    key: OrderKey = (_NO_SEQ if seq is None else seq, st)
    ch: dict[str, Any] = {"received_at": min(s.received_at, received)}
    if env.ocpp_version:
        ch["ocpp_version"] = max(s.ocpp_version, env.ocpp_version)
    if seq is not None:
        ch["seen_seq_nos"] = s.seen_seq_nos | {seq}

    incoming = _samples(body.samples)  # type: ignore[union-attr]
    horizon = received + FUTURE_TOLERANCE
    if st > horizon or any(x.timestamp > horizon for x in incoming):
        ch["flags"] = s.flags | {"future_timestamp"}
    if incoming:
        ch["samples"], ch["sample_level"] = _merge_samples(s.samples, incoming, s.sample_level)

    if isinstance(body, ev.TransactionStarted) and (s.start_key is None or key < s.start_key):
        ch.update(start_key=key, started_at=st, meter_start_wh=body.meter_start_wh)
    if isinstance(body, ev.TransactionEnded) and (s.end_key is None or key < s.end_key):
        ch.update(end_key=key, stopped_at=st, meter_stop_wh=body.meter_stop_wh, stop_reason=body.stop_reason)

    token = getattr(body, "id_token", "")
    # Ties on the key (same seqNo and station time) break on the value: order-independent.
    if token and (s.token_key is None or (key, token) < (s.token_key, s.id_token)):
        ch.update(token_key=key, id_token=token)
    where = (body.evse_id, body.connector_id)  # type: ignore[union-attr]
    if any(where) and (s.location_key is None or (key, where) < (s.location_key, (s.evse_id, s.connector_id))):
        ch.update(location_key=key, evse_id=where[0], connector_id=where[1])

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


def _derive(s: Session) -> Session:
    energy, negative_reason = _energy(s)
    reasons = set(s.flags)
    if negative_reason:
        reasons.add(negative_reason)
    charging_ended = s.stopped_at
    if s.last_charging_key is not None:
        later = [k for k in s.idle_keys if k > s.last_charging_key]
        charging_ended = min(later)[1] if later else (s.stopped_at if s.end_key else None)
    nos = {n for n in s.seen_seq_nos if n != ev.SEQ_NO_LAST_16}
    gaps = bool(nos) and (min(nos) < 0 or len(nos) != max(nos) + 1)
    return replace(
        s,
        status="completed" if s.end_key is not None else "active",
        orphan=s.start_key is None,
        energy_wh=energy,
        suspect_reasons=frozenset(reasons),
        suspect=bool(reasons),
        seq_gaps=gaps,
        charging_ended_at=charging_ended,
    )


# -- energy ------------------------------------------------------------------
def _energy(s: Session) -> tuple[int, str]:
    """(energy Wh, suspect reason or "").

    1. meterStop − meterStart when both are known;
    2. else on the total register series (ENERGY_REGISTER without phase, inside the
       window): (meterStop or last) − (meterStart or first);
    3. else the sum over phases of (last − first) of the per-phase register series;
    4. else 0. Negative → 0 and suspect. Rounded half up to an int.
    """
    if s.meter_start_wh is not None and s.meter_stop_wh is not None:
        raw = Decimal(s.meter_stop_wh) - Decimal(s.meter_start_wh)
        return (0, "meter_stop_before_start") if raw < 0 else (_round(raw), "")
    lo = s.started_at - WINDOW_SLACK if s.start_key is not None and s.started_at else None
    hi = s.stopped_at + WINDOW_SLACK if s.end_key is not None and s.stopped_at else None
    series: dict[str, list[Sample]] = {}
    for x in s.samples:  # already sorted by timestamp
        if x.measurand != ev.ENERGY_REGISTER or (lo and x.timestamp < lo) or (hi and x.timestamp > hi):
            continue
        series.setdefault(x.phase, []).append(x)
    total = series.pop("", None)
    if total:
        first = Decimal(s.meter_start_wh) if s.meter_start_wh is not None else _dec(total[0].value)
        last = Decimal(s.meter_stop_wh) if s.meter_stop_wh is not None else _dec(total[-1].value)
        raw = last - first
    elif series:
        raw = sum((_dec(v[-1].value) - _dec(v[0].value) for v in series.values()), Decimal(0))
    else:
        return 0, ""
    return (0, "negative_energy") if raw < 0 else (_round(raw), "")


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- samples -----------------------------------------------------------------
def _samples(raw: Iterable[ev.MeterSample]) -> list[Sample]:
    out = []
    for m in raw:
        if not math.isfinite(m.value):
            continue
        out.append(Sample(_ms(m.timestamp), m.measurand or ev.ENERGY_REGISTER, float(m.value), m.unit, m.phase))
    return out


def _skey(x: Sample) -> tuple[datetime, str, str]:
    return (x.timestamp, x.measurand, x.phase)


def _merge_samples(existing: tuple[Sample, ...], incoming: list[Sample], level: int) -> tuple[tuple[Sample, ...], int]:
    pool = {_skey(x): x for x in existing}
    for x in incoming:
        cur = pool.get(_skey(x))
        if cur is None or (x.value, x.unit) > (cur.value, cur.unit):
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
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


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


def session_to_doc(s: Session) -> dict[str, Any]:
    """The stored document, also the REST API's view. Keys starting with "_" are
    bookkeeping (the API may drop them)."""
    return {
        "id": s.id,
        "station_id": s.station_id,
        "transaction_id": s.transaction_id,
        "id_token": s.id_token,
        "status": s.status,
        "energy_wh": s.energy_wh,
        "started_at": _iso(s.started_at),
        "stopped_at": _iso(s.stopped_at),
        "received_at": _iso(s.received_at),
        "charging_ended_at": _iso(s.charging_ended_at),
        "evse_id": s.evse_id,
        "connector_id": s.connector_id,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "stop_reason": s.stop_reason,
        "ocpp_version": s.ocpp_version,
        "meter_samples": [
            {"timestamp": to_ocpp(x.timestamp), "measurand": x.measurand, "value": x.value, "unit": x.unit, "phase": x.phase}
            for x in s.samples
        ],
        "orphan": s.orphan,
        "suspect": s.suspect,
        "suspect_reasons": sorted(s.suspect_reasons),
        "seq_gaps": s.seq_gaps,
        "version": s.version,
        "updated_at": _iso(s.updated_at),
        "_state": {
            "start_key": _key_out(s.start_key),
            "end_key": _key_out(s.end_key),
            "token_key": _key_out(s.token_key),
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
        started_at=_dt(d.get("started_at")),
        meter_start_wh=d.get("meter_start_wh"),
        start_key=_key_in(st.get("start_key")),
        stopped_at=_dt(d.get("stopped_at")),
        meter_stop_wh=d.get("meter_stop_wh"),
        stop_reason=d.get("stop_reason", ""),
        end_key=_key_in(st.get("end_key")),
        id_token=d.get("id_token", ""),
        token_key=_key_in(st.get("token_key")),
        evse_id=int(d.get("evse_id", 0)),
        connector_id=int(d.get("connector_id", 0)),
        location_key=_key_in(st.get("location_key")),
        last_charging_key=_key_in(st.get("last_charging_key")),
        idle_keys=tuple(k for k in (_key_in(v) for v in st.get("idle_keys", ())) if k is not None),
        ocpp_version=d.get("ocpp_version", ""),
        samples=tuple(
            Sample(parse_ocpp(x["timestamp"]), x["measurand"], float(x["value"]), x.get("unit", ""), x.get("phase", ""))
            for x in d.get("meter_samples", ())
        ),
        sample_level=int(st.get("sample_level", 0)),
        seen_seq_nos=frozenset(int(n) for n in st.get("seen_seq_nos", ())),
        flags=frozenset(st.get("flags", ())),
        version=int(d.get("version", 0)),
    )
