"""Test data builders for session events: sensible defaults, override what the test is about."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from services.common import events as ev

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
STATION = "CS-1"
TX = "tx-1"
_ids = itertools.count(1)


def at(minutes: float) -> datetime:
    """`at(5)` -> five minutes after T0."""
    return T0 + timedelta(minutes=minutes)


def an_envelope(body: ev.Body, *, station_time: datetime | None = T0, **overrides: Any) -> ev.Envelope:
    fields: dict[str, Any] = {
        "event_id": f"evt-{next(_ids)}",
        "station_id": STATION,
        "received_at": station_time or T0,
        "body": body,
        "gateway_id": "gateway-0",
        "ocpp_version": "2.0.1",
        "station_time": station_time,
    }
    fields.update(overrides)
    return ev.Envelope(**fields)


def a_register(minutes: float, wh: float, phase: str = "", measurand: str = ev.ENERGY_REGISTER, **overrides: Any) -> ev.MeterSample:
    unit = "Wh" if measurand.startswith("Energy") else "W"
    return ev.MeterSample(timestamp=at(minutes), value=wh, unit=unit, measurand=measurand, phase=phase, **overrides)


def a_started(*, at_min: float = 0, station_time: datetime | None = None, env: dict[str, Any] | None = None, **body: Any) -> ev.Envelope:
    b: dict[str, Any] = {"transaction_id": TX, "evse_id": 1, "connector_id": 1, "id_token": "TOKEN-1",
                         "seq_no": 0, "trigger_reason": "Authorized", "charging_state": "Charging"}
    b.update(body)
    st = station_time or at(at_min)
    return an_envelope(ev.TransactionStarted(**b), station_time=st, **(env or {}))


def an_updated(seq_no: int, *, at_min: float, env: dict[str, Any] | None = None, **body: Any) -> ev.Envelope:
    b: dict[str, Any] = {"transaction_id": TX, "evse_id": 1, "connector_id": 1, "seq_no": seq_no,
                         "trigger_reason": "MeterValuePeriodic", "charging_state": "Charging"}
    b.update(body)
    return an_envelope(ev.TransactionUpdated(**b), station_time=at(at_min), **(env or {}))


def an_ended(*, seq_no: int = ev.SEQ_NO_LAST_16, at_min: float = 60, env: dict[str, Any] | None = None, **body: Any) -> ev.Envelope:
    b: dict[str, Any] = {"transaction_id": TX, "evse_id": 1, "connector_id": 1, "seq_no": seq_no,
                         "stop_reason": "Local", "trigger_reason": "StopAuthorized"}
    b.update(body)
    return an_envelope(ev.TransactionEnded(**b), station_time=at(at_min), **(env or {}))


def meter_values(*samples: ev.MeterSample, at_min: float = 0, env: dict[str, Any] | None = None, **body: Any) -> ev.Envelope:
    b: dict[str, Any] = {"transaction_id": TX, "evse_id": 1, "connector_id": 1, "samples": tuple(samples)}
    b.update(body)
    return an_envelope(ev.MeterValues(**b), station_time=at(at_min), **(env or {}))


V16 = {"ocpp_version": "1.6"}


def a_16_session(meter_start: int = 1_000, meter_stop: int = 8_500) -> list[ev.Envelope]:
    """Start -> two MeterValues -> Stop, as the gateway maps OCPP 1.6."""
    return [
        a_started(env=V16, meter_start_wh=meter_start, charging_state="", trigger_reason=""),
        meter_values(a_register(15, meter_start + 2_000), at_min=15, env=V16),
        meter_values(a_register(30, meter_start + 4_000), at_min=30, env=V16),
        an_ended(env=V16, meter_stop_wh=meter_stop, seq_no=ev.SEQ_NO_LAST_16),
    ]


def a_201_session() -> list[ev.Envelope]:
    """Started (seq 0) -> Updated 1..3 -> Ended (seq 4), energy from register samples."""
    return [
        a_started(samples=(a_register(0, 10_000, context="Transaction.Begin"),)),
        an_updated(1, at_min=15, samples=(a_register(15, 12_500),)),
        an_updated(2, at_min=30, samples=(a_register(30, 15_000), a_register(30, 7_400, measurand="Power.Active.Import"))),
        an_updated(3, at_min=45, charging_state="SuspendedEV", samples=(a_register(45, 16_000),)),
        an_ended(seq_no=4, at_min=60, stop_reason="EVDisconnected", samples=(a_register(60, 16_000, context="Transaction.End"),)),
    ]


class SampleStore:
    """A stand-in for the sample store (ADR 015): the samples `apply` hands back, per
    session, and the rebuilds asked for (with their reasons)."""

    def __init__(self) -> None:
        self.by_session: dict[str, list[Any]] = {}
        self.rebuilds: list[str] = []

    def samples(self, session: Any) -> list[Any]:
        return self.by_session.get(session.id, []) if session is not None else []

    def apply(self, s: Any, e: ev.Envelope, now: datetime = NOW, rules: Any = None, **kw: Any) -> Any:
        """`apply`, then store the step's samples and rebuild when it asks: the session the
        runtime would write."""
        from services.sessions.domain import DEFAULT_RULES, apply, rebuild

        rules = rules or DEFAULT_RULES
        step = apply(s, e, now, rules, **kw)
        if step.session is None:
            return None
        self.by_session.setdefault(step.session.id, []).extend(step.new_samples)
        if step.rebuild:
            self.rebuilds.append(step.rebuild)
            return rebuild(step.session, self.samples(step.session), rules, tariff=kw.get("tariff"), now=now)
        return step.session

    def judged(self, s: Any, rules: Any = None) -> list[Any]:
        """The session's stored samples, one per key in key order, `excluded` judged."""
        from services.sessions.domain import DEFAULT_RULES, judge_samples

        return judge_samples(s, self.samples(s), rules or DEFAULT_RULES)


def replay(events: list[ev.Envelope], now: datetime = NOW, store: SampleStore | None = None, **kw: Any) -> Any:
    """Apply the events in order (storing samples, rebuilding when asked): the session."""
    store = store if store is not None else SampleStore()
    s = None
    for e in events:
        s = store.apply(s, e, now, **kw)
    return s


def step(s: Any, e: ev.Envelope, now: datetime = NOW, **kw: Any) -> Any:
    """One `apply` as a function of the session alone: the session it gives when no rebuild
    is needed (tests of facts; a step that asks for a rebuild fails the test here)."""
    from services.sessions.domain import apply

    out = apply(s, e, now, **kw)
    assert not out.rebuild, out.rebuild
    return out.session


def with_station_time(env: ev.Envelope, station_time: datetime) -> ev.Envelope:
    return replace(env, station_time=station_time)
