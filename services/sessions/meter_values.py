"""Meter samples outside the session row (ADR 015): what the sessions processor publishes
on csms.meter-values.v1, and the pages of stored samples the REST API serves.

- `outgoing(...)`: the csms.meter-values.v1 record of one station message's samples for
  one session (key = station id, CloudEvents id f"{event id}:{session id}").
- `redelivered_samples(env, rules)`: the samples of an event the session had already
  applied (a redelivery after a crash between the store write and the publish): the
  processor publishes them again so that the topic loses nothing. Their times are the
  effective times the domain gives them (`event_samples`); their `excluded` flag says
  only what the value itself shows (not a number, negative energy, a register in another
  unit) — the judgement against the session's other readings is the domain's, and the
  REST API judges over the stored samples.
- `page(store, session, ...)`: one page of a session's stored samples in (timestamp,
  measurand, phase) order with an opaque cursor, `excluded` judged by the domain over
  the session's kept readings.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Sequence

from services.common import events as ev
from services.common import topics
from services.common.bus.port import Outgoing
from services.common.store.port import MeterRow, SampleStore
from services.common.timeutil import parse_ocpp, to_ocpp
from services.sessions import codec as snapshots
from services.sessions.domain import session as domain
from services.sessions.domain.session import Plausibility, Sample, Session

__all__ = ["outgoing", "redelivered_samples", "sample_view", "page", "encode_cursor", "decode_cursor"]


def outgoing(s: Session, env: ev.Envelope, samples: Sequence[Sample], *, traceparent: str | None = None) -> Outgoing:
    value = snapshots.encode_meter_values(
        session_id=s.id, station_id=s.station_id, transaction_id=s.transaction_id,
        event_id=env.event_id, received_at=env.received_at, samples=samples,
    )
    headers = snapshots.meter_values_headers(s.id, s.station_id, env.event_id, env.received_at, traceparent=traceparent)
    return (topics.METER_VALUES, s.station_id, value, headers)


def redelivered_samples(env: ev.Envelope, rules: Plausibility) -> tuple[Sample, ...]:
    return domain.event_samples(env, rules)


# -- REST pages ----------------------------------------------------------------------
def sample_view(x: Sample) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": to_ocpp(x.timestamp),
        "measurand": x.measurand,
        "value": x.value,
        "unit": x.unit,
        "phase": x.phase,
        "excluded": x.excluded,
        "raw_value": x.raw_value,
    }
    station_time = getattr(x, "station_time", None)
    if station_time is not None:
        out["station_time"] = to_ocpp(station_time)
    return out


def encode_cursor(key: tuple[datetime, str, str]) -> str:
    raw = json.dumps([to_ocpp(key[0]), key[1], key[2]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """Raises ValueError for a cursor this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, measurand, phase = json.loads(raw)
        if not (isinstance(at, str) and isinstance(measurand, str) and isinstance(phase, str)):
            raise ValueError("cursor")
        return parse_ocpp(at), measurand, phase
    except Exception as exc:
        raise ValueError(f"invalid cursor {cursor[:64]!r}") from exc


async def page(
    store: SampleStore, s: Session, *, limit: int, cursor: str | None = None, rules: Plausibility | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the session's stored samples and the cursor of the next (None: no more).

    `excluded` is the domain's judgement (`judge_samples`) over all of the session's
    samples (a reading is judged against the kept readings before it), so every page reads
    the session's samples once: the REST API's cost, never the processor's."""
    rules = rules or domain.DEFAULT_RULES
    after = decode_cursor(cursor) if cursor else None
    rows: list[MeterRow] = await store.read_samples(s.id)
    samples = [domain.sample_from_row(r) for r in rows]
    judged = _judged(s, samples, rules)
    keyed = [(x.timestamp, x.measurand, x.phase) for x in judged]
    start = 0
    if after is not None:
        start = next((i for i, k in enumerate(keyed) if k > after), len(keyed))
    chunk = judged[start:start + limit]
    more = start + limit < len(judged)
    nxt = encode_cursor(keyed[start + limit - 1]) if more and chunk else None
    return [sample_view(x) for x in chunk], nxt


def _judged(s: Session, samples: list[Sample], rules: Plausibility) -> list[Sample]:
    """The samples one per key, in key order, with `excluded` as the domain judges them now."""
    return domain.judge_samples(s, samples, rules)
