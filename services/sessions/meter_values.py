"""Meter samples outside the session row (ADR 015): what the sessions processor publishes
on csms.meter-values.v1.

- `outgoing(...)`: the csms.meter-values.v1 record of one station message's samples for
  one session (key = station id, CloudEvents id f"{event id}:{session id}").
- `redelivered_samples(env, rules)`: the samples of an event the session had already
  applied (a redelivery after a crash between the store write and the publish): the
  processor publishes them again so that the topic loses nothing. Their times are the
  effective times the domain gives them (`event_samples`); their `excluded` flag says
  only what the value itself shows (not a number, negative energy, a register in another
  unit) — the judgement against the session's other readings is the domain's, and the
  REST API judges over the stored samples.

The pages of stored samples the REST API serves are read by `services.sessions.documents`
(`page`, `decode_cursor`); they are re-exported here for the callers of before.
"""

from __future__ import annotations

from typing import Sequence

from services.common import events as ev
from services.common import topics
from services.common.bus.port import Outgoing
from services.sessions import codec as snapshots
from services.sessions.documents import decode_cursor, encode_cursor, page, sample_view
from services.sessions.domain.session import Plausibility, Sample, Session, event_samples

__all__ = ["outgoing", "redelivered_samples", "sample_view", "page", "encode_cursor", "decode_cursor"]


def outgoing(s: Session, env: ev.Envelope, samples: Sequence[Sample], *, traceparent: str | None = None) -> Outgoing:
    value = snapshots.encode_meter_values(
        session_id=s.id, station_id=s.station_id, transaction_id=s.transaction_id,
        event_id=env.event_id, received_at=env.received_at, samples=samples,
    )
    headers = snapshots.meter_values_headers(s.id, s.station_id, env.event_id, env.received_at, traceparent=traceparent)
    return (topics.METER_VALUES, s.station_id, value, headers)


def redelivered_samples(env: ev.Envelope, rules: Plausibility) -> tuple[Sample, ...]:
    return event_samples(env, rules)
