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


def replay(events: list[ev.Envelope], now: datetime = NOW) -> Any:
    from services.sessions.domain import apply

    s = None
    for e in events:
        s = apply(s, e, now)
    return s


def with_station_time(env: ev.Envelope, station_time: datetime) -> ev.Envelope:
    return replace(env, station_time=station_time)
